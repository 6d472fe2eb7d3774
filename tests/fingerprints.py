"""Synthetic fingerprints for libfprint's virtual image reader, and a
driver that feeds them to it.

A finger is a seed: its ridge flow (a loop, whorl or tented arch from
the zero-pole model of cores and deltas), its ridge period (about 0.45 mm:
9 px at 500 dpi, NBIS's resolution) and the noise whose iterated,
orientation-steered Gabor filtering grows ridges, so its minutiae (where
ridges end and fork) differ from seed to seed. An impression is that finger
placed again: shifted, turned a few degrees, pressed a little harder or
softer, with sensor noise. NBIS (libfprint's mindtct + bozorth3) matches
two impressions of one seed and tells two seeds apart.

The virtual image reader (libfprint's `virtual_image` driver, enabled by
FP_VIRTUAL_IMAGE=<socket path> before the FPrint.Context is made) listens
on that unix socket once the device is open. A client sends, in native
byte order, two int32 (width, height) then width*height 8-bit grey pixels
(dark ridges on light): one scanned image. A negative width is a command
instead: (-1, retry code), (-2, error code), (-3, 0|1) automatic finger
on/off around images, (-4, 0|1) finger on/off, (-5, _) unplug.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass

import numpy as np

# Master finger area (px) and the sensor's window onto it.
MASTER = 448
WIDTH, HEIGHT = 288, 352
PERIOD = 9.0  # ridge period in px at 500 dpi (19.7 px/mm): ~0.46 mm
ORIENTATIONS = 16  # steering bins for the Gabor filter bank
ITERATIONS = 14  # filter passes: noise -> ridges
PERIOD_SPREAD = 0.15  # each finger's period: PERIOD x (1 +- this)
BEND = 0.3  # amplitude (radians) of each finger's slow random flow bends,
BEND_WAVES = 4  # made of this many waves
CYCLES = 1.5  # of at most this many cycles across the finger
SIGMA = 0.2  # Gabor bandwidth, x ridge frequency: narrower, fewer breaks


@dataclass(frozen=True)
class Finger:
    """One synthetic finger: a smooth ridge pattern in [-1, 1] (ridge = +1)."""

    seed: int
    ridges: np.ndarray  # MASTER x MASTER float32


def _orientation(rng: np.random.Generator, n: int) -> np.ndarray:
    """Ridge direction (radians, mod pi) from the zero-pole model: each core
    turns the flow by +pi/2 around it, each delta by -pi/2."""
    y, x = np.mgrid[0:n, 0:n].astype(np.float64)
    z = (x - n / 2) + 1j * (y - n / 2)
    kind = rng.integers(0, 3)  # 0 loop, 1 whorl, 2 tented arch
    c = n * 0.12
    jitter = lambda: complex(rng.normal(0, n * 0.05), rng.normal(0, n * 0.05))  # noqa: E731
    if kind == 0:  # one core, one delta below it to one side
        side = rng.choice([-1.0, 1.0])
        cores = [complex(0, -c) + jitter()]
        deltas = [complex(side * n * 0.22, n * 0.22) + jitter()]
    elif kind == 1:  # two cores close together, a delta each side
        cores = [complex(0, -c * 0.6) + jitter(), complex(0, c * 0.3) + jitter()]
        deltas = [complex(-n * 0.3, n * 0.25) + jitter(), complex(n * 0.3, n * 0.25) + jitter()]
    else:  # tented arch: a delta right below the core (a plain arch's
        # parallel ridges give NBIS too few distinctive minutiae)
        cores = [complex(0, -c * 0.5) + jitter()]
        deltas = [cores[0] + complex(rng.normal(0, n * 0.04), n * rng.uniform(0.15, 0.3))]
    theta = np.zeros_like(x)
    for p in cores:
        theta += np.angle(z - p)
    for p in deltas:
        theta -= np.angle(z - p)
    theta = theta / 2 + rng.uniform(-0.3, 0.3)
    # Slow random bends (a few long waves) so that two fingers of one class
    # differ in flow, not only in minutiae: NBIS scores fingers with the
    # same parallel flow alike.
    for _ in range(BEND_WAVES):
        cycles = rng.uniform(0.4, CYCLES)
        phi = rng.uniform(0, np.pi)
        wave = (np.cos(phi) * x + np.sin(phi) * y) / n * 2 * np.pi * cycles
        theta += BEND * rng.normal(0, 1) * np.sin(wave + rng.uniform(0, 2 * np.pi))
    return np.mod(theta, np.pi)


def make_finger(seed: int, period: float = PERIOD) -> Finger:
    """Grow ridges from the seed's noise by steered Gabor filtering."""
    rng = np.random.default_rng(seed)
    n = MASTER
    theta = _orientation(rng, n)
    period = period * rng.uniform(1 - PERIOD_SPREAD, 1 + PERIOD_SPREAD)
    img = rng.normal(0, 1, (n, n))
    # Frequency-domain Gabor bank: each bin keeps waves across its ridge
    # direction at the ridge frequency (two Gaussian blobs at +-f).
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.rfftfreq(n)[None, :]  # real images: half the spectrum
    f0, sigma = 1.0 / period, SIGMA / period
    bank = []
    angles = np.arange(ORIENTATIONS) * np.pi / ORIENTATIONS
    for a in angles:
        # ridges run along a: the wave vector is perpendicular to it
        ux, uy = -np.sin(a) * f0, np.cos(a) * f0
        h = np.exp(-((fx - ux) ** 2 + (fy - uy) ** 2) / (2 * sigma**2))
        h += np.exp(-((fx + ux) ** 2 + (fy + uy) ** 2) / (2 * sigma**2))
        bank.append(h)
    # Each pixel blends the two bins around its direction: a weight map per bin.
    pos = theta / np.pi * ORIENTATIONS
    lo = np.floor(pos).astype(int) % ORIENTATIONS
    w_hi = pos - np.floor(pos)
    weights = [
        np.where(lo == k, 1 - w_hi, 0) + np.where((lo + 1) % ORIENTATIONS == k, w_hi, 0)
        for k in range(ORIENTATIONS)
    ]
    used = [k for k in range(ORIENTATIONS) if weights[k].any()]
    for _ in range(ITERATIONS):
        spec = np.fft.rfft2(img)
        out = np.zeros_like(img)
        for k in used:
            out += np.fft.irfft2(spec * bank[k], s=img.shape) * weights[k]
        img = np.tanh(3.0 * out / (out.std() + 1e-9))
    return Finger(seed, img.astype(np.float32))


