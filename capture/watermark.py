"""The on-screen watermark (GA/T 947 OSD): unit serial, officer, date and time
burned into every picture, with the clock's state when it is not verified
(the way commercial cameras show "time not set").

The time is the agency's local time with its UTC offset (`2026-12-02
09:40:31 +08:00`), what is on everyone's watch; the clock note is in the
agency's language. The font is WenQuanYi Micro Hei (Debian's
fonts-wqy-microhei, 5 MB installed): it holds the Chinese of names and
notes and the Latin, Greek and Cyrillic of other names. Noto Sans CJK would
add the rarest Extension B+ name characters for 90 MB more on a small card;
a name with such a character shows its missing-glyph box here, while the
sealed chain keeps the name exactly.

The text changes once a second, so its strip is rendered once a second (Pillow)
and each frame only gets the cached strip copied into a corner: white text in
a black box, the most legible against any scene. The box sits at the
bottom-left, its origin and size multiples of 16 so 4:2:0 chroma and encoder
macroblocks line up with it.

`Watermark.burn(pixels, fmt, mono_us)` is the camera port's picture hook: the
simulated camera calls it before encoding, the Pi backend from picamera2's
`pre_callback` on the main stream's buffer. Serial and officer come from the
sealed store (provisioning), never from a setting on the unit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .sei import FrameTime

ALIGN = 16
# the clock's state as the officer reads it, in the unit's language
CLOCK_NOTES = {
    "zh": {"synced": "", "holdover": " 时间保持中", "unverified": " 时间未校准"},
    "en": {"synced": "", "holdover": " HOLDOVER", "unverified": " TIME NOT VERIFIED"},
}
FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"  # fonts-wqy-microhei
FORMATS = ("RGB888", "BGR888", "XBGR8888", "XRGB8888", "YUV420")


@dataclass(frozen=True)
class Face:
    """How the watermark speaks: the zone its time is shown in, its language."""

    zone: tzinfo = UTC
    language: str = "en"


def text_for(serial: str, officer: str, t: FrameTime, face: Face = Face()) -> str:
    local = datetime.fromtimestamp(t.utc_us // 1_000_000, UTC).astimezone(face.zone)
    offset = local.strftime("%z")
    when = f"{local.strftime('%Y-%m-%d %H:%M:%S')} {offset[:3]}:{offset[3:]}"
    notes = CLOCK_NOTES.get(face.language, CLOCK_NOTES["en"])
    note = notes.get(t.clock_state, f" CLOCK {t.clock_state.upper()}")
    return f"{serial}  {officer}  {when}{note}"


def _round_up(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


@dataclass
class Strip:
    """A rendered line of text: luminance 0..255, white on black, and the
    same as whole pixels of each format (copied per frame: a strided
    per-channel write costs a hundred times more)."""

    text: str
    height: int  # of the picture it was rendered for
    luma: np.ndarray  # (h, w) uint8, h and w multiples of 16
    _as: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def pixels(self, fmt: str, width: int) -> np.ndarray:
        key = f"{fmt}/{width}"
        if key not in self._as:
            luma = self.luma[:, :width]
            if fmt in ("RGB888", "BGR888"):
                self._as[key] = np.repeat(luma[:, :, None], 3, axis=2)
            elif fmt in ("XBGR8888", "XRGB8888"):
                self._as[key] = np.repeat(luma[:, :, None], 4, axis=2)
            elif fmt == "YUV420":  # limited range, as the encoder expects
                self._as[key] = (16 + luma.astype(np.uint16) * 219 // 255).astype(np.uint8)
            else:
                raise ValueError(f"watermark: pixel format {fmt!r} is not one of {FORMATS}")
        return self._as[key]


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # the same Debian file on every unit and on the QA machine (Pillow 9.4 on
    # the unit has no load_default(size=...))
    return ImageFont.truetype(FONT, size)


def render(text: str, height: int, width: int | None = None) -> Strip:
    """The strip for `text` on a picture `height` pixels tall (text ~1/30 of
    it), the font made smaller if the line would not fit in `width`."""
    box_h = _round_up(max(24, height // 24))
    size = max(10, box_h * 3 // 4)
    pad = box_h // 4
    font = _font(size)
    left, top, right, bottom = font.getbbox(text)
    room = (width or 1 << 30) - 2 * ALIGN - 2 * pad
    if right - left > room and size > 10:
        font = _font(max(10, int(size * room // (right - left))))
        left, top, right, bottom = font.getbbox(text)
    w = _round_up(int(right - left) + 2 * pad)
    img = Image.new("L", (w, box_h), 0)
    ImageDraw.Draw(img).text(
        (pad - left, (box_h - (bottom - top)) // 2 - top), text, fill=255, font=font
    )
    return Strip(text, height, np.asarray(img, dtype=np.uint8))


@dataclass
class Watermark:
    """Burns the serial, officer and the frame's time into pictures."""

    serial: str
    officer: str
    frame_time: Callable[[int], FrameTime]
    face: Face = Face()
    _strip: Strip | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def strip_for(self, mono_us: int, width: int, height: int) -> Strip:
        text = text_for(self.serial, self.officer, self.frame_time(mono_us), self.face)
        with self._lock:  # the hook runs on the camera's thread; tests read from theirs
            s = self._strip
            if s is None or s.text != text or s.height != height:
                self._strip = s = render(text, height, width)
            return s

    def burn(self, pixels: np.ndarray, fmt: str, mono_us: int) -> None:
        """Write the strip into `pixels` in place (the camera's buffer; its
        shape gives the picture's size: (h, w[, channels]), or (h * 3/2, w)
        for YUV420)."""
        if fmt not in FORMATS:
            raise ValueError(f"watermark: pixel format {fmt!r} is not one of {FORMATS}")
        height = pixels.shape[0] * 2 // 3 if fmt == "YUV420" else pixels.shape[0]
        strip = self.strip_for(mono_us, pixels.shape[1], height)
        x0, y0, x1, y1 = box(strip, pixels.shape[1], height)
        pic = strip.pixels(fmt, x1 - x0)
        if fmt == "YUV420":
            _burn_i420(pixels, height, x0, y0, x1, y1, pic)
        else:
            pixels[y0:y1, x0:x1] = pic


def box(strip: Strip, width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the strip on a picture: bottom-left, aligned."""
    h, w = strip.luma.shape
    w = min(w, width - 2 * ALIGN)  # a narrow picture cuts the text, never the frame
    y0 = (height - h - ALIGN) // ALIGN * ALIGN
    return ALIGN, y0, ALIGN + w, y0 + h


def _burn_i420(
    buf: np.ndarray, height: int, x0: int, y0: int, x1: int, y1: int, y_box: np.ndarray
) -> None:
    """I420 as picamera2 maps it: (height * 3 / 2, stride) bytes, Y then U then
    V, each chroma plane's rows (stride / 2 wide) packed two to a buffer row."""
    stride = buf.shape[1]
    buf[y0:y1, x0:x1] = y_box
    flat = buf.reshape(-1)
    cw = stride // 2
    for plane in (0, 1):
        base = height * stride + plane * (height // 2) * cw
        for row in range(y0 // 2, y1 // 2):
            start = base + row * cw
            flat[start + x0 // 2 : start + x1 // 2] = 128  # neutral: no colour cast on the text
