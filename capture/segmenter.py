"""MPEG-TS segments (H.264 + AAC) muxed with PyAV, streamed into a sink.

One recording is one timeline. Frames and PCM arrive stamped on the unit's
monotonic clock; the recording's origin `t0` is its first picture (or its
first sound when there is no camera). Everything before `t0` is dropped, so
a file never starts with sound before its first picture.

Audio. One AAC encoder lives for the whole recording and is fed samples
counted from `t0`: packet k starts exactly at t0 + k * 1024 / rate. A
stretch the microphone lost is filled with silence in place and overlaps are
trimmed, so sound never slides against the picture. The encoder's priming
packet (before `t0`) is dropped. At the end the sound stops at the AAC frame
boundary nearest the last picture's end (within half a frame), so a
recording's files last as long as their pictures.

Rollover. A segment ends at a keyframe at least `segment_us` after its start
at which the audio packet grid meets the picture (within `ALIGN_US`), so the
old file's sound ends and the new file's sound begins at that keyframe's
instant: each file carries the sound of its own pictures and nothing else,
and `ffmpeg -f concat` inserts nothing between them. If no keyframe lines up
within `MAX_EXTRA_US`, the next keyframe is taken (the joint is then off by
at most half an AAC frame). With 16 kHz audio (64 ms frames) and a keyframe
every second, the grids meet every 8 s (`segment_grid_us`), so a segment
length that is not a multiple of that cannot be kept: `segment_problem`
says why, and the configuration refuses it rather than rounding it.

Order. Packets are muxed in time order across both streams, each waiting
(at most `WAIT_US`) for the other to pass it, so a packet always lands in
the file its time belongs to whichever device thread delivered first.

Time in the picture. Each access unit gets an SEI message with the frame's
time on the unit's clock and its frame number (capture/sei.py), inserted as
it is muxed, so the time survives a remux that drops container metadata.

Joins. PyAV starts every file's MPEG-TS continuity counters afresh, which
makes byte-joined files "corrupt" to a decoder; the counters are carried on
across the files of a unit instead (`_TsWriter`), so the files of a
recording joined byte by byte are one valid transport stream.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

import av
import numpy as np

from hal.media import EncodedFrame, PcmChunk

from . import sei
from .gopsign import GopSigner
from .sei import FrameTime

US = Fraction(1, 1_000_000)
TS = 188
NULL_PID = 0x1FFF
AAC_FRAME = 1024
ALIGN_US = 2_000
MAX_EXTRA_US = 10_000_000
WAIT_US = 400_000
SLACK_SAMPLES = 2  # stamp rounding: closer than this is contiguous
# Every packet reaches the sink as it is muxed, not when libavformat's 32 KiB
# buffer fills (seconds at a low bitrate): packets already come in time order,
# so the muxer's own interleaving queue and audio PES batching only hold them
# back, and what is held is lost on a power cut (docs/CAPTURE.md, "Power cuts").
MUX_OPTIONS = {"flush_packets": "1", "max_interleave_delta": "1", "pes_payload_size": "0"}
# The muxer's write buffer: with flush_packets each packet goes on at once, so
# this only sets how many writes a picture takes (one, not one per 32 KiB)
MUX_BUFFER = 1 << 20
# The unit's cameras give a keyframe every second (picamera2 iperiod = fps; the
# simulated camera's GOP is fps frames): where files can be cut.
KEYFRAME_US = 1_000_000


def segment_grid_us(audio_rate: int = 16_000, keyframe_us: int = KEYFRAME_US) -> int:
    """How often a keyframe falls on the AAC frame grid, in microseconds: the
    only instants a file can end with its sound and picture ending together
    (8 s at 16 kHz with a keyframe a second)."""
    aac = Fraction(AAC_FRAME * 1_000_000, audio_rate)
    key = Fraction(keyframe_us)
    # the least common multiple of two rationals in lowest terms
    lcm = Fraction(
        math.lcm(aac.numerator, key.numerator), math.gcd(aac.denominator, key.denominator)
    )
    return int(lcm)


def segment_problem(seconds: float, audio_rate: int = 16_000) -> str | None:
    """Why a segment length cannot be kept as asked (None when it can)."""
    grid = segment_grid_us(audio_rate)
    us = seconds * 1e6
    if us < grid or abs(us - round(us / grid) * grid) > 1:
        return (
            f"must be a multiple of {grid / 1e6:g} s: a file ends at a keyframe (one a second) "
            f"where the {AAC_FRAME * 1000 / audio_rate:g} ms AAC frames meet the picture, "
            f"every {grid / 1e6:g} s"
        )
    return None


@dataclass
class SegmentInfo:
    """What capture knows about a finished segment (the sink adds the rest)."""

    index: int
    start_us: int
    end_us: int
    video_frames: int
    audio_samples: int
    first_frame: int  # running frame count at the segment's first frame
    container: str = "mpegts"
    codecs: list[str] = field(default_factory=lambda: ["h264", "aac"])

    @property
    def duration_us(self) -> int:
        return self.end_us - self.start_us


class SegmentSink(Protocol):
    def write(self, data: bytes | memoryview) -> None: ...

    def close(self, info: SegmentInfo) -> Any: ...


SinkFactory = Callable[[int, int], SegmentSink]  # (segment index, start us)
FrameClock = Callable[[int], FrameTime]  # unit monotonic us -> the frame's time


# a header's fourth byte with `s` added to its counter (the low nibble), for
# each shift s; and a header's second byte reduced to its PID's top bits
_SHIFTED = [bytes((b & 0xF0) | ((b + s) & 0x0F) for b in range(256)) for s in range(16)]
_PID_TOP = bytes(b & 0x1F for b in range(256))


class _TsWriter:
    """The file object PyAV writes a container into. Passes on whole 188-byte
    transport packets, with each PID's continuity counter continuing from
    the unit's previous file (`last`, shared across files)."""

    def __init__(self, sink: SegmentSink, last: dict[int, int]) -> None:
        self.sink, self._last = sink, last
        self._offset: dict[int, int] = {}  # per PID seen in this file: its counters' shift
        self._carry = b""

    def write(self, data: bytes) -> int:
        # one copy, renumbered in place and handed on as a view: each copy of
        # a frame is a mapping and its page faults in the recorder (firmware/heap.py)
        buf = bytearray(self._carry)
        buf += data
        whole = len(buf) - len(buf) % TS
        self._carry = bytes(buf[whole:])
        if whole:
            del buf[whole:]
            self._renumber(buf)
            self.sink.write(memoryview(buf))
        return len(data)

    def _renumber(self, buf: bytearray) -> None:
        """Shift the counters of the whole packets in `buf`, in place. A
        muxer's write is one picture's or one sound's packets, sometimes after
        the tables (PAT, PMT): packet by packet until the rest is one PID's,
        then one shift for all of those, by a byte map over every header's
        fourth byte (no loop over a picture's packets)."""
        top, low = buf[1::TS].translate(_PID_TOP), buf[2::TS]
        for k in range(len(top)):
            pid = top[k] << 8 | low[k]
            rest_top, rest_low = top[k:], low[k:]
            if rest_top.count(top[k]) == len(rest_top) and rest_low.count(low[k]) == len(rest_low):
                if pid != NULL_PID:
                    at = k * TS + 3
                    buf[at::TS] = buf[at::TS].translate(_SHIFTED[self._shift(pid, buf[at])])
                    self._last[pid] = buf[-TS + 3] & 0x0F
                return
            if pid != NULL_PID:
                at = k * TS + 3
                buf[at] = _SHIFTED[self._shift(pid, buf[at])][buf[at]]
                self._last[pid] = buf[at] & 0x0F

    def _shift(self, pid: int, head: int) -> int:
        """The shift of `pid`'s counters in this file, set by its first packet
        (header byte `head`): it follows the unit's previous packet of that
        PID, or starts at 0. A packet without payload repeats the counter."""
        off = self._offset.get(pid)
        if off is None:
            prev = self._last.get(pid)
            want = 0 if prev is None else (prev + (head >> 4 & 1)) & 0x0F
            off = self._offset[pid] = (want - (head & 0x0F)) & 0x0F
        return off

    def flush(self) -> None:
        if self._carry:  # never expected: the muxer writes whole packets
            self.sink.write(self._carry)
            self._carry = b""


