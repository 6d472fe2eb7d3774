"""Bad unit.toml and scenario values are refused when they are loaded, through
the real `bodycam` command: exit 2, one line on stderr naming the key, no
traceback, and the unit's chain byte for byte as it was (the store is never
opened). Good files still load: the demo scenario, and the
unit.toml tools/flash.py writes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w

from firmware import scenario, unitconfig
from firmware.demo_recording import DEMO

from .conftest import Unit, make_unit

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = [DEMO]  # the scenario the demo runs (firmware/demo.toml)

# id -> (subcommand, unit.toml, scenario file or None, what stderr must say)
# `sim` is `bodycam run --sim --scenario FILE`; the others take only --unit.
BAD: dict[str, tuple[str, str, str | None, str]] = {
    # unit.toml
    "policy-inf": ("run", "[policy]\nsegment_s = inf\n", None, "[policy] segment_s = inf"),
    "policy-segment-off-grid": (
        "run",
        "[policy]\nsegment_s = 30\n",
        None,
        "[policy] segment_s = 30: must be a multiple of 8 s",
    ),
    "clock-nan": ("run", "[clock]\nmax_holdover_h = nan\n", None, "[clock] max_holdover_h = nan"),
    "policy-string-number": (
        "run",
        '[policy]\nbattery_warn_minutes = "5"\n',
        None,
        "[policy] battery_warn_minutes = '5': must be a whole number",
    ),
    "policy-bool-for-int": (
        "run",
        "[policy]\nnote_reprompts = true\n",
        None,
        "[policy] note_reprompts = true: must be a whole number",
    ),
    "policy-negative": ("run", "[policy]\nprerecord_s = -1\n", None, "[policy] prerecord_s = -1"),
    "policy-window-shorter": (
        "run",
        "[policy]\nnote_window_s = 2.0\n",
        None,
        "[policy] note_window_s = 2.0: must be at least note_min_speech_s (3)",
    ),
    "camera-zero-fps": ("run", "[devices.camera]\nfps = 0\n", None, "[devices.camera] fps = 0"),
    "camera-odd-width": (
        "run",
        '[devices.camera]\nsize = "1279x720"\n',
        None,
        "[devices.camera] size = '1279x720': must look like 1280x720 (even",
    ),
    "policy-unknown-key": (
        "run",
        '[policy]\nclock_polcy = "refuse"\n',
        None,
        "[policy] clock_polcy = 'refuse': unknown key (did you mean clock_policy?)",
    ),
    "unknown-table": ("run", "[polcy]\nsegment_s = 10.0\n", None, "[polcy]: unknown table"),
    "devices-not-a-table": (
        "run",
        '[devices]\ncamera = "sim"\n',
        None,
        "[devices] camera = 'sim': must be a table",
    ),
    "export-port-range": (
        "export-serve",
        "[export]\nport = 70000\n",
        None,
        "[export] port = 70000: must be a whole number from 1 to 65535",
    ),
    "export-address": (
        "run",
        '[export]\naddress = "everywhere"\n',
        None,
        "[export] address = 'everywhere': must be an IP address",
    ),
    "sim-battery-selftest": (
        "selftest",
        "[sim]\nbattery = 150\n",
        None,
        "[sim] battery = 150: must be a number from 0 to 100",
    ),
    "not-toml": ("run", "[policy\n", None, "unit.toml: not valid TOML"),
    # scenarios
    "seconds-inf": ("sim", "", "seconds = inf\n", "seconds = inf: must be a finite number"),
    "seconds-string": ("sim", "", 'seconds = "10"\n', "seconds = '10': must be a number"),
    "seconds-missing": ("sim", "", 'size = "320x180"\n', "seconds: missing"),
    "t-nan": ("sim", "", 'seconds = 5\n[[at]]\nt = nan\npress = "record"\n', "[[at]] #1 t = nan"),
    "t-negative": (
        "sim",
        "",
        'seconds = 5\n[[at]]\nt = -1\npress = "record"\n',
        "[[at]] #1 t = -1: must be a number from 0 to 5",
    ),
    "t-after-end": ("sim", "", 'seconds = 5\n[[at]]\nt = 9\npress = "record"\n', "[[at]] #1 t = 9"),
    "odd-size": ("sim", "", 'seconds = 5\nsize = "641x360"\n', "size = '641x360'"),
    "zero-segment": ("sim", "", "seconds = 5\nsegment_seconds = 0\n", "segment_seconds = 0"),
    # segments end where a keyframe meets the AAC grid (every 8 s): never rounded
    "segment-off-grid": (
        "sim",
        "",
        "seconds = 5\nsegment_seconds = 2\n",
        "segment_seconds = 2: must be a multiple of 8 s",
    ),
    "unknown-scenario-key": ("sim", "", 'seconds = 5\ncolour = "red"\n', "colour = 'red'"),
    "unknown-event-kind": (
        "sim",
        "",
        "seconds = 5\n[[at]]\nt = 1\nzoom = 2\n",
        "[[at]] #1 zoom = 2: unknown event",
    ),
    "unknown-button": (
        "sim",
        "",
        'seconds = 5\n[[at]]\nt = 1\npress = "volume"\n',
        "[[at]] #1 press = 'volume': unknown button",
    ),
    "battery-string": (
        "sim",
        "",
        'seconds = 5\n[[at]]\nt = 1\nbattery = "low"\n',
        "[[at]] #1 battery = 'low'",
    ),
    "storage-bool": (
        "sim",
        "",
        "seconds = 5\n[[at]]\nt = 1\nstorage_free_mib = true\n",
        "[[at]] #1 storage_free_mib = true: must be a whole number",
    ),
    "minutes-float": (
        "sim",
        "",
        "seconds = 5\n[[at]]\nt = 1\nbattery = 3\nminutes = 4.5\n",
        "[[at]] #1 minutes = 4.5",
    ),
    "fault-reason-type": (
        "sim",
        "",
        'seconds = 5\n[[at]]\nt = 1\nfault = "camera"\nreason = 3\n',
        "[[at]] #1 reason = 3",
    ),
    "extra-key-on-event": (
        "sim",
        "",
        'seconds = 5\n[[at]]\nt = 1\npress = "record"\nminutes = 3\n',
        "[[at]] #1 minutes = 3: unknown key",
    ),
    "at-not-tables": ("sim", "", "seconds = 5\nat = 3\n", "at = 3: must be [[at]] tables"),
    "sound-missing-wav": (
        "sim",
        "",
        'seconds = 5\n[[sound]]\nt = 1\nwav = "missing.wav"\n',
        "[[sound]] #1 wav = 'missing.wav': no such file",
    ),
    "sound-bad-source": (
        "sim",
        "",
        'seconds = 5\n[[sound]]\nt = 1\nsource = "tone:99999:-12"\n',
        "[[sound]] #1 source = 'tone:99999:-12'",
    ),
    "sound-zero-seconds": (
        "sim",
        "",
        'seconds = 5\n[[sound]]\nt = 1\nsource = "noise:-30"\nseconds = 0\n',
        "[[sound]] #1 seconds = 0",
    ),
    "sound-nested-type": (
        "sim",
        "",
        "seconds = 5\n[[sound]]\nt = 1\nsource = { kind = 'noise' }\n",
        "[[sound]] #1 source = {'kind': 'noise'}",
    ),
}


@pytest.fixture(scope="module")
def shared_unit(tmp_path_factory: pytest.TempPathFactory) -> Unit:
    # one unit for the whole table: nothing may change it, which each case checks
    return make_unit(tmp_path_factory.mktemp("loaders") / "unit")


@pytest.fixture
def unit(shared_unit: Unit) -> Iterator[Unit]:
    yield shared_unit
    (shared_unit.path / "unit.toml").unlink(missing_ok=True)


def _bodycam(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "firmware.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,  # a value that slipped through would start a live unit: fail, not hang
    )


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_value_is_refused_before_the_store_opens(
    case: str, unit: Unit, tmp_path: Path
) -> None:
    command, unit_toml, scenario_text, says = BAD[case]
    (unit.path / "unit.toml").write_text(unit_toml)
    chain = unit.path / "store" / "chain.jsonl"
    before = chain.read_bytes()
    if command == "sim":
        assert scenario_text is not None
        path = tmp_path / "scenario.toml"
        path.write_text(scenario_text)
        r = _bodycam("run", "--unit", str(unit.path), "--sim", "--scenario", str(path))
        assert f"scenario {path}: " in r.stderr  # which file
    else:
        r = _bodycam(command, "--unit", str(unit.path))
        assert "unit.toml: " in r.stderr
    assert r.returncode == 2, r.stdout + r.stderr
    assert says in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr  # one clear line
    assert "Traceback" not in r.stdout + r.stderr
    assert chain.read_bytes() == before  # no boot record: the store was never opened


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_scenario_loads(example: Path, tmp_path: Path) -> None:
    sc = scenario.load(example, tmp_path)
    assert sc.seconds > 0 and (sc.happenings or sc.sounds)


def test_what_flash_writes_loads(tmp_path: Path) -> None:
    """The unit.toml of a provisioned unit (boot/flash.py), simulated and Pi."""
    from boot import flash

    head = {
        "unit": {"serial": "BC-QA-000012", "officer": "OFFICER-7", "profile": "qa",
                 "firmware_version": "0.1.0"},
        "export": {"address": "192.168.7.2", "port": 8443},
        "clock": {"max_holdover_h": 24},
    }  # fmt: skip
    for tail in (flash.sim_section(), flash.PI_DEVICES):
        (tmp_path / "unit.toml").write_text(tomli_w.dumps(head | tail))
        cfg = unitconfig.load(tmp_path)
        assert cfg.unit.serial == "BC-QA-000012" and cfg.export.port == 8443
        assert cfg.clock.max_holdover_s == 24 * 3600
    assert cfg.devices.backends["camera"] == "picamera2" and cfg.devices.size == (1920, 1080)


def test_no_unit_toml_is_all_defaults(tmp_path: Path) -> None:
    cfg = unitconfig.load(tmp_path)
    assert cfg.policy == unitconfig.Policy() and cfg.export == unitconfig.ExportConfig()
    assert cfg.devices.all_simulated and cfg.sim.battery == 100
