"""H.264 NAL units and access units from a byte stream, without holding it.

`AnnexB` splits a stream fed in pieces at its start codes; `AccessUnits`
groups the NAL units into access units by the rule of H.264 7.4.1.2.3, so
a raw `.h264` file and an MPEG-TS stream (however its muxer cut it into
PES packets) are read the same way. Nothing here holds more than one NAL
unit and one read; a NAL unit or access unit over `MAX_AU` bytes is beyond
the format's limits (docs/FORMAT.md section 5.2) and stops the reading.
"""

from __future__ import annotations

from typing import Protocol

MAX_AU = 16 * 1024 * 1024
START = b"\x00\x00\x01"
_VCL = frozenset({1, 2, 3, 4, 5})
_NEW_PICTURE = frozenset({1, 2, 5})  # slice types whose header starts with first_mb_in_slice
# after a picture's slices, any of these begins the next access unit (7.4.1.2.3)
_BEGINS_AU = frozenset({6, 7, 8, 9, 14, 15, 16, 17, 18})


class LimitExceeded(ValueError):
    """Input beyond the format's limits; the message says what and where."""


class NalSink(Protocol):
    def nal(self, unit: bytes) -> None: ...

    def end_au(self) -> None: ...


class AnnexB:
    """Splits an Annex B byte stream, fed in any pieces, into NAL units:
    from the header byte to the end, start code and trailing zeros removed
    (the leading zero of a four-byte start code is such a trailing zero)."""

    def __init__(self, sink: AccessUnits) -> None:
        self.sink = sink
        self._carry = bytearray()  # the NAL unit being read (or bytes before any start code)
        self._scan = 0  # where to look for the next start code in the carry
        self._inside = False  # a start code has been seen
        self.offset = 0  # stream bytes consumed before the carry

    def feed(self, data: bytes | memoryview) -> None:
        carry = self._carry
        carry += data
        start = 0
        i = carry.find(START, self._scan)
        with memoryview(carry) as view:
            while i != -1:
                if self._inside:
                    unit = bytes(view[start:i]).rstrip(b"\x00")
                    if unit:
                        self.sink.nal(unit)
                self._inside = True
                start = i + 3
                i = carry.find(START, start)
        if not self._inside:
            start = max(0, len(carry) - 2)  # keep what may begin a start code
        self.offset += start
        del carry[:start]
        self._scan = max(0, len(carry) - 2)
        if len(carry) > MAX_AU:
            raise LimitExceeded(
                f"a NAL unit at stream byte {self.offset} is larger than {MAX_AU} bytes, "
                "the format's limit for an access unit"
            )

    def end(self) -> None:
        if self._inside:
            unit = bytes(self._carry).rstrip(b"\x00")
            if unit:
                self.sink.nal(unit)
        self._carry, self._inside = bytearray(), False
        self.sink.end()


def spans(au: bytes) -> list[tuple[int, int]]:
    """Where the NAL units of one access unit held whole lie, as (start, end):
    the rule `AnnexB` reads a stream by (start code and trailing zeros
    removed, empty units left out), without copying them out."""
    out = []
    i = au.find(START)
    while i != -1:
        a = i + len(START)
        i = au.find(START, a)
        b = len(au) if i == -1 else i
        while b > a and au[b - 1] == 0:
            b -= 1
        if b > a:
            out.append((a, b))
    return out


class AccessUnits:
    """Finds where access units begin in a sequence of NAL units: the first
    SEI, SPS, PPS, delimiter (or types 14-18) after a picture's slices, or a
    slice that starts a new picture (first_mb_in_slice 0: its header's first
    bit is 1). Everything else belongs to the access unit it follows."""

    def __init__(self, sink: NalSink) -> None:
        self.sink = sink
        self._vcl = False  # the current access unit has a slice
        self._any = False  # the current access unit has a NAL unit

    def nal(self, unit: bytes) -> None:
        t = unit[0] & 0x1F
        if self._vcl and (
            t in _BEGINS_AU or (t in _NEW_PICTURE and len(unit) > 1 and unit[1] & 0x80)
        ):
            self.sink.end_au()
            self._vcl = False
        self._any = True
        if t in _VCL:
            self._vcl = True
        self.sink.nal(unit)

    def end(self) -> None:
        if self._any:
            self.sink.end_au()
        self._vcl = self._any = False


def length_prefixed(sample: bytes, size: int, sink: NalSink) -> None:
    """The NAL units of one MP4 sample (`size`-byte big-endian lengths), then
    the end of its access unit: a sample is one access unit."""
    i = 0
    n = len(sample)
    while i + size <= n:
        length = int.from_bytes(sample[i : i + size], "big")
        unit = sample[i + size : i + size + length].rstrip(b"\x00")
        if unit:
            sink.nal(unit)
        i += size + length
    sink.end_au()
