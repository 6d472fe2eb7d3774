"""Forward-secure MAC keys: a one-way ratchet, one step per chain record.

Record `seq` is MACed under key k[seq], where k[0] is random (escrowed to the
agency at provisioning) and k[n+1] = SHA-256("bodycam-fss-evolve-v1" || k[n]).
After a record is durable the unit overwrites k[seq] with k[seq+1], so a key
taken from a seized unit cannot MAC any record that was already written. A
verifier derives k[seq] itself from the escrowed k[0], one step per record;
it never reads a key index from the record, so no step can be skipped (the
flaw behind journald's CVE-2023-31438).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from . import canonical
from .files import fsync_dir, write_synced
from .safeio import TooLarge, read_regular

EVOLVE = b"bodycam-fss-evolve-v1"
COMMIT = b"bodycam-fss-commit-v1"


class FssError(ValueError):
    pass


def evolve(key: bytes) -> bytes:
    return hashlib.sha256(EVOLVE + key).digest()


def commitment(key0: bytes) -> str:
    """Published in the genesis record so a verifier knows which escrow key fits."""
    return hashlib.sha256(COMMIT + key0).hexdigest()


def mac(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


@dataclass
class FssState:
    """The unit's current key: the one for record `seq` (the next to be written)."""

    seq: int
    key: bytes

    def advance_to(self, seq: int) -> None:
        if seq < self.seq:
            raise FssError(f"the key for record {seq} is already erased (at {self.seq})")
        while self.seq < seq:
            self.key = evolve(self.key)
            self.seq += 1


def save(path: Path, state: FssState) -> None:
    """Replace the key file atomically; the old key is gone once this returns.

    (On flash storage the old blocks may survive in the controller until
    reused; docs/FORMAT.md says so. The file system holds only the new key.)
    """
    tmp = path.with_suffix(".tmp")
    data = canonical.encode({"seq": state.seq, "key": canonical.b64(state.key)})
    try:
        write_synced(tmp, data)
    except OSError:
        tmp.unlink(missing_ok=True)  # the old key file stands, whole
        raise
    os.replace(tmp, path)
    fsync_dir(path.parent)


def load(path: Path) -> FssState:
    try:
        raw = canonical.decode(path.read_bytes())
        key = canonical.unb64(raw["key"])
        seq = raw["seq"]
    except (OSError, canonical.EncodingError, KeyError, TypeError) as exc:
        raise FssError(f"unreadable forward-secure key file {path}: {exc}") from None
    if len(key) != 32 or not isinstance(seq, int) or seq < 0:
        raise FssError(f"malformed forward-secure key file {path}")
    return FssState(seq, key)


def load_escrow(path: Path) -> bytes:
    """An escrow file holds k[0] as base64 on one line (read as a regular
    file of at most 4 KiB: an examiner's path may name anything)."""
    try:
        key = canonical.unb64(read_regular(path, 4096, "an escrow file").decode().strip())
    except (OSError, TooLarge, UnicodeDecodeError, canonical.EncodingError) as exc:
        raise FssError(f"unreadable escrow key {path}: {exc}") from None
    if len(key) != 32:
        raise FssError(f"escrow key {path} is not 32 bytes")
    return key
