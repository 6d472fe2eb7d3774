"""The verifier: proves or disproves a sealed store (a unit's, or a dock's copy).

Checks every property of docs/FORMAT.md "What the verifier checks". It never
writes. Problems are listed in the order found, each naming the file, record
and byte offset where known; the first one is "the first bad place".
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from . import canonical, fss, layout
from .age import AgeError, Identity, decrypt
from .files import hash_file
from .keys import KeyFileError, fingerprint, load_public, public_pem
from .receipts import MEDIA_TYPES, Receipt, ReceiptRefused, parse_receipt
from .records import (
    GENESIS_PREV,
    HEX64,
    KNOWN_TYPES,
    MAX_LINE,
    Record,
    RecordError,
    check_signature,
    parse_line,
)


class Unusable(Exception):
    """Input the verifier cannot work on at all (exit 2)."""


@dataclass
class Problem:
    where: str
    message: str
    record: int | None = None
    offset: int | None = None

    def __str__(self) -> str:
        at = self.where
        if self.record is not None:
            at += f" record {self.record}"
        if self.offset is not None:
            at += f" byte {self.offset}"
        return f"{at}: {self.message}"


@dataclass
class Report:
    store: str
    serial: str = ""
    anchors: dict[str, str] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)
    receipts: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(
        self, where: str, message: str, record: int | None = None, offset: int | None = None
    ) -> None:
        self.problems.append(Problem(where, message, record, offset))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out


def find_store(path: Path) -> Path:
    """A store root, or a unit directory holding `store/`."""
    for root in (path, path / "store"):
        if (root / layout.CHAIN).is_file():
            return root
    raise Unusable(f"{path} is not a sealed store (no {layout.CHAIN} in it or in store/)")


def verify_chain(path: Path, device_key: Ed25519PublicKey | None = None) -> Report:
    """The chain alone, no media: enough to root a key a record names."""
    root = find_store(Path(path))
    report = Report(store=str(root))
    device_key = device_key or _store_key(root, report)
    if device_key is not None:
        _check_chain(root / layout.CHAIN, device_key, None, report)
    return report


def _store_key(root: Path, report: Report) -> Ed25519PublicKey | None:
    pub = root / layout.DEVICE_PUB
    try:
        key = load_public(pub)
    except KeyFileError as exc:
        report.fail(layout.DEVICE_PUB, str(exc))
        return None
    if public_pem(key) != pub.read_bytes():
        # PEM parsers forgive stray bytes; an evidence file must not.
        report.fail(layout.DEVICE_PUB, "not exactly the PEM of the key it holds")
    report.anchors["device_key"] = "from the store (self-asserted: pass --device-key to anchor)"
    return key


def verify_store(
    path: Path,
    *,
    identity: Identity | None = None,
    escrow_key: bytes | None = None,
    device_key: Ed25519PublicKey | None = None,
    find_segment: Callable[[str], Path | None] | None = None,
    extra_receipts: list[bytes] | None = None,
) -> Report:
    root = find_store(Path(path))
    report = Report(store=str(root))
    segdir = root / layout.SEGMENTS
    locate = find_segment or (lambda name: segdir / name if (segdir / name).exists() else None)

    if device_key is None:
        device_key = _store_key(root, report)
        if device_key is None:
            return report
    else:
        report.anchors["device_key"] = "given"
    records = _check_chain(root / layout.CHAIN, device_key, escrow_key, report)
    if not records:
        return report
    receipts = _load_receipts(root, extra_receipts or [], report)
    _check_media(records, receipts, locate, segdir, identity, report)
    _check_receipts(records, receipts, report)
    return report


def _check_chain(
    path: Path, device_key: Ed25519PublicKey, escrow_key: bytes | None, report: Report
) -> list[Record]:
    with path.open("rb") as chain:
        return _check_lines(_lines(chain, layout.CHAIN, report), device_key, escrow_key, report)


def _lines(chain: BinaryIO, where: str, report: Report) -> Iterator[tuple[int, bytes]]:
    """(offset, line without its newline) for each complete line, each read
    with a bound so a hostile file cannot make the verifier hold gigabytes."""
    pos = 0
    n = 0
    while line := chain.readline(MAX_LINE + 1):
        if not line.endswith(b"\n"):
            msg = (
                f"a line longer than {MAX_LINE} bytes (not a record)"
                if len(line) > MAX_LINE
                else "chain ends in an incomplete line (power loss not yet recovered, or a cut)"
            )
            report.fail(where, msg, n, pos)
            return
        yield pos, line[:-1]
        pos += len(line)
        n += 1


def _check_lines(
    lines: Iterator[tuple[int, bytes]],
    device_key: Ed25519PublicKey,
    escrow_key: bytes | None,
    report: Report,
) -> list[Record]:
    where = layout.CHAIN
    records: list[Record] = []
    mac_key = escrow_key
    prev: Record | None = None
    for pos, line in lines:
        try:
            rec, sig, mac = parse_line(line)
        except RecordError as exc:
            report.fail(where, f"malformed record: {exc}", len(records), pos)
            return records
        n = len(records)
        if rec.seq != n:
            report.fail(
                where,
                f"sequence {rec.seq} where {n} was expected "
                "(record deleted, inserted, duplicated or reordered)",
                rec.seq,
                pos,
            )
            return records
        if prev is None:
            if rec.type != "genesis" or rec.prev != GENESIS_PREV:
                report.fail(where, "first record is not a genesis record", 0, pos)
                return records
            report.serial = rec.serial
            if rec.boot != 0:
                report.fail(where, f"genesis has boot count {rec.boot}, not 0", 0, pos)
            if rec.body.get("device_key") != fingerprint(device_key):
                report.fail(
                    where, "genesis names another device key than the one checked against", 0, pos
                )
            if escrow_key is not None:
                if fss.commitment(escrow_key) != rec.body.get("fss_commitment"):
                    report.fail(where, "escrow key does not belong to this unit", 0, pos)
                    mac_key = None
                else:
                    report.anchors["forward_secure_mac"] = "checked with the escrow key"
        else:
            if rec.type == "genesis":
                report.fail(where, "a second genesis record (there is exactly one)", rec.seq, pos)
            if rec.prev != prev.hash:
                report.fail(where, "previous-hash link broken", rec.seq, pos)
            if rec.serial != report.serial:
                report.fail(where, f"serial {rec.serial!r} differs from the chain's", rec.seq, pos)
            want_boot = prev.boot + (1 if rec.type == "boot" else 0)
            if rec.boot != want_boot:
                report.fail(where, f"boot count {rec.boot}, expected {want_boot}", rec.seq, pos)
            elif rec.type != "boot" and rec.stamp.mono_us < prev.stamp.mono_us:
                report.fail(where, "monotonic time runs backwards within one boot", rec.seq, pos)
        if not check_signature(rec, sig, device_key):
            report.fail(where, "bad signature (altered, or signed by another device)", rec.seq, pos)
        if mac_key is not None:
            if fss.mac(mac_key, _canon(rec)) != mac:
                report.fail(
                    where,
                    "forward-secure MAC does not match (record rewritten with a key taken later)",
                    rec.seq,
                    pos,
                )
            mac_key = fss.evolve(mac_key)
        if rec.type not in KNOWN_TYPES:
            report.notes.append(
                f"record {rec.seq}: type {rec.type!r} is newer than this "
                "verifier; checked as a record, body not interpreted"
            )
        report.records.append(
            {
                "seq": rec.seq,
                "type": rec.type,
                "officer": rec.officer,
                "boot": rec.boot,
                "mono_us": rec.stamp.mono_us,
                "wall_us": rec.stamp.wall_us,
                "clock": {"state": rec.stamp.clock_state, "source": rec.stamp.clock_source},
                "body": rec.body,
            }
        )
        records.append(rec)
        prev = rec
    if not records and not report.problems:
        report.fail(where, "chain is empty: no genesis record", 0, 0)
    if escrow_key is None:
        report.anchors["forward_secure_mac"] = "not checked (no escrow key given)"
    return records


def _canon(rec: Record) -> bytes:
    return canonical.encode(rec.to_dict())


def _load_receipts(root: Path, extra: list[bytes], report: Report) -> dict[str, Receipt]:
    found: dict[str, Receipt] = {}
    sources = []
    for p in sorted((root / layout.RECEIPTS).glob("*")):
        where = f"{layout.RECEIPTS}/{p.name}"
        if p.name.endswith(".json.tmp"):
            # a keep the power cut short: the dock still holds the receipt, and
            # opening the store removes it (docs/FORMAT.md section 8)
            report.notes.append(f"{where}: an interrupted receipt write, not a receipt")
        elif not _regular(p):
            report.fail(where, "not a regular file (a FIFO, device or link): not read")
        else:
            sources.append((where, p.read_bytes()))
    sources += [(f"receipt #{i + 1} given", data) for i, data in enumerate(extra)]
    for where, data in sources:
        try:
            receipt = parse_receipt(data)
        except ReceiptRefused as exc:
            report.fail(where, str(exc))
            continue
        if where.startswith(layout.RECEIPTS) and where != f"{layout.RECEIPTS}/{receipt.id}.json":
            report.fail(where, "file name is not the receipt's id")
        found[receipt.id] = receipt
    return found


def _media_records(records: list[Record]) -> list[Record]:
    return [
        r for r in records if r.type in MEDIA_TYPES or (r.type == "power_loss" and "file" in r.body)
    ]


def _check_media(
    records: list[Record],
    receipts: dict[str, Receipt],
    locate: Callable[[str], Path | None],
    segdir: Path,
    identity: Identity | None,
    report: Report,
) -> None:
    released: dict[str, str] = {}
    # only a dock the unit was provisioned with can free its storage: a key
    # taken from a seized unit must not be able to sign away what it recorded
    enrolled = set(records[0].body.get("docks", [])) if records else set()
    for r in records:
        if r.type == "release":
            rid = str(r.body.get("receipt"))
            receipt = receipts.get(rid)
            if receipt is None:
                report.fail(
                    layout.CHAIN,
                    f"release cites receipt {str(rid)[:16]} which is not in the store",
                    r.seq,
                )
                continue
            if receipt.dock not in enrolled:
                report.fail(
                    layout.CHAIN,
                    f"release under receipt {rid[:16]} signed by dock {receipt.dock[:16]}, "
                    "which genesis does not enroll",
                    r.seq,
                )
                continue
            bad = _release_problem(r.body, receipt)
            if bad:
                report.fail(layout.CHAIN, f"release under receipt {rid[:16]}: {bad}", r.seq)
                continue
            for f in r.body["files"]:
                released[f] = rid
    for r in records:
        if r.type == "power_loss" and (bad := _power_loss_problem(r.body)):
            report.fail(layout.CHAIN, f"power_loss record: {bad}", r.seq)
        if r.type == "stall" and (bad := _stall_problem(r.body)):
            report.fail(layout.CHAIN, f"stall record: {bad}", r.seq)
    named: set[str] = set()
    segnos: set[int] = set()
    last_end = -1
    for r in _media_records(records):
        b = r.body
        file = b.get("file")
        if not isinstance(file, str):
            report.fail(layout.CHAIN, f"media record names a bad file {file!r}", r.seq)
            continue
        parsed = layout.parse_name(file)
        if parsed is None or parsed.serial != report.serial or parsed.segno != b.get("segno"):
            report.fail(layout.CHAIN, f"media record names a bad file {file!r}", r.seq)
            continue
        if file in named:
            report.fail(layout.CHAIN, f"{file} is named by two records", r.seq)
        named.add(file)
        # numbers are taken when a file opens and recorded when it closes, so a
        # still can close before the segment it was taken in: unique, not ordered
        if parsed.segno in segnos:
            report.fail(layout.CHAIN, f"segment number {parsed.segno} used twice", r.seq)
        segnos.add(parsed.segno)
        truncated = r.type == "power_loss"
        bad = _media_body_problem(b, truncated)
        if bad:
            report.fail(layout.CHAIN, f"{file}: {bad}", r.seq)
        elif not truncated and parsed.kind == "segment":
            if b["start"]["mono_us"] < last_end - 1000 and r.boot == records[r.seq - 1].boot:
                report.notes.append(
                    f"{file}: starts before the previous segment ended (overlapping segments)"
                )
            else:
                last_end = b["end"]["mono_us"]
        entry: dict[str, Any] = {
            "file": file,
            "seq": r.seq,
            "kind": parsed.kind,
            "ct_sha256": b.get("ct_sha256"),
            "ct_len": b.get("ct_len"),
        }
        path = locate(file)
        if path is None:
            if file in released:
                entry["status"] = "released"
                entry["receipt"] = released[file]
            else:
                entry["status"] = "missing"
                report.fail(
                    f"{layout.SEGMENTS}/{file}", "missing and not released by any receipt", r.seq
                )
            report.segments.append(entry)
            continue
        if not _regular(path):
            report.fail(
                f"{layout.SEGMENTS}/{file}",
                "not a regular file (a FIFO, device or link): not read",
                r.seq,
            )
            entry["status"] = "altered"
            report.segments.append(entry)
            continue
        digest, length = hash_file(path)
        if digest != b.get("ct_sha256") or length != b.get("ct_len"):
            report.fail(
                f"{layout.SEGMENTS}/{file}",
                "ciphertext hash or length differs from the chain",
                r.seq,
            )
            entry["status"] = "altered"
        else:
            entry["status"] = "truncated by power loss" if truncated else "intact"
        if identity is not None and entry["status"] != "altered":
            _check_plaintext(path, r, truncated, identity, entry, report)
        report.segments.append(entry)
    if segdir.is_dir():
        for p in sorted(segdir.iterdir()):
            if p.name not in named:
                msg = (
                    "partial segment not yet recovered"
                    if p.name.endswith(layout.PARTIAL)
                    else "file not named by any record (inserted)"
                )
                report.fail(f"{layout.SEGMENTS}/{p.name}", msg)


_POWER_LOSS = {
    "torn_chain_line": {"cause", "dropped_bytes", "dropped_sha256", "offset"},
    "partial_segment": {
        "cause",
        "file",
        "segno",
        "kind",
        "ct_len",
        "ct_sha256",
        "last_write_wall_us",
    },
}


def _power_loss_problem(b: dict[str, Any]) -> str | None:
    """The two shapes recovery writes (FORMAT.md section 4); nothing else."""
    cause = b.get("cause")
    fields = _POWER_LOSS.get(cause) if isinstance(cause, str) else None
    if fields is None:
        return f"cause {b.get('cause')!r} is neither torn_chain_line nor partial_segment"
    if not fields <= set(b):
        return f"{b['cause']} wants {sorted(fields)}"
    if b["cause"] == "torn_chain_line":
        if "file" in b:
            return "a torn chain line names no file"
        ok = (
            _is_int(b["dropped_bytes"])
            and _is_int(b["offset"])
            and isinstance(b["dropped_sha256"], str)
            and HEX64.fullmatch(b["dropped_sha256"]) is not None
        )
        return None if ok else "dropped_bytes, offset, dropped_sha256 malformed"
    parsed = layout.parse_name(b["file"]) if isinstance(b["file"], str) else None
    if parsed is None or parsed.kind != b["kind"] or not _is_int(b["last_write_wall_us"]):
        return "file, kind or last_write_wall_us malformed"
    return None


STALL_PARTS = ("camera", "microphone", "recorder")


def _stall_problem(b: dict[str, Any]) -> str | None:
    """A stall's span agrees with itself (FORMAT.md, "Stalls")."""
    ints = ("from_us", "to_us", "span_us", "dropped_frames", "dropped_samples", "lost_samples")
    if not all(_is_int(b.get(k)) for k in ints) or not isinstance(b.get("ongoing"), bool):
        return f"{', '.join(ints)} must be non-negative integers and ongoing a boolean"
    if b["from_us"] > b["to_us"] or b["span_us"] != b["to_us"] - b["from_us"]:
        return "from_us, to_us and span_us disagree"
    what, spans = b.get("what"), b.get("spans")
    if (
        not isinstance(what, list)
        or not what
        or what != sorted(set(what))
        or not set(what) <= set(STALL_PARTS)
        or not isinstance(spans, dict)
        or sorted(spans) != what
    ):
        return f"what must list some of {', '.join(STALL_PARTS)} once, in order, as spans does"
    pairs = list(spans.values())
    if not all(
        isinstance(p, list) and len(p) == 2 and all(_is_int(v) for v in p) and p[0] <= p[1]
        for p in pairs
    ):
        return "each span must be [from_us, to_us], in order"
    if min(p[0] for p in pairs) != b["from_us"] or max(p[1] for p in pairs) != b["to_us"]:
        return "from_us and to_us must be where the spans begin and end"
    return None


