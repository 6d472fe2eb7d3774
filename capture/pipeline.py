"""The capture pipeline: pre-record ring, segments, voice activity.

Frames and PCM are pushed in by whoever owns the devices (the recorder's
loop thread, or `bodycam capture`), stamped on the unit's monotonic clock;
bytes go out to sinks made by `open_sink(index, start_us)`, so the sealing
writer plugs in without capture knowing about it.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hal.media import EncodedFrame, PcmChunk

from .segmenter import FrameClock, Segmenter, SinkFactory, segment_problem
from .vad import SpeechMeter


@dataclass
class CaptureConfig:
    segment_s: float = 32.0  # a multiple of 8 s (segmenter.segment_problem)
    prerecord_s: float = 30.0  # 0..120
    # Off by default: sound from before the officer chose to record is a
    # conversation taken without the decision R1 asks for (and unlawful to
    # keep in many places); the pre-record picture carries a silent track.
    prerecord_audio: bool = False
    width: int = 1280
    height: int = 720
    fps: int = 30
    audio_rate: int = 16_000

    def __post_init__(self) -> None:
        if not 0 <= self.prerecord_s <= 120:
            raise ValueError("prerecord_s must be between 0 and 120 seconds")
        if (why := segment_problem(self.segment_s, self.audio_rate)) is not None:
            raise ValueError(f"segment_s = {self.segment_s:g}: {why}")


class Capture:
    def __init__(
        self,
        open_sink: SinkFactory,
        config: CaptureConfig | None = None,
        frame_time: FrameClock | None = None,
    ) -> None:
        self.config = cfg = config or CaptureConfig()
        self.segmenter = Segmenter(
            open_sink,
            segment_us=int(cfg.segment_s * 1e6),
            width=cfg.width,
            height=cfg.height,
            fps=cfg.fps,
            audio_rate=cfg.audio_rate,
            frame_time=frame_time,
        )
        self.meter = SpeechMeter()
        self.metering = True  # the sound goes to the voice detector (`meter_sound`)
        self._ring: deque[EncodedFrame] = deque()
        self._aring: deque[PcmChunk] = deque()
        # The pre-record, handed to the segmenter a few items a turn
        # (`drain`) so a press is not held up while 30 s are sealed; live
        # media queue behind it, in the order they came.
        self._backlog: deque[EncodedFrame | PcmChunk] = deque()
        self.recording = False
        # stopped with a backlog left (`stop(wait=False)`): the backlog goes on
        # into the open file a share at a time and `drain` closes it when empty
        self._closing = False
        self._audio_end_us: int | None = None  # end of the last PCM heard

    @property
    def ring_bytes(self) -> int:
        # tuple() copies each deque in one step under the GIL: a benchmark's
        # thread may ask while the loop appends
        ring, aring = tuple(self._ring), tuple(self._aring)
        return sum(len(f.data) for f in ring) + sum(len(c.data) for c in aring)

    # -- input ---------------------------------------------------------------

    def set_media(self, video: bool | None = None, audio: bool | None = None) -> None:
        """Which devices deliver: a file is built from what there is."""
        self.settle()
        self.segmenter.set_media(video, audio)

    @property
    def backlog(self) -> int:
        """Items of the pre-record (and live media behind it) not yet in a file."""
        return len(self._backlog)

    @property
    def closing(self) -> bool:
        """Stopped, its file still taking the backlog (`stop(wait=False)`)."""
        return self._closing

    def drain(self, items: int) -> int:
        """Hand up to `items` of the backlog to the segmenter; returns how many
        remain. A stopped recording's file is closed once it has them all."""
        for _ in range(min(items, len(self._backlog))):
            self._feed(self._backlog.popleft())
        self._close_when_drained()
        return len(self._backlog)

    def _close_when_drained(self) -> Any:
        """A stopped recording's file, once it has all the backlog: closed
        (the segmenter's answer); None while it still takes some."""
        if not self._closing or self._backlog:
            return None
        self._closing = False
        return self.segmenter.close()

    def settle(self) -> None:
        """Everything of the backlog into its files (before a stop, a cut, a
        change of media); a stopped recording's file is closed."""
        self.drain(len(self._backlog))

    def _feed(self, item: EncodedFrame | PcmChunk) -> None:
        if isinstance(item, EncodedFrame):
            self.segmenter.video(item)
        else:
            self.segmenter.audio(item)

    def push_video(self, frame: EncodedFrame) -> None:
        if self.recording:
            if self._backlog:
                self._backlog.append(frame)
            else:
                self.segmenter.video(frame)
            return
        self._ring.append(frame)
        keep_from = frame.pts_us - int((self.config.prerecord_s + 2) * 1e6)
        while len(self._ring) > 1 and self._ring[0].pts_us < keep_from:
            self._ring.popleft()

    def push_audio(self, chunk: PcmChunk) -> None:
        if self.metering:
            self.meter.feed(chunk.data, chunk.pts_us)
        self._audio_end_us = chunk.pts_us + chunk.samples * 1_000_000 // chunk.rate
        if self.recording:
            if self._backlog:
                self._backlog.append(chunk)
            else:
                self.segmenter.audio(chunk)
        elif self.config.prerecord_audio:
            self._aring.append(chunk)
            keep_from = chunk.pts_us - int((self.config.prerecord_s + 2) * 1e6)
            while self._aring and self._aring[0].pts_us < keep_from:
                self._aring.popleft()

    # -- control ---------------------------------------------------------------

    def start(self, now_us: int, prerecord: bool = True) -> int:
        """Start recording with the pre-record ring (or, without it, from the
        next keyframe); returns how much before `now_us` it reaches (us)."""
        if self.recording:
            return 0
        self.settle()  # a paused recording's file ends before the next begins
        frames, chunks = list(self._ring), list(self._aring)
        self.recording = True
        self._ring.clear()
        self._aring.clear()
        if not prerecord or not self.segmenter.video_on:
            return 0  # from the next keyframe on (the caller asks the camera for one)
        want = now_us - int(self.config.prerecord_s * 1e6)
        keys = [i for i, f in enumerate(frames) if f.keyframe]
        first = next((i for i in keys if frames[i].pts_us >= want), keys[-1] if keys else None)
        if first is None:
            return 0  # no picture yet: recording starts at the next keyframe
        t0 = frames[first].pts_us
        self.segmenter.video(frames[first])
        # in time order, as live media arrives, so every packet lands in its own
        # file and sound and picture interleave (a track of 30 s of silence
        # muxed ahead of the pictures leaves ffprobe no picture to find the
        # video's size in); without the pre-record's sound, silence up to the
        # live sound, which goes on from there
        later: list[EncodedFrame | PcmChunk] = [*frames[first + 1 :]]
        sound: list[EncodedFrame | PcmChunk]
        if self.config.prerecord_audio:
            sound = [c for c in chunks if c.pts_us >= t0 - 30_000]
        else:
            sound = [*_silence(t0, self._audio_end_us or t0, self.config.audio_rate)]
        self._backlog.extend(heapq.merge(later, sound, key=_pts))
        return max(0, now_us - t0)

    def cut(self) -> bool:
        """A hole in the media (a stall): the open file ends with what it
        holds, and the recording goes on in a new one from the next keyframe,
        so no file spans the hole. In standby the pre-record is emptied: a
        picture from before a hole is not joined to one after it. True if a
        file was ended."""
        if not self.recording:
            self._ring.clear()
            self._aring.clear()
            return False
        self.settle()
        if not self.segmenter.recording:
            return False  # waiting for its first keyframe: nothing to end
        self.segmenter.close()
        return True

    def stop(self, wait: bool = True) -> Any:
        """End the recording: media from now on go to the pre-record ring.
        `wait`: its file takes the backlog and is closed now. Without it (a
        pause) the backlog goes on into the file a share at a time (`drain`),
        which closes it, so a press after a pause is not kept waiting while
        a 30 s pre-record is sealed; whatever next needs the segmenter
        (`start`, `cut`, `set_media`, a stop that waits) finishes it first."""
        if self.recording:
            self.recording = False
            self._closing = True
        if wait and self._closing:
            while self._backlog:
                self._feed(self._backlog.popleft())
        return self._close_when_drained()

    def listen(self, on: bool) -> None:
        """A spoken note is (or is no longer) awaited: the voice detector judges
        as the sound comes only then (capture/vad.py keeps what a window needs)."""
        if on != self.meter.listening:
            self.meter.listen(on)

    def meter_sound(self, on: bool) -> None:
        """Whether a spoken note may be awaited (the unit records, is paused,
        or its next start is a resume): the voice detector hears the sound
        only then, and costs nothing in between. On again, it starts afresh
        after the hole, as after a gap in the sound."""
        if on != self.metering:
            self.metering = on
            if not on:
                self.meter.hole()

    def played(self, pcm: bytes, at_us: int) -> None:
        """The unit's speaker played `pcm` from `at_us`: not a voice of the note."""
        if self.metering:
            self.meter.played(pcm, at_us)

    def speech_seconds(self, from_us: int, to_us: int) -> float:
        return self.meter.seconds(from_us, to_us)


def _pts(item: EncodedFrame | PcmChunk) -> int:
    return item.pts_us


SILENCE_BLOCK = 8_000  # samples: half a second of silence a chunk, at 16 kHz


def _silence(from_us: int, to_us: int, rate: int) -> Iterator[PcmChunk]:
    """Silent PCM for [from_us, to_us), in blocks stamped with their start."""
    n = (to_us - from_us) * rate // 1_000_000
    for i in range(0, n, SILENCE_BLOCK):
        k = min(SILENCE_BLOCK, n - i)
        yield PcmChunk(bytes(2 * k), from_us + i * 1_000_000 // rate, rate)
