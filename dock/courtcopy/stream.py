"""A recording streamed to one viewer, never written decrypted anywhere
(S0 art. 23, 28; the page's playback and download, docs/ACCESS.md).

From the dock's verified copy each segment is decrypted into memory and its
plaintext checked against the chain's hash before any of it goes on; the
segments' packets are laid on one time line (media.remux: pauses stay gaps)
and piped as NUT into ffmpeg's stdin. ffmpeg scales the picture to at most
720 lines, lays the viewer's watermark over it (a PNG made here with
Pillow, through a second pipe), encodes H.264 (libx264 ultrafast, a key
frame every second) and AAC, and writes a fragmented MP4 (`frag_keyframe
+empty_moov+default_base_moof`) to its stdout, which is the answer's body:
a browser plays it as it comes. No file is made: plaintext exists only in
this process's and ffmpeg's memory and in the pipes between them.

The watermark names the viewer and the time the playback started in the
dock's zone, with the zone named (`王五 2026-12-03 00:12 CST/Asia/Shanghai`):
once in the top left corner, white on a dark box, and once large and faint
across the middle, so that a photograph of the screen or a crop of it still
says whose playback it was. The MP4's comment says the same.

A playback (not a download) is paced: after the first BURST_S seconds of
the recording the segments are fed at most RATE times as fast as they play,
so one playback takes a fraction of a core, not all of both. `close()`
(a client gone, the page stopping) kills ffmpeg and waits for it: no
encoder outlives its viewer.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import av
from PIL import Image, ImageDraw, ImageFont

from sealing.age import Identity
from sealing.cli_verify import dock_lookup
from sealing.recordings import recordings
from sealing.verify import Report

from .. import fonts
from ..texts import Texts, msg
from .media import TS_HZ, JoinError, remux
from .steps import VIDEO, CaseError, _plaintext, verified_chain

log = logging.getLogger("bodycam.playback")

MAX_LINES = 720  # the picture's height at most: 720p encodes in real time on two cores
BURST_S = 6.0  # fed at once, so playback starts without waiting
RATE = 2.0  # then at most this many times as fast as the recording plays
CHUNK = 64 * 1024
FFMPEG = "ffmpeg"


def watermark_text(viewer: str, at_us: int, texts: Texts) -> str:
    """`王五 2026-12-03 00:12 CST/Asia/Shanghai`: who, and when in the dock's zone."""
    local = texts.locale.local(at_us)
    return f"{viewer} {local.strftime('%Y-%m-%d %H:%M')} {local.strftime('%Z')}/{texts.zone_name}"


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for family in fonts.FAMILIES:
        found = fonts.find(family)
        if found is not None:
            return ImageFont.truetype(str(found.path), size, index=found.index)
    return ImageFont.load_default(size)


