"""Join a recording's decrypted MPEG-TS segments into one MP4, losslessly.

Every recorded packet is copied as it is (no decode, no re-encode), so the
pictures keep the in-stream signatures (docs/FORMAT.md section 5.2) and
`bodycam verify-media` still verifies the MP4. The segments' timestamps are
the unit's monotonic clock, so a pause stays a real gap: the picture before
it is shown for the length of the pause, and the MP4 lasts as long as the
recording did.

The MP4's own metadata (title, creation_time, location, make, model,
comment; R20) is written as QuickTime metadata keys (`use_metadata_tags`),
the only way ffmpeg's muxer keeps `make` and `model`; `ffprobe` lists them.

Sound: MP4 players that play audio samples back to back instead of at their
timestamps would run the sound ahead of the picture after every pause. So
the audio gap of a pause is filled with encoded silence, placed to end
exactly where the recorded sound resumes; what is left (under one AAC frame,
64 ms at 16 kHz) stays a gap. Each filled stretch is returned so the report
and the C2PA manifest say where sound was added that was never recorded.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO

import av
import numpy as np

TS_HZ = 90_000  # MPEG-TS timestamps: the unit's monotonic clock at 90 kHz


# The MP4's index (moov) goes at the front, so a player can start before the
# whole file is read. When the caller says how much the parts hold, room for
# it is kept there as the file is written (`moov_size`); otherwise ffmpeg's
# faststart moves it by rewriting the whole file once more. An index takes
# 4-32 bytes a packet (sizes, offsets, times, key frames); 8.5 measured.
MOOV_BYTES_PER_PACKET = 32
MOOV_BYTES_FIXED = 256 << 10  # tags, chapters, the stream headers
MOOV_ROOM_MAX = 64 << 20  # beyond this (10 hours), faststart: the room would be waste
READ_BUFFER = 1 << 20  # what PyAV asks of a part per read: one Python call a MiB, not 32 KiB


class JoinError(Exception):
    """The segments cannot be joined (one is unreadable or has no picture)."""


class IndexOutgrewRoom(JoinError):
    """The index did not fit the room kept for it: the parts held more than
    their records said. Join again with `holds=None`."""


@dataclass(frozen=True)
class Holds:
    """What the parts hold, as their records say (read before the join)."""

    video_frames: int
    span_us: int  # first picture to last sound, pauses included (silence fills them)


@dataclass(frozen=True)
class Chapter:
    at_us: int  # on the unit's monotonic clock, like the chain's mono_us
    title: str
    record: int | None = None  # the chain record it marks


@dataclass(frozen=True)
class Filled:
    """Silence added where nothing was recorded, on the MP4's own time line."""

    from_us: int
    to_us: int


@dataclass(frozen=True)
class Joined:
    path: Path
    origin_us: int  # the unit's monotonic time of the MP4's 0
    duration_us: int
    video_packets: int
    audio_packets: int
    filled: tuple[Filled, ...]
    codecs: tuple[str, ...] = ()  # as the streams name them: h264, aac


# a segment file, or its bytes made on demand; those of one part may be
# reused (a decrypting process's buffer) once the next part is asked for
Part = Path | Callable[[], bytes | memoryview]
# sees each packet's kind ("video", "audio") and bytes just before the muxer
# takes it, so checks can run on the data while it is in memory (steps.py)
Tap = Callable[[str, memoryview], None]  # a view of the packet, valid during the call


def join(
    parts: Sequence[Part],
    out: Path,
    chapters: list[Chapter],
    metadata: Mapping[str, str] | None = None,
    tap: Tap | None = None,
    holds: Holds | None = None,
) -> Joined:
    """Copy every packet of `parts` (in order) into the MP4 `out`. A part
    given as a function is called when its turn comes, so a dock decrypts
    one segment at a time into memory and never writes plaintext to disk.
    `metadata`: the container's own tags (title, creation_time, location,
    make, model, comment); `tap`: given every packet muxed, silence included;
    `holds`: what the parts hold, so the index's room is kept at the front
    (IndexOutgrewRoom if they held more)."""
    first, origin = _first(parts)
    with _open(first, 0) as c:
        vt, at = c.streams.video[0], c.streams.audio[0] if c.streams.audio else None
        rate = at.codec_context.sample_rate if at is not None else 0
        room = _moov_room(holds, rate)
        options = (
            {"movflags": "+use_metadata_tags", "moov_size": str(room)}
            if room
            else {"movflags": "+faststart+use_metadata_tags"}
        )
        dst = av.open(str(out), "w", format="mp4", options=options)
        try:
            dst.metadata.update(metadata or {})  # before the header is written
            ov = dst.add_stream_from_template(vt)
            oa = dst.add_stream_from_template(at) if at is not None else None
            codecs = tuple(str(x.codec_context.name) for x in (vt, at) if x is not None)
            layout = at.codec_context.layout.name if at is not None else ""
            silence = _Silence(rate, layout) if at else None
            muxer = _Muxer(dst, ov, oa, silence, origin, tap=tap)
            muxer.copy(c)
        except BaseException:
            dst.close()
            raise
    del first  # closed before the next part is asked for: its bytes may be reused (Part)
    closed = False
    try:
        for i, part in enumerate(parts[1:], 1):
            with _open(_load(part, i), i) as more:
                muxer.copy(more)
        dst.set_chapters(_chapters(chapters, origin, muxer.end))
        closed = True
        try:
            dst.close()  # writes the index
        except av.error.ArgumentError:
            if not room:
                raise
            raise IndexOutgrewRoom(
                f"the index outgrew the {room} bytes kept for it: "
                f"the segments held more than their records say"
            ) from None
    finally:
        if not closed:
            dst.close()
    return Joined(
        out,
        origin * 1_000_000 // TS_HZ,
        muxer.end * 1_000_000 // TS_HZ,
        muxer.counts["video"],
        muxer.counts["audio"],
        tuple(muxer.filled),
        codecs,
    )


