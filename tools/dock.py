"""The reference dock: pull a unit's sealed segments over mutual TLS, verify,
store durably, index, and only then send a signed receipt (R15-R22).

    python tools/dock.py pull --unit HOST:PORT --dock-dir DIR \
        (--agency DIR --name NAME | --cert F --key F --ca F) [--identity F] \
        [--revoked F] [--index URL]
    python tools/dock.py serve --dock-dir DIR (--usb | --unit HOST:PORT ...) [--once] ...
    python tools/dock.py report --dock-dir DIR [--index URL]
    python tools/dock.py sync --dock-dir DIR --to AGENCY_DIR [--index URL] [--name DOCK]
    python tools/dock.py supervisor-add --dock-dir DIR --name N
    python tools/dock.py page --dock-dir DIR [--port 8080]
    python tools/dock.py recordings --dock-dir DIR --serial S
    python tools/dock.py export-case --dock-dir DIR --serial S --recording SEQ \
        --out DIR (--agency DIR | --identity F --c2pa-cert F --c2pa-key F --ca F)

The dock's storage:
    <dock>/dock.sqlite                       the index
    <dock>/units/<serial>/chain.jsonl        the unit's chain as last pulled
    <dock>/units/<serial>/device_ed25519.pub the unit's key, pinned on first pull
    <dock>/units/<serial>/receipts/<id>.json receipts this dock signed
    <dock>/units/<serial>/verification.json  the last safety check before a receipt
    <dock>/supervisors.json                  who may sign in to the compliance page
    <dock>/YYYY/MM/DD/<serial>/<segment>     segments, filed by start date (R21)
"""

from __future__ import annotations

import argparse
import csv
import getpass
import hashlib
import http.client
import json
import os
import sqlite3
import ssl
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from dock_index import INDEX_ERRORS, LOCAL_DOCK, VERIFICATION, Index, describe_error  # noqa: E402
from dock_sync import add_parser as add_sync_parser  # noqa: E402
from dock_sync import sync_command  # noqa: E402

from firmware.pki import client_context  # noqa: E402
from sealing import layout  # noqa: E402
from sealing.age import Identity  # noqa: E402
from sealing.files import fsync_dir, write_durably  # noqa: E402
from sealing.keys import fingerprint  # noqa: E402
from sealing.receipts import (  # noqa: E402
    ReceiptRefused,
    make_receipt,
    media_entries,
    parse_receipt,
)
from sealing.records import Record, parse_line  # noqa: E402
from sealing.verify import verify_store  # noqa: E402

BLOCK = 1024 * 1024


class DockError(Exception):
    """A pull that must stop; the message says why. Nothing was released."""


