"""The checks a court copy makes on its media, done on each packet as the
join hands it to the MP4 muxer (media.join's `tap`), while it is in memory:
the in-stream signatures (what `bodycam verify-media` checks) and the
stream hash (what `ffmpeg -f streamhash` gives). Reading the joined MP4
back for each of them cost a pass over the whole recording apiece.

Both see the packets as the MP4 will hold them. FFmpeg's MP4 muxer stores
an Annex B H.264 picture as its NAL units, each behind a 4-byte length, cut
where `ff_nal_parse_units` cuts them (libavformat/nal.c), and an ADTS AAC
frame without its header (the `aac_adtstoasc` filter it inserts). That is
what mediaread reads from an MP4 and what ffmpeg's streamhash hashes; the
court copy compares this hash with ffmpeg's of the signed MP4, so a
difference between this model and the muxer refuses the copy, never passes it.
"""

from __future__ import annotations

import hashlib

import numpy as np

from capture.gopcheck import StreamChecker, StreamResult
from capture.nal import MAX_AU, LimitExceeded


class NotVideo(Exception):
    """No picture went through the join."""


class InPass:
    """A media.Tap: the in-stream check and per-stream SHA-256 of the packets."""

    def __init__(self) -> None:
        self._checker = StreamChecker()
        self._stopped: str | None = None
        self._video = hashlib.sha256()
        self._audio = hashlib.sha256()
        self._audio_seen = False

    def __call__(self, kind: str, data: bytes | memoryview) -> None:
        if not data:
            return  # the MP4 muxer stores no sample for an empty packet
        if kind == "video":
            self._picture(data)
        elif kind == "audio":
            self._audio_seen = True
            self._audio.update(adts_payload(data))

    def _picture(self, data: bytes | memoryview) -> None:
        units = mp4_nal_units(data)
        size = 0
        for u in units:
            self._video.update(len(u).to_bytes(4, "big"))
            self._video.update(u)
            size += 4 + len(u)
        if self._stopped is not None:
            return  # as a reader of the MP4 stops at the first sample beyond the limits
        try:
            if size > MAX_AU:  # mediaread's limit on an MP4 sample
                raise LimitExceeded(
                    f"picture {self._checker.aus}, an MP4 sample of {size} bytes, is larger "
                    f"than {MAX_AU}, the format's limit for an access unit"
                )
            for u in units:
                unit = _trimmed(u)  # as capture.nal.length_prefixed gives them
                if unit:
                    self._checker.nal(unit)
            self._checker.end_au()
        except LimitExceeded as exc:
            self._stopped = str(exc)

    def in_stream(self) -> StreamResult:
        """What capture.mediacheck.check_stream says of the MP4's pictures."""
        if self._stopped is None and self._checker.aus == 0:
            raise NotVideo("no H.264 pictures in it")
        return self._checker.finish(self._stopped)

    def streamhash(self) -> dict[str, str]:
        """`ffmpeg -i MP4 -map 0:v -map 0:a? -c copy -f streamhash -hash sha256`,
        as steps.StreamHash gives it."""
        out = {"0,v": self._video.hexdigest()}
        if self._audio_seen:
            out["1,a"] = self._audio.hexdigest()
        return out


def _trimmed(unit: bytes | memoryview) -> bytes | memoryview:
    """A unit without trailing zero bytes (a view stays a view when it has none)."""
    return bytes(unit).rstrip(b"\x00") if unit and unit[-1] == 0 else unit


def mp4_nal_units(data: bytes | memoryview) -> list[bytes | memoryview]:
    """An Annex B picture's NAL units as FFmpeg's MP4 muxer writes them
    (ff_nal_parse_units): bytes before the first start code dropped; each
    unit from after its start code's 01 to the next start code, of which a
    zero just before it counts as part (a 4-byte start code); so an empty
    unit is possible and kept, and further zeros stay in the unit."""
    starts = _start_codes(data)  # where each 00 00 01 begins, in order
    end = len(data)
    out: list[bytes | memoryview] = []
    k = 0
    at = _back(data, starts[0], 0) if starts else end
    while True:
        # skip the start code's zeros and its 01 (and any zeros before it)
        while at < end:
            at += 1
            if data[at - 1]:
                break
        if at >= end:
            break
        while k < len(starts) and starts[k] < at:
            k += 1
        stop = _back(data, starts[k], at) if k < len(starts) else end
        out.append(data[at:stop])
        at = stop
    return out


def _start_codes(data: bytes | memoryview) -> list[int]:
    """Every offset of 00 00 01 in `data`: numpy finds the 01s (one byte in
    256 of coded data) and keeps those after two zeros, in under half the
    time bytes.find takes (measured on 16 Mbit/s pictures)."""
    a = np.frombuffer(data, np.uint8)
    ones = np.flatnonzero(a[2:] == 1)
    hits: list[int] = ones[(a[ones] == 0) & (a[ones + 1] == 0)].tolist()
    return hits


def _back(data: bytes | memoryview, i: int, p: int) -> int:
    """ff_nal_find_startcode: a zero just before the 00 00 01 starts it."""
    return i - 1 if p < i and not data[i - 1] else i


def adts_payload(data: bytes | memoryview) -> bytes | memoryview:
    """An AAC frame as the MP4 holds it: the ADTS header (7 bytes, 9 with
    its CRC) off, as aac_adtstoasc takes it off; other bytes as they are."""
    if len(data) >= 7 and data[0] == 0xFF and data[1] & 0xF0 == 0xF0:
        return data[9:] if not data[1] & 1 else data[7:]
    return data
