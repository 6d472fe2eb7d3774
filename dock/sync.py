"""Push a dock's verified copies to the agency's store (R21; issue 27):

    bodycam-dock sync --dock-dir D --to AGENCY_DIR [--index URL_OR_PATH] [--name DOCK]
    bodycam-dock sync --dock-dir D --to s3://BUCKET --endpoint URL [--credentials FILE]
        [--ca FILE] --index URL [--name DOCK]

Per unit: the device key, every segment the dock's index holds (copied, read
back from the agency's store and SHA-256 checked against the index's
ct_sha256 before its row is written), the receipts, the dock's signed
disposal statements, the chain copy if it extends the agency's and the
dock's last verification if it is newer; then the unit's index rows, under
the dock's name, into the agency index (`AGENCY_DIR/dock.sqlite`, or
PostgreSQL).

Two stores, one set of rules (`_Folder`, `_Bucket`):
- a folder: the dock's own layout; each file fsynced, read back from the
  disk, renamed into place;
- an S3 bucket with Object Lock (dock/object_store.py): the same relative
  paths as object keys, segments under `units/<serial>/segments/` as in the
  unit's own store (so that prefix, downloaded, verifies as it is);
  each object written with its SHA-256 as the S3 checksum and locked in
  COMPLIANCE mode until its recording's retention ends (dock/retention.py:
  the end of its expiry day in the dock's zone; objects of the whole unit,
  its chain, key, receipts, verification and disposal statements, as long
  as its longest-kept recording), with a legal hold while the recording is
  held or long-term (docs/AGENCY.md); read back (GET, hashed) before its
  row is written. A later sync extends a lock that a raised class or a new
  hold asks for; it never shortens one, and lifts a legal hold only when
  the dock's index registers the release.

Safe to repeat and to cut anywhere: what the agency already holds, byte for
byte (for a bucket: with the same stored checksum), is not pushed again; a
copy cut short is redone; an object stored but not yet indexed is read
back again before its row is written. Nothing on the dock is changed or
deleted. A segment whose bytes on the dock's disk no longer match the
index, and a unit whose chain or key differs from the agency's, are refused
by name; everything else still goes.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sealing import layout
from sealing.disposals import DISPOSALS, DisposalRefused, parse_disposal
from sealing.files import fsync_dir, hash_file, write_durably
from sealing.receipts import ReceiptRefused, parse_receipt

from .dock_locale import add_locale_arguments
from .index import INDEX_ERRORS, VERIFICATION, Index, Row, describe_error
from .object_store import (
    AgencyBucket,
    Lock,
    ReadBackMismatch,
    StoreConfigError,
    StoreRefused,
    add_store_arguments,
    agency_of,
)
from .texts import ENGLISH, Msg, Texts, msg

BLOCK = 1024 * 1024
DOCK_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# A recording already past its expiry when it reaches the store is still
# locked this long (S3 refuses a retain-until date in the past); a stored
# object is never extended for it.
MIN_LOCK = timedelta(days=1)
# The unit's own objects (chain, receipts, ...) follow its longest-kept
# recording, which grows with every day's recordings: each extension goes
# this much further, so they are walked at most about once a month.
UNIT_SLACK = timedelta(days=31)


class SyncError(Exception):
    """Bad input: there is nothing sensible to push. Its Msg says why."""


class Refused(Exception):
    """One item (a segment, a receipt, a unit) is not pushed; others go on.
    Its Msg says why."""


class Missing(Refused):
    """A segment the dock's index names is not on the dock's disk."""


class Disposed(Refused):
    """A segment disposed of at the agency (a signed statement in the store
    names it and no version of its object is left): never pushed again."""


def _missing() -> Missing:
    return Missing(msg("missing from the dock's disk; not pushed"))


# A segment's bytes, where the source keeps them: yields a readable local
# file for as long as the `with` lasts (raises Missing when there is none).
SegmentOpener = Callable[[Path], contextlib.AbstractContextManager[Path]]


def local_segment(dock_dir: Path) -> SegmentOpener:
    """A dock folder's own segment files, read in place."""

    def opener(rel: Path) -> contextlib.AbstractContextManager[Path]:
        return contextlib.nullcontext(dock_dir / rel)

    return opener