@dataclass
class Client:
    """One keep-alive HTTPS connection to a unit, reopened after a cut."""

    host: str
    port: int
    context: ssl.SSLContext
    token: str | None = None
    _conn: http.client.HTTPSConnection | None = field(default=None, repr=False)

    def _connection(self) -> http.client.HTTPSConnection:
        if self._conn is None:
            self._conn = http.client.HTTPSConnection(
                self.host, self.port, context=self.context, timeout=30
            )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> http.client.HTTPResponse:
        h = dict(headers or {})
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        conn = self._connection()
        try:
            conn.request(method, path, body=body, headers=h)
            return conn.getresponse()
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def json(
        self, method: str, path: str, obj: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        body = json.dumps(obj).encode() if obj is not None else None
        resp = self.request(method, path, body, {"Content-Type": "application/json"})
        data = resp.read()
        try:
            return resp.status, json.loads(data)
        except ValueError:
            return resp.status, {"error": data[:200].decode(errors="replace")}


@dataclass(frozen=True)
class SegnoGap:
    """Segment numbers the unit never sealed: `after` and `before` are held,
    everything between is absent from the chain itself."""

    boot: int
    after: int
    before: int


@dataclass
class PullResult:
    serial: str
    pulled: list[str]
    resumed_bytes: int
    receipt: str | None
    released: list[str]
    bytes_freed: int
    report_ok: bool
    # named by the chain, offered by no one: the unit no longer holds them and
    # no receipt released them. Reported; they cannot hold back the rest.
    missing: list[str] = field(default_factory=list)
    segno_gaps: list[SegnoGap] = field(default_factory=list)


# What a pull asks for an officer's login: (serial, officer) -> (password, fingerprint matched).
Login = Callable[[str, "str | None"], tuple[str, bool]]


def _download(
    client: Client,
    name: str,
    dest: Path,
    want_sha: str,
    want_len: int,
    progress: Callable[[str, int, int], None],
    retries: int = 5,
) -> int:
    """Fetch one segment into dest, resuming a .part file left by a cut link (in
    this pull or an earlier one); return how many bytes were not fetched again.
    The hash is taken as bytes arrive, so the file is read back only to resume."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    resumed = 0
    buf = memoryview(bytearray(BLOCK))
    digest = hashlib.sha256()
    have = 0
    if part.exists():
        with part.open("rb") as f:
            while n := f.readinto(buf):
                digest.update(buf[:n])
                have += n
    for _attempt in range(retries + 1):
        if have >= want_len:
            break
        resumed += have
        try:
            resp = client.request(
                "GET", f"/v1/segments/{name}", headers={"Range": f"bytes={have}-"}
            )
            if resp.status not in (200, 206):
                raise DockError(f"{name}: unit answered {resp.status}: {resp.read()[:200]!r}")
            with part.open("ab") as f:
                try:
                    have = _receive(
                        resp, f, digest, have, want_len, lambda got: progress(name, got, want_len)
                    )
                finally:
                    f.flush()
                    os.fsync(f.fileno())  # what arrived stays, for the resume
            if have < want_len:
                client.close()  # the body ended early: the link was cut
        except (OSError, http.client.HTTPException):
            client.close()  # the link was cut: reconnect and resume from what arrived
            have = part.stat().st_size if part.exists() else 0
            digest = _rehash(part, buf)
    if have != want_len or digest.hexdigest() != want_sha:
        part.unlink(missing_ok=True)
        raise DockError(f"{name}: received {have} bytes whose hash does not match the chain")
    os.replace(part, dest)
    fsync_dir(dest.parent)
    _drop_cached(dest)
    return resumed


def _drop_cached(path: Path) -> None:
    """Evict the file's pages (clean after fsync) so that the check before
    the receipt reads what the disk holds, not what was written to memory."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _receive(
    resp: http.client.HTTPResponse,
    f: BinaryIO,
    digest: Any,
    have: int,
    want_len: int,
    progress: Callable[[int], None],
) -> int:
    """Read the body into two alternating buffers; a worker thread writes and
    hashes one while the next arrives (hashlib and file writes release the
    GIL), so TLS decryption and SHA-256 use both cores. Returns bytes held."""
    bufs = [memoryview(bytearray(BLOCK)), memoryview(bytearray(BLOCK))]
    pending: list[Future | None] = [None, None]

    def keep(view: memoryview) -> None:
        f.write(view)
        digest.update(view)

    with ThreadPoolExecutor(max_workers=1) as worker:
        k = 0
        try:
            while True:
                if pending[k] is not None:
                    pending[k].result()  # type: ignore[union-attr]
                n = resp.readinto(bufs[k])  # short only at the end or at a cut
                if not n:
                    break
                pending[k] = worker.submit(keep, bufs[k][:n])
                have += n
                progress(have)
                k ^= 1
        finally:
            for fut in pending:
                if fut is not None:
                    fut.result()  # everything received is written and hashed, in order
    return have


def _rehash(path: Path, buf: memoryview) -> hashlib._Hash:
    digest = hashlib.sha256()
    if path.exists():
        with path.open("rb") as f:
            while n := f.readinto(buf):
                digest.update(buf[:n])
    return digest


def _progress_bar(name: str, have: int, total: int) -> None:
    if sys.stderr.isatty():
        width = 30
        done = int(width * have / max(total, 1))
        sys.stderr.write(
            f"\r{name[-40:]:>40} [{'#' * done}{'.' * (width - done)}] "
            f"{have * 100 // max(total, 1):3d}%"
        )
        if have >= total:
            sys.stderr.write("\n")


def _records(chain: bytes) -> list[Record]:
    return [parse_line(line)[0] for line in chain.splitlines()]


