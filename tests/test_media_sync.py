"""Media that plays true, judged by decoding the sealed segments: tone bursts
placed on known frame instants are heard with their pictures (±20 ms) at the
start, across rollovers, after resumes and after a restart; every file plays
alone and joined (byte concatenation and `ffmpeg -f concat`) without a
decoder warning; sound is mono and starts with the first picture."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware.recording import run_scenario
from firmware.scenario import parse
from sealing.verify import verify_store

from .conftest import Unit
from .media_check import continuous_runs, decode, ffmpeg_warnings, frame_times, onsets, probe

FPS = 30
# burst instants (s), each on a frame instant, none inside a pause
FIRST_RUN = [5.0, 7.1, 9.9, 10.2, 13.3, 17.0, 20.4, 24.5, 26.0]
SECOND_RUN = [2.0, 3.3]


def _scenario(seconds: float, presses: list[dict], bursts: list[float]) -> dict:
    return {
        "seconds": seconds,
        "size": "320x180",
        "clock": "synced",
        "segment_seconds": 8,
        "prerecord_seconds": 2,
        "at": presses,
        "sound": [{"t": t, "source": "tone:1000:-12", "seconds": 0.1} for t in bursts],
    }


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Unit, list]:
    from .conftest import make_unit

    tmp = tmp_path_factory.mktemp("sync")
    unit = make_unit(tmp / "unit")
    run_scenario(
        unit.path,
        parse(
            _scenario(
                31,
                [
                    {"t": 4, "press": "record"},
                    {"t": 14, "press": "function"},
                    {"t": 16, "press": "record"},
                    {"t": 22, "press": "function"},
                    {"t": 23, "press": "record"},
                    {"t": 28, "hold": "record"},
                ],
                FIRST_RUN,
            ),
            tmp,
        ),
        log=lambda line: None,
    )
    # a restart: the unit powers on again and records once more
    run_scenario(
        unit.path,
        parse(
            _scenario(7, [{"t": 1, "press": "record"}, {"t": 5, "hold": "record"}], SECOND_RUN), tmp
        ),
        log=lambda line: None,
    )
    return unit, continuous_runs(unit.path, unit.agency.identity)


def test_every_burst_is_heard_with_its_picture(recorded: tuple[Unit, list]) -> None:
    unit, recs = recorded
    assert len(recs) == 4  # start, two resumes, and the recording after the restart
    measured = []
    for rec in recs:
        for _name, data in rec:
            d = decode(data)
            at = dict((n, t) for t, n in d.frames)
            for onset in onsets(d):
                # the frame shown when the burst starts: its number says when it was taken
                n = min(at, key=lambda k: abs(at[k] - onset))
                measured.append((n, (onset - at[n]) / 1000))
    heard = {n for n, _ in measured}
    expected = {round(t * FPS) for t in FIRST_RUN} | {round(t * FPS) for t in SECOND_RUN}
    assert expected <= heard, f"bursts not found: {sorted(expected - heard)}"
    offsets = [ms for n, ms in measured if n in expected]
    assert all(abs(ms) <= 20 for ms in offsets), offsets


def test_each_file_is_self_contained_mono_and_clean(
    recorded: tuple[Unit, list], tmp_path: Path
) -> None:
    unit, recs = recorded
    files = 0
    for rec in recs:
        for name, data in rec:
            files += 1
            d = decode(data)
            assert d.first_video_key, f"{name}: does not start with a keyframe"
            first_picture = d.frames[0][0]
            assert abs(d.audio_start_us - first_picture) <= 64_000, name  # one AAC frame
            path = tmp_path / name.removesuffix(".age")
            path.write_bytes(data)
            audio = [s for s in probe(path)["streams"] if s["codec_type"] == "audio"]
            assert [s["channels"] for s in audio] == [1], name
            assert ffmpeg_warnings(["-i", str(path)]) == "", name
    assert files >= 5  # the first recording rolled over


def test_recordings_join_without_warnings_or_freezes(
    recorded: tuple[Unit, list], tmp_path: Path
) -> None:
    unit, recs = recorded
    longest = max(recs, key=len)
    assert len(longest) >= 2
    joined = b"".join(data for _, data in longest)
    assert ffmpeg_warnings(["-f", "mpegts", "-i", "-"], joined) == ""
    listing = tmp_path / "list.txt"
    lines = []
    frames = 0
    for name, data in longest:
        path = tmp_path / name.removesuffix(".age")
        path.write_bytes(data)
        lines.append(f"file '{path}'")
        frames += len(decode(data).frames)
    listing.write_text("\n".join(lines) + "\n")
    concat = ("-f", "concat", "-safe", "0")
    assert ffmpeg_warnings([*concat, "-i", str(listing)]) == ""
    times = frame_times(listing, concat)
    assert len(times) == frames
    steps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert max(steps) < 1.5 / FPS, f"a freeze of {max(steps):.3f} s at a join"
    total = times[-1] - times[0] + 1 / FPS
    assert abs(total - frames / FPS) <= 0.05


def test_a_pause_stays_a_gap_of_its_true_length(recorded: tuple[Unit, list]) -> None:
    """Byte-joined across a pause, the pictures keep their times: the gap a
    player shows is the pause as the chain recorded it (plus the two or three
    frames a resume waits for its first keyframe), never a rollover's zero."""
    unit, recs = recorded
    chain = verify_store(unit.path).records
    pause = next(r for r in chain if r["type"] == "pause")
    resume = next(r for r in chain if r["type"] == "resume")
    joined = b"".join(data for _, data in recs[0] + recs[1])
    assert ffmpeg_warnings(["-f", "mpegts", "-i", "-"], joined) == ""
    times = [t / 1e6 for t, _ in decode(joined).frames]
    shown = max(b - a for a, b in zip(times, times[1:], strict=False)) - 1 / FPS
    true_gap = (resume["mono_us"] - pause["mono_us"]) / 1e6
    assert -1 / FPS <= shown - true_gap <= 3 / FPS, (shown, true_gap)


