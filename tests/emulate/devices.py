"""The host's hands on the emulated unit's hardware, through the agent and
QEMU's sockets: buttons (gpio-sim pulls), LEDs (gpio-sim values), speech
into the microphone card, the speaker card's output, the fuel gauge's
registers, NMEA on the GPS UART, the RTC."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import tempfile
import threading
import wave
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path

from .agent import Agent
from .run import EmuError

GPIO = "/run/emu-gpio"  # emu-devices links the gpio-sim chip's sysfs folder here
PINS = {"record": 17, "function": 27, "photo": 22, "tamper": 23, "trigger": 24}
LEDS = {"power": 5, "audio": 6, "video": 13}  # docs/HARDWARE.md, "Pins"
MIC_PLAY = "hw:0,0"  # the microphone card's playback half (the recorder captures hw:0,1)
SPEAKER_CAPTURE = "hw:1,1"  # the speaker card's capture half (the recorder plays hw:1,0)
RATE = 16_000
# arecord's buffer on the speaker card: a stall of the guest shorter than
# this loses nothing of what was played
CAPTURE_BUFFER_US = 2_000_000
PRESS_S = 0.3  # a finger's press: well under the 1.5 s hold
HOLD_S = 2.5


@dataclass
class Hardware:
    agent: Agent
    # what the speaker card's capture held when last read: only what is new
    # crosses the console at the next read
    _speaker: bytearray = field(default_factory=bytearray, repr=False)

    # -- buttons and lights --------------------------------------------------------

    def _pull(self, pin: int, down_s: float) -> None:
        p = f"{GPIO}/sim_gpio{pin}/pull"
        self.agent.check(f"echo pull-down > {p} && sleep {down_s} && echo pull-up > {p}",
                         timeout=60 + down_s)  # fmt: skip

    def press(self, button: str) -> None:
        self._pull(PINS[button], PRESS_S)

    def hold(self, button: str) -> None:
        self._pull(PINS[button], HOLD_S)

    def leds(self) -> dict[str, int]:
        """Each LED's line as the recorder drives it (gpio-sim's value file)."""
        cmd = "; ".join(f"cat {GPIO}/sim_gpio{pin}/value" for pin in LEDS.values())
        values = self.agent.check(cmd).split()
        if len(values) != len(LEDS) or any(v not in ("0", "1") for v in values):
            raise EmuError(f"LED values unreadable: {values}")
        return {name: int(v) for name, v in zip(LEDS, values, strict=True)}

    # -- sound ---------------------------------------------------------------------

    def say(self, text: str) -> float:
        """Speak `text` (espeak-ng here, 16 kHz) into the microphone card; returns
        once played, with its length in seconds."""
        with tempfile.TemporaryDirectory(prefix="emu-say-") as tmp:
            raw, wav = Path(tmp) / "espeak.wav", Path(tmp) / "say.wav"
            subprocess.run(["espeak-ng", "-v", "en", "-s", "140", "-w", str(raw), "--", text],
                           check=True, capture_output=True, timeout=60)  # fmt: skip
            subprocess.run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(wav)],
                           check=True, capture_output=True, timeout=60)  # fmt: skip
            with wave.open(str(wav)) as w:
                seconds = w.getnframes() / RATE
            self.agent.put("/run/emu-say.wav", wav.read_bytes())
        self.agent.check(f"aplay -q -D {MIC_PLAY} /run/emu-say.wav", timeout=60 + seconds)
        return seconds

    def start_speaker_capture(self) -> None:
        """Record the speaker card from now on (the recorder's prompts). The
        capture runs in the starved guest too: its buffer outlasts a stall,
        so that what the check misses is what the unit did not play."""
        self.agent.check("systemctl stop emu-speaker 2>/dev/null; rm -f /run/emu-speaker.raw; "
                         f"systemd-run --unit=emu-speaker arecord -q -D {SPEAKER_CAPTURE} "
                         f"--buffer-time={CAPTURE_BUFFER_US} "
                         f"-f S16_LE -r {RATE} -c 1 -t raw /run/emu-speaker.raw")  # fmt: skip
        self._speaker.clear()

    def speaker_capture(self) -> bytes:
        """What the speaker card played since `start_speaker_capture` (16 kHz
        S16 mono PCM, whole samples); the capture goes on. Read often while
        prompts play, so only the bytes after those already read are fetched."""
        self.agent.check("test -r /run/emu-speaker.raw")  # missing is an error, not b""
        new = self.agent.output(f"tail -c +{len(self._speaker) + 1} /run/emu-speaker.raw")
        self._speaker += new
        return bytes(self._speaker[: len(self._speaker) // 2 * 2])

    # -- battery, clock ------------------------------------------------------------

    def set_battery(self, percent: int) -> None:
        """MAX17048 SOC register (big-endian; an SMBus word is little-endian)."""
        self.agent.check(f"i2cset -y 1 0x36 0x04 0x00{percent:02x} w")

    def rtc_time(self) -> int:
        return int(self.agent.check("cat /sys/class/rtc/rtc0/since_epoch").strip())


# -- GPS -----------------------------------------------------------------------------


def _checksum(body: str) -> str:
    return f"{reduce(lambda a, c: a ^ ord(c), body, 0):02X}"


def nmea_burst(at: dt.datetime, lat: float = 31.2304, lon: float = 121.4737) -> bytes:
    """One second of a receiver's output at `at` (UTC): GGA and RMC, with the
    checksums a receiver sends."""

    def coord(v: float, width: int) -> str:
        d = int(abs(v))
        return f"{d:0{width}d}{(abs(v) - d) * 60:07.4f}"

    t = at.strftime("%H%M%S.00")
    ns, ew = ("N" if lat >= 0 else "S"), ("E" if lon >= 0 else "W")
    gga = f"GPGGA,{t},{coord(lat, 2)},{ns},{coord(lon, 3)},{ew},1,08,0.9,12.0,M,7.0,M,,"
    rmc = f"GPRMC,{t},A,{coord(lat, 2)},{ns},{coord(lon, 3)},{ew},0.0,0.0,{at:%d%m%y},,,A"
    return "".join(f"${s}*{_checksum(s)}\r\n" for s in (gga, rmc)).encode()


@dataclass
class GpsFeed:
    """The receiver on the guest's ttyS1 (QEMU's GPS socket): a burst a second
    with the host's UTC time, until stopped."""

    sock_path: Path
    stop_event: threading.Event = field(default_factory=threading.Event)
    sent: int = 0
    error: str | None = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gps-feed", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(self.sock_path))
                while not self.stop_event.wait(1.0):
                    s.sendall(nmea_burst(dt.datetime.now(dt.UTC)))
                    self.sent += 1
        except OSError as exc:
            self.error = str(exc)

    def stop(self) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