def pull(
    client: Client,
    dock_dir: Path,
    dock_key: Ed25519PrivateKey,
    *,
    password: str = "",
    fingerprint_ok: bool = False,
    login: Login | None = None,
    identity: Identity | None = None,
    progress: Callable[[str, int, int], None] = _progress_bar,
    stage: Callable[[str, dict[str, Any]], None] = lambda _stage, _info: None,
    revoked: Mapping[str, str] | None = None,
    on_stored: Callable[[str, Path], None] | None = None,
    stop_before_receipt: bool = False,
    now: Callable[[], float] = time.time,
    index_target: str | Path | None = None,
    dock_name: str = LOCAL_DOCK,
) -> PullResult:
    """One unit: status, refuse a revoked key, officer login, clock, chain,
    segments, then the safety check (every segment re-read from the dock's
    disk and re-hashed, the chain copy verified, gaps and missing segments
    named) and only then the receipt. `login` is asked once the unit has
    said who it is; without it, `password` and `fingerprint_ok` are used.
    `stage(name, info)` tells a watcher how far the pull is; `on_stored` is
    fault injection: called after each segment is durably stored. The index
    is the dock's SQLite file unless `index_target` names another (a city
    server's PostgreSQL, whose rows carry `dock_name`)."""
    dock_dir.mkdir(parents=True, exist_ok=True)
    index = Index.open(index_target or dock_dir / "dock.sqlite", dock=dock_name)
    ask = login or (lambda _serial, _officer: (password, fingerprint_ok))
    try:
        code, status = client.json("GET", "/v1/status")
        if code != 200:
            raise DockError(f"status: {code} {status.get('error')}")
        serial = status["serial"]
        layout.check_serial(serial)
        stage("status", {"serial": serial, "officer": status.get("officer")})
        _refuse_revoked(serial, status, revoked or {})
        pw, fp_ok = ask(serial, status.get("officer"))
        code, auth = client.json("POST", "/v1/auth", {"password": pw, "fingerprint_ok": fp_ok})
        if code != 200:
            raise DockError(
                f"officer not authorised ({code}): {auth.get('error')}"
                + (f", retry in {auth['retry_after_s']} s" if "retry_after_s" in auth else "")
            )
        client.token = auth["token"]
        code, clock = client.json("POST", "/v1/time", {"dock_time_us": int(now() * 1e6)})
        if code != 200:
            raise DockError(f"time sync refused ({code}): {clock.get('error')}")
        resp = client.request("GET", "/v1/chain?from=0")
        chain = resp.read()
        if resp.status != 200:
            raise DockError(f"chain: {resp.status}")
        records = _records(chain)
        mirror = dock_dir / "units" / serial
        _store_chain(index, mirror, serial, status, records, chain)
        _fetch_cited_receipts(client, mirror, records)
        held = index.held(serial)
        offered = {e["file"] for e in _offered(client)}
        by_seq = {r.seq: r for r in records}
        todo = [e for e in media_entries(records) if e["file"] not in held and e["file"] in offered]
        stage(
            "pulling",
            {"files": len(todo), "bytes": sum(by_seq[e["seq"]].body["ct_len"] for e in todo)},
        )
        pulled, resumed = [], 0
        for e in todo:
            rec = by_seq[e["seq"]]
            name = layout.parse_name(e["file"])
            assert name is not None
            dest = dock_dir / name.day_dir / serial / e["file"]
            resumed += _download(
                client, e["file"], dest, e["ct_sha256"], rec.body["ct_len"], progress
            )
            if on_stored is not None:
                on_stored(e["file"], dest)
            index.add_segment(
                file=e["file"],
                serial=serial,
                seq=e["seq"],
                kind=name.kind,
                ct_sha256=e["ct_sha256"],
                pt_sha256=rec.body.get("pt_sha256"),
                ct_len=rec.body["ct_len"],
                start_wall_us=(rec.body.get("start") or {}).get("wall_us"),
                end_wall_us=(rec.body.get("end") or {}).get("wall_us"),
                officer=rec.officer,
                retention=rec.body.get("retention"),
                marks=json.dumps(_marks(records)),
                path=str(dest.relative_to(dock_dir)),
                stored_us=int(now() * 1e6),
            )
            pulled.append(e["file"])
        stage("verifying", {})
        held = index.held(serial)
        check = _safety_check(dock_dir, mirror, records, held, offered, identity, now)
        index.update_unit(serial, records[-1].seq, int(now() * 1e6))
        if check.refusal:
            for f in check.altered:
                if f in offered:  # the unit still has it: fetch it again next time
                    _set_aside(dock_dir, held[f]["path"], check.checked_us)
                    index.forget_segment(serial, f)
            raise DockError(f"no receipt sent: {check.refusal}")
        if stop_before_receipt:
            raise DockError("stopped before sending the receipt (fault injection)")
        entries = [e for e in media_entries(records) if e["file"] in held and e["file"] in offered]
        stage("receipt", {"files": len(entries)})
        receipt = make_receipt(
            dock_key,
            serial=serial,
            from_seq=0,
            to_seq=records[-1].seq,
            head=records[-1].hash,
            segments=entries,
            dock_time_us=int(now() * 1e6),
        )
        (mirror / layout.RECEIPTS).mkdir(exist_ok=True)
        write_durably(mirror / layout.RECEIPTS / f"{receipt.id}.json", receipt.to_bytes())
        code, applied = _post_receipt(client, receipt.to_bytes())
        accepted = code == 200
        index.add_receipt(receipt.id, serial, receipt.body, [e["file"] for e in entries], accepted)
        if not accepted:
            raise DockError(f"unit refused the receipt ({code}): {applied.get('error')}")
        check.write(mirror, receipt.id)
        return PullResult(
            serial,
            pulled,
            resumed,
            receipt.id,
            applied["released"],
            applied["bytes_freed"],
            True,
            check.missing,
            check.segno_gaps,
        )
    finally:
        index.close()


