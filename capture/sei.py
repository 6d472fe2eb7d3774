"""The frame's time inside the H.264 bitstream: one SEI message per picture.

Each access unit gets an SEI NAL unit of payload type 5 (user data
unregistered): the 16-byte `UUID` below, then ASCII text

    bodycam-time/1 utc_us=<int> frame=<int> clock=<state> source=<source>

so the time travels with the picture through any remux (MPEG-TS -> MP4 with
`ffmpeg -c copy`), where container metadata would be lost. `utc_us` is the
frame's capture instant on the unit's clock in microseconds since the Unix
epoch; `frame` counts pictures since the unit's runtime started; `clock` and
`source` say how far the unit vouched for its clock then (docs/FORMAT.md).
The message is inserted just before the picture's first slice, after any
SPS/PPS, as H.264 7.4.1.2.3 orders them.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

UUID = uuid.UUID("b0d1ca4e-5e17-4c1e-9a3f-7e2d1c5b4a69")
MAGIC = b"bodycam-time/1"
_FIELDS = re.compile(rb"^bodycam-time/1 utc_us=(-?\d+) frame=(\d+) clock=([a-z]+) source=([!-~]+)$")
_START = b"\x00\x00\x01"
_VCL = (1, 5)  # coded slice of a non-IDR / IDR picture


@dataclass(frozen=True)
class FrameTime:
    """When a picture was taken, on the unit's clock, and how far to trust it."""

    utc_us: int
    clock_state: str
    clock_source: str


@dataclass(frozen=True)
class FrameSei:
    utc_us: int
    frame: int
    clock_state: str
    clock_source: str


def payload(t: FrameTime, frame: int) -> bytes:
    """UUID + text: what the SEI message carries (and what ffprobe shows)."""
    text = (
        f"bodycam-time/1 utc_us={t.utc_us} frame={frame} clock={t.clock_state} "
        f"source={t.clock_source}"
    )
    return UUID.bytes + text.encode("ascii")


_NEEDS_ESCAPE = re.compile(rb"\x00\x00(?=[\x00-\x03])")


def _escape(rbsp: bytes) -> bytes:
    """Emulation prevention: no 00 00 0x (x <= 3) may appear inside a NAL
    unit, so 03 goes in before the x (the zeros of one match do not count
    towards the next)."""
    if b"\x00\x00" not in rbsp:  # a stamp's text: nothing to escape
        return rbsp
    return _NEEDS_ESCAPE.sub(b"\x00\x00\x03", rbsp)


def unescape(ebsp: bytes) -> bytes:
    return re.sub(rb"\x00\x00\x03(?=[\x00-\x03])", b"\x00\x00", ebsp)


def nal(data: bytes) -> bytes:
    """One SEI NAL unit (4-byte start code) holding user data `data`."""
    body = bytearray([5])  # payload type: user data unregistered
    size = len(data)
    while size >= 255:
        body.append(255)
        size -= 255
    body.append(size)
    body += data
    body.append(0x80)  # rbsp trailing bits
    return b"\x00\x00\x00\x01\x06" + _escape(bytes(body))


def insert(au: bytes, sei_nal: bytes) -> bytes:
    """`au` (Annex B) with `sei_nal` placed before its first slice."""
    i = au.find(_START)
    while i != -1:
        if i + 3 < len(au) and au[i + 3] & 0x1F in _VCL:
            at = i - 1 if i > 0 and au[i - 1] == 0 else i  # the 4-byte form of the start code
            return au[:at] + sei_nal + au[at:]
        i = au.find(_START, i + 3)
    raise ValueError("no coded slice in the access unit")


def stamp(au: bytes, t: FrameTime, frame: int) -> bytes:
    return insert(au, nal(payload(t, frame)))


def parse_payload(data: bytes) -> FrameSei | None:
    """Our message from an SEI's user data (UUID first), or None if not ours."""
    if data[:16] != UUID.bytes:
        return None
    m = _FIELDS.match(data[16:].rstrip(b"\x00"))
    if m is None:
        return None
    return FrameSei(int(m[1]), int(m[2]), m[3].decode(), m[4].decode())


def read(au: bytes) -> list[FrameSei]:
    """Every one of our messages in an Annex B access unit (for checkers)."""
    found = []
    for unit in re.split(rb"\x00\x00\x01", au)[1:]:
        if not unit or unit[0] & 0x1F != 6:
            continue
        rbsp = unescape(unit[1:].rstrip(b"\x00"))
        i = 0
        while i < len(rbsp) and rbsp[i] != 0x80:
            ptype = size = 0
            while rbsp[i] == 255:
                ptype += 255
                i += 1
            ptype += rbsp[i]
            i += 1
            while rbsp[i] == 255:
                size += 255
                i += 1
            size += rbsp[i]
            i += 1
            if ptype == 5:
                got = parse_payload(rbsp[i : i + size])
                if got is not None:
                    found.append(got)
            i += size
    return found
