"""Pull one unit: status, officer login, clock, chain, segments, the safety
check, and only then a signed receipt (R15-R22).

Every segment is written through a `.part` file, fsynced and its pages
dropped from the cache; before the receipt, every held file is re-read from
the dock's disk and re-hashed and the chain copy verified.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealing import layout
from sealing.age import Identity
from sealing.files import fsync_dir, write_durably
from sealing.keys import fingerprint
from sealing.receipts import ReceiptRefused, make_receipt, media_entries, parse_receipt
from sealing.records import Record, parse_line
from sealing.verify import verify_store

from .client import Client, DockError
from .index import LOCAL_DOCK, VERIFICATION, Index

BLOCK = 1024 * 1024


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
