"""Pull one unit: status, officer login, clock, chain, segments, the safety
check, and only then a signed receipt (R15-R22).

Every segment is written through a `.part` file past the page cache
(dock/direct_io.py), fsynced, and what did go through the cache dropped;
before the receipt, every held file is re-read from the dock's disk and
re-hashed and the chain copy verified. A segment pulled now is re-read as
soon as it is stored, beside the next download; its index row is
committed, with others, before the check.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

from link import messages, routes
from link.inventory import REPROVISIONED, Known, cert_sha256
from sealing import layout
from sealing.age import Identity
from sealing.files import fsync_dir, write_durably
from sealing.keys import fingerprint, public_pem
from sealing.receipts import (
    MAX_RECEIPT_BYTES,
    ReceiptRefused,
    make_receipt,
    media_entries,
    parse_receipt,
)
from sealing.recordings import media_records
from sealing.records import Record
from sealing.safeio import open_regular
from sealing.segcheck import SegmentRead, read_segment
from sealing.verify import verify_chain, verify_store

from .client import Client, DockError, read_bounded, read_json
from .direct_io import AlignedBuffers, Appender, DirectReader
from .index import LOCAL_DOCK, VERIFICATION, Index
from .texts import Msg, msg, msg_n

STAGING = ".staging"  # what a unit sent, until it is verified (dock/pull.py)
BLOCK = 1024 * 1024
# Index rows of stored segments are committed in batches of at most this many
# segments or seconds of pulling (each commit is a synchronous write), and
# always before the safety check: a receipt only ever follows committed rows.
# A pull killed in between fetches the uncommitted ones again.
COMMIT_SEGMENTS = 32
COMMIT_S = 10.0


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


# QA's revocation codes (link/inventory.py) as people read them; other
# reasons are QA's own words, shown as written
REVOKED_BECAUSE: dict[str, Msg] = {
    REPROVISIONED: msg("re-provisioned with --force"),
}


@dataclass(frozen=True)
class LoginAnswer:
    """The officer's answer at the dock (S0 art. 19): the password typed, and
    the fingerprint's verdict with whose it is: a reader's identity
    (dock/fingerprint.py), or NO_READER when it is the operator's word (the
    explicit mode the unit records and the page flags)."""

    password: str
    fingerprint_ok: bool
    reader: str = messages.NO_READER


@dataclass(frozen=True)
class Retry:
    """Why the officer is asked again: the unit's result for the last try
    ("bad_password", "no_fingerprint") and what to tell them."""

    result: str
    said: Msg


# What a pull asks for an officer's login: (serial, officer, why asked again) ->
# the answer, or None to give up. `why` is None the first time.
Login = Callable[[str, "str | None", "Retry | None"], "LoginAnswer | None"]


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
            resp = client.request(routes.SEGMENT, name, headers={"Range": f"bytes={have}-"})
            if resp.status not in (200, 206):
                why = messages.error_text(read_json(resp, messages.MAX_SMALL_REPLY))
                raise DockError(
                    msg(
                        "%(file)s: unit answered %(status)s: %(why)s",
                        file=name,
                        status=resp.status,
                        why=why,
                    )
                )
            if resp.status == 200 and have:
                have, digest = 0, hashlib.sha256()  # no range honoured: the whole file again
                part.unlink(missing_ok=True)
            said = resp.getheader("Content-Length")
            if said is not None and said != str(want_len - have):
                raise DockError(
                    msg(
                        "%(file)s: unit offers %(said)r bytes, the chain says %(want)s",
                        file=name,
                        said=said[:20],
                        want=want_len - have,
                    )
                )
            with Appender(part) as out:
                try:
                    have = _receive(
                        client,
                        resp,
                        out,
                        digest,
                        have,
                        want_len,
                        lambda got: progress(name, got, want_len),
                    )
                finally:
                    out.sync()  # what arrived stays, for the resume
            if have < want_len or not resp.isclosed():
                client.close()  # ended early (a cut), or more than the chain says: not reused
        except (OSError, http.client.HTTPException):
            client.close()  # the link was cut: reconnect and resume from what arrived
            have = part.stat().st_size if part.exists() else 0
            digest = _rehash(part, buf)
    if have != want_len or digest.hexdigest() != want_sha:
        part.unlink(missing_ok=True)
        raise DockError(
            msg(
                "%(file)s: received %(count)s bytes whose hash does not match the chain",
                file=name,
                count=have,
            )
        )
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
    client: Client,
    resp: http.client.HTTPResponse,
    out: Appender,
    digest: Any,
    have: int,
    want_len: int,
    progress: Callable[[int], None],
) -> int:
    """Read the body into two alternating aligned buffers; a worker thread
    writes (past the page cache) and hashes one while the next arrives
    (hashlib and file writes release the GIL), so TLS decryption and SHA-256
    use both cores. Returns bytes held."""
    pending: list[Future | None] = [None, None]

    def keep(view: memoryview) -> None:
        out.write(view)
        digest.update(view)

    with AlignedBuffers(2) as bufs, ThreadPoolExecutor(max_workers=1) as worker:
        k = 0
        try:
            while True:
                if pending[k] is not None:
                    pending[k].result()  # type: ignore[union-attr]
                if have >= want_len:
                    break  # never more than the chain says, whatever the unit sends
                n = _fill(client, resp, bufs[k][: min(len(bufs[k]), want_len - have)])
                if not n:  # short only at the end or at a cut
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


def _fill(client: Client, resp: http.client.HTTPResponse, view: memoryview) -> int:
    """Fill `view` from the body in one readinto, straight into the buffer
    (a socket read per TLS record, none of them through Python). A unit that
    drips a byte at a time cannot hold it past the pull's deadline: the
    client's timer shuts the socket down under the read, which then ends
    short."""
    client.check_deadline()
    n = resp.readinto(view) if resp.length != 0 else 0
    if resp.length == 0:
        resp.read()  # the whole body is here: close the response as read() does
    return n


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


@dataclass(frozen=True)
class Limits:
    """How much a unit may send and for how long (every pull has a deadline)."""

    max_chain_bytes: int = 256 * 1024 * 1024
    min_rate: float = 1_000_000.0  # bytes/s the link must at least carry
    base_s: float = 120.0  # login, clock and chain, on top of the media's time
    max_segment_bytes: int = 8 * 1024**3

    def deadline_s(self, media_bytes: int) -> float:
        return self.base_s + media_bytes / self.min_rate


def pull(
    client: Client,
    dock_dir: Path,
    dock_key: Ed25519PrivateKey,
    *,
    inventory: Known,
    password: str = "",
    fingerprint_ok: bool = False,
    login: Login | None = None,
    identity: Identity | None = None,
    progress: Callable[[str, int, int], None] = _progress_bar,
    stage: Callable[[str, dict[str, Any]], None] = lambda _stage, _info: None,
    limits: Limits = Limits(),
    on_stored: Callable[[str, Path], None] | None = None,
    stop_before_receipt: bool = False,
    now: Callable[[], float] = time.time,
    index_target: str | Path | None = None,
    dock_name: str = LOCAL_DOCK,
) -> PullResult:
    """One unit: status; the unit checked against the QA inventory (its TLS
    certificate, serial and device key) before any login; officer login,
    clock; the chain, verified before anything is kept where the page reads
    it; segments, each read no further than its chain record says; then the
    safety check (every segment re-read from the dock's disk and re-hashed,
    the chain copy verified, gaps and missing segments named) and only then
    the receipt. `login` is asked once the unit has said who it is; without
    it, `password` and `fingerprint_ok` are used. `stage(name, info)` tells
    a watcher how far the pull is; `on_stored` is fault injection: called
    after each segment is durably stored. The index is the dock's SQLite
    file unless `index_target` names another (a city server's PostgreSQL,
    whose rows carry `dock_name`). Everything a unit sends is checked: a
    malformed value is a DockError naming the unit and the field."""
    dock_dir.mkdir(parents=True, exist_ok=True)
    ask = login or _once(password, fingerprint_ok)
    client.set_deadline(limits.base_s)
    who = msg("unit at %(host)s:%(port)s", host=client.host, port=client.port)
    try:
        status = unit_status(client)
        serial = status.serial
        who = msg("unit %(serial)s", serial=serial)
        stage("status", {"serial": serial, "officer": status.officer})
        device_key = check_identity(client, status, inventory)
        _login(client, ask, serial, status.officer)
        code, clock = client.json(routes.TIME, {"dock_time_us": int(now() * 1e6)})
        if code != 200:
            raise DockError(
                msg(
                    "time sync refused (%(code)s): %(why)s",
                    code=code,
                    why=messages.error_text(clock),
                )
            )
        with _staging(dock_dir) as staging:
            records = _take_chain(client, staging, status, device_key, limits)
            mirror = dock_dir / "units" / serial
            receipts = _fetch_cited_receipts(client, staging, mirror, records)
            index = Index.open(index_target or dock_dir / "dock.sqlite", dock=dock_name)
            try:
                _keep_chain(index, staging, mirror, serial, device_key, records, receipts)
                return _pull_media(
                    client, index, dock_dir, mirror, dock_key, serial, records,
                    identity=identity, progress=progress, stage=stage, limits=limits,
                    on_stored=on_stored, stop_before_receipt=stop_before_receipt, now=now,
                )  # fmt: skip
            finally:
                index.close()
    except messages.LinkError as exc:
        raise DockError(
            msg("%(who)s: %(error)s; nothing kept, nothing released", who=who, error=exc)
        ) from None
    except DockError as exc:
        if _names_a_unit(exc):
            raise
        raise type(exc)(msg("%(who)s: %(error)s", who=who, error=exc)) from None


def _names_a_unit(exc: DockError) -> bool:
    """Whether the error already says which unit (an error of an inner pull)."""
    said = exc.args[0] if exc.args else None
    return isinstance(said, Msg) and said.msgid.startswith("%(who)s: ")


def unit_status(client: Client) -> messages.Status:
    code, obj = client.json(routes.STATUS)
    if code != 200:
        raise DockError(msg("status: %(code)s %(why)s", code=code, why=messages.error_text(obj)))
    try:
        return messages.parse_status(obj)
    except messages.LinkError as exc:
        raise messages.LinkError(msg("status: %(error)s", error=str(exc))) from None


def check_identity(client: Client, status: messages.Status, known: Known) -> Ed25519PublicKey:
    """The unit is who QA made it: the serial it states is its TLS
    certificate's subject, that certificate and its device key are the QA
    inventory's active ones for the serial. Checked before any officer is
    asked to log in to it."""
    serial = status.serial
    der = client.peer_certificate()
    cert = x509.load_der_x509_certificate(der)
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [serial]:
        if names:
            raise DockError(
                msg(
                    "says it is %(serial)s, but its TLS certificate was issued to %(names)s; "
                    "nothing pulled",
                    serial=serial,
                    names=", ".join(map(str, names)),
                )
            )
        raise DockError(
            msg(
                "says it is %(serial)s, but its TLS certificate names no one; nothing pulled",
                serial=serial,
            )
        )
    try:
        key = serialization.load_pem_public_key(status.device_key_pem.encode())
    except ValueError:
        raise messages.LinkError(
            msg("status: `device_key_pem` is not a readable public key")
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise messages.LinkError(msg("status: `device_key_pem` is not an Ed25519 key"))
    fp = fingerprint(key)
    revoked = known.revoked_key(fp)
    if revoked is not None:
        raise DockError(
            msg(
                "device key %(key)s was revoked by the agency (%(why)s, %(when)s); "
                "nothing pulled, nothing released - take the unit to QA",
                key=fp[:16],
                why=REVOKED_BECAUSE.get(revoked.revoked_reason, revoked.revoked_reason or "-"),
                when=revoked.revoked_at or "-",
            )
        )
    entry = known.active(serial)
    if entry is None:
        raise DockError(
            msg(
                "serial %(serial)s is not an active unit in the QA inventory %(file)s; "
                "nothing pulled - take the unit to QA",
                serial=serial,
                file=str(known.path),
            )
        )
    if cert_sha256(der) != entry.tls_cert_sha256:
        raise DockError(
            msg(
                "its TLS certificate is not the one QA issued to %(serial)s; nothing pulled",
                serial=serial,
            )
        )
    if fp != entry.device_key:
        raise DockError(
            msg(
                "device key %(key)s is not the key QA issued to %(serial)s (%(issued)s); "
                "nothing pulled",
                key=fp[:16],
                serial=serial,
                issued=entry.device_key[:16],
            )
        )
    return key


def _once(password: str, fingerprint_ok: bool) -> Login:
    """A login given up front (a command's --password-file): tried once."""

    def ask(_serial: str, _officer: str | None, again: Retry | None) -> LoginAnswer | None:
        return LoginAnswer(password, fingerprint_ok) if again is None else None

    return ask


def _login(client: Client, ask: Login, serial: str, officer: str | None) -> None:
    """The officer's login, asked again after a wrong try while the unit
    still allows one (S0 art. 19): no re-docking for a typing mistake."""
    again: Retry | None = None
    while True:
        answer = ask(serial, officer, again)
        if answer is None:
            if again is None:
                raise DockError(msg("no officer login given"))
            break  # not asked again: the unit's last answer says why
        # the unit records whose verdict it was: a reader's, or the operator's word
        code, auth = client.json(
            routes.AUTH,
            {"password": answer.password, "fingerprint_ok": answer.fingerprint_ok,
             "reader": answer.reader},
        )  # fmt: skip
        if code == 200:
            client.token = messages.parse_session(auth).token
            return
        left = messages.attempts_left(auth)
        result = messages.login_result(auth)
        if code != 401 or not left or result not in ("bad_password", "no_fingerprint"):
            break
        if result == "bad_password":
            said = msg_n("wrong password: %(n)s try left", "wrong password: %(n)s tries left",
                         left)  # fmt: skip
        else:
            said = msg_n("fingerprint not confirmed: %(n)s try left",
                         "fingerprint not confirmed: %(n)s tries left", left)  # fmt: skip
        again = Retry(result, said)
    wait = messages.retry_after(auth)
    why = messages.error_text(auth)
    if wait is not None:
        raise DockError(
            msg(
                "officer not authorised (%(code)s): %(why)s, retry in %(wait)s s",
                code=code,
                why=why,
                wait=wait,
            )
        )
    raise DockError(msg("officer not authorised (%(code)s): %(why)s", code=code, why=why))


@contextmanager
def _staging(dock_dir: Path) -> Iterator[Path]:
    """A folder of the dock's own where what a unit sends waits until it is
    verified: nothing here is read by the page, the index or sync."""
    root = dock_dir / STAGING
    root.mkdir(exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _take_chain(
    client: Client,
    staging: Path,
    status: messages.Status,
    device_key: Ed25519PublicKey,
    limits: Limits,
) -> list[Record]:
    """The unit's chain, streamed to the staging folder (never held whole,
    never more than `limits.max_chain_bytes`), then verified: signatures by
    the inventory's device key, the hash chain, and every record of this
    serial."""
    resp = client.request(routes.CHAIN, query={"from": 0})
    if resp.status != 200:
        raise DockError(
            msg(
                "chain: %(status)s %(why)s",
                status=resp.status,
                why=messages.error_text(read_json(resp, 4096)),
            )
        )
    path = staging / layout.CHAIN
    got = 0
    buf = memoryview(bytearray(BLOCK))
    with path.open("wb") as f:
        while n := _fill(client, resp, buf):
            got += n
            if got > limits.max_chain_bytes:
                client.close()
                raise DockError(
                    msg(
                        "chain longer than the %(max)s bytes this dock accepts "
                        "(--max-chain-mb); nothing kept",
                        max=limits.max_chain_bytes,
                    )
                )
            f.write(buf[:n])
            client.check_deadline()
    client.check_deadline()
    write_durably(staging / layout.DEVICE_PUB, public_pem(device_key))
    report = verify_chain(staging, device_key=device_key, keep=True)
    if not report.ok:
        raise DockError(
            msg("chain does not verify: %(problem)s; nothing kept", problem=str(report.problems[0]))
        )
    records = report.chain
    other = next((r for r in records if r.serial != status.serial), None)
    if other is not None:
        raise DockError(
            msg(
                "chain record %(seq)s is of unit %(other)r, not %(serial)s; nothing kept",
                seq=other.seq,
                other=other.serial,
                serial=status.serial,
            )
        )
    _check_values(records, status.serial, limits)
    return records


def _check_values(records: list[Record], serial: str, limits: Limits) -> None:
    """Every value the dock will use from the chain, checked before the chain
    is kept: records signed with a stolen key verify, and may carry anything."""
    for r in media_records(records):
        name = r.body.get("file")
        parsed = layout.parse_name(name) if isinstance(name, str) else None
        if parsed is None or parsed.serial != serial:
            raise messages.LinkError(
                msg(
                    "chain record %(seq)s: `file` is not one of %(serial)s's",
                    seq=r.seq,
                    serial=serial,
                )
            )
        _ct_len(r, limits)
        if _optional_hex(r, "ct_sha256") is None:
            raise messages.LinkError(msg("chain record %(seq)s: `ct_sha256` is missing", seq=r.seq))
        _optional_hex(r, "pt_sha256")
        _wall(r, "start")
        _wall(r, "end")
        _optional_text(r, "retention")
    for r in records:
        rid = r.body.get("receipt")
        if r.type == "release" and not (isinstance(rid, str) and messages.HEX64.fullmatch(rid)):
            raise messages.LinkError(
                msg("chain record %(seq)s: `receipt` is not a receipt id", seq=r.seq)
            )


def _keep_chain(
    index: Index,
    staging: Path,
    mirror: Path,
    serial: str,
    device_key: Ed25519PublicKey,
    records: list[Record],
    receipts: list[str],
) -> None:
    """Pin the unit's key on first sight and keep the verified chain where the
    page reads it; the new chain must extend the copy this dock holds."""
    fp = fingerprint(device_key)
    known = index.unit(serial)
    if known is not None and known["device_key"] != fp:
        raise DockError(
            msg(
                "presents device key %(key)s, pinned %(pinned)s",
                key=fp[:16],
                pinned=str(known["device_key"])[:16],
            )
        )
    old = mirror / layout.CHAIN
    if old.exists() and not _extends(staging / layout.CHAIN, old):
        raise DockError(
            msg(
                "the unit's chain no longer starts with the copy this dock holds "
                "(history rewritten or cut)"
            )
        )
    mirror.mkdir(parents=True, exist_ok=True)
    (mirror / layout.RECEIPTS).mkdir(exist_ok=True)
    for rid in receipts:
        os.replace(staging / f"{rid}.json", mirror / layout.RECEIPTS / f"{rid}.json")
    fsync_dir(mirror / layout.RECEIPTS)
    write_durably(mirror / layout.DEVICE_PUB, public_pem(device_key))
    os.replace(staging / layout.CHAIN, old)
    fsync_dir(mirror)
    index.pin_unit(serial, fp, records[-1].officer)


def _extends(new: Path, old: Path) -> bool:
    """Whether `new` starts with the bytes of `old`, compared a block at a time."""
    with new.open("rb") as n, old.open("rb") as o:
        while block := o.read(BLOCK):
            if n.read(len(block)) != block:
                return False
    return True


def _pull_media(
    client: Client,
    index: Index,
    dock_dir: Path,
    mirror: Path,
    dock_key: Ed25519PrivateKey,
    serial: str,
    records: list[Record],
    *,
    identity: Identity | None,
    progress: Callable[[str, int, int], None],
    stage: Callable[[str, dict[str, Any]], None],
    limits: Limits,
    on_stored: Callable[[str, Path], None] | None,
    stop_before_receipt: bool,
    now: Callable[[], float],
) -> PullResult:
    held = index.held(serial)
    offered = {o.file for o in _offered(client)}
    by_seq = {r.seq: r for r in records}
    todo = [e for e in media_entries(records) if e["file"] not in held and e["file"] in offered]
    sizes = {e["file"]: _ct_len(by_seq[e["seq"]], limits) for e in todo}
    total = sum(sizes.values())
    client.set_deadline(limits.deadline_s(total))
    stage("pulling", {"files": len(todo), "bytes": total})
    pulled, resumed = [], 0
    rows: list[dict[str, Any]] = []
    first_row = 0.0
    marks = json.dumps(_marks(records))
    with _ReadBack(identity) as read_back:
        for e in todo:
            rec = by_seq[e["seq"]]
            name = layout.parse_name(e["file"])
            assert name is not None  # checked by _check_values before the chain was kept
            dest = dock_dir / name.day_dir / serial / e["file"]
            size = sizes[e["file"]]
            resumed += _download(client, e["file"], dest, e["ct_sha256"], size, progress)
            if on_stored is not None:
                on_stored(e["file"], dest)
            read_back.start(e["file"], dest, size)  # beside the next download
            if not rows:
                first_row = time.monotonic()
            rows.append(
                {
                    "file": e["file"],
                    "serial": serial,
                    "seq": e["seq"],
                    "kind": name.kind,
                    "ct_sha256": e["ct_sha256"],
                    "pt_sha256": _optional_hex(rec, "pt_sha256"),
                    "ct_len": size,
                    "start_wall_us": _wall(rec, "start"),
                    "end_wall_us": _wall(rec, "end"),
                    "officer": rec.officer,
                    "retention": _optional_text(rec, "retention"),
                    "marks": marks,
                    "path": str(dest.relative_to(dock_dir)),
                    "stored_us": int(now() * 1e6),
                }
            )
            if len(rows) >= COMMIT_SEGMENTS or time.monotonic() - first_row >= COMMIT_S:
                index.add_segments(rows)
                rows = []
            pulled.append(e["file"])
        if rows:
            index.add_segments(rows)  # committed before the check, so before any receipt
        stage("verifying", {})
        held = index.held(serial)
        already = read_back.results(dock_dir, held)
    check = _safety_check(dock_dir, mirror, records, held, offered, identity, now, already)
    index.update_unit(serial, records[-1].seq, int(now() * 1e6))
    if check.refusal:
        for f in check.altered:
            if f in offered:  # the unit still has it: fetch it again next time
                _set_aside(dock_dir, held[f]["path"], check.checked_us)
                index.forget_segment(serial, f)
        raise DockError(msg("no receipt sent: %(why)s", why=check.refusal))
    if stop_before_receipt:
        raise DockError(msg("stopped before sending the receipt (fault injection)"))
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
    resp = client.request(
        routes.RELEASE, body=receipt.to_bytes(), headers={"Content-Type": "application/json"}
    )
    answer = read_json(resp, messages.MAX_LIST_REPLY)
    accepted = resp.status == 200
    index.add_receipt(receipt.id, serial, receipt.body, [e["file"] for e in entries], accepted)
    if not accepted:
        raise DockError(
            msg(
                "unit refused the receipt (%(status)s): %(why)s",
                status=resp.status,
                why=messages.error_text(answer),
            )
        )
    applied = messages.parse_released(answer)
    check.write(mirror, receipt.id)
    return PullResult(
        serial,
        pulled,
        resumed,
        receipt.id,
        applied.files,
        applied.bytes_freed,
        True,
        check.missing,
        check.segno_gaps,
    )


def _ct_len(rec: Record, limits: Limits) -> int:
    v = rec.body.get("ct_len")
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= limits.max_segment_bytes:
        raise messages.LinkError(
            msg(
                "chain record %(seq)s: `ct_len` is not a size up to %(max)s",
                seq=rec.seq,
                max=limits.max_segment_bytes,
            )
        )
    return v


def _optional_hex(rec: Record, key: str) -> str | None:
    v = rec.body.get(key)
    if v is not None and not (isinstance(v, str) and messages.HEX64.fullmatch(v)):
        raise messages.LinkError(
            msg("chain record %(seq)s: `%(key)s` is not 64 hex digits", seq=rec.seq, key=key)
        )
    return v


def _optional_text(rec: Record, key: str) -> str | None:
    v = rec.body.get(key)
    if v is not None and not (isinstance(v, str) and len(v) <= 64 and v.isprintable()):
        raise messages.LinkError(
            msg("chain record %(seq)s: `%(key)s` is not a short text", seq=rec.seq, key=key)
        )
    return v


def _wall(rec: Record, key: str) -> int | None:
    v = rec.body.get(key)
    w = v.get("wall_us") if isinstance(v, dict) else None
    if v is not None and not (isinstance(w, int) and not isinstance(w, bool)):
        raise messages.LinkError(
            msg("chain record %(seq)s: `%(key)s.wall_us` is not an integer", seq=rec.seq, key=key)
        )
    return w


def _fetch_cited_receipts(
    client: Client, staging: Path, mirror: Path, records: list[Record]
) -> list[str]:
    """Receipts another dock signed: the chain cites them in `release`
    records, and this dock's copy only verifies with them beside it. Each
    is checked to be the receipt asked for before it is kept (staged)."""
    have = mirror / layout.RECEIPTS
    fetched: list[str] = []
    for r in records:
        if r.type != "release":
            continue
        rid = str(r.body["receipt"])  # checked by _check_values
        if (have / f"{rid}.json").exists() or rid in fetched:
            continue
        resp = client.request(routes.RECEIPT, rid)
        data = read_bounded(resp, MAX_RECEIPT_BYTES)
        if resp.status != 200:
            raise DockError(
                msg(
                    "receipt %(id)s cited by the chain: unit answered %(status)s",
                    id=rid[:16],
                    status=resp.status,
                )
            )
        try:
            got = parse_receipt(data).id
        except ReceiptRefused as exc:
            raise DockError(
                msg(
                    "receipt %(id)s from the unit is not a receipt: %(error)s",
                    id=rid[:16],
                    error=str(exc),
                )
            ) from None
        if got != rid:
            raise DockError(
                msg("asked for receipt %(id)s, the unit sent %(got)s", id=rid[:16], got=got[:16])
            )
        write_durably(staging / f"{rid}.json", data)
        fetched.append(rid)
    return fetched


def _offered(client: Client) -> list[messages.Offer]:
    """What the unit still holds and offers: sealed, not yet released."""
    code, got = client.json(routes.OFFERED, limit=messages.MAX_LIST_REPLY)
    if code != 200:
        raise DockError(
            msg("offered list: %(code)s %(why)s", code=code, why=messages.error_text(got))
        )
    try:
        return messages.parse_offered(got)
    except messages.LinkError as exc:
        raise messages.LinkError(msg("offered list: %(error)s", error=str(exc))) from None


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
    def refusal(self) -> Msg | None:
        if not self.problems:
            return None
        return msg(
            "the dock's copy does not verify:\n  %(problems)s",
            problems="\n  ".join(self.problems),
        )

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
    already_read: Mapping[str, SegmentRead] | None = None,
) -> SafetyCheck:
    """Re-read every segment the receipt will cover (held here, still on
    the unit) from the dock's disk (its pages were dropped from the cache
    after fsync, so this reads the medium) and re-hash it against the
    chain, verify the chain copy, and name every segment the chain cites
    that neither side holds and every hole in the segment numbers. Segments
    in `already_read` were re-read as they landed (`_ReadBack`): what was
    read is judged here, not read again. The dock's older segments, which
    the unit released at earlier pulls, are not read again: each pull
    would otherwise re-read the unit's whole retention window (months).
    Written to verification.json whether or not it passes."""
    report = verify_store(
        mirror,
        identity=identity,
        find_segment=lambda f: (dock_dir / held[f]["path"]) if f in held else None,
        already_read=already_read,
        only=lambda f: f in offered or f not in held,  # not held: found missing, unread
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


def _file_id(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class _Read:
    path: Path
    file_id: tuple[int, int, int, int]  # of the file as it was read
    read: SegmentRead


class _ReadBack:
    """The safety check's re-read of each segment, started as soon as the
    segment is stored (fsynced, its pages dropped: what is read comes from
    the medium), on a thread of its own while the next one downloads: the
    same read and hash as the check's (sealing.segcheck.read_segment, with
    the same identity), whose results the check then judges against the
    chain instead of reading again. Hashing and file reads release the GIL."""

    def __init__(self, identity: Identity | None) -> None:
        self.identity = identity
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-back")
        self._buf = bytearray(BLOCK)  # one thread: one buffer for every segment
        self._jobs: dict[str, Future[_Read | None]] = {}

    def __enter__(self) -> _ReadBack:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def start(self, file: str, path: Path, ct_len: int) -> None:
        self._jobs[file] = self._pool.submit(self._read, path, ct_len)

    def _read(self, path: Path, ct_len: int) -> _Read | None:
        try:
            with open_regular(path) as f:
                file_id = _file_id(os.fstat(f.fileno()))
                direct = DirectReader.of(f)
                try:
                    read = read_segment(direct or f, ct_len, self.identity, self._buf)
                finally:
                    if direct is not None:
                        direct.close()
                return _Read(path, file_id, read)
        except OSError:
            return None  # the check reads it itself, and says what it finds

    def results(self, dock_dir: Path, held: Mapping[str, Any]) -> dict[str, SegmentRead]:
        """What was read, of the files the index holds at the paths that
        were read and that are still the files read then (same inode, size
        and modification time); any other is left to the check to read."""
        out: dict[str, SegmentRead] = {}
        for file, job in self._jobs.items():
            got = job.result()
            if got is None or file not in held or got.path != dock_dir / held[file]["path"]:
                continue
            try:
                same = _file_id(os.lstat(got.path)) == got.file_id
            except OSError:
                continue
            if same:
                out[file] = got.read
        return out


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


def _marks(records: list[Record]) -> list[str]:
    return sorted(
        {str(r.body.get("flag") or r.body.get("retention")) for r in records if r.type == "mark"}
    )
