"""Signed video inside the H.264 stream: one signature per group of pictures.

Modelled on ONVIF Media Signing: the proof travels in the bitstream, so a
lossless remux (MPEG-TS -> MP4 with `ffmpeg -c copy`) or an excerpt cut at
keyframes still verifies without the sealed segment it came from.

A *group* is the run of access units from one keyframe to the picture before
the next (the unit ends every group there, and files only roll at keyframes,
so a group never spans two files). Its last access unit carries one SEI NAL
unit (user data unregistered, `UUID` below) holding, after the UUID:

    version   u8     1
    serial    u8 n, then n ASCII bytes: the unit
    key       32     raw Ed25519 public key of the recording key
    index     u64    the group's number in its recording, from 0
    first     u64    frame number (as in the time SEI) of its first picture
    frames    u32    pictures in the group
    prev      32     group hash of group index-1 (32 zero bytes for group 0)
    count     u16    hashed NAL units
    hashes    count x 32: SHA-256 of each hashed NAL unit, in stream order
    sig       64     Ed25519 over DOMAIN || every byte above

all integers big-endian. The group hash is SHA-256(DOMAIN || every byte
above `sig`); each group names its predecessor's, so a dropped, inserted or
reordered group shows. A NAL unit is hashed as it lies in the stream: from
its header byte to its end, start code and trailing zero bytes excluded,
emulation-prevention bytes included (a remux keeps them). Hashed are all NAL
units but access unit delimiters (type 9), filler (12) and the SEI carrying
this signature: the per-frame time SEI (capture/sei.py) is signed too.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from . import nal, sei

UUID = uuid.UUID("b0d1ca4e-5e17-4c1e-9a3f-7e2d1c5b4a6a")
DOMAIN = b"bodycam-gop-v1\n"
VERSION = 1
_UNHASHED = (9, 12)  # access unit delimiter, filler: muxers add and drop them


def sei_payloads(unit: bytes) -> Iterator[bytes]:
    """User-data-unregistered payloads of an SEI NAL unit (UUID first), one
    at a time; a damaged SEI yields what was read before the damage."""
    rbsp = sei.unescape(unit[1:])
    i, n = 0, len(rbsp)
    while i < n and rbsp[i] != 0x80:
        ptype = size = 0
        while i < n and rbsp[i] == 255:
            ptype, i = ptype + 255, i + 1
        if i >= n:
            return
        ptype, i = ptype + rbsp[i], i + 1
        while i < n and rbsp[i] == 255:
            size, i = size + 255, i + 1
        if i >= n:
            return
        size, i = size + rbsp[i], i + 1
        if ptype == 5:
            yield rbsp[i : i + size]
        i += size


def signature_of(unit: bytes) -> bytes | None:
    """Our signature payload (after the UUID) if `unit` is its SEI NAL unit."""
    if not unit or unit[0] & 0x1F != 6:
        return None
    for p in sei_payloads(unit):
        if p[:16] == UUID.bytes:
            return p[16:]
    return None


def hashed(units: Iterable[bytes | memoryview]) -> list[bytes]:
    out = []
    for u in units:
        kind = u[0] & 0x1F
        if kind in _UNHASHED or (kind == 6 and signature_of(bytes(u)) is not None):
            continue
        out.append(hashlib.sha256(u).digest())
    return out


def raw_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class GroupSignature:
    serial: str
    key: bytes
    index: int
    first_frame: int
    frames: int
    prev: bytes
    hashes: list[bytes]
    signed: bytes  # everything the signature covers
    sig: bytes

    @property
    def group_hash(self) -> bytes:
        return hashlib.sha256(DOMAIN + self.signed).digest()

    def valid(self) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.key).verify(self.sig, DOMAIN + self.signed)
        except (InvalidSignature, ValueError):
            return False
        return True


def build(
    key: Ed25519PrivateKey,
    serial: str,
    index: int,
    first_frame: int,
    frames: int,
    prev: bytes,
    hashes: list[bytes],
) -> bytes:
    s = serial.encode("ascii")
    signed = (
        struct.pack(">BB", VERSION, len(s))
        + s
        + raw_key(key.public_key())
        + struct.pack(">QQI", index, first_frame, frames)
        + prev
        + struct.pack(">H", len(hashes))
        + b"".join(hashes)
    )
    return signed + key.sign(DOMAIN + signed)


def parse(data: bytes) -> GroupSignature | None:
    """A signature payload (after the UUID), or None if it is not one."""
    try:
        version, n = struct.unpack_from(">BB", data, 0)
        if version != VERSION:
            return None
        i = 2 + n
        serial = data[2:i].decode("ascii")
        key = data[i : i + 32]
        index, first, frames = struct.unpack_from(">QQI", data, i + 32)
        i += 32 + 20
        prev = data[i : i + 32]
        (count,) = struct.unpack_from(">H", data, i + 32)
        i += 34
        hashes = [data[i + 32 * k : i + 32 * (k + 1)] for k in range(count)]
        i += 32 * count
        sig = data[i : i + 64]
    except (struct.error, UnicodeDecodeError):
        return None
    if len(key) != 32 or len(prev) != 32 or len(sig) != 64 or len(data) != i + 64:
        return None
    return GroupSignature(serial, key, index, first, frames, prev, hashes, data[:i], sig)


@dataclass
class GopSigner:
    """Signs a recording's groups as the segmenter muxes them; holds the
    recording key only in memory, for one recording."""

    key: Ed25519PrivateKey
    serial: str
    index: int = 0
    prev: bytes = bytes(32)
    _hashes: list[bytes] = field(default_factory=list)
    _first: int | None = None
    _frames: int = 0

    def sign_au(self, au: bytes, frame: int, last: bool) -> bytes:
        """`au` as it goes to the muxer; with the group's signature when it
        is the group's last picture."""
        # hashed where they lie: a copy of a picture's slice is a mapping
        # and its page faults in the recorder (firmware/heap.py)
        view = memoryview(au)
        self._hashes += hashed(view[a:b] for a, b in nal.spans(au))
        if self._first is None:
            self._first = frame
        self._frames += 1
        if not last:
            return au
        payload = build(
            self.key, self.serial, self.index, self._first, self._frames, self.prev, self._hashes
        )
        self.prev = hashlib.sha256(DOMAIN + payload[:-64]).digest()
        self.index += 1
        self._hashes, self._first, self._frames = [], None, 0
        message = sei.nal(UUID.bytes + payload)
        try:
            return sei.insert(au, message)
        except ValueError:  # no slice to put it before: it closes the unit instead
            return au + message