def _moov_room(holds: Holds | None, rate: int) -> int:
    """Bytes to keep at the front for the index; 0: none (faststart)."""
    if holds is None:
        return 0
    aac_frames = -(-holds.span_us * rate // (1024 * 1_000_000))
    room = MOOV_BYTES_FIXED + MOOV_BYTES_PER_PACKET * (holds.video_frames + aac_frames)
    return room if room <= MOOV_ROOM_MAX else 0


def _first(parts: Sequence[Part]) -> tuple[bytes | memoryview, int]:
    """The first part, loaded, and its first picture's time: where the time line starts."""
    if not parts:
        raise JoinError("no segments to join")
    first = _load(parts[0], 0)
    with _open(first, 0) as c:
        if not c.streams.video:
            raise JoinError("the first segment has no picture")
        return first, _first_pts(c)


def remux(
    parts: Sequence[Part],
    sink: IO[bytes],
    fmt: str = "nut",
    pace: Callable[[int], None] | None = None,
) -> None:
    """Every packet of `parts` (in order) on one time line, as join() lays
    them (pauses kept as gaps, their sound filled with silence), into the
    stream `sink` as `fmt`: a pipe to an encoder (dock/courtcopy/stream.py),
    nothing on disk. `pace(ticks)` is called before each packet is written."""
    first, origin = _first(parts)
    dst = av.open(_WriteOnly(sink), "w", format=fmt)
    try:
        with _open(first, 0) as c:
            vt, at = c.streams.video[0], c.streams.audio[0] if c.streams.audio else None
            ov = dst.add_stream_from_template(vt)
            oa = dst.add_stream_from_template(at) if at is not None else None
            rate = at.codec_context.sample_rate if at is not None else 0
            layout = at.codec_context.layout.name if at is not None else ""
            silence = _Silence(rate, layout) if at else None
            muxer = _Muxer(dst, ov, oa, silence, origin, pace)
            muxer.copy(c)
        del first  # closed before the next part is asked for (Part)
        for i, part in enumerate(parts[1:], 1):
            with _open(_load(part, i), i) as more:
                muxer.copy(more)
    finally:
        dst.close()


class _WriteOnly:
    """A pipe as PyAV sees it: written in order, never sought."""

    def __init__(self, sink: IO[bytes]) -> None:
        self._sink = sink

    def write(self, data: bytes) -> int:
        self._sink.write(data)
        return len(data)

    def flush(self) -> None:
        self._sink.flush()


def _load(part: Part, i: int) -> bytes | memoryview:
    return part.read_bytes() if isinstance(part, Path) else part()


def _open(data: bytes | memoryview, i: int) -> av.container.InputContainer:
    try:
        return av.open(_Reader(data), mode="r", format="mpegts", buffer_size=READ_BUFFER)
    except av.FFmpegError as exc:
        raise JoinError(f"segment {i + 1}: not readable as MPEG-TS: {exc}") from None


class _Reader:
    """A part's bytes as PyAV reads a file, without copying them whole (as
    io.BytesIO would a memoryview)."""

    def __init__(self, data: bytes | memoryview) -> None:
        self._data, self._at = memoryview(data), 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n < 0 else min(len(self._data), self._at + n)
        out = self._data[self._at : end].tobytes() if end > self._at else b""
        self._at = max(self._at, end)
        return out

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: len(self._data)}[whence]
        if base + offset < 0:
            raise ValueError("a seek before the start")
        self._at = base + offset
        return self._at

    def tell(self) -> int:
        return self._at


