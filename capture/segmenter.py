"""MPEG-TS segments (H.264 + AAC) muxed with PyAV, streamed into a sink.

The video is muxed as it comes from the camera (never re-encoded). Audio is
encoded once by one AAC encoder that lives across segments, so rollover adds
no priming gap; timestamps run on across segments, so concatenated segments
play as one recording. A segment rolls over only at a keyframe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

import av
import numpy as np

from hal.media import EncodedFrame, PcmChunk

US = Fraction(1, 1_000_000)


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
    def write(self, data: bytes) -> None: ...

    def close(self, info: SegmentInfo) -> Any: ...


SinkFactory = Callable[[int], SegmentSink]


class _Writer:
    """The file object PyAV writes the container into."""

    def __init__(self, sink: SegmentSink) -> None:
        self.sink = sink

    def write(self, data: bytes) -> int:
        self.sink.write(bytes(data))
        return len(data)


class Segmenter:
    def __init__(self, open_sink: SinkFactory, *, segment_us: int, width: int, height: int,
                 fps: int, audio_rate: int = 16_000) -> None:
        self._open_sink = open_sink
        self.segment_us = segment_us
        self.width, self.height, self.fps = width, height, fps
        self.rate = audio_rate
        self._aenc = av.CodecContext.create("aac", "w")
        self._aenc.sample_rate = audio_rate
        self._aenc.layout = "mono"
        self._aenc.format = "fltp"
        self._aenc.time_base = Fraction(1, audio_rate)
        self._aenc.open()
        self._pcm = np.zeros(0, np.float32)
        self._pcm_next_us: int | None = None
        self._apts = 0  # samples fed to the encoder
        self._a0_us = 0  # media time of audio sample 0
        self.index = 0
        self.frames_total = 0
        self._container: Any = None
        self._info: SegmentInfo | None = None
        self.closed: list[Any] = []

    # -- segments ---------------------------------------------------------------

    def _open(self, start_us: int) -> None:
        self.index += 1
        sink = self._open_sink(self.index)
        self._writer = _Writer(sink)
        c = av.open(self._writer, "w", format="mpegts")
        self._vs = c.add_stream("h264", rate=self.fps)
        self._vs.width, self._vs.height = self.width, self.height
        self._as = c.add_stream("aac", rate=self.rate)
        self._as.codec_context.extradata = self._aenc.extradata
        self._container = c
        self._info = SegmentInfo(self.index, start_us, start_us, 0, 0, self.frames_total)

    def _close(self) -> Any:
        if self._container is None:
            return None
        self._container.close()  # flushes the muxer into the sink
        info = self._info
        assert info is not None
        self._container = None
        result = self._writer.sink.close(info)
        self.closed.append(result)
        return result

    @property
    def open(self) -> bool:
        return self._container is not None

    def video(self, frame: EncodedFrame) -> None:
        info = self._info
        if self._container is None:
            if not frame.keyframe:
                return  # a segment starts at a keyframe; until then nothing to write to
            self._open(frame.pts_us)
            if self._pcm_next_us is None:
                self._a0_us = frame.pts_us
        elif (frame.keyframe and info is not None
              and frame.pts_us - info.start_us >= self.segment_us):
            self._close()
            self._open(frame.pts_us)
        info = self._info
        assert info is not None
        p = av.Packet(frame.data)
        p.stream = self._vs
        p.time_base = US
        p.pts = p.dts = frame.pts_us
        p.is_keyframe = frame.keyframe
        self._container.mux(p)
        info.video_frames += 1
        info.end_us = frame.pts_us + 1_000_000 // self.fps
        self.frames_total += 1

    def audio(self, chunk: PcmChunk) -> None:
        """Audio for the open segment (dropped when none is open)."""
        if self._container is None:
            return
        if self._pcm_next_us is None:
            self._pcm_next_us = chunk.pts_us
            self._a0_us = chunk.pts_us
        x = np.frombuffer(chunk.data, "<i2").astype(np.float32) / 32768
        self._pcm = np.concatenate([self._pcm, x])
        size = self._aenc.frame_size
        while len(self._pcm) >= size:
            self._encode(self._pcm[:size])
            self._pcm = self._pcm[size:]

    def _encode(self, samples: np.ndarray | None) -> None:
        if samples is None:
            frame = None
        else:
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="fltp",
                                               layout="mono")
            frame.sample_rate = self.rate
            frame.pts = self._apts
            frame.time_base = Fraction(1, self.rate)
            self._apts += len(samples)
        for pkt in self._aenc.encode(frame):
            if self._container is None or pkt.pts is None:
                continue
            t_us = self._a0_us + pkt.pts * 1_000_000 // self.rate
            pkt.stream = self._as
            pkt.time_base = US
            pkt.pts = pkt.dts = t_us
            self._container.mux(pkt)
            assert self._info is not None
            self._info.audio_samples += self._aenc.frame_size

    def close(self) -> Any:
        """End the recording: flush audio, close the last segment."""
        if self._container is not None:
            self._encode(None)
        return self._close()

    def reset_audio(self) -> None:
        """A new recording: audio restarts with the next segment (fresh encoder)."""
        self._aenc = av.CodecContext.create("aac", "w")
        self._aenc.sample_rate = self.rate
        self._aenc.layout = "mono"
        self._aenc.format = "fltp"
        self._aenc.time_base = Fraction(1, self.rate)
        self._aenc.open()
        self._pcm = np.zeros(0, np.float32)
        self._pcm_next_us = None
        self._apts = 0
