"""The verifiers stream: their peak memory does not follow the input's length
or how it is cut (docs/FORMAT.md section 10, where the bounds below are
stated). Each verifier runs as a child process whose peak resident set is
read from `wait4`, so nothing else in this test process counts."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import pytest

from sealing.store import SegmentMeta

from .conftest import make_unit
from .longmedia import long_recording, nal_storm

MIB = 1024 * 1024
MEDIA_BOUND = 128 * MIB  # `bodycam verify-media`, any input (FORMAT.md section 10)
VERIFY_BOUND = 256 * MIB  # `bodycam verify`, before its ~40 bytes per record


@dataclass
class Ran:
    code: int
    peak: int  # bytes
    out: str
    err: str


# Linux counts the memory a process had when it called exec in its peak: a
# child forked straight from this (large) test process would report this
# process's size. So a small launcher forks the verifier and reads its peak.
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, "-m", "firmware.cli", *sys.argv[2:]])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss * 1024))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _run(*args: str) -> Ran:
    """`bodycam ARGS` in a child process, and that process's peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        peak, out, err = Path(tmp) / "peak", Path(tmp) / "out", Path(tmp) / "err"
        with out.open("wb") as o, err.open("wb") as e:
            code = subprocess.run(
                [sys.executable, "-c", LAUNCHER, str(peak), *args], stdout=o, stderr=e
            ).returncode
        ran = Ran(code, int(peak.read_text()), out.read_text(), err.read_text())
    assert "Traceback" not in ran.out + ran.err, ran.err
    print(f"\nbodycam {args[0]} {Path(args[1]).name}: peak {ran.peak / MIB:.1f} MiB")
    return ran


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.mark.slow
def test_verify_media_on_an_hour_takes_what_a_minute_takes(media: Path) -> None:
    """60 minutes of signed video (3,600 groups) and one minute: both verify,
    in the same memory, under the stated bound; the MP4 copy of the hour too."""
    hour, minute = media / "hour.ts", media / "minute.ts"
    long_recording(hour, 3600)
    long_recording(minute, 60)
    short = _run("verify-media", str(minute))
    long = _run("verify-media", str(hour))
    assert short.code == 0 and long.code == 0, long.out
    assert "groups     3600 (3600 verified)" in long.out
    assert long.peak < MEDIA_BOUND
    assert long.peak - short.peak < 16 * MIB, (short.peak, long.peak)
    mp4 = media / "hour.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(hour), "-c", "copy", str(mp4)],
        check=True,
        timeout=600,
    )
    copy = _run("verify-media", str(mp4))
    assert copy.code == 0 and "3600 verified" in copy.out
    assert copy.peak < MEDIA_BOUND


@pytest.mark.slow
@pytest.mark.parametrize(("shape", "units"), [("pictures", 3_000_000), ("one_unit", 1_000_000)])
def test_a_nal_storm_gets_a_clear_answer_in_bounded_memory(
    media: Path, shape: str, units: int
) -> None:
    """Millions of NAL units of a few bytes: as many pictures, or all in one
    access unit. Nothing is signed, so nothing verifies; the answer says so."""
    storm = media / f"storm-{shape}.h264"
    nal_storm(storm, units, shape)
    r = _run("verify-media", str(storm))
    assert r.code == 1, r.out + r.err
    assert r.out.startswith("NOT VERIFIED") and "UNSIGNED" in r.out
    assert "beyond the format's limits for a group" in r.out
    assert r.peak < MEDIA_BOUND


def test_access_units_at_and_over_the_limit(media: Path) -> None:
    """A transport stream of 1,000 PES packets of 1,000 tiny NAL units each,
    ending in a 15 MiB picture: read, in bounded memory. A 20 MiB NAL unit is
    over the format's 16 MiB: checking stops there and says why."""
    ts = media / "packets.ts"
    with av.open(str(ts), "w", format="mpegts") as out:
        vs = out.add_stream("h264", rate=30)
        vs.width, vs.height = 160, 96
        big = b"\x00\x00\x01\x01\x80" + b"\x11" * (15 * MIB)
        for n in range(1001):
            p = av.Packet(big if n == 1000 else b"\x00\x00\x01\x01\x80" * 1000)
            p.stream = vs
            p.time_base = Fraction(1, 30)
            p.pts = p.dts = n
            out.mux(p)
    r = _run("verify-media", str(ts))
    assert r.code == 1 and "stopped" not in r.out
    assert "pictures   1000001" in r.out
    assert r.peak < MEDIA_BOUND
    over = media / "over.h264"
    over.write_bytes(b"\x00\x00\x01\x01\x80" + b"\x11" * (20 * MIB))
    r = _run("verify-media", str(over))
    assert r.code == 1
    assert "stopped    a NAL unit at stream byte 3 is larger than 16777216 bytes" in r.out
    assert r.peak < MEDIA_BOUND


@pytest.mark.soak
def test_verify_media_on_an_hour_at_30_fps_and_a_bigger_storm(media: Path) -> None:
    hour = media / "hour30.ts"
    long_recording(hour, 3600, fps=30)
    r = _run("verify-media", str(hour))
    assert r.code == 0 and "108000, 0 of them" in r.out and r.peak < MEDIA_BOUND
    storm = media / "storm-3m.h264"
    nal_storm(storm, 3_000_000, "one_unit")
    r = _run("verify-media", str(storm))
    assert r.code == 1 and r.peak < MEDIA_BOUND


def _sealed(path: Path, mib: int) -> Path:
    """A unit whose store holds one segment of `mib` MiB; the identity beside it."""
    unit = make_unit(path)
    store = unit.open(boot_body={"cause": "test"})
    start = store.clock()
    w = store.open_segment("ts")
    block = os.urandom(MIB)
    for _ in range(mib):
        w.write(block)
    end = store.clock()
    w.close(SegmentMeta(start=start, end=end, duration_us=end.mono_us - start.mono_us))
    store.close()
    (path / "identity.txt").write_text(str(unit.agency.identity) + "\n")
    return path


def test_verify_reads_a_large_segment_in_the_memory_of_a_small_one(tmp_path: Path) -> None:
    """One read per segment, hashed and decrypted from the same bytes: 300 MiB
    of media verify in the memory that 1 MiB takes."""
    small, large = _sealed(tmp_path / "small", 1), _sealed(tmp_path / "large", 300)
    a = _run("verify", str(small), "--identity", str(small / "identity.txt"))
    b = _run("verify", str(large), "--identity", str(large / "identity.txt"))
    assert a.code == 0 and b.code == 0, b.out
    assert "RESULT     VERIFIED" in b.out
    assert b.peak - a.peak < 8 * MIB, (a.peak, b.peak)
    assert b.peak < VERIFY_BOUND


@pytest.mark.slow
def test_verify_holds_one_record_at_a_time(tmp_path: Path) -> None:
    """Records at the line limit, of the costliest shapes to parse (millions of
    small values): the report is streamed, one line is held at a time."""
    unit = make_unit(tmp_path / "wide")
    store = unit.open(boot_body={"cause": "test"})
    store.append("mark", {"flag": "x", "strings": [""] * 2_780_000})  # ~8 MiB with its line
    store.close()
    for args in ([], ["--json"]):
        r = _run("verify", str(unit.path), *args)
        assert r.code == 0, r.out[-2000:]
        assert r.peak < VERIFY_BOUND