class _Muxer:
    """Packets of one segment after another into the MP4, on one time line."""

    def __init__(
        self,
        dst: av.container.OutputContainer,
        video: av.VideoStream,
        audio: av.AudioStream | None,
        silence: _Silence | None,
        origin: int,
        pace: Callable[[int], None] | None = None,
        tap: Tap | None = None,
    ) -> None:
        self.dst, self.video, self.audio, self.silence = dst, video, audio, silence
        self.origin = origin
        self.pace = pace  # called with each packet's time (90 kHz, from 0) before it goes out
        self.tap = tap
        self.counts = {"video": 0, "audio": 0}
        self.filled: list[Filled] = []
        self.audio_end: int | None = None  # 90 kHz, where the last audio packet ends
        self.end = 0
        self.wrap = 0  # TS time wraps every 2^33 ticks (26.5 h of the unit's uptime)

    def copy(self, c: av.container.InputContainer) -> None:
        entered = False
        for pkt in c.demux():
            if pkt.dts is None or pkt.pts is None:
                continue  # the demuxer's flush packets
            if not entered:
                entered = True
                if pkt.dts + self.wrap < self.origin + self.end - 2**32:
                    self.wrap += 2**33
            pkt.pts += self.wrap
            pkt.dts += self.wrap
            kind = pkt.stream.type
            if kind == "video":
                pkt.stream = self.video
            elif kind == "audio" and self.audio is not None and self.silence is not None:
                s = self.silence
                if self.audio_end is not None and pkt.pts - self.audio_end >= s.ticks:
                    self.filled.append(
                        s.fill(
                            self._put, self.audio, bytes(pkt), self.audio_end, pkt.pts, self.origin
                        )
                    )
                self.audio_end = pkt.pts + (pkt.duration or s.ticks)
                pkt.stream = self.audio
            else:
                continue
            pkt.pts -= self.origin
            pkt.dts -= self.origin
            if pkt.pts < 0:
                raise JoinError("a packet lies before the recording's first picture")
            self.end = max(self.end, pkt.pts + (pkt.duration or 0))
            if self.pace is not None:
                self.pace(pkt.dts)
            self._put(kind, pkt)
            self.counts[kind] += 1

    def _put(self, kind: str, pkt: av.Packet) -> None:
        if self.tap is not None:
            with memoryview(pkt) as data:  # released before mux(), which takes the packet's data
                self.tap(kind, data)
        self.dst.mux(pkt)


def _first_pts(c: av.container.InputContainer) -> int:
    """The earliest timestamp in a segment's first packets (video or audio)."""
    seen: list[int] = []
    for pkt in c.demux():
        if pkt.pts is not None:
            seen.append(pkt.pts)
        if len(seen) >= 16:
            break
    if not seen:
        raise JoinError("a segment holds no packets")
    return min(seen)


def _chapters(chapters: list[Chapter], origin: int, end: int) -> list[av.container.Chapter]:
    places = sorted((max(0, ch.at_us * TS_HZ // 1_000_000 - origin), ch.title) for ch in chapters)
    out: list[av.container.Chapter] = []
    for i, (start, title) in enumerate(places):
        stop = places[i + 1][0] if i + 1 < len(places) else end
        out.append(
            {
                "id": i + 1,
                "start": start,
                "end": max(start, stop),
                "time_base": Fraction(1, TS_HZ),
                "metadata": {"title": title},
            }
        )
    return out


class _Silence:
    """Encoded AAC silence in the recording's own format (rate, layout)."""

    def __init__(self, rate: int, layout: str) -> None:
        enc = av.CodecContext.create("aac", "w")
        enc.sample_rate, enc.layout, enc.format = rate, layout, "fltp"
        enc.time_base = Fraction(1, rate)
        enc.open()
        channels = len(enc.layout.channels)
        packets: list[av.Packet] = []
        for i in range(4):  # past the encoder's priming: a steady silent frame
            frame = av.AudioFrame.from_ndarray(
                np.zeros((channels, 1024), np.float32), format="fltp", layout=layout
            )
            frame.sample_rate, frame.pts = rate, i * 1024
            packets.extend(enc.encode(frame))
        if not packets:
            raise JoinError("the AAC encoder gave no packet for silence")
        self.payload = bytes(packets[-1])
        self.ticks = 1024 * TS_HZ // rate

    def fill(
        self,
        put: Callable[[str, av.Packet], None],
        stream: av.AudioStream,
        like: bytes,
        start: int,
        stop: int,
        origin: int,
    ) -> Filled:
        # aligned on the resumed sound: it is heard on time even by a player
        # that counts samples; the remainder (< one frame) stays a gap
        n = (stop - start) // self.ticks
        first = stop - n * self.ticks
        frame = _adts(like, self.payload)
        for k in range(n):
            pkt = av.Packet(frame)
            pkt.stream = stream
            pkt.time_base = Fraction(1, TS_HZ)
            pkt.pts = pkt.dts = first + k * self.ticks - origin
            pkt.duration = self.ticks
            put("audio", pkt)
        return Filled((first - origin) * 1_000_000 // TS_HZ, (stop - origin) * 1_000_000 // TS_HZ)


def _adts(like: bytes, payload: bytes) -> bytes:
    """`payload` behind a copy of a recorded packet's ADTS header (so the same
    profile, rate and channels), with the frame length set to its own. The
    segments carry AAC in ADTS, and the MP4 muxer takes every packet as such."""
    if len(like) < 7 or like[0] != 0xFF or like[1] & 0xF6 != 0xF0 or not like[1] & 1:
        raise JoinError("the recorded sound is not AAC in ADTS without CRC")
    size = 7 + len(payload)
    head = bytearray(like[:7])
    head[3] = (head[3] & 0xFC) | (size >> 11)
    head[4] = (size >> 3) & 0xFF
    head[5] = ((size & 7) << 5) | (head[5] & 0x1F)
    return bytes(head) + payload
