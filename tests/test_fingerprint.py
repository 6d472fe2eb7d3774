"""The dock's fingerprint path through real libfprint: its virtual image
reader, fed synthetic fingers (tests/fingerprints.py) over its socket, does
the enrolment and NBIS matching a USB image reader would."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

# No skip: scripts/setup installs libfprint and PyGObject (the dock extra), and
# a missing one must fail CI, not pass it quietly
import gi
import numpy as np
import pytest

gi.require_version("FPrint", "2.0")
from gi.repository import FPrint, GLib  # noqa: E402

from dock.fingerprint import (  # noqa: E402
    MAX_TEMPLATE_BYTES,
    FingerprintError,
    LibfprintReader,
    check_template,
)

from .fingerprints import Finger, VirtualSensor, impression, make_finger, refused  # noqa: E402

# Every wait here is bounded by the reader's own timeouts; this bounds a hang.
pytestmark = pytest.mark.timeout(120)

# Seeds checked to sit far from NBIS's threshold of 40 (the officer: a whorl,
# genuine scores > 250; the others: a tented arch and another whorl, < 25).
OFFICER, OTHER, OTHER_WHORL = 1, 2, 6
SCAN_TIMEOUT = 5.0  # generous: a scan here takes ~30 ms


@pytest.fixture(scope="module")
def reader(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LibfprintReader, VirtualSensor]]:
    sock = tmp_path_factory.mktemp("fprint") / "virtual-image.socket"
    # libfprint finds the virtual reader when the context is made, and
    # listens on the socket once the reader is open.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FP_VIRTUAL_IMAGE", str(sock))
        r = LibfprintReader("virtual_image", scan_timeout=SCAN_TIMEOUT, io_timeout=5.0)
    sensor = VirtualSensor(str(sock))
    r.prompt = sensor.due
    yield r, sensor
    sensor.close()
    r.close()


@pytest.fixture
def sensor(reader: tuple[LibfprintReader, VirtualSensor]) -> Iterator[VirtualSensor]:
    reader[1].clear()
    yield reader[1]
    reader[1].clear()


@pytest.fixture(scope="module")
def fingers() -> dict[int, Finger]:
    return {s: make_finger(s) for s in (OFFICER, OTHER, OTHER_WHORL)}


@pytest.fixture(scope="module")
def enrolled(
    reader: tuple[LibfprintReader, VirtualSensor], fingers: dict[int, Finger]
) -> tuple[bytes, list[tuple[int, int, str | None]]]:
    r, sensor = reader
    sensor.clear()
    officer = fingers[OFFICER]
    sensor.queue(*(impression(officer, rng=(OFFICER, k)) for k in range(r.stages)))
    steps: list[tuple[int, int, str | None]] = []
    template = r.enroll(lambda done, total, retry: steps.append((done, total, retry)))
    sensor.clear()
    return template, steps


def _verify(
    r: LibfprintReader, sensor: VirtualSensor, template: bytes, scan: np.ndarray | bytes
) -> bool:
    sensor.queue(scan)
    sent = sensor.sent
    result = r.verify(template)
    assert sensor.sent == sent + 1  # the scan was taken, not some leftover
    return result


def test_enrolment_gives_a_template_and_names_the_reader(
    reader: tuple[LibfprintReader, VirtualSensor], enrolled: tuple[bytes, list]
) -> None:
    r, _ = reader
    template, steps = enrolled
    assert r.identity == "libfprint virtual_image/0"
    assert steps == [(k, 5, None) for k in range(1, 6)]
    assert template.startswith(b"FP3") and 1000 < len(template) < MAX_TEMPLATE_BYTES
    check_template(template)
    p = FPrint.Print.deserialize(template)
    assert (p.props.driver, p.props.device_id) == ("virtual_image", "0")


def test_the_same_finger_placed_again_matches(
    reader: tuple[LibfprintReader, VirtualSensor],
    sensor: VirtualSensor,
    fingers: dict[int, Finger],
    enrolled: tuple,
) -> None:
    r, _ = reader
    for k in (100, 101):  # shifted, turned, pressed and noised otherwise than at enrolment
        assert (
            _verify(r, sensor, enrolled[0], impression(fingers[OFFICER], rng=(OFFICER, k))) is True
        )


@pytest.mark.parametrize("other", [OTHER, OTHER_WHORL])
def test_another_finger_does_not_match(
    reader: tuple[LibfprintReader, VirtualSensor],
    sensor: VirtualSensor,
    fingers: dict[int, Finger],
    enrolled: tuple,
    other: int,
) -> None:
    r, _ = reader
    assert _verify(r, sensor, enrolled[0], impression(fingers[other], rng=(other, 100))) is False


def test_a_refused_scan_is_said_at_enrolment_and_fails_a_verification(
    reader: tuple[LibfprintReader, VirtualSensor],
    sensor: VirtualSensor,
    fingers: dict[int, Finger],
    enrolled: tuple,
) -> None:
    r, _ = reader
    officer = fingers[OFFICER]
    too_short = refused(int(FPrint.DeviceRetry.TOO_SHORT))
    sensor.queue(
        impression(officer, rng=(OFFICER, 10)),
        too_short,
        *(impression(officer, rng=(OFFICER, k)) for k in range(11, 15)),
    )
    steps: list[tuple[int, int, str | None]] = []
    template = r.enroll(lambda *step: steps.append(step))
    assert steps[1][:2] == (1, 5) and "too short" in (steps[1][2] or "")
    assert steps[-1] == (5, 5, None) and sensor.sent >= 6
    assert _verify(r, sensor, template, impression(officer, rng=(OFFICER, 102))) is True

    with pytest.raises(
        FingerprintError, match=r"verification: scan not usable \(.*centered.*\); scan again"
    ):
        _verify(r, sensor, enrolled[0], refused(int(FPrint.DeviceRetry.CENTER_FINGER)))


PRINT = "(issbymsmsia{sv}v)"  # libfprint's serialized print, after "FP3"
FIELDS = "type driver device_id device_stored finger username description date extra payload"


def _repacked(template: bytes, **change: object) -> bytes:
    """The template with some fields changed (as another reader's, or damage, would)."""
    value = GLib.Variant.new_from_bytes(
        GLib.VariantType.new(PRINT), GLib.Bytes.new(template[3:]), False
    )
    fields = list(value.unpack())
    fields[9] = value.get_child_value(9).get_variant()  # the payload stays a Variant
    for name, v in change.items():
        fields[FIELDS.split().index(name)] = v
    return b"FP3" + GLib.Variant(PRINT, tuple(fields)).get_data_as_bytes().get_data()


def _minutiae(scans: list[tuple[list[int], list[int], list[int]]]) -> GLib.Variant:
    return GLib.Variant("(a(aiaiai))", (scans,))


def test_the_repacking_helper_keeps_a_template_working(
    reader: tuple[LibfprintReader, VirtualSensor],
    sensor: VirtualSensor,
    fingers: dict[int, Finger],
    enrolled: tuple,
) -> None:
    # The refusals below are of what was changed, not of the repacking.
    same = _repacked(enrolled[0], driver="virtual_image")
    assert same == enrolled[0]
    assert (
        _verify(reader[0], sensor, same, impression(fingers[OFFICER], rng=(OFFICER, 103))) is True
    )


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda t: t[: len(t) // 2], "damaged"),
        (lambda t: t[:-1], "damaged"),
        (lambda t: b"FP3", "no FP3 header"),
        (lambda t: b"", "no FP3 header"),
        (lambda t: b"FP2" + t[3:], "no FP3 header"),
        (lambda t: t + bytes(MAX_TEMPLATE_BYTES), "more than a template can be"),
        (lambda t: t.decode("latin-1"), "expected bytes, got str"),
        (lambda t: _repacked(t, payload=GLib.Variant("s", "x")), "print type 2 with s"),
        (lambda t: _repacked(t, type=1, payload=GLib.Variant("s", "x")), "print type 1 with s"),
        (lambda t: _repacked(t, type=7), "print type 7"),
        (lambda t: _repacked(t, payload=_minutiae([])), "minutiae do not add up"),
        (lambda t: _repacked(t, payload=_minutiae([([1, 2], [3, 4], [5])])), "do not add up"),
        (lambda t: _repacked(t, payload=_minutiae([([1] * 201,) * 3])), "do not add up"),
        (lambda t: _repacked(t, finger=11), "no such finger or date"),
        (lambda t: _repacked(t, date=0), "no such finger or date"),
        (
            lambda t: _repacked(t, driver="synaptics"),
            "enrolled on a synaptics reader, not on libfprint virtual_image/0",
        ),
        (
            lambda t: _repacked(t, device_id="1-2.3", device_stored=True),
            "kept on reader virtual_image/1-2.3",
        ),
    ],
    ids=[
        "half",
        "one-byte-short",
        "header-only",
        "empty",
        "other-magic",
        "oversize",
        "str",
        "not-minutiae",
        "raw-not-boxed",
        "unknown-type",
        "no-scans",
        "uneven-columns",
        "too-many-minutiae",
        "no-such-finger",
        "no-such-date",
        "other-driver",
        "on-another-chip",
    ],
)
def test_a_damaged_or_foreign_template_is_refused_before_any_scan(
    reader: tuple[LibfprintReader, VirtualSensor],
    sensor: VirtualSensor,
    fingers: dict[int, Finger],
    enrolled: tuple,
    damage,
    said: str,
) -> None:
    r, _ = reader
    # The officer's finger, there to be scanned (and matched) if a template got through.
    sensor.queue(impression(fingers[OFFICER], rng=(OFFICER, 105)))
    sent, started = sensor.sent, time.monotonic()
    with pytest.raises(FingerprintError, match="fingerprint template: ") as caught:
        r.verify(damage(enrolled[0]))
    assert said in str(caught.value) and "\n" not in str(caught.value)
    # refused before any scan (the time bound only catches a hang: a busy CI is slow)
    assert sensor.sent == sent and time.monotonic() - started < 30.0


