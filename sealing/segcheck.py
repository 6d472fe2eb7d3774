"""One read of one segment file: its ciphertext hashed and, given the
agency's identity, decrypted from the same bytes as they pass.

Memory is one read-ahead buffer and one age chunk whatever the file's size.
The hash is taken where the bytes are read (`_Tee`), so decryption and
hashing share the read; issue 28's overlap of the two would put the hash on
its own thread behind the same tee.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from typing import BinaryIO

from .age import AgeError, Decrypted, Identity, decrypt

READ_AHEAD = 1 << 20


@dataclass
class SegmentRead:
    ct_len: int
    ct_sha256: str | None  # None when the length already differed and nothing was read
    plaintext: Decrypted | None = None
    error: str | None = None  # why it did not decrypt at all


class _Tee(io.RawIOBase):
    """Passes a file's bytes through, hashing and counting each byte once,
    and at most `limit` of them (a file growing while it is read)."""

    def __init__(self, f: BinaryIO, limit: int) -> None:
        self.f = f
        self.limit = limit
        self.hash = hashlib.sha256()
        self.n = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buf)[: max(0, self.limit - self.n)]
        n = self.f.readinto(view) if len(view) else 0  # type: ignore[attr-defined]
        if n:
            self.hash.update(view[:n])
            self.n += n
        return n or 0


def read_segment(f: BinaryIO, ct_len: int, identity: Identity | None) -> SegmentRead:
    """Hash `f` (and decrypt it, given `identity`) in one pass. A file whose
    length is not `ct_len` is not read: it cannot match its record."""
    size = os.fstat(f.fileno()).st_size
    if size != ct_len:
        return SegmentRead(size, None)
    tee = _Tee(f, ct_len + 1)  # one byte more shows a file that grew
    stream = io.BufferedReader(tee, READ_AHEAD)
    out = SegmentRead(0, None)
    if identity is not None:
        try:
            out.plaintext = decrypt(stream, identity)
        except AgeError as exc:
            out.error = str(exc)
    while stream.read(READ_AHEAD):  # the rest, if decryption stopped early
        pass
    out.ct_len, out.ct_sha256 = tee.n, tee.hash.hexdigest()
    return out