@pytest.mark.slow
@pytest.mark.parametrize("seconds", [135, pytest.param(615, marks=pytest.mark.soak, id="ten")])
def test_minutes_stay_in_sync_and_last_as_long_as_their_frames(
    tmp_path_factory: pytest.TempPathFactory, seconds: int
) -> None:
    """Two rollovers in the default run; ten minutes under -m soak."""
    from .conftest import make_unit

    tmp = tmp_path_factory.mktemp("minutes")
    unit = make_unit(tmp / "unit")
    end = seconds - 5
    bursts = [10.0, round(end / 3, 1), round(2 * end / 3, 1), end - 20.0, end - 2.5]
    run_scenario(
        unit.path,
        parse(
            {
                "seconds": seconds,
                "size": "320x180",
                "clock": "synced",
                "segment_seconds": 64,
                "prerecord_seconds": 0,
                "at": [{"t": 2, "press": "record"}, {"t": end, "hold": "record"}],
                "sound": [{"t": t, "source": "tone:1000:-12", "seconds": 0.1} for t in bursts],
            },
            tmp,
        ),
        log=lambda line: None,
    )
    [rec] = continuous_runs(unit.path, unit.agency.identity)
    assert len(rec) >= (end - 2) // 64 + 1
    joined = b"".join(data for _, data in rec)
    d = decode(joined)
    assert (d.frames[-1][0] - d.frames[0][0]) / 1e6 > end - 2 - 10
    at = dict((n, t) for t, n in d.frames)
    offsets = {}
    for onset in onsets(d):
        n = min(at, key=lambda k: abs(at[k] - onset))
        offsets[n] = (onset - at[n]) / 1000
    for t in bursts:
        n = round(t * FPS)
        assert n in offsets and abs(offsets[n]) <= 20, (t, offsets.get(n))
    # the sound track lasts as long as the pictures: nothing lost, nothing extra
    picture_s = len(d.frames) / FPS
    sound_s = len(d.audio) / d.rate
    assert abs(sound_s - picture_s) <= 0.05, (sound_s, picture_s)
    path = tmp / "joined.ts"
    path.write_bytes(joined)
    duration = float(probe(path)["format"]["duration"])
    assert abs(duration - picture_s) <= 0.05, (duration, picture_s)
    assert ffmpeg_warnings(["-i", str(path)]) == ""