def _refuse_revoked(serial: str, status: dict[str, Any], revoked: Mapping[str, str]) -> None:
    """A key the agency revoked (a serial flashed again with --force, a lost
    unit) no longer speaks for the serial: its chain is not taken, its
    storage not released, and no officer is asked to log in to it."""
    try:
        key = serialization.load_pem_public_key(status["device_key_pem"].encode())
    except (KeyError, ValueError, AttributeError):
        raise DockError(f"{serial}: status carries no readable device key") from None
    fp = fingerprint(key)  # type: ignore[arg-type]
    if fp in revoked:
        raise DockError(
            f"{serial}: device key {fp[:16]} was revoked by the agency ({revoked[fp]}); "
            "nothing pulled, nothing released - take the unit to QA"
        )


@dataclass
class SafetyCheck:
    """What the dock found before deciding on a receipt (R19, R20)."""

    checked_us: int
    head_seq: int
    problems: list[str]
    missing: list[str]
    segno_gaps: list[SegnoGap]
    altered: list[str] = field(default_factory=list)  # held, but not what the chain says

    @property
    def refusal(self) -> str | None:
        if not self.problems:
            return None
        return "the dock's copy does not verify:\n  " + "\n  ".join(self.problems)

    def write(self, mirror: Path, receipt: str | None) -> None:
        """units/<serial>/verification.json: the compliance page's source for
        each recording's state (docs/EXPORT.md)."""
        body = {
            "checked_us": self.checked_us,
            "head_seq": self.head_seq,
            "ok": not self.problems,
            "problems": self.problems,
            "missing": self.missing,
            "segno_gaps": [asdict(g) for g in self.segno_gaps],
            "receipt": receipt,
        }
        write_durably(mirror / VERIFICATION, (json.dumps(body, indent=1) + "\n").encode())


def _safety_check(
    dock_dir: Path,
    mirror: Path,
    records: list[Record],
    held: Mapping[str, Any],
    offered: set[str],
    identity: Identity | None,
    now: Callable[[], float],
) -> SafetyCheck:
    """Re-read every held segment from the dock's disk (its pages were
    dropped from the cache after fsync, so this reads the medium) and
    re-hash it against the chain, verify the chain copy, and name every
    segment the chain cites that neither side holds and every hole in the
    segment numbers. Written to verification.json whether or not it passes."""
    report = verify_store(
        mirror,
        identity=identity,
        find_segment=lambda f: (dock_dir / held[f]["path"]) if f in held else None,
    )
    missing = [
        s["file"] for s in report.segments if s["status"] == "missing" and s["file"] not in offered
    ]
    gone = {f"{layout.SEGMENTS}/{f}" for f in missing}
    check = SafetyCheck(
        checked_us=int(now() * 1e6),
        head_seq=records[-1].seq,
        # a segment the unit lost is reported, not a reason to keep the rest
        problems=[str(p) for p in report.problems if p.where not in gone],
        missing=missing,
        segno_gaps=_segno_gaps(records),
        altered=[s["file"] for s in report.segments if s["status"] == "altered"],
    )
    check.write(mirror, None)
    return check