@dataclass
class SyncResult:
    dock: str
    pushed: list[str] = field(default_factory=list)  # paths (keys) written, relative to the agency
    rows: int = 0  # index rows added to or changed in the agency index
    refused: list[Msg] = field(default_factory=list)  # each names what, and why
    relocked: int = 0  # stored objects whose lock was extended or hold changed

    @property
    def ok(self) -> bool:
        return not self.refused


class _Target(Protocol):
    """Where the agency keeps what docks push: a folder or a bucket."""

    locks: bool  # whether objects are locked (then each write names its Lock)

    def prepare(self) -> None: ...

    def exclusive(self) -> contextlib.AbstractContextManager[None]: ...

    def read(self, rel: str) -> bytes | None: ...

    def write(self, rel: str, data: bytes, lock: Lock | None) -> None: ...

    def segment_path(self, serial: str, row: Row) -> str: ...

    def absent(self, serial: str, paths: list[str]) -> set[str]: ...

    def push_segment(
        self, src: contextlib.AbstractContextManager[Path], rel: str, want: str,
        lock: Lock | None, indexed: bool,
    ) -> bool: ...  # fmt: skip

    def finish_unit(self, serial: str, lock: Lock | None) -> int: ...


@dataclass
class _Sync:
    local: Index  # the dock's own index, read only
    agency: Index  # the agency's, written as this dock
    dock_dir: Path
    target: _Target
    result: SyncResult
    test_until: datetime | None = None  # test_retention_s from the start of the sync
    segments: SegmentOpener | None = None  # where segment bytes come from (the dock folder)

    def segment(self, rel: Path) -> contextlib.AbstractContextManager[Path]:
        return (self.segments or local_segment(self.dock_dir))(rel)


def sync(
    dock_dir: Path,
    agency: Path | AgencyBucket,
    index_target: str | Path | None = None,
    dock_name: str | None = None,
    *,
    test_retention_s: float | None = None,
    segments: SegmentOpener | None = None,
) -> SyncResult:
    """`agency`: a folder, or a bucket (then `index_target` is required).
    `dock_dir` is a dock folder, or a copy of one without its segments (the
    city server's pull, dock/city.py) with `segments` fetching each one
    only when the store does not hold it yet.
    `test_retention_s` (tests only; no command-line option): every lock ends
    that many seconds from now instead of at the retention class's expiry."""
    name = dock_name or dock_dir.resolve().name
    if not DOCK_NAME_RE.fullmatch(name):
        raise SyncError(
            msg("dock name %(name)r: letters, digits, '.', '_', '-' (at most 64)", name=name)
        )
    if not (dock_dir / "dock.sqlite").is_file():
        raise SyncError(
            msg("%(folder)s is not a dock folder (no dock.sqlite)", folder=str(dock_dir))
        )
    target: _Target
    if isinstance(agency, AgencyBucket):
        if index_target is None:
            raise SyncError(msg("an s3:// store needs --index (the agency index: PostgreSQL)"))
        target = _Bucket(agency, timedelta(0) if test_retention_s is not None else UNIT_SLACK)
    else:
        if agency.resolve() == dock_dir.resolve():
            raise SyncError(msg("the agency store must be another folder than the dock's"))
        target = _Folder(agency)
        index_target = index_target or agency / "dock.sqlite"
    target.prepare()
    result = SyncResult(name)
    with target.exclusive():
        local = Index.open(dock_dir / "dock.sqlite", dock=None)
        try:
            agency_index = Index.open(index_target, dock=name)
            try:
                test_until = (
                    None
                    if test_retention_s is None
                    else datetime.now(UTC).replace(microsecond=0)
                    + timedelta(seconds=test_retention_s)
                )
                job = _Sync(local, agency_index, dock_dir, target, result, test_until,
                            segments)  # fmt: skip
                for serial in local.serials():
                    try:
                        _sync_unit(job, serial)
                    except Refused as exc:
                        result.refused.append(
                            msg("unit %(serial)s: %(why)s; unit not synced", serial=serial, why=exc)
                        )
            finally:
                agency_index.close()
        finally:
            local.close()
    return result


