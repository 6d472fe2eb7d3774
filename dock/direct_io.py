"""Segment files written and read past the page cache (O_DIRECT).

A dock stores gigabytes per pull that nobody reads again soon, and its
safety check must read what the medium holds, not what was written to
memory. So whole aligned blocks go straight between the disk and an aligned
buffer (an anonymous mmap is page-aligned): no copy through the page cache,
no cache filled with evidence only to be dropped. What is not aligned (a
file's tail, a resumed file of odd length) and file systems without O_DIRECT
go the plain way; both give the same bytes, only the cost differs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import mmap
import os
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, cast

ALIGN = 4096  # O_DIRECT's offset and length unit: a multiple of any disk's block
SIZE = 1 << 20  # one buffer, a multiple of ALIGN


class AlignedBuffers:
    """`count` page-aligned buffers of SIZE bytes, as memoryviews; closed
    (unmapped) on exit."""

    def __init__(self, count: int) -> None:
        # private, not mmap's default shared mapping: shared anonymous memory
        # is shmem, whose every first touch is a page fault of its own kind
        private = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        self._maps = [mmap.mmap(-1, SIZE, flags=private) for _ in range(count)]
        self.views = [memoryview(m) for m in self._maps]

    def __enter__(self) -> list[memoryview]:
        return self.views

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        for v in self.views:
            v.release()
        for m in self._maps:
            with contextlib.suppress(BufferError):  # a slice a traceback holds
                m.close()  # else unmapped when that goes


class Appender:
    """Appends to `path` (created if missing, its existing bytes kept).
    A write at an aligned offset goes out with O_DIRECT in whole aligned
    blocks from the caller's buffer, which must then start page-aligned
    (an `AlignedBuffers` view from its start); the rest of it, and a write
    at an unaligned offset, go through the page cache. Where
    O_DIRECT is refused (the file system, or EINVAL from a buffer that was
    not aligned after all), the plain way is taken from then on.
    `sync` makes everything written durable, as fsync does."""

    def __init__(self, path: Path) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        self._plain = os.open(path, flags, 0o644)
        self.direct_bytes = 0  # how many bytes went past the cache (for tests and benches)
        try:
            self._pos = os.fstat(self._plain).st_size
            self._direct: int | None = os.open(path, flags | os.O_DIRECT)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                os.close(self._plain)
                raise
            self._direct = None  # no O_DIRECT on this file system

    def __enter__(self) -> Appender:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()

    def write(self, view: memoryview) -> int:
        n = len(view)
        done = 0
        if self._direct is not None and self._pos % ALIGN == 0:
            whole = n - n % ALIGN
            try:
                while done < whole:
                    done += os.pwrite(self._direct, view[done:whole], self._pos + done)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self._stop_direct()
            self.direct_bytes += done
        while done < n:
            done += os.pwrite(self._plain, view[done:], self._pos + done)
        self._pos += n
        return n

    def _stop_direct(self) -> None:
        if self._direct is not None:
            os.close(self._direct)
            self._direct = None

    def sync(self) -> None:
        os.fsync(self._plain)  # the file's data and size, whichever descriptor wrote them

    def close(self) -> None:
        self._stop_direct()
        os.close(self._plain)


class DirectReader:
    """An open file read with O_DIRECT, from offset 0: whole aligned blocks
    into an aligned buffer, handed out by `readinto` as asked."""

    def __init__(self, fd: int) -> None:
        self._raw = io.FileIO(fd, "rb", closefd=False)
        self._bufs = AlignedBuffers(1)
        self._buf = self._bufs.views[0]
        self._pos = self._end = 0
        self._eof = False

    @classmethod
    def of(cls, f: BinaryIO) -> BinaryIO | None:
        """`f`'s descriptor switched to O_DIRECT and read through one; None
        where the file system has no O_DIRECT (then read `f` as it is)."""
        fd = f.fileno()
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_DIRECT)
        except OSError:
            return None
        return cast(BinaryIO, cls(fd))

    def fileno(self) -> int:
        return self._raw.fileno()

    def readinto(self, view: memoryview | bytearray) -> int:
        if self._pos == self._end:
            if self._eof:
                return 0
            n = self._raw.readinto(self._buf) or 0
            self._eof = n < SIZE  # short only at the end of the file
            self._pos, self._end = 0, n
            if not n:
                return 0
        k = min(len(view), self._end - self._pos)
        view[:k] = self._buf[self._pos : self._pos + k]
        self._pos += k
        return k

    def close(self) -> None:
        self._bufs.close()
        self._raw.close()  # the descriptor stays open: its owner closes it