def _set_aside(dock_dir: Path, rel: str, when_us: int) -> None:
    """Keep a copy that failed its re-read for whoever looks into why (a
    failing disk?), under a name no verifier or sync takes for a segment."""
    path = dock_dir / rel
    if path.exists():
        os.replace(path, path.with_name(f"{path.name}.rejected-{when_us}"))
        fsync_dir(path.parent)


def _segno_gaps(records: list[Record]) -> list[SegnoGap]:
    numbered: list[tuple[int, int]] = []
    for e in media_entries(records):
        name = layout.parse_name(e["file"])
        if name is not None:
            numbered.append((name.segno, e["seq"]))
    numbered.sort()
    boot_of = {r.seq: r.boot for r in records}
    return [
        SegnoGap(boot_of[b_seq], a, b)
        for (a, _), (b, b_seq) in zip(numbered, numbered[1:], strict=False)
        if b > a + 1
    ]


def _fetch_cited_receipts(client: Client, mirror: Path, records: list[Record]) -> None:
    """Receipts another dock signed: the chain cites them in `release`
    records, and this dock's copy only verifies with them beside it."""
    folder = mirror / layout.RECEIPTS
    for r in records:
        rid = r.body.get("receipt") if r.type == "release" else None
        if not isinstance(rid, str) or (folder / f"{rid}.json").exists():
            continue
        resp = client.request("GET", f"/v1/receipts/{rid}")
        data = resp.read()
        if resp.status != 200:
            raise DockError(f"receipt {rid[:16]} cited by the chain: unit answered {resp.status}")
        try:
            got = parse_receipt(data).id
        except ReceiptRefused as exc:
            raise DockError(f"receipt {rid[:16]} from the unit is not a receipt: {exc}") from None
        if got != rid:
            raise DockError(f"asked for receipt {rid[:16]}, the unit sent {got[:16]}")
        folder.mkdir(parents=True, exist_ok=True)
        write_durably(folder / f"{rid}.json", data)


def _post_receipt(client: Client, data: bytes) -> tuple[int, dict[str, Any]]:
    resp = client.request("POST", "/v1/receipt", data, {"Content-Type": "application/json"})
    body = resp.read()
    try:
        return resp.status, json.loads(body)
    except ValueError:
        return resp.status, {"error": body[:200].decode(errors="replace")}


def _offered(client: Client) -> list[dict[str, Any]]:
    """What the unit still holds and offers: sealed, not yet released."""
    code, got = client.json("GET", "/v1/offered")
    if code != 200 or not isinstance(got.get("segments"), list):
        raise DockError(f"offered list: {code} {got.get('error')}")
    return got["segments"]


def _marks(records: list[Record]) -> list[str]:
    return sorted(
        {str(r.body.get("flag") or r.body.get("retention")) for r in records if r.type == "mark"}
    )


def _store_chain(
    index: Index,
    mirror: Path,
    serial: str,
    status: dict[str, Any],
    records: list[Record],
    chain: bytes,
) -> None:
    """Pin the unit's key on first sight; the new chain must extend the old copy."""
    mirror.mkdir(parents=True, exist_ok=True)
    pem = status["device_key_pem"].encode()
    key = serialization.load_pem_public_key(pem)
    fp = fingerprint(key)  # type: ignore[arg-type]
    known = index.unit(serial)
    if known is not None and known["device_key"] != fp:
        raise DockError(
            f"{serial} presents device key {fp[:16]}, pinned {known['device_key'][:16]}"
        )
    if not records or records[0].body.get("device_key") != fp:
        raise DockError(f"{serial}: chain genesis does not name the unit's device key")
    old = mirror / layout.CHAIN
    if old.exists() and not chain.startswith(old.read_bytes()):
        raise DockError(
            f"{serial}: the unit's chain no longer starts with the copy this dock "
            "holds (history rewritten or cut)"
        )
    write_durably(mirror / layout.DEVICE_PUB, pem)
    write_durably(old, chain)
    index.pin_unit(serial, fp, records[-1].officer)


# -- report (R22) -------------------------------------------------------------


def report(
    dock_dir: Path, late_after_s: int = 24 * 3600, *, index: str | Path | None = None
) -> str:
    """`index`: the index's file or URL (default the dock's dock.sqlite); an
    agency index reports every dock's rows. The facts are tools/compliance.py's,
    the same the supervisors' page shows."""
    import compliance  # courtcopy's idea of a recording: loaded only for reports

    db = Index.open(index or dock_dir / "dock.sqlite", dock=None)
    try:
        view = compliance.read_dock(dock_dir, db, late_after_s)
    finally:
        db.close()
    out: list[str] = []
    for unit in view.units:
        out += _unit_report(unit)
    out += [f"unit {serial}: not reported here: {why}" for serial, why in view.unreadable]
    return "\n".join(out) if out else "no units pulled yet"


