"""In-stream signatures (capture/gopsign.py) checked the way an examiner gets
the video: decrypted, remuxed to MP4 with ffmpeg, cut, tampered with; every
check goes through `bodycam verify-media`."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest

from capture import gopsign
from capture.gopcheck import GroupResult
from firmware.cmd_verify_media import check_file
from firmware.recording import run_scenario
from firmware.scenario import parse
from sealing.recordings import utc_text

from .conftest import make_unit
from .media_check import decrypted_segments


def _record(tmp: Path, seconds: float, segment_s: int) -> tuple[Path, list[Path]]:
    unit = make_unit(tmp / "unit")
    run_scenario(
        unit.path,
        parse(
            {
                "seconds": seconds,
                "size": "640x360",
                "clock": "synced",
                "segment_seconds": segment_s,
                "prerecord_seconds": 1,
                "at": [{"t": 2, "press": "record"}, {"t": seconds - 1, "hold": "record"}],
            },
            tmp,
        ),
        log=lambda line: None,
    )
    out = []
    for r, data in decrypted_segments(unit.path, unit.agency.identity):
        ts = tmp / r["body"]["file"].removesuffix(".age")
        ts.write_bytes(data)
        out.append(ts)
    return unit.path, out


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    return _record(tmp_path_factory.mktemp("a"), 24, 64)


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    return _record(tmp_path_factory.mktemp("b"), 6, 64)


def _verify(path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "firmware.cli", "verify-media", str(path), "--json", *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in out.stderr, out.stderr
    return out.returncode, json.loads(out.stdout) if out.stdout.strip() else {}


def _mp4(ts: Path, out: Path) -> Path:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(ts), "-c", "copy", str(out)],
        check=True,
        timeout=120,
    )
    return out


def _gops(path: Path) -> list[list[bytes]]:
    """The video packets of a file, grouped from keyframe to keyframe."""
    gops: list[list[bytes]] = []
    with av.open(str(path)) as c:
        for pkt in c.demux(c.streams.video[0]):
            if pkt.size == 0:
                continue
            if pkt.is_keyframe or not gops:
                gops.append([])
            gops[-1].append(bytes(pkt))
    return gops


def _write(template: Path, gops: list[list[bytes]], out: Path) -> Path:
    """An MP4 of these groups, in this order, one picture per 1/30 s: what a
    tool that drops, reorders or splices groups would write."""
    with av.open(str(template)) as src, av.open(str(out), "w", format="mp4") as dst:
        vs = dst.add_stream_from_template(src.streams.video[0])
        n = 0
        for gop in gops:
            for i, data in enumerate(gop):
                p = av.Packet(data)
                p.stream = vs
                p.time_base = Fraction(1, 30)
                p.pts = p.dts = n
                p.is_keyframe = i == 0
                dst.mux(p)
                n += 1
    return out


def test_a_remuxed_recording_verifies_and_roots_in_the_chain(
    rec: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    unit, segs = rec
    mp4 = _mp4(segs[0], tmp_path / "copy.mp4")
    code, r = _verify(mp4, "--chain", str(unit))
    assert code == 0, r
    assert r["unit"] == "BC-TEST-0001" and r["chain"]["rooted"]
    assert r["groups"] >= 18 and r["group_counts"] == {"verified": r["groups"]}
    assert [(g["group"], g["last_group"]) for g in r["runs"]] == [(0, r["groups"] - 1)]
    # the segment itself (MPEG-TS) verifies the same
    code, ts = _verify(segs[0])
    assert code == 0 and ts["groups"] == r["groups"] and ts["pictures"] == r["pictures"]
    # a chain that never sealed this key does not root it
    other_unit = make_unit(tmp_path / "stranger")
    code, r = _verify(mp4, "--chain", str(other_unit.path))
    assert code == 1 and not r["chain"]["rooted"]


def test_one_flipped_byte_in_a_picture_is_found_and_located(
    rec: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    mp4 = _mp4(rec[1][0], tmp_path / "copy.mp4")
    with av.open(str(mp4)) as c:
        pkts = [p for p in c.demux(c.streams.video[0]) if p.size > 200]
        target = pkts[100]  # a picture in the fourth group
        pos, size = target.pos, target.size
    data = bytearray(mp4.read_bytes())
    data[pos + size // 2] ^= 0x10
    mp4.write_bytes(bytes(data))
    code, r = _verify(mp4)
    assert code == 1
    bad = [g for g in r["runs"] if g["status"] != "verified"]
    assert len(bad) == 1 and bad[0]["status"] == "altered", bad
    assert bad[0]["first_picture"] <= 100 < bad[0]["first_picture"] + bad[0]["pictures"]
    assert "differs from what was signed" in bad[0]["detail"]


def test_a_dropped_group_shows_as_missing(rec: tuple[Path, list[Path]], tmp_path: Path) -> None:
    gops = _gops(rec[1][0])
    code, r = _verify(_write(rec[1][0], gops[:5] + gops[6:], tmp_path / "drop.mp4"))
    assert code == 1 and r["missing_groups"] == [[5, 5]] and r["missing_count"] == 1


def test_swapped_groups_show_as_out_of_order(rec: tuple[Path, list[Path]], tmp_path: Path) -> None:
    gops = _gops(rec[1][0])
    swapped = gops[:4] + [gops[5], gops[4]] + gops[6:]
    code, r = _verify(_write(rec[1][0], swapped, tmp_path / "swap.mp4"))
    assert code == 1 and r["missing_groups"] == []
    assert r["group_counts"]["out of order"] == 1


def test_a_group_played_twice_is_repeated_not_verified(
    rec: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    """One second shown twice: right after itself, or again later. Every
    signature holds and no index is missing, but the copy does not verify."""
    gops = _gops(rec[1][0])
    for name, groups in [
        ("again.mp4", gops[:5] + [gops[4]] + gops[5:]),
        ("later.mp4", gops[:8] + [gops[3]] + gops[8:]),
    ]:
        code, r = _verify(_write(rec[1][0], groups, tmp_path / name))
        assert code == 1, name
        assert r["missing_groups"] == [] and r["group_counts"]["repeated"] == 1, r
        bad = [g for g in r["runs"] if g["status"] != "verified"]
        assert len(bad) == 1 and "more than once" in bad[0]["detail"]


def test_a_group_from_another_recording_is_foreign(
    rec: tuple[Path, list[Path]], other: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    gops = _gops(rec[1][0])
    spliced = gops[:6] + [_gops(other[1][0])[2]] + gops[7:]
    code, r = _verify(_write(rec[1][0], spliced, tmp_path / "splice.mp4"))
    assert code == 1
    assert r["group_counts"]["foreign"] == 1
    assert r["missing_groups"] == [[6, 6]]


def test_a_reencoded_copy_carries_no_signature(
    rec: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    out = tmp_path / "re.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(rec[1][0]), "-c:v", "libx264", "-an", str(out)],
        check=True,
        timeout=300,
    )
    code, r = _verify(out)
    assert code == 1 and {g["status"] for g in r["runs"]} == {"unsigned"} and not r["groups"]


def test_a_ten_second_excerpt_verifies_with_its_true_times(
    rec: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    gops = _gops(rec[1][0])
    assert len(gops) >= 20
    whole: list[GroupResult] = []
    check_file(rec[1][0], whole.append)
    code, r = _verify(_write(rec[1][0], gops[6:16], tmp_path / "excerpt.mp4"))
    assert code == 0, r
    assert [(g["group"], g["last_group"], g["groups"]) for g in r["runs"]] == [(6, 15, 10)]
    times = {g.signature.index: g.utc_us for g in whole if g.signature and g.utc_us}
    assert r["verified_from"] == utc_text(times[6][0], ms=True)
    assert r["verified_to"] == utc_text(times[15][1], ms=True)


def test_an_excerpt_cut_inside_a_group_says_so(
    rec: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    gops = _gops(rec[1][0])
    cut = [gops[3][10:]] + gops[4:8] + [gops[8][:5]]
    code, r = _verify(_write(rec[1][0], cut, tmp_path / "cut.mp4"))
    statuses = [(g["status"], g["groups"]) for g in r["runs"]]
    assert code == 1
    assert statuses == [("incomplete", 1), ("verified", 4), ("unsigned", 0)]


def test_unusable_input_exits_2(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    code, _ = _verify(junk)
    assert code == 2


def test_signature_payload_round_trips_and_refuses_damage() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    hashes = [bytes([i]) * 32 for i in range(3)]
    data = gopsign.build(key, "BC-1", 4, 120, 30, bytes(32), hashes)
    sig = gopsign.parse(data)
    assert sig is not None and sig.valid() and sig.hashes == hashes and sig.index == 4
    assert gopsign.parse(data[:-1]) is None
    flipped = gopsign.parse(data[:10] + bytes([data[10] ^ 1]) + data[11:])
    assert flipped is not None and not flipped.valid()
