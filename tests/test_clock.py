"""The clock the unit owns: at power-on the RTC's time is trusted as holdover
only within max_holdover of the chain's last authenticated sync, never when
the chip lost its time or reads before the firmware's build or the chain's
last record; a step of the system clock made by anyone else is undone and
recorded; holdover ends on time. Every change is a `clock` record."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest

from firmware.recording import build, capture_config, run_scenario, scenario_devices, unit_policy
from firmware.scenario import parse
from firmware.unitclock import BUILD_UTC_US
from hal.pacing import ManualPacer, VirtualClock
from hal.rtc import LinuxRtc, RtcInvalid
from sealing.verify import verify_store

from .conftest import Unit, make_unit

HOUR_US = 3600 * 10**6
T = BUILD_UTC_US + 20 * 24 * HOUR_US  # "now" on the first day in the field


@pytest.fixture
def synced_unit(tmp_path: Path) -> Unit:
    """A unit whose chain holds a dock sync at T (its first day)."""
    unit = make_unit(tmp_path / "unit")
    run_scenario(
        unit.path,
        parse({"seconds": 2, "size": "320x180", "clock": "synced"}, tmp_path),
        log=lambda line: None,
        wall_start_ns=T * 1000,
    )
    return unit


def _boot(
    unit: Unit,
    tmp: Path,
    *,
    system_us: int,
    rtc_us: int | None = None,
    rtc_invalid: str | None = None,
) -> tuple[list[dict], str]:
    """Power the unit on with this system clock and RTC; run one second."""
    scenario = parse({"seconds": 1, "size": "320x180"}, tmp)
    cfg = scenario_devices(scenario)
    policy = unit_policy(unit.path)
    clock = VirtualClock(system_us * 1000)
    pacer = ManualPacer(clock)
    rec = build(
        unit.path,
        cfg,
        clock=clock,
        pacer=pacer,
        policy=policy,
        capture=capture_config(cfg, policy),
        log=lambda line: None,
        mode="simulation",
        scenario=scenario,
    )
    try:
        rtc = rec.devices.rtc
        assert rtc is not None
        rtc.utc_us, rtc.invalid = rtc_us, rtc_invalid  # type: ignore[attr-defined]
        first = rec.store.head.seq
        rec.start()
        pacer.advance_to(rec.now_us() + 1_000_000)
        rec.pump()
        rec.finish()
        state = rec.machine.state.clock
    finally:
        rec.devices.close()
        rec.store.close()
    return [r for r in verify_store(unit.path).records if r["seq"] > first], state


def _clock_records(records: list[dict]) -> list[dict]:
    return [r["body"] for r in records if r["type"] == "clock"]


def test_rtc_within_holdover_of_the_last_dock_sync_is_holdover(
    synced_unit: Unit, tmp_path: Path
) -> None:
    # fake-hwclock brought back a stale time; the RTC kept the true one
    records, state = _boot(
        synced_unit, tmp_path, system_us=T - 5 * 24 * HOUR_US, rtc_us=T + 10 * HOUR_US
    )
    [body] = _clock_records(records)
    assert body["event"] == "rtc" and body["adopted"] and body["state"] == "holdover"
    assert abs(body["last_sync_us"] - T) < 2 * 10**6
    assert state == "holdover"
    later = records[-1]  # stamped after the RTC was judged
    assert abs(later["wall_us"] - (T + 10 * HOUR_US)) < 3 * 10**6  # the RTC's time was taken
    assert later["clock"] == {"state": "holdover", "source": "rtc"}


def test_rtc_past_holdover_is_taken_but_unverified(synced_unit: Unit, tmp_path: Path) -> None:
    records, state = _boot(synced_unit, tmp_path, system_us=T, rtc_us=T + 30 * HOUR_US)
    [body] = _clock_records(records)
    assert body["adopted"] and body["state"] == "unverified" and "30.0 h" in body["reason"]
    assert state == "unverified"


def test_rtc_with_oscillator_stop_flag_is_refused(synced_unit: Unit, tmp_path: Path) -> None:
    records, state = _boot(
        synced_unit,
        tmp_path,
        system_us=T + HOUR_US,
        rtc_invalid="the RTC's oscillator stopped (time invalid)",
    )
    [body] = _clock_records(records)
    assert not body["adopted"] and body["state"] == "unverified"
    assert "oscillator" in body["reason"] and state == "unverified"


@pytest.mark.parametrize(
    "rtc_us,why", [(BUILD_UTC_US - 400 * 24 * HOUR_US, "build"), (T - HOUR_US, "last record")]
)
def test_rtc_before_the_build_or_the_chain_is_refused(
    synced_unit: Unit, tmp_path: Path, rtc_us: int, why: str
) -> None:
    system = T + 2 * HOUR_US
    records, state = _boot(synced_unit, tmp_path, system_us=system, rtc_us=rtc_us)
    [body] = _clock_records(records)
    assert not body["adopted"] and body["state"] == "unverified", why
    assert state == "unverified"
    later = records[-1]  # stamped after the RTC was judged
    assert abs(later["wall_us"] - system) < 3 * 10**6  # the bad time was not taken


def test_a_gps_sync_writes_the_rtc_and_holdover_ends_on_time(tmp_path: Path) -> None:
    unit = make_unit(tmp_path / "unit")
    seen = {}

    def shorten(rec) -> None:
        rec.unitclock.max_holdover_s = 2.5
        seen["rec"] = rec

    run_scenario(
        unit.path,
        parse({"seconds": 6, "size": "320x180", "at": [{"t": 1, "gps_time": True}]}, tmp_path),
        log=lambda line: None,
        wall_start_ns=T * 1000,
        on_ready=shorten,
    )
    rec = seen["rec"]
    rtc_us = rec.devices.rtc.utc_us
    assert rtc_us is not None and abs(rtc_us - (T + 2 * 10**6)) < 1_500_000
    bodies = _clock_records(verify_store(unit.path).records)
    gps, expired = bodies[-2:]
    assert gps["source"] == "gps" and gps["state"] == "synced"
    assert expired["event"] == "expired" and expired["state"] == "unverified"
    assert rec.machine.state.clock == "unverified"


def test_linux_rtc_reads_sysfs_and_knows_a_lost_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sysfs = tmp_path / "rtc0"
    assert LinuxRtc(tmp_path / "dev", sysfs).read_us() is None  # no RTC at all
    sysfs.mkdir()
    (sysfs / "since_epoch").write_text("1795415954\n")
    rtc = LinuxRtc(tmp_path / "dev", sysfs)
    assert rtc.read_us() == 1_795_415_954_000_000
    (sysfs / "since_epoch").write_text("946684812\n")  # back at the chip's epoch, 2000
    with pytest.raises(RtcInvalid, match="lost its time"):
        rtc.read_us()

    def einval(self: Path, *a: object, **kw: object) -> str:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(Path, "read_text", einval)
    with pytest.raises(RtcInvalid, match="oscillator"):
        rtc.read_us()


def _dock_sets(t_us: int, answers: list[dict]):
    """An on_ready hook: the dock's POST /v1/time from the export service's thread."""
    import threading

    def dock(rec) -> None:
        t = threading.Thread(target=lambda: answers.append(rec.dock_time(t_us, "dock1")))
        t.start()
        rec._dock_thread = t

    return dock


def _run_an_hour_behind(unit: Unit, tmp_path: Path, dock) -> Any:
    """3 s of recording on a unit whose clock is an hour behind the dock's
    T, with `dock` (a `_dock_sets`-style hook) at ready; returns the
    recorder once the dock's thread is done."""
    rec = run_scenario(
        unit.path,
        parse({"seconds": 3, "size": "320x180"}, tmp_path),
        log=lambda line: None,
        wall_start_ns=(T - 3600 * 10**6) * 1000,
        on_ready=dock,
    )
    rec._dock_thread.join(5)
    return rec


