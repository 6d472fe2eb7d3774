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
import re
import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from . import sei

UUID = uuid.UUID("b0d1ca4e-5e17-4c1e-9a3f-7e2d1c5b4a6a")
DOMAIN = b"bodycam-gop-v1\n"
VERSION = 1
_UNHASHED = (9, 12)  # access unit delimiter, filler: muxers add and drop them
_START = re.compile(rb"\x00\x00\x01")


def split_annexb(au: bytes) -> list[bytes]:
    """The NAL units of an Annex B access unit, without start codes or
    trailing zero bytes."""
    parts = _START.split(au)[1:]
    return [p.rstrip(b"\x00") for p in parts if p.rstrip(b"\x00")]


def split_lengths(au: bytes, size: int) -> list[bytes]:
    """The NAL units of an MP4 sample (`size`-byte big-endian lengths)."""
    out, i = [], 0
    while i + size <= len(au):
        n = int.from_bytes(au[i : i + size], "big")
        unit = au[i + size : i + size + n].rstrip(b"\x00")
        if unit:
            out.append(unit)
        i += size + n
    return out


def _sei_payloads(unit: bytes) -> list[bytes]:
    """User-data-unregistered payloads of an SEI NAL unit (UUID first)."""
    rbsp = sei.unescape(unit[1:])
    out, i = [], 0
    try:
        while i < len(rbsp) and rbsp[i] != 0x80:
            ptype = size = 0
            while rbsp[i] == 255:
                ptype, i = ptype + 255, i + 1
            ptype, i = ptype + rbsp[i], i + 1
            while rbsp[i] == 255:
                size, i = size + 255, i + 1
            size, i = size + rbsp[i], i + 1
            if ptype == 5:
                out.append(rbsp[i : i + size])
            i += size
    except IndexError:
        pass  # a damaged SEI: what was read stands, the rest is no signature
    return out


def signature_of(unit: bytes) -> bytes | None:
    """Our signature payload (after the UUID) if `unit` is its SEI NAL unit."""
    if not unit or unit[0] & 0x1F != 6:
        return None
    for p in _sei_payloads(unit):
        if p[:16] == UUID.bytes:
            return p[16:]
    return None


def hashed(units: Iterable[bytes]) -> list[bytes]:
    return [
        hashlib.sha256(u).digest()
        for u in units
        if u[0] & 0x1F not in _UNHASHED and signature_of(u) is None
    ]


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
        self._hashes += hashed(split_annexb(au))
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


# -- checking a stream ------------------------------------------------------------


@dataclass
class AccessUnit:
    """One picture as a container gave it: its NAL units, in order."""

    units: list[bytes]
    keyframe: bool = False

    def time(self) -> sei.FrameSei | None:
        for u in self.units:
            if u and u[0] & 0x1F == 6:
                for p in _sei_payloads(u):
                    got = sei.parse_payload(p)
                    if got is not None:
                        return got
        return None


@dataclass
class Group:
    """What the check found for one group (or a run of unsigned pictures)."""

    status: str  # verified | altered | incomplete | unsigned | foreign | out of order
    first_au: int  # position of its first picture in the file, from 0
    pictures: int
    detail: str = ""
    signature: GroupSignature | None = None
    utc_us: tuple[int, int] | None = None  # first and last picture's time SEI
    clock: str | None = None

    @property
    def index(self) -> int | None:
        return self.signature.index if self.signature else None


@dataclass
class StreamCheck:
    groups: list[Group]
    key: bytes | None  # the recording key most groups are signed with
    serial: str | None
    missing: list[int]  # group numbers absent between the first and last present

    @property
    def ok(self) -> bool:
        return (
            bool(self.groups)
            and not self.missing
            and all(g.status == "verified" for g in self.groups)
        )


def check_stream(aus: list[AccessUnit]) -> StreamCheck:
    groups: list[Group] = []
    start = 0
    for i, au in enumerate(aus):
        sig = next((s for u in au.units if (s := signature_of(u)) is not None), None)
        if sig is None:
            continue
        groups.append(_check_group(aus, start, i + 1, sig, first_in_file=start == 0))
        start = i + 1
    if start < len(aus):
        groups.append(
            Group(
                "unsigned",
                start,
                len(aus) - start,
                "no signature follows these pictures (cut inside a group, re-encoded, "
                "or not from this kind of unit)",
            )
        )
    for g in groups:
        times = [t for au in aus[g.first_au : g.first_au + g.pictures] if (t := au.time())]
        if times:
            g.utc_us = (times[0].utc_us, times[-1].utc_us)
            g.clock = f"{times[0].clock_state}/{times[0].clock_source}"
    signed = [g for g in groups if g.signature is not None]
    keys = [g.signature.key for g in signed if g.signature is not None]
    key = max(set(keys), key=keys.count) if keys else None
    serial = next(
        (g.signature.serial for g in signed if g.signature and g.signature.key == key), None
    )
    own = []
    for g in signed:
        assert g.signature is not None
        if g.signature.key != key:
            if g.status == "verified":
                g.status = "foreign"
                g.detail = (
                    f"signed by another recording's key {g.signature.key.hex()[:16]} "
                    f"(unit {g.signature.serial}): spliced in"
                )
        else:
            own.append(g)
    _check_links(own)
    present = {g.index for g in own if g.index is not None}
    missing = sorted(set(range(min(present), max(present) + 1)) - present) if present else []
    return StreamCheck(groups, key, serial, missing)


def _check_group(
    aus: list[AccessUnit], start: int, end: int, payload: bytes, first_in_file: bool
) -> Group:
    sig = parse(payload)
    n = end - start
    if sig is None:
        return Group("altered", start, n, "the signature message is damaged")
    if not sig.valid():
        return Group("altered", start, n, "the signature does not verify", sig)
    per_au = [hashed(aus[k].units) for k in range(start, end)]
    got = [h for hs in per_au for h in hs]
    if got == sig.hashes and n == sig.frames:
        return Group("verified", start, n, "", sig)
    if first_in_file and n < sig.frames and sig.hashes[len(sig.hashes) - len(got) :] == got:
        return Group(
            "incomplete",
            start,
            n,
            f"the file starts inside this group: its last {n} of {sig.frames} pictures "
            "match, the rest is not here",
            sig,
        )
    pos = 0
    for k, hs in enumerate(per_au):
        for h in hs:
            if pos >= len(sig.hashes) or sig.hashes[pos] != h:
                t = aus[start + k].time()
                frame = f" (frame {t.frame})" if t else ""
                return Group(
                    "altered",
                    start,
                    n,
                    f"picture {k + 1} of {n}{frame} differs from what was signed",
                    sig,
                )
            pos += 1
    return Group("altered", start, n, f"{len(sig.hashes) - pos} NAL units signed are not here", sig)


def _check_links(own: list[Group]) -> None:
    """Each group names its predecessor: order and gaps show."""
    by_index = {g.index: g for g in own if g.status == "verified"}
    highest = -1
    for g in own:
        sig = g.signature
        assert sig is not None
        if g.status != "verified":
            continue
        if sig.index < highest:
            g.status = "out of order"
            g.detail = f"group {sig.index} comes after group {highest}"
            continue
        highest = sig.index
        before = by_index.get(sig.index - 1)
        if before and before.signature and sig.prev != before.signature.group_hash:
            g.status = "altered"
            g.detail = f"does not follow group {sig.index - 1} as signed"
