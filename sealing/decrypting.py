"""Sealed files read and decrypted ahead of their reader, in a process of its own.

A court copy decrypts an hour of segments (7 GB) while it joins them. In one
process the decryption, the hashes and the join take turns on the GIL, so
two cores do the work of one. Here a child process (`python -m
sealing.decrypting`) reads each file once, in order, as the verifier does
(segcheck.read_segment: its ciphertext hashed, and decrypted from the same
read) into a slot of memory both processes map (a memfd: the plaintext
never touches a disk), up to SLOTS - 1 files ahead of the reader. The
reader gets a view of the slot and the child's `SegmentRead` (the
ciphertext's length and SHA-256, the plaintext's length, SHA-256 and
completeness) to check against what it expects before it uses a byte.

The protocol, one JSON line each way per file: the parent writes {"path",
"slot", "ct_len"} (ct_len: the length the file must have, or null for its
own); the child answers {"ct_len", "ct_sha256", "error", "pt"} (pt: null
or {"n", "sha256", "complete", "error"}), or {"refused": why} (a file that
cannot be read), or {"over": true} (more plaintext than the slot holds).
Its first line in is {"identity", "slot_size", "slots", "fd"}; stdin
closed, it ends.
"""

from __future__ import annotations

import json
import mmap
import os
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .age import Decrypted, Identity
from .bodies import count
from .segcheck import BLOCK, SegmentRead, read_segment

SLOTS = 3  # one being read, two decrypted ahead
SLOT_MAX = 256 << 20  # 3 slots of it at most in memory; a larger file is its reader's to decrypt
START_TIMEOUT_S = 30.0  # the child's start-up, then a slow disk's pace per file
BYTES_PER_S = 20 << 20
LINE_MAX = 1 << 16


class DecryptFailed(Exception):
    """A file could not be read (args[0]: why, in English), or the child ended."""


@dataclass(frozen=True)
class Taken:
    plaintext: memoryview  # valid until the next take(); empty when read.plaintext is None
    read: SegmentRead  # read.plaintext None: not decrypted (read.error says why, if it was read)


