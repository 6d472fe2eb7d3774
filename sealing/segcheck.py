"""One read of one segment file: its ciphertext hashed and, given the
agency's identity, decrypted from the same bytes as they pass.

Memory is one read buffer and one age chunk whatever the file's size. The
file is read with `readinto` into that buffer, in large steps that end on
age chunk boundaries, so no byte is copied on its way to the hash and the
cipher; each read's bytes are hashed as they arrive (`_Blocks`), then
decrypted where they lie.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from .age import CHUNK, TAG, AgeError, Decrypted, Identity, Sink, open_header, payload

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

STRIDE = CHUNK + TAG  # one age chunk on disk
BLOCK = 16 * STRIDE  # one read: about 1 MiB


@dataclass
class SegmentRead:
    ct_len: int
    ct_sha256: str | None  # None when the length already differed and nothing was read
    plaintext: Decrypted | None = None
    error: str | None = None  # why it did not decrypt at all


class Beside:
    """A thread pool to hash on beside decryption, and how many reads are
    under way: hashing beside one only pays while a core would otherwise
    be idle (fewer reads than `cores`); else it only costs CPU."""

    def __init__(self, pool: Executor, cores: int) -> None:
        self.pool = pool
        self.cores = cores
        self.reading = 0
        self._lock = threading.Lock()

    def spare(self) -> bool:
        return self.reading < self.cores

    def started(self) -> None:
        with self._lock:
            self.reading += 1

    def ended(self) -> None:
        with self._lock:
            self.reading -= 1


class _Blocks:
    """A file's bytes through one reused buffer, each byte hashed and counted
    once as it is read, and at most `limit` of them (a file growing while it
    is read). `take` and `readline` hand out what was read, in order.

    Given a `beside` with a core to spare, each read is hashed on its
    thread pool while the caller decrypts the same bytes: both only read the
    buffer, and the next read into it waits for that hash first."""

    def __init__(
        self,
        f: BinaryIO,
        limit: int,
        buf: bytearray | None = None,
        beside: Beside | None = None,
    ) -> None:
        self.f = f
        self.limit = limit
        self.hash = hashlib.sha256()
        self.n = 0  # bytes read from the file
        self.array = buf if buf is not None else bytearray(BLOCK)
        self.buf = memoryview(self.array)
        self.pos = 0  # the next byte handed out
        self.end = 0  # the end of what was read
        self.beside = beside
        self.hashing: Future[None] | None = None  # the hash of the last read, under way

    def wait(self) -> None:
        """The hash has taken every byte read so far."""
        if self.hashing is not None:
            self.hashing.result()
            self.hashing = None

    def _fill(self, want: int) -> int:
        """At least `want` bytes from `pos` on, unless the file ends: how many."""
        have = self.end - self.pos
        if have >= want:
            return have
        self.wait()  # the buffer is written next
        if self.pos:  # keep what is left at the front: the next read ends a block
            self.buf[:have] = self.buf[self.pos : self.end]
            self.pos, self.end = 0, have
        start = self.end
        while self.end < want:
            view = self.buf[self.end : self.end + max(0, self.limit - self.n)]
            got = self.f.readinto(view) if len(view) else 0  # type: ignore[attr-defined]
            if not got:
                break
            self.n += got
            self.end += got
        if self.end > start:
            fresh = self.buf[start : self.end]
            if self.beside is not None and self.beside.spare():
                self.hashing = self.beside.pool.submit(self.hash.update, fresh)
            else:
                self.hash.update(fresh)
        return self.end - self.pos

    def take(self, n: int) -> memoryview:
        """The next `n` bytes (fewer only at the end), valid until the next call."""
        k = min(n, self._fill(n))
        start = self.pos
        self.pos += k
        return self.buf[start : self.pos]

    def readline(self, size: int = -1, /) -> bytes:
        """A line of at most `size` bytes, as BufferedReader.readline gives it."""
        k = min(size, self._fill(size))
        nl = self.array.find(b"\n", self.pos, self.pos + k)
        if nl >= 0:
            k = nl + 1 - self.pos
        start = self.pos
        self.pos += k
        return bytes(self.buf[start : self.pos])

    def drain(self) -> None:
        """Read (and hash) the rest, up to the limit."""
        self.pos = self.end
        while self._fill(len(self.buf)) == len(self.buf):
            self.pos = self.end
        self.wait()


def read_segment(
    f: BinaryIO,
    ct_len: int,
    identity: Identity | None,
    buf: bytearray | None = None,
    beside: Beside | None = None,
    sink: Sink | None = None,
) -> SegmentRead:
    """Hash `f` (and decrypt it, given `identity`) in one pass. A file whose
    length is not `ct_len` is not read: it cannot match its record. `buf`, a
    BLOCK-sized buffer, is reused when given; with a `beside` the ciphertext
    is hashed there, beside the decryption, while a core is spare. `sink`
    is given the plaintext as it is decrypted."""
    size = os.fstat(f.fileno()).st_size
    if size != ct_len:
        return SegmentRead(size, None)
    blocks = _Blocks(f, ct_len + 1, buf, beside if identity else None)  # +1: a file that grew
    out = SegmentRead(0, None)
    try:
        if identity is not None:
            try:
                file_key, offset = open_header(blocks, identity)
                out.plaintext = payload(blocks.take, file_key, offset, sink)
            except AgeError as exc:
                out.error = str(exc)
        blocks.drain()
    finally:
        blocks.wait()  # nothing reads the buffer after this returns
    out.ct_len, out.ct_sha256 = blocks.n, blocks.hash.hexdigest()
    return out
