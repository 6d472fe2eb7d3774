"""`scripts/emulate smoke`: the flashed card booted, the recorder started by
systemd as its own user with its self-test first, then a shift's minute:
record, speak, pause, resume with a spoken note, stop; the dock pulls,
verifies, receipts and releases across the gadget link; the dock's copy is
verified with the agency's keys and its media decoded.

The LEDs are read at each state against docs/STATES.md, and the speaker
card's output is searched for each prompt the unit had to play. Every
check is a condition waited for with a ceiling; any that does not hold
ends the smoke with what did not happen."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from firmware.prompts import PHRASES, PROMPT_LANGUAGE, TONES, tone
from hal.media import SOUND_BLOCK_MS
from hal.wav import load_wav
from link.locale import load as load_locale

from . import dock
from .devices import Hardware
from .run import EmuError, Log, run, wait_for
from .unit import EmulatedUnit

SPOKEN = "Sir, please step out of the vehicle and show me your driving licence."
# Under TCG the starved guest loses about half the microphone's samples to
# overflows (audio_gap records; none on this host in real time, nor on a Pi):
# the note runs long enough that its speech is heard through that.
NOTE = (
    "I paused because the witness asked to speak in private. "
    "She has now agreed to continue on camera. "
    "We are resuming the inspection of the ledger at the front desk, "
    "and the manager is present and has been told that recording continues."
)
# docs/STATES.md, "Lights, sounds, vibration": power steady while the unit
# runs (no warning: the GPS has set the clock), audio and video while recorded
LEDS = {
    "idle": {"power": 1, "audio": 0, "video": 0},
    "recording": {"power": 1, "audio": 1, "video": 1},
    "paused": {"power": 1, "audio": 0, "video": 0},
}
# docs/STATES.md, the transitions' prompts, in the order the smoke causes them
PLAYED = [
    ("record", ["tone_start", "start_notice", "state_purpose"]),
    ("pause", ["tone_stop"]),
    ("resume", ["tone_start", "state_reason"]),
    ("note", ["note_ok"]),  # the note heard
    ("stop", ["tone_stop", "end_phrase"]),
]
PROMPTS = [name for _, names in PLAYED for name in names]


@dataclass
class SmokeResult:
    ok: bool = False
    failed: str = ""
    leds: dict[str, list[dict[str, int]]] = field(default_factory=dict)
    prompts_found: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    segments: int = 0

    def line(self) -> str:
        t = " ".join(f"{k} {v:.0f}s" for k, v in self.timings.items())
        if self.ok:
            return (f"emulate smoke: PASS ({t}; LEDs as docs/STATES.md in "
                    f"{len(self.leds)} states; {len(self.prompts_found)} prompts heard; "
                    f"{self.segments} segments docked and verified)")  # fmt: skip
        return f"emulate smoke: FAIL: {self.failed} ({t})"


LED_TIMEOUT_S = 300.0  # the loop shows the lights after the state's prompts are loaded


def steady_leds(
    hw: Hardware,
    state: str,
    samples: int = 3,
    unit: EmulatedUnit | None = None,
    log: Log | None = None,
) -> list[dict[str, int]]:
    """Once the LEDs show `state` (the loop sets them after the transition's
    other actions, which under TCG take seconds), read them several times over
    about two seconds (a blinking power LED is seen off at least once); each
    reading must be the state's. One exception, for the starved TCG guest
    only: a device LED off while the chain has that device's `fault` for a
    silence ("no frame/audio for ...") since the state began, which is what
    docs/STATES.md asks the LED to show then (a Pi is not silent for a second)."""
    last: list[dict[str, int]] = []
    since = unit.last_seq() if unit is not None else 0

    def shown() -> bool:
        last[:] = [hw.leds()]
        return last[0] == LEDS[state]

    try:
        wait_for(shown, what=f"the LEDs of {state} ({LEDS[state]})", timeout=LED_TIMEOUT_S,
                 every=2)  # fmt: skip
    except EmuError as exc:
        raise EmuError(f"{exc}; last seen {last}") from None
    seen = []
    for i in range(samples):
        if i:
            time.sleep(0.7)  # between readings: the blink's half-period is 0.5 s
        seen.append(hw.leds())
    bad = [s for s in seen if s != LEDS[state]]
    if bad and unit is not None:
        silent = {
            {"camera": "video", "microphone": "audio"}.get(str(r["body"].get("what")), "")
            for r in unit.records()
            if r["seq"] > since and r["type"] == "fault"
            and str(r["body"].get("reason", "")).startswith("no ")
        }  # fmt: skip
        bad = [s for s in bad if any(s[k] != LEDS[state][k] and k not in silent for k in s)]
        if not bad and log is not None:
            log(f"{state}: {sorted(silent)} LED off while that device was silent (TCG)")
    if bad:
        raise EmuError(f"LEDs while {state}: {bad[0]}, docs/STATES.md says {LEDS[state]}")
    return seen


def expected_prompt(name: str, rendered: Path, language: str = "zh") -> np.ndarray:
    """The PCM the unit plays for `name`: the tone it generates, or the phrase
    flashing rendered (the agency's copy of what went onto the card) in the
    language the unit speaks (its agency's: Chinese unless agency.toml says)."""
    if name in TONES:
        return np.frombuffer(tone(TONES[name]), "<i2").astype(np.float64)
    return load_wav(rendered / f"{name}.{language}.wav").astype(np.float64)


# The starved TCG guest's speaker underruns (its PortAudio callback waits on a
# stalled recorder's GIL): the card plays silence, and the block being handed
# over is lost. Seen on 2026-12-03's captures: exact zeros, then the prompt
# again exactly one block (120 ms) further on. A Pi has none of this.
MAX_GAP = 32000  # samples (2 s): the longest silence taken for an underrun
BLOCK = 16_000 * SOUND_BLOCK_MS // 1000  # samples: the speaker's block, lost at each
ANCHOR = 1600  # samples (0.1 s) that place a prompt's start, to the sample
RESUME = 64  # samples that must equal the prompt where it goes on after a gap


def find_prompts(capture: bytes, prompts: list[tuple[str, np.ndarray]]) -> list[tuple[str, float]]:
    """Each prompt's first place in the capture after the one before it
    (seconds); an error names the first one not found. The speaker card's
    capture is a bit-exact copy of what the unit played: a prompt is found
    where the whole of it correlates best, begun where its first 0.1 s is
    found sample for sample, and then compared sample by sample. The one
    difference allowed is an underrun: a run of silence of at most MAX_GAP,
    after which the prompt goes on at most one BLOCK further."""
    cap = np.frombuffer(capture[: len(capture) // 2 * 2], "<i2").astype(np.float64)
    sq = np.concatenate([[0.0], np.cumsum(cap * cap)])
    found: list[tuple[str, float]] = []
    start = 0
    for name, p in prompts:
        if len(cap) - start < len(p):
            raise EmuError(f"prompt {name}: the speaker capture ends before it{_so_far(found)}")
        loud = np.flatnonzero(np.abs(p) > 100)
        p = p[loud[0] :] if len(loud) else p  # a phrase's leading silence says nothing
        head = p[:ANCHOR]
        # its first place: the first where its start is found sample for
        # sample (correlation scores a tone as high at its next playing)
        began, skip = _exactly(cap, start, len(cap), head), 0
        if began is None:  # its first block lost to an underrun, silence in its place:
            # the rest lies where the whole of it correlates best
            anchor, score = _match(cap, sq, start, len(cap), p)
            resumed = _resumed(cap, anchor, p)
            if resumed is None:
                raise EmuError(
                    f"prompt {name} not heard on the speaker card after {start / 16000:.1f} s "
                    f"(best match {score:.2f}){_so_far(found)}"
                )
            began, skip = anchor, resumed
        end, why = _played_from(cap, began + skip, p[skip:])
        if end is None:
            raise EmuError(
                f"prompt {name} began at {began / 16000:.1f} s on the speaker card "
                f"but was not heard whole: {why}{_so_far(found)}"
            )
        found.append((name, began / 16000))
        start = end
    return found


def _so_far(found: list[tuple[str, float]]) -> str:
    """The prompts found before a missing one, where: one hushed before it
    played is then found at a later playing of the same prompt."""
    if not found:
        return ""
    return "; heard before it: " + ", ".join(f"{n} at {t:.1f} s" for n, t in found)


def _match(cap: np.ndarray, sq: np.ndarray, lo: int, hi: int, p: np.ndarray) -> tuple[int, float]:
    """Where in cap[lo:hi] `p` matches best, and how well (normalised
    cross-correlation, 1.0 = the same wave at any loudness)."""
    seg = cap[lo:hi]
    n = len(p)
    if len(seg) < n:
        return lo, 0.0
    size = 1 << int(np.ceil(np.log2(len(seg) + n)))
    corr = np.fft.irfft(np.fft.rfft(seg, size) * np.conj(np.fft.rfft(p, size)), size)
    corr = corr[: len(seg) - n + 1]
    energy = sq[lo + n : lo + len(seg) + 1] - sq[lo : lo + len(seg) - n + 1]
    norm = corr / (np.sqrt(np.maximum(energy, 1e-9)) * max(float(np.linalg.norm(p)), 1e-9))
    at = int(np.argmax(norm))
    return lo + at, float(norm[at])


def _exactly(cap: np.ndarray, lo: int, hi: int, head: np.ndarray) -> int | None:
    """The first place in [lo, hi) where the capture holds `head` sample for
    sample (a tone's correlation peaks at every period: this does not)."""
    for k in np.flatnonzero(cap[lo:hi] == head[0]):
        at = lo + int(k)
        if np.array_equal(cap[at : at + len(head)], head):
            return at
    return None


def _resumed(cap: np.ndarray, at: int, p: np.ndarray) -> int | None:
    """How far into `p`, played from cap[at], the capture goes on sample for
    sample after silence, within its first block; None if it does not."""
    for j in np.flatnonzero(p[: BLOCK + 1]):
        k = at + int(j)
        if k > 0 and cap[k - 1] != 0:
            continue
        if np.array_equal(cap[k : k + RESUME], p[j : j + RESUME]):
            return int(j)
    return None


def _played_from(cap: np.ndarray, pos: int, p: np.ndarray) -> tuple[int | None, str]:
    """Where `p`, played from cap[pos], ends in the capture, sample for
    sample but for underruns; (None, what differs) if it was not played so."""
    i = 0
    while True:
        n = min(len(p) - i, len(cap) - pos)
        bad = np.flatnonzero(cap[pos : pos + n] != p[i : i + n])
        if not len(bad):
            return (pos + n, "") if i + n == len(p) else (None, "the capture ends in it")
        pos, i = pos + int(bad[0]), i + int(bad[0])
        where = f"at {i / 16000:.3f} s of it"
        quiet = np.flatnonzero(cap[pos : pos + MAX_GAP + 1])
        if cap[pos] != 0 or not len(quiet) or quiet[0] > MAX_GAP:
            return None, f"a different sound {where}"
        if len(p) - i <= BLOCK:
            return pos, ""  # its last block lost in the underrun
        pos += int(quiet[0])
        # it goes on at most a block further, where the prompt is not silent
        # (its own silence after the lost block ran into the underrun's)
        ahead = np.flatnonzero(p[i + BLOCK :])
        last = i + BLOCK + (int(ahead[0]) if len(ahead) else len(p) - i - BLOCK)
        want, window = cap[pos : pos + RESUME], p[i : last + RESUME]
        if len(want) < RESUME or len(window) < RESUME:
            return None, f"the capture ends in it {where}"
        views = np.lib.stride_tricks.sliding_window_view(window, RESUME)
        hits = np.flatnonzero((views == want).all(axis=1))
        if not len(hits):
            return None, f"more than a block lost at an underrun {where}"
        i += int(hits[0])


def _decrypt(segment: Path, identity: Path, out: Path) -> Path:
    run(["age", "-d", "-i", identity, "-o", out, segment], what=f"age -d {segment.name}")
    return out


def media_check(segments: list[Path], identity: Path) -> dict[str, Any]:
    """Every segment decrypts with age and is MPEG-TS that ffprobe reads, with
    H.264 and AAC; and the sound recorded holds the speech (its loudest
    second well above the loopback's silence)."""
    peak_rms = 0.0
    with tempfile.TemporaryDirectory(prefix="emu-media-") as tmp:
        for seg in segments:
            ts = _decrypt(seg, identity, Path(tmp) / (seg.stem))
            probe = json.loads(run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", ts],
                                   what=f"ffprobe {seg.name}"))  # fmt: skip
            codecs = sorted(s["codec_name"] for s in probe.get("streams", []))
            if codecs != ["aac", "h264"] and codecs != ["aac"]:
                raise EmuError(f"{seg.name}: streams {codecs}, not H.264 and AAC")
            pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", str(ts), "-f", "s16le", "-ac",
                                  "1", "-ar", "16000", "-"], capture_output=True, check=False,
                                 timeout=300).stdout  # fmt: skip
            a = np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2").astype(np.float64)
            for i in range(0, max(0, len(a) - 16000), 16000):
                peak_rms = max(peak_rms, float(np.sqrt(np.mean(a[i : i + 16000] ** 2))))
    if peak_rms < 300:
        raise EmuError(f"no speech in the recorded sound (loudest second RMS {peak_rms:.0f})")
    return {"segments": len(segments), "peak_rms": peak_rms}


def smoke(unit: EmulatedUnit, log: Log) -> SmokeResult:
    result = SmokeResult()
    t0 = time.monotonic()
    try:
        _smoke(unit, log, result)
        result.ok = True
    except EmuError as exc:
        result.failed = str(exc)
        keep_journal(unit, log)
    except Exception as exc:
        result.failed = f"the rig itself failed: {type(exc).__name__}: {exc}"
        keep_journal(unit, log)
    result.timings["total"] = time.monotonic() - t0
    return result


def keep_journal(unit: EmulatedUnit, log: Log) -> None:
    """The guest's journal of this boot, and what the speaker card played
    (16 kHz S16 mono), into the run folder, for whoever reads a failure."""
    if unit.agent is None:
        return
    try:
        text = unit.agent.sh("journalctl -b --no-pager -o short-monotonic", timeout=300).out
        (unit.run_dir / "journal.txt").write_text(text)
        if unit.agent.sh("test -f /run/emu-speaker.raw", timeout=60).ok:
            (unit.run_dir / "speaker.raw").write_bytes(unit.agent.get("/run/emu-speaker.raw"))
    except EmuError as exc:
        log(f"the guest's journal or speaker capture could not be kept: {exc}")


def _smoke(unit: EmulatedUnit, log: Log, result: SmokeResult) -> None:
    unit.prepare()
    result.timings.update(unit.timings)
    agent = unit.boot()
    result.timings["boot"] = unit.timings["boot"]
    hw = unit.hw()
    hw.start_speaker_capture()
    started = unit.wait_recorder()
    result.timings["recorder"] = unit.timings["recorder"]
    log(f"recorder: {started}")
    if started.get("User") != "bodycam":
        raise EmuError(f"the recorder runs as {started.get('User')!r}, not bodycam")
    uid = agent.check(f"stat -c %U /proc/{started['MainPID']}").strip()
    if uid != "bodycam":
        raise EmuError(f"the recorder's process {started['MainPID']} belongs to {uid!r}")
    # the pre-use check runs beside the recorder (firmware/preuse.py): its
    # record comes from the running service, after its boot record
    unit.wait_record("selftest", where=lambda b: b.get("beside") == "recorder")
    # the GPS has set the clock: no warning, the power LED steady
    unit.wait_record("clock", where=lambda b: b.get("state") == "synced")
    result.leds["idle"] = steady_leds(hw, "idle")
    log("idle: clock synced by the GPS, LEDs as docs/STATES.md")

    seq = unit.last_seq()
    hw.press("record")
    unit.wait_record("record_start", after=seq)
    result.leds["recording"] = steady_leds(hw, "recording", unit=unit, log=log)
    log(f"recording; said {hw.say(SPOKEN):.1f} s into the microphone card")
    let_play(hw, unit, "record")

    seq = unit.last_seq()
    hw.press("function")
    unit.wait_record("pause", after=seq)
    result.leds["paused"] = steady_leds(hw, "paused")
    log("paused")
    let_play(hw, unit, "pause")  # or the resume's press hushes it

    seq = unit.last_seq()
    hw.press("record")
    unit.wait_record("resume", after=seq)
    log(f"resumed; said a {hw.say(NOTE):.1f} s note")
    note = unit.wait_record("resume_note", after=seq)
    if not note["body"].get("given"):
        raise EmuError(f"the spoken note was not heard: {note['body']}")
    result.leds["recording after resume"] = steady_leds(hw, "recording", unit=unit, log=log)
    log(f"note heard: {note['body']}")
    let_play(hw, unit, "note")

    seq = unit.last_seq()
    hw.hold("record")
    unit.wait_record("record_stop", after=seq)
    result.leds["stopped"] = steady_leds(hw, "idle")
    log("stopped")
    let_play(hw, unit, "stop")  # the end phrase is a few seconds long: until it is out
    found = _heard(hw, unit, len(PROMPTS))
    result.prompts_found = [name for name, _ in found]
    log(f"prompts heard: {found}")

    t = time.monotonic()
    assert unit.machine is not None and unit.flashed is not None
    link = dock.link_up(agent, unit.flashed, unit.machine.dock_port, log)
    dock_dir = unit.run_dir / "dock"
    out = dock.pull(link, unit.flashed, dock_dir, unit.run_dir / "dock.log")
    log(f"dock: {out.strip().splitlines()[-1] if out.strip() else '(no output)'}")
    copy = dock.verify_copy(unit.flashed, dock_dir, unit.run_dir / "dock.log")
    unit.wait_record("release")
    left = agent.check("ls /var/lib/bodycam/store/segments").split()
    if any(name.endswith(".age") for name in left):
        raise EmuError(f"segments left on the unit after the receipt: {left}")
    media = media_check(copy.segments, unit.flashed.agency / "evidence.key")
    result.segments = media["segments"]
    result.timings["dock"] = time.monotonic() - t


def _rendered(unit: EmulatedUnit) -> Path:
    assert unit.flashed is not None
    rendered = sorted((unit.flashed.agency / "prompts").glob("*/"))
    if len(rendered) != 1 or not all((rendered[0] / f"{n}.en.wav").exists() for n in PHRASES):
        raise EmuError(f"flashing left no rendered prompts in {unit.flashed.agency}/prompts")
    return rendered[0]


def _language(unit: EmulatedUnit) -> str:
    """The prompts' language on the card: its agency's locale (flash.py)."""
    assert unit.flashed is not None
    return PROMPT_LANGUAGE[load_locale(unit.flashed.agency / "agency.toml").language]


def _heard(hw: Hardware, unit: EmulatedUnit, upto: int) -> list[tuple[str, float]]:
    rendered, language = _rendered(unit), _language(unit)
    prompts = [(n, expected_prompt(n, rendered, language)) for n in PROMPTS[:upto]]
    return find_prompts(hw.speaker_capture(), prompts)


# From a transition's record in the chain until its prompts have left the
# speaker: seconds under TCG (up to 4 s seen), a minute for a starved guest
PLAY_TIMEOUT_S = 120.0


def let_play(hw: Hardware, unit: EmulatedUnit, transition: str) -> None:
    """Until the speaker card has played every prompt up to `transition`'s
    own (PLAYED): the next press would hush them (docs/STATES.md), as an
    officer who presses on interrupts the unit, and the speaker check looks
    for each prompt whole. A prompt not heard in time is named."""
    names = [t for t, _ in PLAYED]
    upto = sum(len(played) for _, played in PLAYED[: names.index(transition) + 1])

    def heard() -> bool:
        try:
            _heard(hw, unit, upto)
        except EmuError:
            return False
        return True

    try:
        wait_for(heard, what=f"the prompts of {transition} on the speaker card",
                 timeout=PLAY_TIMEOUT_S, every=2)  # fmt: skip
    except EmuError:
        _heard(hw, unit, upto)  # the first prompt not heard, by name
        raise