def _sync_unit(job: _Sync, serial: str) -> None:
    try:
        layout.check_serial(serial)  # a name from a database becomes a folder name
    except ValueError as exc:
        raise Refused(str(exc)) from None
    src = job.dock_dir / "units" / serial
    dst = f"units/{serial}"
    try:
        chain = (src / layout.CHAIN).read_bytes()
        key = (src / layout.DEVICE_PUB).read_bytes()
    except OSError as exc:
        raise Refused(
            msg(
                "the dock's copy is incomplete (%(error)s: %(file)s)",
                error=exc.strerror,
                file=str(exc.filename),
            )
        ) from None
    locks = _unit_locks(job, serial) if job.target.locks else None
    unit_lock = locks.unit if locks else None
    held_chain = job.target.read(f"{dst}/{layout.CHAIN}")
    held_key = job.target.read(f"{dst}/{layout.DEVICE_PUB}")
    if held_key is not None and held_key != key:
        raise Refused(msg("the agency holds another device key for this serial"))
    if held_chain is not None and not (
        chain.startswith(held_chain) or held_chain.startswith(chain)
    ):
        raise Refused(
            msg(
                "this dock's chain does not extend the agency's copy (history rewritten); "
                "the agency's copy is kept"
            )
        )
    if held_key is None:
        _write(job, f"{dst}/{layout.DEVICE_PUB}", key, unit_lock)
    _sync_segments(job, serial, locks)
    _sync_signed(job, serial, src / layout.RECEIPTS, f"{dst}/{layout.RECEIPTS}", unit_lock)
    _sync_signed(job, serial, src / DISPOSALS, f"{dst}/{DISPOSALS}", unit_lock)
    # an older chain (another dock pulled the unit later) is already covered
    if held_chain is None or (len(chain) > len(held_chain) and chain.startswith(held_chain)):
        _write(job, f"{dst}/{layout.CHAIN}", chain, unit_lock)
    _sync_verification(job, serial, src, dst, unit_lock)
    # every object of the unit as long as its longest-kept recording (the key last)
    job.result.relocked += job.target.finish_unit(serial, unit_lock)
    # the unit row last: a report lists a unit once everything above is in
    unit = job.local.unit(serial)
    if unit is not None:
        _put_if_changed(job, job.agency.unit(serial), unit, job.agency.put_unit)


def _sync_segments(job: _Sync, serial: str, locks: _Locks | None) -> None:
    have = job.agency.held(serial)
    gone = _disposed_files(job.dock_dir / "units" / serial / DISPOSALS)
    held = sorted(job.local.held(serial).items())
    expect = getattr(job.segments, "expect", None)
    if expect is not None:  # a source that fetches ahead (dock/city.py): what it will be asked
        paths = {f: job.target.segment_path(serial, r) for f, r in held}
        absent = job.target.absent(serial, list(paths.values()))
        expect([(Path(r["path"]), r.get("ct_len")) for f, r in held if paths[f] in absent])
    for file, row in held:
        rel = Path(row["path"])
        if rel.is_absolute() or ".." in rel.parts:
            job.result.refused.append(
                msg("segment %(file)s (%(serial)s): %(why)s", file=file, serial=serial,
                    why=msg("the index files it outside the dock folder: %(path)s",
                            path=str(rel)))
            )  # fmt: skip
            continue
        path = job.target.segment_path(serial, row)
        lock = locks.of(file, row) if locks else None
        try:
            if job.target.push_segment(
                job.segment(rel), path, row["ct_sha256"], lock, file in have
            ):
                job.result.pushed.append(path)
        except Disposed:
            continue  # disposed of at the agency (dock/agency_disposal.py): not pushed again
        except Refused as exc:
            if file in gone and isinstance(exc, Missing):
                continue  # disposed of at the dock (its statement goes below); not an error
            job.result.refused.append(
                msg("segment %(file)s (%(serial)s): %(why)s", file=file, serial=serial, why=exc)
            )
            continue
        _put_if_changed(job, have.get(file), {**row, "path": path},
                        lambda r: job.agency.add_segment(**r))  # fmt: skip


def _disposed_files(folder: Path) -> set[str]:
    """The files the dock's signed disposal statements say it removed."""
    out: set[str] = set()
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        with contextlib.suppress(OSError, DisposalRefused):
            body = parse_disposal(path.read_bytes()).body
            out.update(str(f.get("file")) for f in body.get("files") or [])
    return out