@dataclass(frozen=True)
class Layout:
    """Where the watermark's corner copy sits on a picture of this size."""

    width: int
    height: int

    @property
    def size(self) -> int:  # the corner text's size in pixels
        return max(14, self.height // 20)

    @property
    def corner(self) -> tuple[int, int]:
        return (self.size // 2, self.size // 2)


def watermark(text: str, width: int, height: int) -> Image.Image:
    """The watermark as an RGBA picture of the video's size (transparent
    where the video shows through)."""
    lay = Layout(width, height)
    img = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    font = _font(lay.size)
    x, y = lay.corner
    left, top, right, bottom = draw.textbbox((x, y), text, font=font)
    pad = max(2, lay.size // 5)
    draw.rectangle((left - pad, top - pad, right + pad, bottom + pad), fill=(0, 0, 0, 160))
    draw.text((x, y), text, font=font, fill=(255, 255, 255, 255))
    # large and faint across the middle: a crop of the corner still leaves it
    big = _font(max(16, lay.size * 2))
    box = draw.textbbox((0, 0), text, font=big)
    span = box[2] - box[0]
    if span > width * 0.9:
        big = _font(max(12, int(lay.size * 2 * width * 0.9 / span)))
        box = draw.textbbox((0, 0), text, font=big)
    cx = (width - (box[2] - box[0])) // 2 - box[0]
    cy = (height - (box[3] - box[1])) // 2 - box[1]
    faint = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    ImageDraw.Draw(faint).text(
        (cx, cy), text, font=big, fill=(255, 255, 255, 70), stroke_width=1,
        stroke_fill=(0, 0, 0, 70),
    )  # fmt: skip
    return Image.alpha_composite(img, faint)


def out_size(width: int, height: int) -> tuple[int, int]:
    """The streamed picture's size: at most MAX_LINES high, even sides."""
    h = min(height, MAX_LINES)
    w = round(width * h / height / 2) * 2
    return max(2, w), max(2, h - h % 2)


class Stream:
    """One viewer's stream: `chunks()` is the answer's body; `close()` ends
    it (idempotent; it also runs when the body is read to its end)."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        parts: list[Callable[[], bytes]],
        png: bytes,
        png_fd: int,
        paced: bool,
        done: Callable[[], None],
    ) -> None:
        self.proc = proc
        self.failed: str | None = None
        self._done = done
        self._closed = False
        self._stop = threading.Event()  # set by close(): the feeder stops waiting
        self._lock = threading.Lock()
        self._err = bytearray()
        self._threads = [
            threading.Thread(target=self._feed, args=(parts, paced), daemon=True),
            threading.Thread(target=self._give_png, args=(png, png_fd), daemon=True),
            threading.Thread(target=self._drain_err, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _give_png(self, png: bytes, fd: int) -> None:
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(png)
        except OSError:
            pass  # ffmpeg is gone already

    def _drain_err(self) -> None:
        err = self.proc.stderr
        assert err is not None
        for line in err:
            self._err += line
            del self._err[:-4096]

    def _feed(self, parts: list[Callable[[], bytes]], paced: bool) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        pace = _Pacer(self._stop).wait if paced else None
        try:
            remux(parts, stdin, "nut", pace)
        except (CaseError, JoinError, av.FFmpegError, OSError, ValueError) as exc:
            if not self._closed and self.proc.poll() is None:
                # a segment that fails its hash (nothing of it was sent), or
                # one that cannot be read: the stream breaks off, said so
                self.failed = str(exc.args[0] if isinstance(exc, CaseError) else exc)
                log.error("playback stopped: %s", self.failed)
                self.proc.kill()
            # else ffmpeg ended (its viewer left): nothing more to feed
        finally:
            with contextlib.suppress(OSError, ValueError):
                stdin.close()

    def chunks(self) -> Iterator[bytes]:
        out = self.proc.stdout
        assert out is not None
        try:
            while data := out.read1(CHUNK):  # type: ignore[attr-defined]
                yield data
            rc = self.proc.wait()
            if self.failed or rc != 0:
                why = self.failed or self._err.decode(errors="replace").strip()[-300:]
                raise RuntimeError(f"playback stream broke off: {why}")
        finally:
            self.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        try:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=30)
            for t in self._threads:
                t.join(timeout=30)
            for f in (self.proc.stdout, self.proc.stderr):
                if f is not None:
                    f.close()
        finally:
            self._done()


class _Pacer:
    """Holds the feeder back to RATE times real time after a burst (a long
    pause in the recording is waited through, or until the stream stops)."""

    def __init__(self, stop: threading.Event) -> None:
        self.t0 = time.monotonic()
        self.stop = stop

    def wait(self, ticks: int) -> None:
        ahead = (ticks / TS_HZ - BURST_S) / RATE - (time.monotonic() - self.t0)
        if ahead > 0 and self.stop.wait(ahead):
            raise ValueError("the stream was closed")


def open_stream(
    dock: Path,
    serial: str,
    start_seq: int,
    identity: Identity,
    viewer: str,
    texts: Texts,
    *,
    done: Callable[[], None],
    paced: bool = True,
    now_us: int | None = None,
    verify: Callable[[Path, str], Report] = verified_chain,
) -> Stream:
    """Start the stream of one recording for `viewer`: the chain verified, the
    first segment decrypted and checked against its record, ffmpeg started
    (each later one checked so before it is sent). CaseError when the
    recording cannot be played. `done` is called once the stream has ended
    (or failed to start): the caller's slot given back. `verify`: how the
    chain is verified (the page keeps the reports: dock/verified_copies.py)."""
    try:
        report = verify(dock, serial)
        rec = next((r for r in recordings(report.chain) if r.start.seq == start_seq), None)
        if rec is None or not rec.media(VIDEO):
            raise CaseError(
                msg("recording %(seq)s has no video segment on this dock", seq=start_seq)
            )
        locate = dock_lookup(dock)
        records = rec.media(VIDEO)
        first = _plaintext(locate, records[0], identity)  # checked before anything is sent
        width, height = _picture(first)
        w, h = out_size(width, height)
        text = watermark_text(viewer, now_us or int(time.time() * 1e6), texts)
        png = io.BytesIO()
        watermark(text, w, h).save(png, "PNG")
        parts: list[Callable[[], bytes]] = [lambda: first]
        parts += [partial(_plaintext, locate, r, identity) for r in records[1:]]
        read_fd, write_fd = os.pipe()
        try:
            proc = subprocess.Popen(
                _command(w, h, read_fd, text),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(read_fd,),
                close_fds=True,
            )
        except OSError:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
        return Stream(proc, parts, png.getvalue(), write_fd, paced, done)
    except BaseException:
        done()
        raise


def _picture(segment: bytes) -> tuple[int, int]:
    try:
        with av.open(io.BytesIO(segment), format="mpegts") as c:
            v = c.streams.video[0]
            return int(v.codec_context.width), int(v.codec_context.height)
    except (av.FFmpegError, IndexError) as exc:
        raise CaseError(
            msg("the recording's picture cannot be read: %(error)s", error=str(exc)), 1
        ) from None


def _command(w: int, h: int, png_fd: int, comment: str) -> list[str]:
    graph = (
        f"[0:v]scale={w}:{h},format=yuv420p[pic];"
        "[pic][1:v]overlay=0:0:format=yuv420,format=yuv420p[out]"
    )
    return [
        FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error",
        "-f", "nut", "-i", "pipe:0",
        "-f", "png_pipe", "-i", f"pipe:{png_fd}",
        "-filter_complex", graph, "-map", "[out]", "-map", "0:a?",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-crf", "23",
        "-force_key_frames", "expr:gte(t,n_forced*1)", "-fps_mode", "vfr",
        "-c:a", "aac", "-b:a", "64k",
        "-metadata", f"comment={comment}",
        "-movflags", "frag_keyframe+empty_moov+default_base_moof",
        "-f", "mp4", "pipe:1",
    ]  # fmt: skip