def _unit_report(u: Any) -> list[str]:
    """The text lines of one unit (a compliance.UnitCompliance)."""
    c = u.counts
    gaps = [
        f"{g.seconds:.1f} s before segment {g.before_segno} ({g.explained_by or 'UNEXPLAINED'})"
        for g in u.gaps
    ]
    unexplained = sum(g.explained_by is None for g in u.gaps)
    missing = ", ".join(str(seq) for seq in c.notes_missing)
    states = sorted({v.verification for v in u.recordings})
    verified = ", ".join(f"{sum(v.verification == s for v in u.recordings)} {s}" for s in states)
    return [
        f"unit {u.serial} (officer {u.officer}, chain 0..{u.head_seq})",
        f"  recordings   {c.started} started, {c.segments} segments ({c.segment_s:.0f} s), "
        f"{c.stills} stills",
        f"  gaps         {len(gaps)}, {unexplained} unexplained"
        + (f": {', '.join(gaps[:5])}" if gaps else ""),
        f"  pauses       {c.pauses} ({', '.join(c.pause_reasons)})",
        f"  resume notes {c.notes_given} given, {len(c.notes_missing)} missing"
        + (f" (records {missing})" if missing else ""),
        f"  clock        {c.unverified_records} records unverified, {c.clock_records} steps",
        f"  faults       {len(c.faults)}" + (f": {', '.join(c.faults[:6])}" if c.faults else ""),
        f"  late export  {len(c.late)} segments exported more than "
        f"{u.late_after_s // 3600} h after recording",
        f"  unmarked     {len(u.findings_of('unmarked'))} of {len(u.recordings)} recordings "
        "have no evidence mark",
        f"  verification {verified or 'no recordings'}"
        + (f" ({u.verification_note})" if u.verification_note else ""),
    ]


# -- command line ---------------------------------------------------------------


def _load_dock(args: argparse.Namespace) -> tuple[ssl.SSLContext, Ed25519PrivateKey]:
    if args.agency:
        cert = args.agency / "docks" / f"{args.name}.crt"
        key = args.agency / "docks" / f"{args.name}.key"
        ca = args.agency / "ca.crt"
    else:
        cert, key, ca = args.cert, args.key, args.ca
    if not (cert and key and ca):
        raise DockError("give --agency DIR --name NAME, or --cert, --key and --ca")
    try:
        private = serialization.load_pem_private_key(Path(key).read_bytes(), None)
        ctx = client_context(Path(cert), Path(key), Path(ca))
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise DockError(f"dock credentials: {exc}") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise DockError("the dock key must be Ed25519")
    return ctx, private


def _case_command(args: argparse.Namespace) -> int:
    import courtcopy  # c2pa, weasyprint: loaded only for court copies

    try:
        if args.cmd == "recordings":
            report = courtcopy.verified_copy(args.dock_dir, args.serial)
            for rec in courtcopy.recordings(report.records):
                print(courtcopy.describe(rec))
            return 0
        signing, identity = _case_credentials(args)
        case = courtcopy.export_case(
            args.dock_dir, args.serial, args.recording, identity, signing, args.out, args.name
        )
    except courtcopy.CaseError as exc:
        print(f"dock: {exc}", file=sys.stderr)
        return exc.code
    except OSError as exc:
        print(f"dock: {exc}", file=sys.stderr)
        return 2
    j = case.joined
    print(
        f"court copy {case.mp4}: {j.duration_us / 1e6:.1f} s, {j.video_packets} pictures, "
        f"{len(case.media['missing_groups'])} groups missing; C2PA {case.validation.state} with "
        f"the agency CA{' (TEST certificate)' if case.test_certificate else ''}; "
        f"report.html, report.pdf, SHA256SUMS in {case.out}"
    )
    return 0