# Debian's PyAV 10 (the unit's, for picamera2) cannot set a packet's key flag
# (settable since PyAV 11); the muxer and the demuxer find H.264 keyframes anyway.
_KEY_SETTABLE = int(av.__version__.split(".")[0]) >= 11
_ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)


def _adts(payload: bytes, rate: int) -> bytes:
    """One raw AAC-LC mono frame with its 7-byte ADTS header: MPEG-TS carries
    AAC as ADTS, and with the header in every packet the muxer needs no
    extradata (PyAV < 13 cannot set it on a muxer's stream)."""
    n = len(payload) + 7
    sf = _ADTS_RATES.index(rate)
    return (
        bytes(
            (
                0xFF,
                0xF1,
                0x40 | (sf << 2),
                0x40 | (n >> 11),
                (n >> 3) & 0xFF,
                ((n & 7) << 5) | 0x1F,
                0xFC,
            )
        )
        + payload
    )


def _new_aac(rate: int) -> Any:
    enc = av.CodecContext.create("aac", "w")
    enc.sample_rate = rate
    enc.layout = "mono"
    enc.format = "fltp"
    enc.time_base = Fraction(1, rate)
    enc.open()
    return enc


class Segmenter:
    def __init__(
        self,
        open_sink: SinkFactory,
        *,
        segment_us: int,
        width: int,
        height: int,
        fps: int,
        audio_rate: int = 16_000,
        frame_time: FrameClock | None = None,
    ) -> None:
        self._open_sink = open_sink
        self.frame_time = frame_time
        self.unstamped = 0  # frames muxed without their SEI (no slice found in them)
        # set by the recorder for one recording (start to stop, across pauses)
        self.signer: GopSigner | None = None
        self.segment_us = segment_us
        self.width, self.height, self.fps = width, height, fps
        self.rate = audio_rate
        self.frame_us = 1_000_000 // fps
        self.aac_us = AAC_FRAME * 1_000_000 // audio_rate
        self.index = 0
        self.frames_total = 0
        # told what each file's sink returned as the file closed (no list is
        # kept here: a recorder's would grow for the whole shift)
        self.on_closed: Callable[[Any], None] | None = None
        # told (kind "v"/"a", media us) of every packet as it goes into a file:
        # what a power-cut test measures the loss against
        self.on_mux: Callable[[str, int], None] | None = None
        self.video_on = True
        self.audio_on = True
        self._cc: dict[int, int] = {}  # continuity counters, carried across files
        self._container: Any = None
        self._info: SegmentInfo | None = None
        self._roll_asap = False
        self._reset()

    def _reset(self) -> None:
        """Per-recording state."""
        self._t0: int | None = None
        self._aenc: Any = None
        self._pcm = np.zeros(0, np.float32)
        self._fed = 0  # samples given to the encoder since t0 (silence included)
        self._early: deque[PcmChunk] = deque()  # audio that came before t0 was known
        self._vq: deque[EncodedFrame] = deque()
        self._aq: deque[tuple[int, Any]] = deque()
        self._a_next_us = 0  # no audio packet still to come starts before this
        self._v_seen_us: int | None = None  # pts of the last frame handed in
        self._v_end_us: int | None = None  # end of the last frame muxed
        self._closing = False

    # -- input -------------------------------------------------------------------------

    @property
    def recording(self) -> bool:
        return self._t0 is not None

    def set_media(self, video: bool | None = None, audio: bool | None = None) -> None:
        """Which media are expected (a dead device must not hold the other back)."""
        if video is not None:
            self.video_on = video
        if audio is not None:
            self.audio_on = audio
        self._drain()

    def video(self, frame: EncodedFrame) -> None:
        if self._t0 is None:
            if not frame.keyframe:
                return  # a recording starts at a keyframe
            self._begin(frame.pts_us)
        if self._v_seen_us is not None and frame.pts_us <= self._v_seen_us:
            return  # never backwards: the muxer would refuse the file
        self._v_seen_us = frame.pts_us
        self._vq.append(frame)
        self._drain()

    def audio(self, chunk: PcmChunk) -> None:
        if self._t0 is None:
            if self.video_on:
                self._early.append(chunk)  # the first picture may still be on its way
                while self._early and chunk.pts_us - self._early[0].pts_us > 2_000_000:
                    self._early.popleft()
                return
            self._begin(chunk.pts_us)
        self._feed(chunk)
        self._drain()

    def rollover_at_next_keyframe(self) -> None:
        """Start a new file at the next keyframe, wherever the audio grid is
        (the camera back after a restart, into a file begun without a picture
        track). The sound packet that would run past that keyframe begins the
        new file instead, so the two files meet without overlapping."""
        self._roll_asap = self.recording

    def close(self) -> Any:
        """End the recording: the last sound up to the last picture, then seal."""
        if self._t0 is not None:
            self._finish_audio()
            self._closing = True  # the last pictures end this file, never start a new one
            self._drain(final=True)
        result = self._close()
        self._roll_asap = False
        self._reset()
        return result

    # -- audio -----------------------------------------------------------------------------

    def _begin(self, t0: int) -> None:
        self._t0 = t0
        self._a_next_us = t0
        if self.audio_on:
            self._aenc = _new_aac(self.rate)
        early, self._early = self._early, deque()
        for c in early:
            self._feed(c)

    def _feed(self, chunk: PcmChunk) -> None:
        if self._aenc is None or self._t0 is None:
            return
        x = np.frombuffer(chunk.data, "<i2").astype(np.float32) / 32768
        due = self._fed + len(self._pcm)  # the next sample's index from t0
        at = round((chunk.pts_us - self._t0) * self.rate / 1_000_000)
        if at + len(x) <= due:
            return  # all before what we have (or before t0)
        if at > due + SLACK_SAMPLES:
            x = np.concatenate([np.zeros(at - due, np.float32), x])  # a lost stretch: silence
        elif at < due - SLACK_SAMPLES:
            x = x[due - at :]  # overlap (or before t0): keep what is new
        self._pcm = np.concatenate([self._pcm, x])
        while len(self._pcm) >= AAC_FRAME:
            self._encode(self._pcm[:AAC_FRAME])
            self._pcm = self._pcm[AAC_FRAME:]

    def _encode(self, samples: np.ndarray | None) -> None:
        if samples is None:
            frame = None
        else:
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="fltp", layout="mono")
            frame.sample_rate = self.rate
            frame.pts = self._fed
            frame.time_base = Fraction(1, self.rate)
            self._fed += len(samples)
        assert self._t0 is not None
        for pkt in self._aenc.encode(frame):
            if pkt.pts is None or pkt.pts < 0:
                continue  # the encoder's priming, from before the first picture
            t_us = self._t0 + pkt.pts * 1_000_000 // self.rate
            self._aq.append((t_us, pkt))
            self._a_next_us = self._t0 + (pkt.pts + AAC_FRAME) * 1_000_000 // self.rate

    def _finish_audio(self) -> None:
        """Flush the encoder, keeping no sound past the last picture."""
        if self._aenc is None:
            return
        if len(self._pcm):  # the last partial frame, completed with silence
            self._encode(
                np.concatenate([self._pcm, np.zeros(AAC_FRAME - len(self._pcm), np.float32)])
            )
            self._pcm = np.zeros(0, np.float32)
        self._encode(None)
        self._aenc = None
        if self.video_on and self._v_seen_us is not None:
            # the sound ends at the AAC frame boundary nearest the last picture's end:
            # within half a frame (32 ms at 16 kHz) of it, never a whole frame off
            end = self._v_seen_us + self.frame_us
            self._aq = deque((t, p) for t, p in self._aq if t + self.aac_us // 2 <= end)
        self._a_next_us = 1 << 62

    # -- muxing in time order ------------------------------------------------------------------

    def _drain(self, final: bool = False) -> None:
        while self._vq or self._aq:
            v = self._vq[0] if self._vq else None
            a = self._aq[0] if self._aq else None
            if a is not None and (v is None or a[0] + ALIGN_US < v.pts_us):
                if not (final or self._audio_may_go(a[0])):
                    return
                self._aq.popleft()
                if self._roll_before(v, a[0]):
                    self._close()
                    self._open(a[0])
                self._mux_audio(*a)
            else:
                assert v is not None
                if not (final or (self._video_may_go(v) and self._group_end_known())):
                    return
                self._vq.popleft()
                # the picture before a keyframe, or the last one, ends its group
                self._mux_video(v, last=not self._vq or self._vq[0].keyframe)

    def _roll_before(self, v: EncodedFrame | None, t_us: int) -> bool:
        """A roll is asked for at keyframe `v` and the sound packet at `t_us`
        would end past it: the new file begins with that packet."""
        return (
            self._roll_asap
            and self.video_on
            and self._info is not None
            and v is not None
            and v.keyframe
            and t_us + self.aac_us > v.pts_us + ALIGN_US
        )

    def _audio_may_go(self, t_us: int) -> bool:
        """No frame still to come can start a new file at or before `t_us`."""
        if not self.video_on:
            return True
        if self._v_seen_us is None:
            return False
        waited = self._aq[-1][0] - self._aq[0][0]
        return t_us + ALIGN_US < self._v_seen_us + self.frame_us or waited > WAIT_US

    def _video_may_go(self, v: EncodedFrame) -> bool:
        """No audio still to come belongs before this frame."""
        if self._aenc is None:
            return True
        waited = self._vq[-1].pts_us - v.pts_us
        return self._a_next_us + ALIGN_US >= v.pts_us or waited > WAIT_US

    def _group_end_known(self) -> bool:
        """A signed picture waits for the next one: only then is it known
        whether it ends its group (and so carries the group's signature)."""
        return self.signer is None or not self.video_on or len(self._vq) >= 2

    def _roll_due(self, t_us: int, start_us: int) -> bool:
        if self._closing:
            return False
        if self._roll_asap:
            return True
        elapsed = t_us - start_us
        if elapsed < self.segment_us:
            return False
        if self._as is None or elapsed >= self.segment_us + MAX_EXTRA_US:
            return True
        assert self._t0 is not None
        r = (t_us - self._t0) * self.rate % (AAC_FRAME * 1_000_000)
        off = min(r, AAC_FRAME * 1_000_000 - r) // self.rate
        return off <= ALIGN_US

    def _mux_video(self, frame: EncodedFrame, last: bool = True) -> None:
        info = self._info
        if info is None:
            self._open(frame.pts_us)
        elif frame.keyframe and self._roll_due(frame.pts_us, info.start_us):
            self._close()
            self._open(frame.pts_us)
        info = self._info
        assert info is not None
        if self._vs is None:
            return  # the file was opened without a picture (camera back after a fault)
        data = frame.data
        if self.frame_time is not None:
            try:
                data = sei.stamp(data, self.frame_time(frame.pts_us), self.frames_total)
            except ValueError:
                self.unstamped += 1  # kept as it came: a picture is never dropped for this
        if self.signer is not None:
            data = self.signer.sign_au(data, self.frames_total, last)
        p = av.Packet(data)
        p.stream = self._vs
        p.time_base = US
        p.pts = p.dts = frame.pts_us
        if _KEY_SETTABLE:
            p.is_keyframe = frame.keyframe
        self._container.mux(p)
        if self.on_mux is not None:
            self.on_mux("v", frame.pts_us)
        info.video_frames += 1
        info.end_us = frame.pts_us + self.frame_us
        self.frames_total += 1
        self._v_end_us = info.end_us

    def _mux_audio(self, t_us: int, pkt: Any) -> None:
        info = self._info
        if info is None:
            if self.video_on:
                return  # no picture yet to start a file with
            self._open(t_us)
        elif not self.video_on and self._roll_due(t_us, info.start_us):
            self._close()
            self._open(t_us)
        info = self._info
        assert info is not None
        if self._as is None:
            return
        pkt = av.Packet(_adts(bytes(pkt), self.rate))
        pkt.stream = self._as
        pkt.time_base = US
        pkt.pts = pkt.dts = t_us
        self._container.mux(pkt)
        if self.on_mux is not None:
            self.on_mux("a", t_us)
        info.audio_samples += AAC_FRAME
        info.end_us = max(info.end_us, t_us + self.aac_us)

    # -- files ----------------------------------------------------------------------------------

    def _open(self, start_us: int) -> None:
        self.index += 1
        sink = self._open_sink(self.index, start_us)
        self._writer = _TsWriter(sink, self._cc)
        c = av.open(
            self._writer, "w", "mpegts", container_options=MUX_OPTIONS, buffer_size=MUX_BUFFER
        )
        self._vs: Any = None
        self._as: Any = None
        codecs = []
        if self.video_on:
            self._vs = c.add_stream("h264", rate=self.fps)
            self._vs.width, self._vs.height = self.width, self.height
            codecs.append("h264")
        if self._aenc is not None:
            self._as = c.add_stream("aac", rate=self.rate, layout="mono")
            codecs.append("aac")
        self._container = c
        self._info = SegmentInfo(
            self.index, start_us, start_us, 0, 0, self.frames_total, codecs=codecs
        )
        self._roll_asap = False

    def _close(self) -> Any:
        if self._container is None:
            return None
        self._container.close()  # flushes the muxer into the writer
        self._writer.flush()
        info = self._info
        assert info is not None
        self._container = None
        self._info = None
        result = self._writer.sink.close(info)
        if self.on_closed is not None:
            self.on_closed(result)
        return result

    @property
    def open(self) -> bool:
        return self._container is not None

    @property
    def current(self) -> SegmentInfo | None:
        return self._info