def test_dock_time_goes_through_the_recorder_loop(tmp_path: Path) -> None:
    """With `run --export`, the dock's time is taken on the loop thread: a
    record naming the dock, the RTC written, the machine told (no warning)."""

    unit = make_unit(tmp_path / "unit")
    answers: list[dict] = []
    dock = _dock_sets(T, answers)

    rec = _run_an_hour_behind(unit, tmp_path, dock)
    [answer] = answers
    assert answer["source"] == "dock" and answer["state"] == "synced"
    assert 3_500_000_000 <= answer["step_us"] <= 3_700_000_000
    [body] = [b for b in _clock_records(verify_store(unit.path).records) if b.get("dock")]
    assert body["dock"] == "dock1" and body["after_us"] == T
    assert rec.devices.rtc.utc_us == T
    assert rec.machine.state.clock == "synced" and "clock" not in rec.machine.state.warnings


def test_the_dock_is_answered_only_once_its_clock_record_is_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop hands records to the store's committer; a dock's answer waits
    for it (`Recorder._answer`). With the committer slowed, the dock reads
    the chain file itself the moment it is answered: its record is there."""
    import threading
    import time

    from sealing import layout
    from sealing.store import Store, read_chain

    real_write = Store._write
    slow = threading.Event()

    def slow_committer(self: Store, job: object) -> None:
        if slow.is_set() and threading.current_thread().name == "store-committer":
            time.sleep(0.3)  # a record left with the committer when the dock is answered is lost
        real_write(self, job)  # type: ignore[arg-type]

    monkeypatch.setattr(Store, "_write", slow_committer)
    unit = make_unit(tmp_path / "unit")
    on_disk: list[list[dict]] = []

    def dock(rec) -> None:
        def post() -> None:
            slow.set()
            answer = rec.dock_time(T, "dock1")
            chain = read_chain(unit.path / "store" / layout.CHAIN)  # the file, not the store
            on_disk.append([ln.record.body for ln in chain.lines if ln.record.type == "clock"])
            on_disk.append([answer])

        rec._dock_thread = threading.Thread(target=post)
        rec._dock_thread.start()

    _run_an_hour_behind(unit, tmp_path, dock)
    clocks, [answer] = on_disk
    assert answer["source"] == "dock" and answer["state"] == "synced"
    assert [b["after_us"] for b in clocks if b.get("dock") == "dock1"] == [T]


def test_max_holdover_comes_from_unit_toml(synced_unit: Unit, tmp_path: Path) -> None:
    toml = synced_unit.path / "unit.toml"
    base = toml.read_text() if toml.exists() else ""
    toml.write_text(base + "\n[clock]\nmax_holdover_h = 48\n")
    records, state = _boot(synced_unit, tmp_path, system_us=T, rtc_us=T + 30 * HOUR_US)
    assert state == "holdover"  # 30 h is within the unit's 48 h
    toml.write_text(base + '\n[clock]\nmax_holdover_h = "forever"\n')
    with pytest.raises(ValueError, match=r"\[clock\] max_holdover_h"):
        _boot(synced_unit, tmp_path, system_us=T, rtc_us=T + 30 * HOUR_US)


@pytest.mark.parametrize("offered", [1, BUILD_UTC_US - 1, 10**20])
def test_a_dock_time_out_of_range_is_refused_and_recorded(tmp_path: Path, offered: int) -> None:
    """A dock with a wrong date cannot walk the unit to 1970 or the year 3 million:
    the time is refused (answered with the reason), recorded, and recording goes on."""
    unit = make_unit(tmp_path / "unit")
    answers: list[dict] = []
    dock = _dock_sets(offered, answers)

    rec = run_scenario(
        unit.path,
        parse(
            {
                "seconds": 4,
                "size": "320x180",
                "clock": "synced",
                "at": [{"t": 1, "press": "record"}, {"t": 3.5, "hold": "record"}],
            },
            tmp_path,
        ),
        log=lambda line: None,
        wall_start_ns=T * 1000,
        on_ready=dock,
    )
    rec._dock_thread.join(5)
    [answer] = answers
    assert "error" in answer and "not taken" in answer["error"]
    records = verify_store(unit.path).records  # the store still opens and verifies
    [refused] = [r["body"] for r in records if r["body"].get("event") == "refused"]
    assert int(refused["offered_us"]) == offered and refused["dock"] == "dock1"
    assert all(abs(r["wall_us"] - T) < 10 * 10**6 for r in records[2:])  # time not moved
    assert any(r["type"] == "segment" for r in records)