def _case_credentials(args: argparse.Namespace) -> tuple[Any, Identity]:
    from courtcopy import CaseError, Signing

    a = args.agency
    cert = args.c2pa_cert or (a / "c2pa" / "court.crt" if a else None)
    key = args.c2pa_key or (a / "c2pa" / "court.key" if a else None)
    ca = args.ca or (a / "ca.crt" if a else None)
    ident = args.identity or (a / "evidence.key" if a else None)
    if not (cert and key and ca and ident):
        raise CaseError("give --agency DIR, or --identity, --c2pa-cert, --c2pa-key and --ca")
    try:
        signing = Signing(cert.read_bytes(), key.read_bytes(), ca.read_bytes())
        identity = Identity.parse(ident.read_text())
    except FileNotFoundError as exc:
        hint = " (flash.py c2pa-signer makes one)" if exc.filename == str(cert) else ""
        raise CaseError(f"{exc.filename}: no such file{hint}") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CaseError(f"court-copy credentials: {exc}") from None
    return signing, identity


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="dock.py", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pl = sub.add_parser("pull", help="pull one unit, verify, store, then receipt")
    pl.add_argument("--unit", required=True, help="HOST:PORT or [IPv6%%if]:PORT of the unit")
    _dock_arguments(pl)
    pl.add_argument(
        "--password-file",
        type=Path,
        help="read the officer's password from a file (default: prompt)",
    )
    pl.add_argument("--stop-before-receipt", action="store_true", help=argparse.SUPPRESS)
    sv = sub.add_parser("serve", help="watch for units, pull several at once (docs/EXPORT.md)")
    _dock_arguments(sv)
    sv.add_argument(
        "--usb", action="store_true", help="units on USB gadget links (IPv6 link-local)"
    )
    sv.add_argument("--usb-port", type=int, default=8443, help="the units' export port")
    sv.add_argument("--unit", action="append", default=[], help="a fixed HOST:PORT (repeatable)")
    sv.add_argument("--once", action="store_true", help="pull the units present now, then exit")
    sv.add_argument("--workers", type=int, default=4, help="units pulled at the same time")
    sv.add_argument(
        "--password-dir", type=Path, help="officers' passwords as DIR/<serial> (default: prompt)"
    )
    rp = sub.add_parser("report", help="compliance report per unit (R22)")
    rp.add_argument("--dock-dir", type=Path, required=True)
    rp.add_argument(
        "--index",
        help="the index: a SQLite file or postgresql+psycopg://... URL "
        "(default DOCK_DIR/dock.sqlite)",
    )
    add_sync_parser(sub)
    rl = sub.add_parser("recordings", help="the recordings a unit's verified copy holds")
    rl.add_argument("--dock-dir", type=Path, required=True)
    rl.add_argument("--serial", required=True)
    ec = sub.add_parser("export-case", help="the court copy of one recording (docs/EXPORT.md)")
    ec.add_argument("--dock-dir", type=Path, required=True)
    ec.add_argument("--serial", required=True)
    ec.add_argument(
        "--recording",
        type=int,
        required=True,
        metavar="SEQ",
        help="the record_start record's number (see `recordings`)",
    )
    ec.add_argument("--out", type=Path, required=True, help="the case folder to create")
    ec.add_argument(
        "--agency", type=Path, help="agency folder: c2pa/court.crt+key, ca.crt, evidence.key"
    )
    ec.add_argument("--identity", type=Path, help="the agency's evidence identity (age)")
    ec.add_argument("--c2pa-cert", type=Path, help="court-copy signing certificate, leaf first")
    ec.add_argument("--c2pa-key", type=Path)
    ec.add_argument("--ca", type=Path, help="the agency CA (the C2PA trust anchor)")
    ec.add_argument("--name", default="", help="this dock's name, for the report")
    sa = sub.add_parser("supervisor-add", help="let a supervisor sign in to the compliance page")
    sa.add_argument("--dock-dir", type=Path, required=True)
    sa.add_argument("--name", required=True)
    sa.add_argument("--password-file", type=Path, help="read the password (default: prompt)")
    pg = sub.add_parser("page", help="serve the supervisors' compliance page, on loopback only")
    pg.add_argument("--dock-dir", type=Path, required=True)
    pg.add_argument("--port", type=int, default=8080)
    pg.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    args = p.parse_args(argv)
    if args.cmd in ("supervisor-add", "page"):
        import compliance_web  # flask, waitress, matplotlib: loaded only for the page

        return compliance_web.command(args)
    if args.cmd == "report":
        try:
            print(report(args.dock_dir, index=args.index))
        except INDEX_ERRORS + (OSError,) as exc:
            print(f"dock: {describe_error(exc)}", file=sys.stderr)
            return 2
        return 0
    if args.cmd == "sync":
        return sync_command(args)
    if args.cmd in ("recordings", "export-case"):
        return _case_command(args)
    if args.cmd == "serve":
        import dock_service

        return dock_service.main(args)
    return _pull_command(args)