class Decrypting:
    """`paths`, read and decrypted in order by a child process; `take(i)`
    for i = 0, 1, 2 ... gives each. A file's plaintext may be at most
    `size` bytes. `ct_lens`: the length each file must have (one that has
    another is not read, as read_segment), else each file's own."""

    def __init__(
        self,
        identity: Identity,
        paths: Sequence[Path],
        size: int,
        ct_lens: Sequence[int] | None = None,
    ) -> None:
        if not 0 < size <= SLOT_MAX:
            raise ValueError(f"a slot of {size} bytes is not in 1..{SLOT_MAX}")
        if ct_lens is not None and len(ct_lens) != len(paths):
            raise ValueError(f"{len(ct_lens)} lengths for {len(paths)} files")
        self._paths, self._size = list(paths), size
        self._ct_lens = list(ct_lens) if ct_lens is not None else None
        self._next = 0  # the next file take() gives
        self._sent = 0  # files asked of the child
        self._fd = os.memfd_create("bodycam-plaintext", os.MFD_CLOEXEC)
        self._proc: subprocess.Popen[bytes] | None = None
        self._map: mmap.mmap | None = None
        try:
            os.ftruncate(self._fd, SLOTS * size)
            self._map = mmap.mmap(self._fd, SLOTS * size)
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "sealing.decrypting"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # it answers why; a crash is its code
                pass_fds=(self._fd,),
                bufsize=0,
            )
            self._lines = _Lines(self._proc)
            first = {"identity": str(identity), "slot_size": size, "slots": SLOTS, "fd": self._fd}
            self._say(first)
            for _ in range(min(SLOTS - 1, len(self._paths))):
                self._ask()
        except BaseException:
            self.close()
            raise

    def take(self, i: int) -> Taken:
        """File `i`'s plaintext and what the child found; the view of file
        i - 1 is given back to the child (its slot is reused)."""
        if i != self._next or i >= len(self._paths):
            raise ValueError(f"file {i} asked for; the next is {self._next}")
        self._next += 1
        if self._sent < len(self._paths):
            self._ask()  # into the slot of file i - 1, done with now
        path = self._paths[i]
        timeout = START_TIMEOUT_S + self._size / BYTES_PER_S
        answer = self._lines.read(timeout)
        if "refused" in answer:
            raise DecryptFailed(str(answer["refused"]))
        if answer.get("over"):  # more than the largest record says: not what was sealed
            over = Decrypted(self._size + 1, "", False, "more plaintext than the slot holds")
            return Taken(memoryview(b""), SegmentRead(-1, None, over))
        try:
            read = _read_of(answer)
        except (KeyError, TypeError, ValueError):
            why = f"{path.name}: the decrypting process answered {answer!r:.100}"
            raise DecryptFailed(why) from None
        got = read.plaintext
        if got is None:
            return Taken(memoryview(b""), read)
        if not 0 <= got.plaintext_len <= self._size:
            raise DecryptFailed(f"{path.name}: the decrypting process answered {answer!r:.100}")
        at = (i % SLOTS) * self._size
        assert self._map is not None
        return Taken(memoryview(self._map)[at : at + got.plaintext_len], read)

    def _ask(self) -> None:
        k = self._sent
        ct_len = self._ct_lens[k] if self._ct_lens is not None else None
        self._say({"path": str(self._paths[k]), "slot": k % SLOTS, "ct_len": ct_len})
        self._sent += 1

    def _say(self, line: dict[str, Any]) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(line).encode() + b"\n")
        except BrokenPipeError:
            raise DecryptFailed(self._lines.ended()) from None

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None
        # not close(): a reader may still hold a view of it (PyAV, a traceback's
        # frame); the mapping goes with the last reference, at once when there is none
        self._map = None
        os.close(self._fd)

    def __enter__(self) -> Decrypting:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Lines:
    """The child's answers, one JSON object a line, each awaited at most a
    timeout; its end (or silence) is a DecryptFailed."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self._proc, self._fd, self._buf = proc, proc.stdout.fileno(), b""

    def read(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._fd], [], [], left)[0]:
                self._proc.kill()
                raise DecryptFailed(f"the decrypting process gave no answer within {timeout:.0f} s")
            chunk = os.read(self._fd, LINE_MAX)
            if not chunk:
                raise DecryptFailed(self.ended())
            self._buf += chunk
            if len(self._buf) > LINE_MAX:
                raise DecryptFailed("the decrypting process answered more than a line")
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            answer = json.loads(line)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise DecryptFailed(f"the decrypting process answered {line[:100]!r}")
        return answer

    def ended(self) -> str:
        try:
            code = self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait()
        return f"the decrypting process ended with code {code}"


def _read_of(answer: dict[str, Any]) -> SegmentRead:
    """The child's answer as a SegmentRead; KeyError, TypeError or ValueError
    when it is not one."""
    pt = answer["pt"]
    plaintext = None
    if pt is not None:
        error = pt["error"]
        plaintext = Decrypted(
            _int(pt["n"]),
            _str(pt["sha256"]),
            pt["complete"] is True,
            None if error is None else _str(error),
        )
    digest, error = answer["ct_sha256"], answer["error"]
    return SegmentRead(
        _int(answer["ct_len"]),
        None if digest is None else _str(digest),
        plaintext,
        None if error is None else _str(error),
    )


def _int(v: Any) -> int:
    if not count(v):
        raise TypeError(f"{v!r:.40} is not a count")
    return int(v)


def _str(v: Any) -> str:
    if type(v) is not str:
        raise TypeError(f"{v!r:.40} is not text")
    return v


class _Slot:
    """A sink into one slot; more than it holds stops the decryption."""

    def __init__(self, view: memoryview) -> None:
        self._view, self.at = view, 0

    def write(self, data: memoryview, /) -> int:
        end = self.at + len(data)
        if end > len(self._view):
            raise _Full
        self._view[self.at : end] = data
        self.at = end
        return len(data)


class _Full(Exception):
    """More plaintext than the slot holds."""


def serve(lines_in: Any, out: Any) -> None:
    """The child: decrypt each file asked for into its slot, answer, repeat."""
    first = json.loads(lines_in.readline(LINE_MAX))
    identity = Identity.parse(first["identity"])
    size, slots = int(first["slot_size"]), int(first["slots"])
    shared = mmap.mmap(int(first["fd"]), slots * size)
    buf = bytearray(BLOCK)  # one read buffer for every file: fresh memory is dear
    for line in iter(lambda: lines_in.readline(LINE_MAX), b""):
        job = json.loads(line)
        at = int(job["slot"]) * size
        answer: dict[str, Any]
        try:
            with open(job["path"], "rb", buffering=0) as f:
                ct_len = job["ct_len"]
                if ct_len is None:
                    ct_len = os.fstat(f.fileno()).st_size
                sink = _Slot(memoryview(shared)[at : at + size])
                read = read_segment(f, int(ct_len), identity, buf, sink=sink)
            answer = {
                "ct_len": read.ct_len,
                "ct_sha256": read.ct_sha256,
                "error": read.error,
                "pt": None
                if (p := read.plaintext) is None
                else {
                    "n": p.plaintext_len,
                    "sha256": p.plaintext_sha256,
                    "complete": p.complete,
                    "error": p.error,
                },
            }
        except OSError as exc:
            answer = {"refused": f"{Path(job['path']).name}: {exc.strerror or exc}"}
        except _Full:
            answer = {"over": True}
        out.write(json.dumps(answer).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