def _release_problem(body: dict[str, Any], receipt: Receipt) -> str | None:
    """A release says what its receipt says, no more and no less."""
    want = {
        "receipt": receipt.id,
        "dock": receipt.dock,
        "from_seq": receipt.body["from_seq"],
        "to_seq": receipt.body["to_seq"],
        "head": receipt.body["head"],
        "files": [e["file"] for e in receipt.body["segments"]],
    }
    for key, value in want.items():
        if body.get(key) != value:
            return f"its {key} differs from the receipt's"
    if not _is_int(body.get("bytes_freed")):
        return "bytes_freed is not a non-negative integer"
    return None


def _regular(path: Path) -> bool:
    """A plain file, not followed through a link (a FIFO would hang the reader)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _media_body_problem(b: dict[str, Any], truncated: bool) -> str | None:
    """Why a media record's body is not well formed, or None."""
    if not (_is_int(b.get("ct_len")) and isinstance(b.get("ct_sha256"), str)):
        return "ct_len/ct_sha256 missing"
    if truncated:
        return None
    if not (_is_int(b.get("pt_len")) and isinstance(b.get("pt_sha256"), str)):
        return "pt_len/pt_sha256 missing"
    times = [b.get("start"), b.get("end")]
    if not all(
        isinstance(t, dict) and _is_int(t.get("mono_us")) and _is_int(t.get("wall_us"))
        for t in times
    ):
        return "start/end times missing"
    # the monotonic clock orders a segment: the wall clock may be stepped back
    # by a dock or GPS fix while it records (a `clock` record says so)
    if b["start"]["mono_us"] > b["end"]["mono_us"]:
        return "ends before it starts (monotonic clock)"
    if not _is_int(b.get("duration_us")):
        return "duration missing"
    return None