def test_a_scan_that_never_comes_times_out_and_the_reader_still_works(
    reader: tuple[LibfprintReader, VirtualSensor],
    sensor: VirtualSensor,
    fingers: dict[int, Finger],
    enrolled: tuple,
) -> None:
    r, _ = reader
    r.scan_timeout = 0.5
    try:
        started = time.monotonic()
        with pytest.raises(
            FingerprintError, match=r"verification: no finger scanned within 0.5 s$"
        ):
            r.verify(enrolled[0])
        assert 0.5 <= time.monotonic() - started < 30.0  # never early; late only if hung

        # Enrolment: each scan has its own timeout. The first two come 0.3 s
        # after their prompts (0.6 s in all, past one 0.5 s for the whole
        # enrolment); the third never comes.
        officer = fingers[OFFICER]
        sensor.queue(*(impression(officer, rng=(OFFICER, k)) for k in (20, 21)))
        sensor.delay = 0.3
        steps: list[tuple] = []
        started = time.monotonic()
        with pytest.raises(FingerprintError, match=r"enrolment: no finger scanned within 0.5 s$"):
            r.enroll(lambda *step: steps.append(step))
        assert [s[0] for s in steps] == [1, 2] and 1.1 <= time.monotonic() - started < 30.0
    finally:
        r.scan_timeout = SCAN_TIMEOUT
        sensor.delay = 0.0
    # Cancelled cleanly: the next verification takes its scan and matches.
    assert _verify(r, sensor, enrolled[0], impression(fingers[OFFICER], rng=(OFFICER, 104))) is True


def test_a_reader_that_is_not_there_is_named() -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("FP_VIRTUAL_IMAGE", raising=False)
        with pytest.raises(
            FingerprintError,
            match=r"^no fingerprint reader 'virtual_image' found \(readers found: ",
        ):
            LibfprintReader("virtual_image")


def test_the_dock_imports_without_gi() -> None:
    # The module keeps gi out of import time, so the dock runs without it.
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['gi'] = None\n"
        "import dock.fingerprint as f\n"
        "try:\n    f.LibfprintReader()\nexcept f.FingerprintError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ},
    )
    assert out.returncode == 0, out.stderr
    assert (
        out.stdout.startswith("libfprint is not available (") and "gir1.2-fprint-2.0" in out.stdout
    )