def impression(
    finger: Finger,
    *,
    rng: np.random.Generator | int | tuple[int, ...] = 0,
    shift: float = 8.0,
    turn_deg: float = 4.0,
    noise: float = 12.0,
    outline: bool = False,
) -> np.ndarray:
    """One scan of the finger: HEIGHT x WIDTH uint8, dark ridges on light,
    shifted up to `shift` px and turned up to `turn_deg` degrees."""
    rng = np.random.default_rng(rng)
    n = MASTER
    a = np.deg2rad(rng.uniform(-turn_deg, turn_deg))
    dx, dy = rng.uniform(-shift, shift, 2)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    x -= WIDTH / 2
    y -= HEIGHT / 2
    sx = np.cos(a) * x - np.sin(a) * y + n / 2 + dx
    sy = np.sin(a) * x + np.cos(a) * y + n / 2 + dy
    ridges = _bilinear(finger.ridges, sx, sy)
    # Pressure: a harder press thickens ridges (shifts the threshold).
    bias = rng.uniform(-0.15, 0.15)
    grey = 128.0 - 105.0 * np.clip(ridges + bias, -1, 1)
    if outline:
        # The fingertip's outline: light outside an ellipse. Off by default:
        # the ridge endings along one same ellipse make every finger share
        # minutiae, and NBIS then scores other fingers close to 40.
        ex, ey = (x - dx) / (WIDTH * 0.55), (y - dy) / (HEIGHT * 0.56)
        inside = np.clip((1.0 - np.sqrt(ex**2 + ey**2)) * 12.0, 0.0, 1.0)
        grey = 235.0 * (1 - inside) + grey * inside
    grey += rng.normal(0, noise, grey.shape)
    return np.clip(grey, 0, 255).astype(np.uint8)


def _bilinear(img: np.ndarray, sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    n0, n1 = img.shape
    sx = np.clip(sx, 0, n1 - 1.001)
    sy = np.clip(sy, 0, n0 - 1.001)
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = sx - x0, sy - y0
    return (
        img[y0, x0] * (1 - fx) * (1 - fy)
        + img[y0, x0 + 1] * fx * (1 - fy)
        + img[y0 + 1, x0] * (1 - fx) * fy
        + img[y0 + 1, x0 + 1] * fx * fy
    )


# Commands: a negative "width" and its argument instead of an image.
RETRY, ERROR, AUTO_FINGER, FINGER, UNPLUG = -1, -2, -3, -4, -5


def command(code: int, value: int = 0) -> bytes:
    """A command for the virtual reader, e.g. command(RETRY, FPrint.DeviceRetry.TOO_SHORT)."""
    return struct.pack("=ii", code, value)


def refused(retry: int) -> bytes:
    """A scan the reader refuses (libfprint's FpDeviceRetry code): a finger
    on, the retry, the finger off, as a sensor reports a bad swipe."""
    return command(FINGER, 1) + command(RETRY, retry) + command(FINGER, 0)


def encode(image: np.ndarray) -> bytes:
    """One scan as the virtual reader reads it: width, height, pixels."""
    h, w = image.shape
    return struct.pack("=ii", w, h) + np.ascontiguousarray(image, dtype=np.uint8).tobytes()


class VirtualSensor:
    """A client of the virtual image reader's socket. Scans are queued, and
    a thread sends the next one each time `due()` is called: the reader's
    prompt (libfprint waits for a finger). A scan sent while libfprint is
    not waiting for one is read and dropped with a critical, so nothing is
    ever sent ahead."""

    def __init__(self, path: str, connect_timeout: float = 5.0) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                self._sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self._lock = threading.Condition()
        self._queue: list[bytes] = []
        self._due = 0
        self._closed = False
        self.sent = 0
        self.delay = 0.0  # seconds from the prompt to the scan (a slow finger)
        self._thread = threading.Thread(target=self._run, name="virtual-sensor", daemon=True)
        self._thread.start()

    def queue(self, *scans: np.ndarray | bytes) -> None:
        """Queue images (or commands) to send, one per `due()`."""
        with self._lock:
            self._queue.extend(s if isinstance(s, bytes) else encode(s) for s in scans)
            self._lock.notify_all()

    def due(self) -> None:
        """libfprint waits for a finger: send the next queued scan, if any."""
        with self._lock:
            if self._queue:
                self._due += 1
                self._lock.notify_all()

    def clear(self) -> None:
        """Drop what was not sent (between tests)."""
        with self._lock:
            self._queue.clear()
            self._due = 0

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._closed and not (self._queue and self._due > 0):
                    self._lock.wait()
                if self._closed:
                    return
                data = self._queue.pop(0)
                self._due -= 1
                delay = self.delay
            time.sleep(delay)
            try:
                self._sock.sendall(data)
            except OSError:
                return
            with self._lock:
                self.sent += 1

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join(timeout=5)
        self._sock.close()