def _check_plaintext(
    path: Path,
    r: Record,
    truncated: bool,
    identity: Identity,
    entry: dict[str, Any],
    report: Report,
) -> None:
    where = f"{layout.SEGMENTS}/{r.body['file']}"
    try:
        with path.open("rb") as f:
            got = decrypt(f, identity)
    except AgeError as exc:
        if truncated:
            entry["plaintext"] = f"nothing recoverable: {exc}"
            return
        report.fail(where, f"does not decrypt: {exc}", r.seq)
        return
    entry["pt_len"] = got.plaintext_len
    entry["pt_sha256"] = got.plaintext_sha256
    if truncated:
        entry["plaintext"] = (
            "complete"
            if got.complete
            else f"authentic up to {got.plaintext_len} bytes ({got.error})"
        )
        return
    if not got.complete:
        report.fail(where, f"ciphertext incomplete: {got.error}", r.seq)
    elif got.plaintext_sha256 != r.body.get("pt_sha256") or got.plaintext_len != r.body.get(
        "pt_len"
    ):
        report.fail(where, "plaintext hash or length differs from the chain", r.seq)
    else:
        entry["plaintext"] = "decrypted, hash matches"


def _check_receipts(records: list[Record], receipts: dict[str, Receipt], report: Report) -> None:
    by_seq = {r.seq: r for r in records}
    last = records[-1].seq
    for rid, receipt in receipts.items():
        b = receipt.body
        where = f"receipt {rid[:16]}"
        info = {
            "id": rid,
            "dock": receipt.dock,
            "from_seq": b["from_seq"],
            "to_seq": b["to_seq"],
            "segments": len(b["segments"]),
            "dock_time_us": b["dock_time_us"],
        }
        report.receipts.append(info)
        if b["serial"] != report.serial:
            report.fail(where, f"is for device {b['serial']!r}")
            continue
        if b["to_seq"] > last:
            report.fail(
                where,
                f"the dock saw the chain up to record {b['to_seq']}, but it ends "
                f"at {last}: chain cut short",
            )
            continue
        if by_seq[b["to_seq"]].hash != b["head"]:
            report.fail(where, f"head differs from record {b['to_seq']}: chain rewritten")
        for e in b["segments"]:
            rec = by_seq.get(e["seq"])
            if (
                rec is None
                or rec.body.get("file") != e["file"]
                or rec.body.get("ct_sha256") != e["ct_sha256"]
            ):
                report.fail(where, f"{e['file']} does not match record {e['seq']}")


