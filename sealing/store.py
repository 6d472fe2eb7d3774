"""The sealed store: one writer, an append-only signed chain, age segments.

Everything here follows docs/FORMAT.md. Durability rules, in order:
  * a chain line is written with one write(2) on an O_APPEND fd and fsynced
    before the forward-secure key advances (so a torn line never costs a key);
    the records of one `batch()` share that write, fsync and key update, and
    a batch may be handed to the committer thread, which writes them in order
    while every read and other append waits for it;
  * a segment's bytes are checkpointed and fdatasynced at least every
    `sync_interval` seconds (default 0.2 s) and on close; in a batch, the
    fdatasync is one of the batch's steps before its records;
  * a closed segment is renamed from .partial to its final name, the
    directory fsynced, and only then is its `segment` record appended.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import canonical, fss, layout
from .age import StreamWriter
from .files import fsync_dir, hash_file, make_dirs, write_durably
from .keys import UnitKeys, fingerprint, public_pem
from .records import (
    GENESIS_PREV,
    Record,
    RecordError,
    Stamp,
    check_signature,
    parse_line,
    seal_line,
)

Clock = Callable[[], Stamp]

# How often an open segment's tail is made durable (checkpoint + fdatasync) at
# the latest: a fifth of a second, so a power cut costs under half a second
# of media with capture's interleaving hold-back added (docs/CAPTURE.md,
# "Power cuts"), while syncs stay batched (five a second, not one a packet).
SYNC_INTERVAL_S = 0.2


# Room kept on the store's file system for the records that end a full disk's
# story (boot, recovery, auth, export, receipt, release): about 4000 of them.
RESERVE_BYTES = 1 << 20


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _write_reserve(path: Path, size: int) -> None:
    """Real blocks, not a sparse file: a hole would give nothing back when freed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        chunk = b"\0" * 65536
        for _ in range(size // len(chunk)):
            os.write(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)


class StoreError(Exception):
    """Base of the store's errors; the message says what and where."""


class StoreLocked(StoreError):
    pass


class StoreCorrupt(StoreError):
    pass


class NotAStore(StoreError):
    pass


def system_clock() -> Stamp:
    """Monotonic and wall time with no claim about the wall clock's truth."""
    return Stamp(time.monotonic_ns() // 1000, time.time_ns() // 1000, "unverified", "none")


@dataclass(frozen=True)
class ChainLine:
    record: Record
    sig: bytes
    mac: str
    offset: int
    length: int


@dataclass
class ReadChain:
    lines: list[ChainLine]
    torn: bytes  # bytes after the last good line (empty if none)
    torn_offset: int


def read_chain(path: Path) -> ReadChain:
    """Parse chain.jsonl; a bad *last* line is reported as torn, any other
    bad line raises StoreCorrupt (recovery only ever drops a torn tail)."""
    data = path.read_bytes()
    lines: list[ChainLine] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            break
        try:
            record, sig, mac = parse_line(data[pos:end])
        except RecordError as exc:
            if end + 1 >= len(data):
                break  # the last line: treat as torn
            raise StoreCorrupt(f"{path}: line at byte {pos} is malformed: {exc}") from None
        lines.append(ChainLine(record, sig, mac, pos, end + 1 - pos))
        pos = end + 1
    return ReadChain(lines, data[pos:], pos)


@dataclass
class SegmentMeta:
    """What the caller knows about a segment; the writer adds hashes and length."""

    start: Stamp
    end: Stamp
    container: str = "mpegts"
    codecs: list[str] = field(default_factory=lambda: ["h264", "aac"])
    duration_us: int = 0
    location: dict[str, Any] | None = None
    retention: str = "supervision"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Commit:
    """Records to write together: `before` (a segment's seal) made durable
    first, then `lines` ending with `last`, then the key file set to `key`
    (the key for the record after `last`)."""

    before: list[Callable[[], None]]
    lines: list[bytes]
    last: Record
    key: fss.FssState


@dataclass
class _Open:
    """This thread's open batch: seals to make durable first, then record lines."""

    before: list[Callable[[], None]] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)


@dataclass(frozen=True)
class Recovery:
    """What opening the store had to repair."""

    torn_bytes: int
    partial_files: list[str]
    pending_receipts: list[str]


class SegmentWriter:
    """Streams one segment into the store as age ciphertext (a capture sink)."""

    def __init__(self, store: Store, name: layout.SegmentName, sync_interval: float) -> None:
        self._store = store
        self.name = name
        self.path = store.segments / (str(name) + layout.PARTIAL)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        # its name made durable, so recovery finds it after a power cut: in a
        # batch by the committer (ahead of the batch's records, and of this
        # file's own seal), so a file opened at a rollover costs the loop no fsync
        segments = store.segments
        if not store._defer(lambda: fsync_dir(segments)):
            fsync_dir(segments)
        self._age = StreamWriter(self._fd, store.keys.recipient)
        self._interval = sync_interval
        self._last_sync = time.monotonic()
        self._unsynced = False  # bytes written since the last sync
        self.closed = False

    @property
    def plaintext_len(self) -> int:
        return self._age.pt_len

    def write(self, data: bytes | memoryview) -> None:
        self._age.write(data)
        self._unsynced = True
        if time.monotonic() - self._last_sync >= self._interval:
            self.sync()

    def sync(self) -> None:
        """Make everything written so far durable, the tail short of a chunk
        too. In a batch the fdatasync is done with it (by the committer, for
        a batch handed off): the loop does not wait on the disk, and the
        file's seal, in the same batch or a later one, comes after it."""
        if self.closed or not self._unsynced:
            return
        self._age.checkpoint()
        self._last_sync = time.monotonic()
        self._unsynced = False
        fd = self._fd
        if not self._store._defer(lambda: os.fdatasync(fd)):
            os.fdatasync(fd)

    def close(self, meta: SegmentMeta) -> Record:
        """Seal: last chunk, fsync, rename, then the `segment`/`still` record."""
        if self.closed:
            raise StoreError(f"{self.name} is already closed")
        self._age.close()
        self.closed = True
        fd, path, final = self._fd, self.path, self._store.segments / str(self.name)
        segments = self._store.segments

        def seal() -> None:
            os.fsync(fd)
            os.close(fd)
            os.replace(path, final)
            fsync_dir(segments)

        if not self._store._defer(seal):  # in a batch: done before its record, with it
            self._store._settle()  # a sync of this file still with the committer goes first
            seal()
        body = {
            "file": str(self.name),
            "segno": self.name.segno,
            "ct_len": self._age.ct_len,
            "ct_sha256": self._age.ct_hash.hexdigest(),
            "pt_len": self._age.pt_len,
            "pt_sha256": self._age.pt_hash.hexdigest(),
            "start": {"mono_us": meta.start.mono_us, "wall_us": meta.start.wall_us},
            "end": {"mono_us": meta.end.mono_us, "wall_us": meta.end.wall_us},
            "duration_us": meta.duration_us,
            "container": meta.container,
            "codecs": list(meta.codecs),
            "location": meta.location,
            "retention": meta.retention,
            **meta.extra,
        }
        return self._store.finish_segment(self, body)


class Store:
    """An open, locked sealed store. Thread-safe: the capture thread seals
    segments while the daemon appends events."""

    def __init__(
        self,
        root: Path,
        keys: UnitKeys,
        clock: Clock,
        lock_fd: int,
        chain: ReadChain,
        sync_interval: float,
    ) -> None:
        self.root = root
        self.keys = keys
        self.clock = clock
        self.segments = root / layout.SEGMENTS
        self.receipts = root / layout.RECEIPTS
        self.sync_interval = sync_interval
        self._lock_fd = lock_fd
        self._mutex = threading.RLock()
        self._failed: str | None = None  # set by a failed append: reopen to recover
        self._pending: _Open | None = None  # an open batch, not yet written
        # batches handed to the committer thread (`batch(wait=False)`), in order
        self._queue: deque[_Commit] = deque()
        self._queued = threading.Condition()
        self._committer: threading.Thread | None = None
        self._stopping = False
        self._open: dict[str, SegmentWriter] = {}
        if not chain.lines:
            raise StoreCorrupt(f"{root}: chain has no genesis record")
        genesis = chain.lines[0].record
        if genesis.type != "genesis" or genesis.seq != 0:
            raise StoreCorrupt(f"{root}: first record is not genesis")
        if genesis.body.get("device_key") != fingerprint(keys.public):
            raise StoreCorrupt(f"{root}: store belongs to another device key")
        self.serial = genesis.serial
        self.officer = chain.lines[-1].record.officer
        self._head: Record = chain.lines[-1].record
        self._boot = self._head.boot
        self._chain_fd = os.open(root / layout.CHAIN, os.O_WRONLY | os.O_APPEND)
        self._fss = fss.load(keys.fss_path)
        self._next_segno = 1 + max(
            [
                int(ln.record.body.get("segno", 0))
                for ln in chain.lines
                if isinstance(ln.record.body.get("segno", 0), int)
            ]
            + [n.segno for n in self._files_on_disk()],
            default=0,
        )
        self.recovery = Recovery(0, [], [])

    # -- creating and opening -------------------------------------------------

    @classmethod
    def create(
        cls,
        root: Path,
        keys: UnitKeys,
        *,
        serial: str,
        officer: str,
        escrow_commitment: str,
        clock: Clock = system_clock,
        device: dict[str, str] | None = None,
    ) -> None:
        """Make an empty store with its genesis record (seq 0); `device`, the
        unit's make and model as flashed, is sealed in it (R20)."""
        layout.check_serial(serial)
        root = Path(root)
        make_dirs(root)
        if (root / layout.CHAIN).exists():
            raise StoreError(f"{root} already holds a store")
        make_dirs(root / layout.SEGMENTS)
        make_dirs(root / layout.RECEIPTS)
        _write_reserve(root / layout.RESERVE, RESERVE_BYTES)
        write_durably(root / layout.DEVICE_PUB, public_pem(keys.public))
        state = fss.load(keys.fss_path)
        if state.seq != 0:
            raise StoreError("the forward-secure key has already been used")
        genesis = Record(
            seq=0,
            type="genesis",
            stamp=clock(),
            serial=serial,
            officer=officer,
            prev=GENESIS_PREV,
            boot=0,
            body={
                "device_key": fingerprint(keys.public),
                "fss_commitment": escrow_commitment,
                "recipient": str(keys.recipient),
                "docks": sorted(keys.docks),
                **({"device": dict(device)} if device else {}),
            },
        )
        fd = os.open(root / layout.CHAIN, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, seal_line(genesis, keys.signing, state.key))
            os.fsync(fd)
        finally:
            os.close(fd)
        state.advance_to(1)
        fss.save(keys.fss_path, state)
        fsync_dir(root)

    @classmethod
    def open(
        cls,
        root: Path,
        keys: UnitKeys,
        *,
        clock: Clock = system_clock,
        boot_body: dict[str, Any] | None = None,
        sync_interval: float = SYNC_INTERVAL_S,
    ) -> Store:
        """Lock, recover whatever a crash left, then append a `boot` record."""
        root = Path(root)
        if not (root / layout.CHAIN).is_file():
            raise NotAStore(f"{root} is not a sealed store (no {layout.CHAIN})")
        lock_fd = os.open(root / layout.LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise StoreLocked(f"{root} is open by another writer") from None
        try:
            chain = read_chain(root / layout.CHAIN)
            store = cls(root, keys, clock, lock_fd, chain, sync_interval)
            released = store._release_reserve_if_full()
            store._recover(chain, boot_body or {})
            if released:
                store.append(
                    "fault",
                    {
                        "what": "storage_full",
                        "reserve_released": released,
                        "reason": "the disk was full at open: the reserve was "
                        "freed so recovery, export and release can run",
                    },
                )
        except BaseException:
            os.close(lock_fd)
            raise
        return store

    # -- the reserve: room for the records that end a full disk's story ----------------

    def _release_reserve_if_full(self) -> int:
        """At open: if the file system cannot take the records recovery, export
        and release need, free the reserve (its size is returned, else 0)."""
        reserve = self.root / layout.RESERVE
        if not reserve.exists() or _free_bytes(self.root) >= RESERVE_BYTES:
            return 0
        size = reserve.stat().st_size
        reserve.unlink()
        fsync_dir(self.root)
        return size

    def restore_reserve(self, size: int = RESERVE_BYTES) -> bool:
        """Make the reserve again once there is room for it twice over (after a
        dock released segments). True if it now exists."""
        reserve = self.root / layout.RESERVE
        with self._mutex:
            if reserve.exists():
                return True
            if _free_bytes(self.root) < 2 * size + RESERVE_BYTES:
                return False
            try:
                _write_reserve(reserve, size)
            except OSError:  # the disk filled meanwhile: try again later
                reserve.unlink(missing_ok=True)
                return False
            return True

    def close(self) -> None:
        with self._mutex:
            if self._lock_fd < 0:
                return
            try:
                self._flush()  # what the committer holds, and an open batch, is written
            finally:
                with self._queued:
                    self._stopping = True
                    self._queued.notify_all()
                if self._committer is not None:
                    self._committer.join()
                os.close(self._chain_fd)
                os.close(self._lock_fd)
                self._lock_fd = -1

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- recovery --------------------------------------------------------------

    def _recover(self, chain: ReadChain, boot_body: dict[str, Any]) -> None:
        torn = chain.torn
        last = chain.lines[-1]
        # A torn write cannot produce a well-formed line with a bad signature;
        # that is tampering or another key, and the unit must not build on it.
        if not check_signature(last.record, last.sig, self.keys.public):
            raise StoreCorrupt(f"{self.root}: last record {last.record.seq} has a bad signature")
        for prev, line in zip(chain.lines, chain.lines[1:], strict=False):
            if line.record.seq != prev.record.seq + 1 or line.record.prev != prev.record.hash:
                raise StoreCorrupt(f"{self.root}: chain broken at record {line.record.seq}")
        if torn:
            os.truncate(self.root / layout.CHAIN, chain.torn_offset)
            os.fsync(self._chain_fd)
        want = self._head.seq + 1
        if self._fss.seq > want:
            raise StoreCorrupt(
                f"{self.root}: the key has advanced to record {self._fss.seq} but the chain "
                f"ends at {self._head.seq}: durable records are missing"
            )
        self._fss.advance_to(want)
        self._boot += 1
        self.append("boot", boot_body)
        if torn:
            self.append(
                "power_loss",
                {
                    "cause": "torn_chain_line",
                    "dropped_bytes": len(torn),
                    "dropped_sha256": hashlib.sha256(torn).hexdigest(),
                    "offset": chain.torn_offset,
                },
            )
        partial = self._seal_orphans(chain)
        pending = self._finish_pending_receipts()
        self.recovery = Recovery(len(torn), partial, pending)

    def _files_on_disk(self) -> list[layout.SegmentName]:
        names = []
        for path in self.segments.iterdir():
            parsed = layout.parse_name(path.name)
            if parsed is not None:
                names.append(parsed)
        return names

    def _seal_orphans(self, chain: ReadChain) -> list[str]:
        """Seal every segment file no record names, as it lies on disk."""
        named = {ln.record.body.get("file") for ln in chain.lines}
        sealed = []
        for path in sorted(self.segments.iterdir()):
            parsed = layout.parse_name(path.name)
            if parsed is None or str(parsed) in named:
                continue
            final = self.segments / str(parsed)
            if path != final:
                os.replace(path, final)
                fsync_dir(self.segments)
            digest, length = hash_file(final)
            self.append(
                "power_loss",
                {
                    "cause": "partial_segment",
                    "file": str(parsed),
                    "segno": parsed.segno,
                    "kind": parsed.kind,
                    "ct_len": length,
                    "ct_sha256": digest,
                    "last_write_wall_us": final.stat().st_mtime_ns // 1000,
                },
            )
            sealed.append(str(parsed))
        return sealed

    def _finish_pending_receipts(self) -> list[str]:
        from .receipts import finish_pending  # receipts works on a Store: import late

        return finish_pending(self)

    # -- appending -------------------------------------------------------------

    @property
    def head(self) -> Record:
        return self._head

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the store for a read-check-write of several steps (a receipt's
        check, delete and `release`): another thread's append waits."""
        with self._mutex:
            yield

    def append(self, type_: str, body: dict[str, Any], stamp: Stamp | None = None) -> Record:
        """Sign, MAC, write and fsync one record; then erase its MAC key."""
        canonical.encode(body)  # refuse an unencodable body before taking a seq
        with self._mutex:
            if self._lock_fd < 0:
                raise StoreError("store is closed")
            self._refuse_if_failed()
            boot = self._boot
            record = Record(
                seq=self._head.seq + 1,
                type=type_,
                body=body,
                stamp=stamp or self.clock(),
                serial=self.serial,
                officer=self.officer,
                prev=self._head.hash,
                boot=boot,
            )
            line = seal_line(record, self.keys.signing, self._fss.key)
            key = fss.FssState(self._fss.seq, self._fss.key)
            key.advance_to(record.seq + 1)
            if self._pending is None:
                self._settle()  # after what the committer still holds, in order
                self._write(_Commit([], [line], record, key))
            else:  # written with the rest of its batch; no one reads it before
                self._pending.lines.append(line)
            self._head, self._fss = record, key
            return record

    @contextlib.contextmanager
    def batch(self, wait: bool = True) -> Iterator[None]:
        """Records appended inside (by this thread: the batch holds the store)
        are written with one write(2), one fsync and one key update when it
        ends, not three fsyncs each; a segment closed inside is made durable
        (fsync, rename, directory fsync) just before them. Nested batches
        join the outermost.

        `wait`: the batch is durable when this returns. Without it, the
        store's committer thread writes it, in order after any before it,
        and this thread goes on (a press is not kept behind a seal's fsyncs);
        every read of the chain, synchronous append and `wait_durable()`
        waits for the committer first, so nothing reads a record before it
        is durable."""
        with self._mutex:
            if self._pending is not None:
                yield
                return
            self._pending = _Open()
            try:
                yield
            finally:
                try:
                    job = self._take_pending()
                    if job is not None and wait:
                        self._settle()
                        self._write(job)
                    elif job is not None:
                        self._enqueue(job)
                finally:
                    self._pending = None

    def wait_durable(self) -> None:
        """Return once every record appended so far is in the chain and fsynced
        (or the store has failed: the next append says why)."""
        with self._mutex:
            self._flush()

    def _defer(self, step: Callable[[], None]) -> bool:
        """Inside this thread's batch: do `step` when the batch is written,
        before its lines (a segment's seal before its record). False outside."""
        with self._mutex:
            if self._pending is None:
                return False
            self._pending.before.append(step)
            return True

    def _take_pending(self) -> _Commit | None:
        """The open batch as a commit (its records and the key after them)."""
        p = self._pending
        if p is None or not (p.lines or p.before):
            return None
        self._pending = _Open()
        return _Commit(p.before, p.lines, self._head, fss.FssState(self._fss.seq, self._fss.key))

    def _flush(self) -> None:
        """Write what the committer holds, then this thread's open batch (it goes on)."""
        self._settle()
        job = self._take_pending()
        if job is not None:
            self._write(job)

    def _enqueue(self, job: _Commit) -> None:
        with self._queued:
            if self._committer is None:
                self._committer = threading.Thread(
                    target=self._commit_queued, name="store-committer", daemon=True
                )
                self._committer.start()
            self._queue.append(job)
            self._queued.notify_all()

    def _settle(self) -> None:
        """Wait until the committer has written everything handed to it."""
        with self._queued:
            while self._queue:
                self._queued.wait()

    def _commit_queued(self) -> None:
        """The committer thread: each job in order; after a failure the rest
        are dropped (never written out of order) and `_failed` says why."""
        while True:
            with self._queued:
                while not self._queue and not self._stopping:
                    self._queued.wait()
                if not self._queue:
                    return
                job = self._queue[0]
            try:
                self._write(job)
            except StoreError:
                pass  # _failed holds why
            except Exception as exc:  # never a stuck queue: later appends say why
                self._failed = f"records to {job.last.seq} not written: {exc!r}"
            finally:
                with self._queued:
                    self._queue.popleft()
                    self._queued.notify_all()

    def _refuse_if_failed(self) -> None:
        if self._failed is not None:
            raise StoreError(f"store must be reopened after a failed append: {self._failed}")

    def _write(self, job: _Commit) -> None:
        """Make `job.before` durable, then write its lines with one write(2),
        fsync, and replace the key file with `job.key`. Never after a
        failure: the lines would follow records that were taken back."""
        self._refuse_if_failed()
        first = job.last.seq - len(job.lines) + 1
        what = (
            f"record {job.last.seq} ({job.last.type})"
            if len(job.lines) == 1
            else f"records {first}-{job.last.seq}"
        )
        try:
            for step in job.before:
                step()
        except OSError as exc:
            self._failed = f"{what} not written: a segment was not sealed or synced: {exc}"
            raise StoreError(self._failed) from exc
        if not job.lines:
            return
        data = b"".join(job.lines)
        end = os.lseek(self._chain_fd, 0, os.SEEK_END)
        try:
            written = os.write(self._chain_fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"short write: {written} of {len(data)} bytes")
            os.fsync(self._chain_fd)
        except OSError as exc:
            # all or nothing: take the lines back so no half record stays, and
            # refuse more appends until the store is reopened (and recovered)
            self._failed = f"{what} not written: {exc}"
            with contextlib.suppress(OSError):
                os.ftruncate(self._chain_fd, end)
                os.fsync(self._chain_fd)
            raise StoreError(self._failed) from exc
        try:
            fss.save(self.keys.fss_path, job.key)
        except OSError as exc:
            # the records stand; the key on disk is behind, which the next
            # open advances past (the chain says how far). No more appends.
            self._failed = f"the MAC key was not saved after record {job.last.seq}: {exc}"

    def set_officer(self, officer: str, extra: dict[str, Any] | None = None) -> Record:
        """The unit is now `officer`'s: every record from this one names them.
        `extra`: what else the record keeps (a check-out's approver, signature)."""
        with self._mutex:
            old, self.officer = self.officer, officer
            return self.append("officer", {**(extra or {}), "from": old, "to": officer})

    def open_segment(self, ext: str = "ts", stamp: Stamp | None = None) -> SegmentWriter:
        """Start a segment (`ts`) or still (`jpg`) file, named by its start time."""
        if ext not in layout.KIND_BY_EXT:
            raise StoreError(f"unknown segment extension {ext!r}")
        with self._mutex:
            when = stamp or self.clock()
            name = layout.SegmentName(self.serial, when.wall_us, self._next_segno, ext)
            self._next_segno += 1
            writer = SegmentWriter(self, name, self.sync_interval)
            self._open[str(name)] = writer
            return writer

    def sync_open_segments(self) -> None:
        """Sync every open file's tail (in a batch: with it). A sync the
        committer failed is said here, at the caller's next sync, not first
        at its next record (up to a file's length later)."""
        with self._mutex:
            self._refuse_if_failed()
            for writer in list(self._open.values()):
                writer.sync()

    def is_open(self, file: str) -> bool:
        return file in self._open

    def finish_segment(self, writer: SegmentWriter, body: dict[str, Any]) -> Record:
        with self._mutex:
            self._open.pop(str(writer.name), None)
            return self.append(writer.name.kind, body)

    # -- reading (for the verifier, the export service and release) -----------

    def records(self) -> list[Record]:
        with self._mutex:  # another thread's batch ends first; this one's is written
            self._flush()
            return [ln.record for ln in read_chain(self.root / layout.CHAIN).lines]

    def chain_bytes(self, from_seq: int = 0) -> bytes:
        with self._mutex:
            self._flush()
            chain = read_chain(self.root / layout.CHAIN)
        start = next((ln.offset for ln in chain.lines if ln.record.seq >= from_seq), None)
        if start is None:
            return b""
        return (self.root / layout.CHAIN).read_bytes()[start : chain.torn_offset]