def _check_bytes(got: str, want: str) -> None:
    if got != want:
        raise Refused(
            msg(
                "its bytes on the dock's disk no longer match the index "
                "(sha256 %(got)s, index %(want)s); not pushed",
                got=got[:16],
                want=want[:16],
            )
        )


def _sync_signed(job: _Sync, serial: str, folder: Path, dst: str, lock: Lock | None) -> None:
    """Receipts (and their index rows), or disposal statements: each file
    whose id is its name, written once, never overwritten."""
    receipts = folder.name == layout.RECEIPTS
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        data = path.read_bytes()
        try:
            sid = parse_receipt(data).id if receipts else parse_disposal(data).id
        except (ReceiptRefused, DisposalRefused) as exc:
            if receipts:
                why = msg("receipt %(file)s (%(serial)s): %(why)s", file=path.name,
                          serial=serial, why=str(exc))  # fmt: skip
            else:
                why = msg("disposal statement %(file)s (%(serial)s): %(why)s", file=path.name,
                          serial=serial, why=str(exc))  # fmt: skip
            job.result.refused.append(why)
            continue
        if path.stem != sid:
            if receipts:
                why = msg("receipt %(file)s (%(serial)s): its id is %(id)s", file=path.name,
                          serial=serial, id=sid)  # fmt: skip
            else:
                why = msg("disposal statement %(file)s (%(serial)s): its id is %(id)s",
                          file=path.name, serial=serial, id=sid)  # fmt: skip
            job.result.refused.append(why)
            continue
        target = f"{dst}/{path.name}"
        held = job.target.read(target)
        if held is None:
            _write(job, target, data, lock)
        elif held != data and receipts:
            job.result.refused.append(
                msg(
                    "receipt %(file)s (%(serial)s): the agency holds other bytes; not overwritten",
                    file=path.name,
                    serial=serial,
                )
            )
        elif held != data:
            job.result.refused.append(
                msg("disposal statement %(file)s (%(serial)s): the agency holds other bytes; "
                    "not overwritten", file=path.name, serial=serial)
            )  # fmt: skip
    if receipts:
        have = {r["id"]: r for r in job.agency.receipts(serial)}
        for row in job.local.receipts(serial):
            _put_if_changed(job, have.get(row["id"]), row, job.agency.put_receipt)


def _sync_verification(job: _Sync, serial: str, src: Path, dst: str, lock: Lock | None) -> None:
    data = _read(src / VERIFICATION)
    if data is None:
        return  # a dock from before verification.json
    mine = _checked(data)
    if mine is None:
        job.result.refused.append(
            msg("%(file)s (%(serial)s): unreadable; not pushed", file=VERIFICATION, serial=serial)
        )
        return
    held = job.target.read(f"{dst}/{VERIFICATION}")
    theirs = _checked(held) if held is not None else None
    if theirs is None or mine > theirs:
        _write(job, f"{dst}/{VERIFICATION}", data, lock)


def _checked(data: bytes) -> tuple[int, int] | None:
    """(head_seq, checked_us) of a verification.json: newer is larger."""
    try:
        v = json.loads(data)
        return int(v["head_seq"]), int(v["checked_us"])
    except (ValueError, TypeError, KeyError):
        return None


def _put_if_changed(job: _Sync, old: Row | None, new: Row, put: Callable[[Row], None]) -> None:
    """Write a row only when the agency's differs (the dock column aside), so
    a repeated sync writes nothing and says so."""
    row = {k: v for k, v in new.items() if k != "dock"}
    if old is not None and {k: v for k, v in old.items() if k != "dock"} == row:
        return
    put(row)
    job.result.rows += 1


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _write(job: _Sync, rel: str, data: bytes, lock: Lock | None) -> None:
    job.target.write(rel, data, lock)
    job.result.pushed.append(rel)


# -- how long each object is locked ------------------------------------------------


@dataclass(frozen=True)
class _Locks:
    files: dict[str, Lock]  # a recording's files: its lock
    unit: Lock  # the unit's own objects: as long as its longest-kept recording
    loose: Callable[[Row], Lock]  # a segment in no recording: by its own date

    def of(self, file: str, row: Row) -> Lock:
        return self.files.get(file) or self.loose(row)