def human(report: Report) -> str:
    """The examiner's summary."""
    lines = [f"store      {report.store}", f"serial     {report.serial or '?'}"]
    for k, v in report.anchors.items():
        lines.append(f"{k:<10} {v}")
    types: dict[str, int] = {}
    for r in report.records:
        types[r["type"]] = types.get(r["type"], 0) + 1
    lines.append(
        f"records    {len(report.records)} ("
        + ", ".join(f"{n} {t}" for t, n in sorted(types.items()))
        + ")"
    )
    status: dict[str, int] = {}
    for s in report.segments:
        status[s["status"]] = status.get(s["status"], 0) + 1
    lines.append(
        f"media      {len(report.segments)} files ("
        + ", ".join(f"{n} {t}" for t, n in sorted(status.items()))
        + ")"
    )
    lines.append(f"receipts   {len(report.receipts)}")
    unverified = sum(1 for r in report.records if r["clock"]["state"] == "unverified")
    if unverified:
        lines.append(f"clock      {unverified} records made with an unverified clock")
    lines += [f"note       {n}" for n in report.notes]
    if report.ok:
        lines.append("RESULT     VERIFIED")
    else:
        lines.append(f"RESULT     FAILED at {report.problems[0]}")
        lines += [f"problem    {p}" for p in report.problems[1:20]]
        if len(report.problems) > 20:
            lines.append(f"problem    ... and {len(report.problems) - 20} more")
    return "\n".join(lines)
