"""Capture through its real interface: continuity across rollovers (decoded
with PyAV and checked by ffprobe), pre-record, and voice activity on real
speech (espeak-ng) against noise and a tone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import pytest

from capture.files import file_sinks
from capture.pipeline import Capture, CaptureConfig
from capture.segmenter import segment_grid_us, segment_problem
from hal.camera_sim import SimCamera, read_number
from hal.microphone_sim import SimMicrophone, Sound
from hal.wav import RATE, speech_wav

from .media_check import decode, ffmpeg_warnings, onsets, probe


def _numbers(path: Path) -> tuple[list[int], list[bool]]:
    nums, keys = [], []
    with av.open(str(path)) as f:
        for packet in f.demux(video=0):
            for frame in packet.decode():
                nums.append(read_number(frame.to_ndarray(format="rgb24")))
                keys.append(bool(packet.is_keyframe))
    return nums, keys


def test_rollover_loses_and_duplicates_no_frame(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "firmware.cli",
            "capture",
            "--sim",
            "--seconds",
            "17",
            "--segment-seconds",
            "8",
            "--size",
            "640x360",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    segs = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(segs) == 3  # rollovers where the audio grid meets a keyframe: 8 s, 16 s
    seen: list[int] = []
    for s in segs:
        nums, keys = _numbers(Path(s["file"]))
        assert keys[0], "a segment must start with a keyframe"
        assert len(nums) == s["frames"]
        seen += nums
    assert seen == list(range(17 * 30))
    # ffprobe accepts every segment and the concatenation plays as one recording
    whole = tmp_path / "all.ts"
    whole.write_bytes(b"".join(Path(s["file"]).read_bytes() for s in segs))
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,nb_read_frames",
            "-of",
            "json",
            str(whole),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    streams = {
        s["codec_name"]: int(s["nb_read_frames"]) for s in json.loads(probe.stdout)["streams"]
    }
    assert streams["h264"] == 17 * 30
    # the sound lasts as long as the pictures, in whole AAC frames: within half a frame
    audio = sum(s["audio_samples"] for s in segs)
    assert abs(audio - 17 * RATE) <= 512
    # timestamps run on: each segment starts where the previous ended
    for a, b in zip(segs, segs[1:], strict=False):
        assert (
            b["start_us"] == a["start_us"] + a["duration_us"] + 30
            or abs(b["start_us"] - (a["start_us"] + a["duration_us"])) <= 34
        )


def test_prerecord_starts_at_a_keyframe_within_the_window(tmp_path: Path) -> None:
    cam = SimCamera(320, 180, 30)
    cap = Capture(
        file_sinks(tmp_path), CaptureConfig(segment_s=32, prerecord_s=3, width=320, height=180)
    )
    for i in range(10 * 30):  # 10 s before the press
        cap.push_video(cam.next_frame(i * 1_000_000 // 30))
    pre = cap.start(10_000_000)
    for i in range(300, 330):
        cap.push_video(cam.next_frame(i * 1_000_000 // 30))
    path, _ = cap.stop()
    nums, keys = _numbers(path)
    assert keys[0] and 2_000_000 <= pre <= 3_000_000
    assert nums == list(range(nums[0], 330)) and nums[0] == 300 - pre * 30 // 1_000_000


# tone bursts in the live sound after the press, while the pre-record is
# still being handed over: each must be heard with the frame taken with it
BURSTS_S = (35.2, 35.9, 36.5)


def _prerecorded(out: Path, drain: int | None) -> tuple[Path, int, list[int]]:
    """30 s of picture before a press, 2 s after with live sound; the
    pre-record handed to the segmenter `drain` items per turn (None: all of
    it at the next stop), as the recorder's loop does."""
    cam = SimCamera(160, 90, 30)
    mic = SimMicrophone([Sound(t, "tone:1000:-12", seconds=0.15) for t in BURSTS_S])
    cap = Capture(
        file_sinks(out), CaptureConfig(segment_s=3600, prerecord_s=30, width=160, height=90)
    )
    left: list[int] = []
    for i in range(37 * 30):
        if i == 35 * 30:
            cap.start(35_000_000)
            left.append(cap.backlog)
        cap.push_video(cam.next_frame(i * 1_000_000 // 30))
        s0, s1 = i * RATE // 30, (i + 1) * RATE // 30  # sample-exact: RATE / 30 is not whole
        cap.push_audio(mic.read(s0, s1 - s0))
        if drain is not None and i >= 35 * 30:
            left.append(cap.drain(drain))
    path, _ = cap.stop()
    assert cap.backlog == 0
    return path, cap.segmenter.frames_total, left


def test_the_prerecord_is_sealed_a_share_a_turn_and_the_file_is_the_same(
    tmp_path: Path,
) -> None:
    """A press must not wait while 30 s of picture are sealed: start() hands
    over one keyframe, the rest goes a few items a turn while live frames and
    sound queue behind it. Judged by decoding: every picture once, in order;
    each tone burst of the live sound heard with its own frame; the file
    plays clean; and it is byte for byte what one hand-over makes."""
    piece, n1, left = _prerecorded(tmp_path / "a", drain=30)
    whole, n2, _ = _prerecorded(tmp_path / "b", drain=None)
    assert left[0] >= 29 * 30  # at the press, nearly all of the pre-record still to go
    assert left[-1] == 0 and all(b < a for a, b in zip(left, left[1:], strict=False) if a)
    nums, keys = _numbers(piece)
    assert keys[0] and nums == list(range(nums[0], 37 * 30)) and nums[0] <= 5 * 30
    streams = {s["codec_type"]: s for s in probe(piece)["streams"]}
    assert streams["video"]["codec_name"] == "h264"
    assert (streams["audio"]["codec_name"], streams["audio"]["channels"]) == ("aac", 1)
    assert ffmpeg_warnings(["-i", str(piece)]) == ""
    _assert_heard_with_their_frames(piece, BURSTS_S)
    assert piece.read_bytes() == whole.read_bytes() and n1 == n2


def _assert_heard_with_their_frames(path: Path, bursts_s: tuple[float, ...]) -> None:
    """Each tone burst of `bursts_s` (and no other) is heard in the file with
    the frame taken at its time, within 20 ms (the A/V offset)."""
    d = decode(path.read_bytes())
    at = {n: t for t, n in d.frames}
    heard = []
    for onset in onsets(d):
        n = min(at, key=lambda k: abs(at[k] - onset))  # the frame shown as the burst starts
        heard.append((n, (onset - at[n]) / 1000))
    assert {round(t * 30) for t in bursts_s} == {n for n, _ in heard}, heard
    assert all(abs(ms) <= 20 for _, ms in heard), heard  # A/V offset in ms


# tone bursts in the pre-record (its sound kept), live before the pause, and
# after the resume (from its keyframe at 16 s): each heard with its own frame
PAUSE_BURSTS_S = (9.2, 14.6, 15.2, 16.2, 16.7)


def _paused_after_the_press(out: Path, how: str) -> tuple[list[Path], list[str]]:
    """10 s of picture and sound before a press at 15 s, a pause 0.5 s after
    it with much of the pre-record still to hand over, 1 s more after the
    pause, then (`resume`) a new start. `how`: "wait" stops as a stop does
    (the file takes the backlog and is closed at once); "drain" leaves it
    to be drained a share a turn; "resume" starts again before it is.
    Returns the files and what happened, in order."""
    cam = SimCamera(160, 90, 30)
    mic = SimMicrophone([Sound(t, "tone:1000:-12", seconds=0.15) for t in PAUSE_BURSTS_S])
    files: list[Path] = []
    seen: list[str] = []
    sinks = file_sinks(out)

    class Sink:
        def __init__(self, index: int, start_us: int) -> None:
            self.inner = sinks(index, start_us)
            seen.append(f"open {index}")

        def write(self, data: bytes | memoryview) -> None:
            self.inner.write(data)

        def close(self, info: object) -> object:
            path, _ = self.inner.close(info)  # type: ignore[arg-type]
            files.append(path)
            seen.append(f"closed {path.name}")
            return path, info

    config = CaptureConfig(
        segment_s=3600, prerecord_s=10, width=160, height=90, prerecord_audio=True
    )
    cap = Capture(Sink, config)
    for i in range(17 * 30):
        if i == 15 * 30:
            cap.start(15_000_000)
        if i == 15 * 30 + 15:  # the pause
            cap.stop(wait=how == "wait")
            seen.append(f"paused, {cap.backlog} left")
            if how == "resume":
                cap.start(i * 1_000_000 // 30, prerecord=False)
                seen.append("resumed")
        cap.push_video(cam.next_frame(i * 1_000_000 // 30))
        s0, s1 = i * RATE // 30, (i + 1) * RATE // 30
        cap.push_audio(mic.read(s0, s1 - s0))
        if i >= 15 * 30:
            cap.drain(10)
    cap.stop()
    return files, seen


def test_a_pause_leaves_the_prerecord_to_drain_and_the_file_is_the_same(
    tmp_path: Path,
) -> None:
    """A pause 0.5 s after a press with a pre-record does not seal the
    whole pre-record at once (issue 28: the next press would wait on it):
    the recording stops taking media at the pause, and the file takes the
    rest of the backlog a share a turn and is closed when it has it all. A
    start before then closes it first. Judged by decoding: every picture up
    to the pause once, none after; the file byte for byte what sealing it at
    the pause makes."""
    waited, w_seen = _paused_after_the_press(tmp_path / "wait", "wait")
    drained, d_seen = _paused_after_the_press(tmp_path / "drain", "drain")
    resumed, r_seen = _paused_after_the_press(tmp_path / "resume", "resume")
    assert w_seen[:3] == ["open 1", "closed segment_0001.ts", "paused, 0 left"]
    paused = next(x for x in d_seen if x.startswith("paused"))
    # closed later, once, with seconds of the pre-record still to go at the pause
    assert d_seen == ["open 1", paused, "closed segment_0001.ts"], d_seen
    assert int(paused.split()[1]) > 100, d_seen
    # resumed before the drain ended: the first file is closed, then the next opens
    assert r_seen[:3] == ["open 1", r_seen[1], "closed segment_0001.ts"], r_seen
    assert r_seen[1].startswith("paused") and r_seen[3:5] == ["resumed", "open 2"], r_seen
    nums, keys = _numbers(drained[0])
    pause = 15 * 30 + 15
    assert keys[0] and nums == list(range(nums[0], pause)) and nums[0] <= 6 * 30
    assert ffmpeg_warnings(["-i", str(drained[0])]) == ""
    assert drained[0].read_bytes() == waited[0].read_bytes() == resumed[0].read_bytes()
    later, _ = _numbers(resumed[1])
    assert later and later[0] >= pause  # nothing of the pause in the resumed file
    # the sound plays true with the picture in both files, and the two joined
    _assert_heard_with_their_frames(drained[0], PAUSE_BURSTS_S[:3])
    _assert_heard_with_their_frames(resumed[1], PAUSE_BURSTS_S[3:])
    for path in resumed:
        streams = {s["codec_type"]: s for s in probe(path)["streams"]}
        assert streams["video"]["codec_name"] == "h264"
        assert (streams["audio"]["codec_name"], streams["audio"]["channels"]) == ("aac", 1)
        assert ffmpeg_warnings(["-i", str(path)]) == ""
    joined = b"".join(path.read_bytes() for path in resumed)
    assert ffmpeg_warnings(["-f", "mpegts", "-i", "-"], joined) == ""


def test_bad_config_fails_clearly() -> None:
    with pytest.raises(ValueError, match="prerecord"):
        CaptureConfig(prerecord_s=500)


@pytest.mark.parametrize("seconds", [2, 7.5, 30, 60, 8.001])
def test_a_segment_length_off_the_keyframe_grid_is_refused(seconds: float) -> None:
    """Files end where a keyframe (one a second) meets the 64 ms AAC grid: every
    8 s. Anything else would be rounded up silently, so it is refused."""
    assert segment_grid_us(16_000) == 8_000_000
    with pytest.raises(ValueError, match=r"must be a multiple of 8 s"):
        CaptureConfig(segment_s=seconds)


@pytest.mark.parametrize("seconds", [8, 16, 32, 3600])
def test_segment_lengths_on_the_grid_are_kept(seconds: float) -> None:
    assert segment_problem(seconds) is None
    assert CaptureConfig(segment_s=seconds).segment_s == seconds


def test_bodycam_capture_refuses_an_off_grid_segment_length(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "firmware.cli", "capture", "--sim", "--seconds", "3"]
        + ["--segment-seconds", "2", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "--segment-seconds 2: must be a multiple of 8 s" in r.stderr
    assert not list(tmp_path.iterdir())  # nothing recorded


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speech_wav(
        "I am resuming the recording because the driver came back to the car "
        "and started talking to me again",
        tmp_path_factory.mktemp("s") / "s.wav",
    )


@pytest.mark.parametrize(
    "source,lo,hi",
    [
        ("speech", 3.0, 7.0),
        ("speech+noise:-35", 3.0, 7.0),
        ("speech+noise:-45", 3.0, 7.0),
        ("noise:-20", 0.0, 0.3),
        ("noise:-25", 0.0, 0.3),
        ("noise:-30", 0.0, 0.3),
        ("noise:-40", 0.0, 0.3),
        ("noise:-50", 0.0, 0.3),
        ("noise:-60", 0.0, 0.3),
        ("tone:1000:-12", 0.0, 0.3),
        ("tone:300:-20", 0.0, 0.3),
        ("silence", 0.0, 0.0),
    ],
)
def test_speech_seconds_count_speech_not_noise_or_tone(
    speech: Path, source: str, lo: float, hi: float
) -> None:
    sounds = []
    for part in source.split("+"):
        sounds.append(Sound(1.0, str(speech) if part == "speech" else part, seconds=6))
    mic = SimMicrophone(sounds)
    cap = Capture(lambda i: None, CaptureConfig())  # type: ignore[arg-type, return-value]
    for i in range(0, 9 * RATE, RATE // 30):
        cap.push_audio(mic.read(i, RATE // 30))
    got = cap.speech_seconds(0, 9_000_000)
    assert lo <= got <= hi, (source, got)