def _unit_locks(job: _Sync, serial: str) -> _Locks:
    """Each recording's lock from its retention (dock/retention.py, as the
    compliance model computes it from the dock's index and dock.toml)."""
    from .compliance import model
    from .dock_locale import dock_locale
    from .retention import PolicyError, add_months, standing

    try:
        locale = dock_locale(job.dock_dir)
        life = model.Lifecycle.read(job.dock_dir, job.local)
        unit = model.read_unit(job.dock_dir, serial, job.local, locale=locale, lifecycle=life)
    except (PolicyError, model.DockUnreadable, ValueError) as exc:
        raise Refused(msg("its retention cannot be read: %(error)s",
                          error=exc.args[0] if exc.args else str(exc))) from None  # fmt: skip
    now = datetime.now(UTC)
    longest = max(life.policy.supervision_months, life.policy.evidence_months)

    def until(day: date) -> datetime:
        if job.test_until is not None:
            return job.test_until
        end = model.day_bounds(day, locale)[1]  # the expiry day kept whole
        return datetime.fromtimestamp(end // 1_000_000, UTC)

    files: dict[str, Lock] = {}
    for v in unit.recordings:
        start = model.day_of(v.start_us, locale)
        changes = life.changes.get((serial, v.start_seq), [])
        held = bool(v.holds) or v.retention == "long_term"
        lifted = not held and any(c["change"] in ("release", "class") for c in changes)
        # long-term never expires: locked as the longest class, and held
        lock = Lock(until(v.expires or add_months(start, longest)), held, lifted)
        for f in v.segments:
            files[f] = lock

    def loose(row: Row) -> Lock:
        us = row.get("start_wall_us") or row.get("stored_us") or int(now.timestamp() * 1e6)
        s = standing([], model.day_of(int(us), locale), [], life.policy)
        return Lock(until(s.expires or add_months(model.day_of(int(us), locale), longest)))

    today = model.day_of(int(now.timestamp() * 1e6), locale)
    unit_lock = Lock(until(add_months(today, life.policy.supervision_months)))
    for lock in files.values():
        unit_lock = unit_lock.covering(lock)
    for row in job.local.held(serial).values():
        if row["file"] not in files:
            unit_lock = unit_lock.covering(loose(row))
    if unit_lock.hold is False and any(lk.lifted for lk in files.values()):
        unit_lock = Lock(unit_lock.until, False, True)
    return _Locks(files, unit_lock, loose)


# -- the stores -----------------------------------------------------------------


class _Folder:
    """The agency folder: the dock's layout, each file durable and read back."""

    locks = False

    def __init__(self, root: Path) -> None:
        self.root = root

    def prepare(self) -> None:
        _make_dirs(self.root)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """One sync at a time into an agency folder: two docks pushing the same
        unit would otherwise both decide on, and write, its chain copy."""
        fd = os.open(self.root / ".sync-lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def read(self, rel: str) -> bytes | None:
        return _read(self.root / rel)

    def write(self, rel: str, data: bytes, lock: Lock | None) -> None:
        path = self.root / rel
        _make_dirs(path.parent)
        write_durably(path, data)

    def segment_path(self, serial: str, row: Row) -> str:
        return str(row["path"])  # the dock's own layout

    def absent(self, serial: str, paths: list[str]) -> set[str]:
        return {p for p in paths if not (self.root / p).exists()}

    def push_segment(
        self, src: contextlib.AbstractContextManager[Path], rel: str, want: str,
        lock: Lock | None, indexed: bool,
    ) -> bool:  # fmt: skip
        dst = self.root / rel
        if dst.exists():
            if hash_file(dst)[0] == want:
                return False  # already there, verified: nothing to push
            raise Refused(
                msg("the agency already holds other bytes at %(path)s; not overwritten", path=rel)
            )
        _make_dirs(dst.parent)
        with src as path:
            _copy_verified(path, dst, want)
        return True

    def finish_unit(self, serial: str, lock: Lock | None) -> int:
        return 0


def _copy_verified(src: Path, dst: Path, want: str) -> None:
    """Copy through `<dst>.part` (truncated first: what a cut left is redone),
    checking the dock's bytes as they are read; fsync, read the copy back
    from the agency's disk, and only a match is renamed into place."""
    part = dst.with_name(dst.name + ".part")
    buf = memoryview(bytearray(BLOCK))
    digest = hashlib.sha256()
    try:
        with src.open("rb") as fi, part.open("wb") as fo:
            while n := fi.readinto(buf):
                digest.update(buf[:n])
                fo.write(buf[:n])
            fo.flush()
            os.fsync(fo.fileno())
            # drop the now clean pages so the read-back below comes from the disk
            os.posix_fadvise(fo.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    except FileNotFoundError:
        part.unlink(missing_ok=True)
        raise _missing() from None
    try:
        _check_bytes(digest.hexdigest(), want)
    except Refused:
        part.unlink()
        raise
    back, _ = hash_file(part)
    if back != want:
        part.unlink()
        raise Refused(msg("the copy written to the agency read back different; not pushed"))
    os.replace(part, dst)
    fsync_dir(dst.parent)


class _Bucket:
    """An S3 bucket with Object Lock (dock/object_store.py)."""

    locks = True

    def __init__(self, store: AgencyBucket, slack: timedelta) -> None:
        self.store = store
        self.slack = slack  # UNIT_SLACK; none in tests (their locks last seconds)
        self.floor = MIN_LOCK if slack else timedelta(0)
        self._gone: dict[str, set[str]] = {}  # serial -> files the store's statements name

    def _disposed(self, serial: str) -> set[str]:
        """The files the unit's disposal statements in the store name."""
        if serial not in self._gone:
            files: set[str] = set()
            for key in self.store.keys(f"units/{serial}/{DISPOSALS}/"):
                with contextlib.suppress(DisposalRefused):
                    body = parse_disposal(self.store.get_bytes(key, 1 << 20) or b"").body
                    if body["serial"] == serial:
                        files.update(str(f["file"]) for f in body["files"])
            self._gone[serial] = files
        return self._gone[serial]

    def _floored(self, lock: Lock) -> Lock:
        """A new object's lock: never a date already past (S3 refuses one)."""
        return replace(lock, until=max(lock.until, datetime.now(UTC) + self.floor))

    def prepare(self) -> None:
        self.store.ensure_bucket()

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        # No lock across docks: two docks writing one unit's chain at once
        # each write a version (both kept, both locked); the longer chain is
        # the current one again at the next sync of either.
        return contextlib.nullcontext()

    def read(self, rel: str) -> bytes | None:
        return self.store.get_bytes(rel)

    def write(self, rel: str, data: bytes, lock: Lock | None) -> None:
        assert lock is not None
        try:
            self.store.put_verified(
                rel, data, hashlib.sha256(data).hexdigest(), self._floored(lock)
            )
        except ReadBackMismatch:
            raise Refused(msg("the copy written to the agency read back different; not pushed")) \
                from None  # fmt: skip
        except StoreRefused as exc:
            raise Refused(exc.args[0]) from None

    def segment_path(self, serial: str, row: Row) -> str:
        # the unit's own layout (sealing/layout.py): the prefix units/<serial>/
        # downloaded is a store `bodycam verify` reads as it is
        return f"units/{serial}/{layout.SEGMENTS}/{row['file']}"

    def absent(self, serial: str, paths: list[str]) -> set[str]:
        """Of `paths`, those the store holds no current object at, nor has
        disposed of: one listing (a guess for fetching ahead; each push
        still asks the store itself)."""
        try:
            stored = set(self.store.keys(f"units/{serial}/{layout.SEGMENTS}/"))
            gone = {f"units/{serial}/{layout.SEGMENTS}/{f}" for f in self._disposed(serial)}
        except StoreRefused as exc:
            raise Refused(exc.args[0]) from None
        return set(paths) - stored - gone

    def push_segment(
        self, src: contextlib.AbstractContextManager[Path], rel: str, want: str,
        lock: Lock | None, indexed: bool,
    ) -> bool:  # fmt: skip
        assert lock is not None
        try:
            head = self.store.head(rel)
            if head is not None:
                got = head.sha256 or self.store.read_back(rel, head.version_id)
                if got != want:
                    raise Refused(msg("the agency already holds other bytes at %(path)s; "
                                      "not overwritten", path=rel))  # fmt: skip
                self.store.extend(head, lock, release=lock.lifted)
                # stored by a run cut before its row: read back before the row
                if not indexed and self.store.read_back(rel, head.version_id) != want:
                    raise Refused(
                        msg("the copy written to the agency read back different; not pushed")
                    )
                return False
            serial, file = rel.split("/")[1], rel.rsplit("/", 1)[-1]
            if file in self._disposed(serial):
                raise Disposed(msg("disposed of at the agency; not pushed again"))
            with src as path:  # fetched only now, when the store lacks it
                try:
                    got, _ = hash_file(path)
                except FileNotFoundError:
                    raise _missing() from None
                _check_bytes(got, want)
                self.store.put_verified(rel, path, want, self._floored(lock))
        except ReadBackMismatch:
            raise Refused(msg("the copy written to the agency read back different; not pushed")) \
                from None  # fmt: skip
        except StoreRefused as exc:
            raise Refused(exc.args[0]) from None
        return True

    def finish_unit(self, serial: str, lock: Lock | None) -> int:
        """Every current object of the unit outside segments/ locked at least
        as `lock`; the device key last, so that its lock says this is done."""
        assert lock is not None
        marker = f"units/{serial}/{layout.DEVICE_PUB}"
        try:
            head = self.store.head(marker)
            if head is None or _covers(head, lock):
                return 0
            changed = 0
            wide = replace(lock, until=lock.until + self.slack)
            for key in self.store.keys(f"units/{serial}/"):
                if key == marker or key.startswith(f"units/{serial}/{layout.SEGMENTS}/"):
                    continue
                h = self.store.head(key)
                if h is not None and not _covers(h, lock):
                    changed += self.store.extend(h, wide, release=lock.lifted)
            return changed + self.store.extend(head, wide, release=lock.lifted)
        except StoreRefused as exc:
            raise Refused(exc.args[0]) from None


def _covers(head: Any, lock: Lock) -> bool:
    if head.mode != "COMPLIANCE" or head.until is None or head.until < lock.until:
        return False
    return head.hold == lock.hold or (head.hold and not lock.lifted)


def _make_dirs(path: Path) -> None:
    """mkdir -p, with each new folder's entry fsynced into its parent, so a
    file renamed into it is not lost with the folder at a power cut."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        fsync_dir(d.parent)


# -- command line ---------------------------------------------------------------


def add_parser(sub: Any, t: Texts = ENGLISH) -> None:
    sy = sub.add_parser("sync", help=t.tr("push this dock's verified copies to the agency's store"))
    sy.add_argument("--dock-dir", type=Path, required=True)
    sy.add_argument("--to", required=True, metavar="AGENCY_DIR|s3://BUCKET")
    sy.add_argument(
        "--index",
        help=t.tr(
            "the agency index: postgresql+psycopg://... or a SQLite file "
            "(default AGENCY_DIR/dock.sqlite)"
        ),
    )
    sy.add_argument(
        "--name", help=t.tr("this dock's name in the agency index (default: the folder's)")
    )
    add_store_arguments(sy, t)
    add_locale_arguments(sy, t)


def sync_command(args: argparse.Namespace, t: Texts = ENGLISH) -> int:
    try:
        result = sync(args.dock_dir, agency_of(args), args.index, args.name)
    except (SyncError, StoreConfigError) as exc:
        print(f"dock: {t.say(exc)}", file=sys.stderr)
        return 2
    except StoreRefused as exc:
        print(f"dock: {t.say(exc.args[0])}", file=sys.stderr)
        return 2
    except INDEX_ERRORS as exc:
        print(f"dock: index: {t.say(describe_error(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            "dock: " + t.tr("sync stopped, run it again to resume: %(error)s", error=str(exc)),
            file=sys.stderr,
        )
        return 1
    for line in result.refused:
        print("dock: " + t.tr("refused: %(what)s", what=line), file=sys.stderr)
    print(
        t.tr(
            "synced dock %(dock)s to %(to)s: %(pushed)s files pushed, %(rows)s index rows "
            "written, %(refused)s refused",
            dock=result.dock,
            to=str(args.to),
            pushed=len(result.pushed),
            rows=result.rows,
            refused=len(result.refused),
        )
    )
    return 0 if result.ok else 1