def _dock_arguments(p: argparse.ArgumentParser) -> None:
    """What pull and serve share: where the dock keeps its copies, who it is."""
    p.add_argument("--dock-dir", type=Path, required=True)
    p.add_argument("--agency", type=Path, help="agency folder: docks/NAME.crt+key, ca.crt")
    p.add_argument("--name", default="dock1")
    p.add_argument("--cert", type=Path)
    p.add_argument("--key", type=Path)
    p.add_argument("--ca", type=Path)
    p.add_argument("--identity", type=Path, help="agency identity: also check plaintext hashes")
    p.add_argument(
        "--index",
        help="the index: a SQLite path or a postgresql+psycopg:// URL, whose rows then carry "
        "--name (default: DOCK_DIR/dock.sqlite)",
    )
    p.add_argument(
        "--revoked",
        type=Path,
        help="units the agency revoked: its inventory.sqlite or a `flash.py inventory --csv` "
        "export (default: the agency folder's inventory, if there is one)",
    )
    p.add_argument(
        "--fingerprint",
        choices=["match", "no-match"],
        default=None,
        help="simulated fingerprint reader verdict (default: ask)",
    )


def load_revoked(args: argparse.Namespace) -> dict[str, str]:
    """Device-key fingerprint -> why it was revoked, from the QA inventory."""
    path = args.revoked or (args.agency / "inventory.sqlite" if args.agency else None)
    if path is None or (args.revoked is None and not path.exists()):
        return {}
    try:
        if path.suffix == ".csv":
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))
        else:
            if not path.is_file():
                raise DockError(f"--revoked {path}: no such file")
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                db.row_factory = sqlite3.Row
                rows = [dict(r) for r in db.execute("SELECT * FROM units")]
            finally:
                db.close()
        return {
            str(r["device_key"]): f"{r.get('revoked_reason') or 'revoked'}, {r.get('revoked_at')}"
            for r in rows
            if r.get("status") == "revoked"
        }
    except (OSError, KeyError, sqlite3.Error, csv.Error, UnicodeDecodeError) as exc:
        raise DockError(f"revocation list {path}: {exc}") from None


def index_arguments(args: argparse.Namespace) -> dict[str, Any]:
    if not args.index:
        return {}
    return {"index_target": args.index, "dock_name": args.name}


def dock_setup(
    args: argparse.Namespace,
) -> tuple[ssl.SSLContext, Ed25519PrivateKey, Identity | None, dict[str, str]]:
    ctx, key = _load_dock(args)
    try:
        identity = Identity.parse(args.identity.read_text()) if args.identity else None
    except (OSError, ValueError) as exc:
        raise DockError(f"--identity: {exc}") from None
    return ctx, key, identity, load_revoked(args)


def _pull_command(args: argparse.Namespace) -> int:
    try:
        import dock_service

        address = dock_service.parse_address(args.unit)
        ctx, key, identity, revoked = dock_setup(args)
        password = (
            args.password_file.read_text().rstrip("\n")
            if args.password_file
            else getpass.getpass("officer password: ")
        )
        fp = args.fingerprint or (
            "match" if input("fingerprint matched? [y/N] ").lower().startswith("y") else "no-match"
        )
        client = Client(address.host, address.port, ctx)
        try:
            result = pull(
                client,
                args.dock_dir,
                key,
                password=password,
                fingerprint_ok=fp == "match",
                identity=identity,
                revoked=revoked,
                stop_before_receipt=args.stop_before_receipt,
                **index_arguments(args),
            )
        finally:
            client.close()
    except (DockError, OSError, ssl.SSLError) as exc:
        print(f"dock: {exc}", file=sys.stderr)
        return 1
    print(
        f"pulled {len(result.pulled)} segments from {result.serial}; receipt "
        f"{result.receipt[:16] if result.receipt else '-'}; unit released "
        f"{len(result.released)} files ({result.bytes_freed} bytes)"
        + (
            f"; MISSING (named by the chain, held by no one): {', '.join(result.missing)}"
            if result.missing
            else ""
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
