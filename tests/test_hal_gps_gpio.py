"""GPS parsing on a recorded NMEA log with defects, and the GPIO devices on
gpiozero's MockFactory with gestures (press, hold, double, bounce)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from hal.gpio import GpioButtons, GpioIndicators, PinMap
from hal.gps import SAMPLE_LOG, NmeaParser, fixes, replay
from hal.pacing import VirtualClock
from hal.ports import STEADY, Blink, Lights

LOG = SAMPLE_LOG


def test_replay_gives_fixes_and_counts_defects() -> None:
    p = NmeaParser()
    got = list(replay(LOG, p))
    assert len(got) == 30
    assert not got[0].has_time and got[0].location() is None  # status V: no fix yet
    first = got[3]
    assert first.utc is not None and first.utc.isoformat() == "2026-11-23T08:30:03+00:00"
    assert first.quality == 1 and first.satellites == 7
    assert 31 * 10**7 < first.lat_e7 < 32 * 10**7 and first.lon_e7 > 121 * 10**7
    assert p.bad_checksum == 1 and p.garbage == 2 and p.ignored == 3


@pytest.mark.parametrize(
    "line",
    [
        "",
        "$",
        "*",
        "$GPRMC,,,",
        "$GPRMC*ZZ",
        "\xff\xfe",
        "$GPRMC,999999.00,A,9999.0,N,99999.0,E,0,0,999999,,,A*00",
        b"\x00\x01\x02",
    ],
)
def test_garbage_is_counted_never_fatal(line: str | bytes) -> None:
    p = NmeaParser()
    assert list(fixes([line], p)) == []
    assert p.garbage + p.bad_checksum + p.ignored == 1


@pytest.fixture
def factory() -> MockFactory:
    f = MockFactory(pin_class=MockPWMPin)
    yield f
    f.reset()


def test_buttons_give_press_hold_double_and_ignore_bounce(factory: MockFactory) -> None:
    seen: list[tuple[str, str]] = []
    clock = VirtualClock(0)
    buttons = GpioButtons(factory, clock)
    buttons.start(lambda kind, button, at: seen.append((kind, button)))
    rec = factory.pin(buttons.pins.record)

    def at(t: float) -> None:
        clock.mono_ns = int(t * 1e9)

    def edge(pin, t: float, down: bool) -> None:
        at(t)
        (pin.drive_low if down else pin.drive_high)()

    def poll(t: float) -> None:
        at(t)
        buttons.poll()

    edge(rec, 1.0, True)
    edge(rec, 1.005, False)  # contact bounce: 5 ms later ...
    edge(rec, 1.01, True)  # ... and back
    assert seen == [("press", "record")]  # at once on the down edge: no wait
    edge(rec, 1.2, False)  # the real release
    poll(2.0)
    assert seen == [("press", "record")]
    edge(rec, 3.0, True)
    poll(4.6)
    edge(rec, 5.0, False)
    poll(6.0)
    assert seen[-2:] == [("press", "record"), ("hold", "record")] and len(seen) == 3
    fn = factory.pin(buttons.pins.function)
    edge(fn, 7.0, True)
    edge(fn, 7.1, False)
    edge(fn, 7.3, True)
    edge(fn, 7.4, False)
    poll(8.0)
    assert seen[-1] == ("double", "function") and len(seen) == 4
    edge(fn, 9.0, True)
    edge(fn, 9.1, False)
    poll(9.2)
    assert len(seen) == 4  # a single press waits out the double-press window ...
    poll(9.6)
    assert seen[-1] == ("press", "function")  # ... then is a press
    edge(factory.pin(buttons.pins.tamper), 10.0, True)
    assert seen[-1] == ("active", "tamper")
    buttons.close()


def test_buttons_keep_no_thread_awake(factory: MockFactory) -> None:
    """Holds are timed by Gestures on the loop's poll: no input line has a
    thread of its own (a gpiozero Button's hold thread wakes ten times a
    second, whether or not anyone asked for holds)."""
    before = set(threading.enumerate())
    buttons = GpioButtons(factory, VirtualClock(0))
    buttons.start(lambda kind, button, at: None)
    try:
        assert set(threading.enumerate()) - before == set()
    finally:
        buttons.close()


def test_indicators_drive_leds_buzzer_and_vibration(factory: MockFactory) -> None:
    ind = GpioIndicators(factory)
    pins = PinMap()
    ind.show(Lights(power=STEADY, audio=None, video=STEADY))
    assert factory.pin(pins.led_video).state and not factory.pin(pins.led_audio).state
    assert factory.pin(pins.led_power).state
    ind.vibrate(Blink(0.05, 0.0, 1))
    time.sleep(0.2)
    states = [s.state for s in factory.pin(pins.vibration).states]
    assert states[-2:] == [True, False]  # one pulse, then off
    assert pins.buzzer not in (18, 19, 20, 21)  # I2S pins stay free for a microphone
    ind.close()


def _selftest_with_serial_gps(tmp_path: Path, feed: bytes, listen_s: float) -> str:
    """`bodycam selftest` on a unit whose GPS is a real tty (a pty pair): what
    the receiver would send on its UART is written to the other end."""
    import contextlib
    import os
    import subprocess
    import sys
    import threading

    from .conftest import make_unit

    unit = make_unit(tmp_path / "unit")
    master, slave = os.openpty()
    port = os.ttyname(slave)
    with (unit.path / "unit.toml").open("a") as f:
        f.write(f'\n[devices.gps]\nbackend = "serial"\nport = "{port}"\nbaud = 9600\n')
    stop = threading.Event()
    # once the self-test stops reading, the pty's buffer fills: a blocking
    # write would never see `stop` (the test hung on a loaded machine)
    os.set_blocking(master, False)

    def receiver() -> None:
        while not stop.is_set():
            with contextlib.suppress(BlockingIOError):  # nobody reads: it talks on regardless
                os.write(master, feed)
            stop.wait(0.2)

    t = threading.Thread(target=receiver, daemon=True)
    t.start()
    try:
        r = subprocess.run(
            [sys.executable, "-m", "firmware.cli", "selftest", "--unit", str(unit.path)]
            + ["--listen-s", str(listen_s)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        stop.set()
        t.join()
        os.close(master)
        os.close(slave)
    assert "Traceback" not in r.stderr
    return r.stdout


def test_selftest_listens_to_a_serial_gps_and_passes_only_what_it_heard(tmp_path: Path) -> None:
    good = SAMPLE_LOG.read_bytes()
    # a busy machine may take long to start the reader: listening ends once it heard,
    # so the bound is generous (a hang guard); the silent case is FAIL however long
    heard = _selftest_with_serial_gps(tmp_path / "a", good, listen_s=100)
    assert "PASS gps sentences" in heard and "PASS clock" in heard  # a fix with UTC time
    silent = _selftest_with_serial_gps(tmp_path / "b", b"\x00\xff garbage\r\n", listen_s=2)
    assert "FAIL gps sentences" in silent and "FAIL clock" in silent


def _rmc(date: str, lat: str, ns: str, lon: str, ew: str, mode: str = "A") -> str:
    """A well-formed RMC sentence with its checksum (pynmea2 renders it)."""
    import pynmea2

    fields = ("120000.00", "A", lat, ns, lon, ew, "0.0", "0.0", date, "", "", mode)
    return str(pynmea2.RMC("GP", "RMC", fields))


@pytest.mark.parametrize(
    ("sentence", "why"),
    [
        (_rmc("230999", "5130.0000", "N", "00007.0000", "W"), "week rollover: 1999"),
        (_rmc("231126", "9930.0000", "N", "00007.0000", "W"), "latitude 99"),
        (_rmc("231126", "5130.0000", "N", "19007.0000", "W"), "longitude 190"),
        (_rmc("231126", "5130.0000", "N", "00007.0000", "W", "S"), "a simulator"),
        (_rmc("231126", "5130.0000", "N", "00007.0000", "W", "N"), "mode: not valid"),
    ],
)
def test_an_impossible_fix_sets_neither_clock_nor_position(sentence: str, why: str) -> None:
    p = NmeaParser()
    fix = p.feed(sentence)
    assert fix is None or (fix.utc is None and fix.lat_e7 is None), why
    good = p.feed(_rmc("231126", "5130.0000", "N", "00007.0000", "W"))
    assert good is not None and good.utc is not None and good.utc.year == 2026  # the control
    assert good.lat_e7 == 515_000_000 and good.lon_e7 == -1_166_667
