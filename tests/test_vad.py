"""The spoken note is judged on continuous runs of speech (capture/vad.py):
real espeak-ng speech counts (quiet, in noise, from the window's first frame,
several voices); a crowd's babble, a clap or cough train, music, a tone, hum
and noise do not. Every signal is generated deterministically."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from capture.vad import SpeechMeter
from firmware.prompts import LANGS
from firmware.prompts import pcm as prompt_pcm
from hal.microphone_sim import EchoPath
from hal.ports import Played

RATE = 16_000
NOTE_S = 3.0  # firmware/machine.py Policy.note_min_speech_s

# -- signals -------------------------------------------------------------------------


def espeak(text: str, voice: str = "en", speed: int = 150, pitch: int = 50) -> np.ndarray:
    """espeak-ng's speech as float samples at 16 kHz (band-limited FFT resampling)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail("espeak-ng is not installed: scripts/setup installs it")
    wav = subprocess.run(
        [exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
        capture_output=True,
        check=True,
    ).stdout
    rate = int.from_bytes(wav[24:28], "little")
    at = wav.find(b"data") + 8  # espeak-ng writes a plain 44-byte header
    x = np.frombuffer(wav[at : at + (len(wav) - at) // 2 * 2], "<i2").astype(np.float64)
    return resample(x, rate)


def resample(x: np.ndarray, rate: int) -> np.ndarray:
    n = round(len(x) * RATE / rate)
    spec = np.fft.rfft(x)[: n // 2 + 1]
    return np.fft.irfft(spec, n) * n / len(x)


def trim(x: np.ndarray, level: float = 1e-3) -> np.ndarray:
    """Without leading and trailing silence, so a clip starts on its first sound."""
    loud = np.flatnonzero(np.abs(x) > level * np.abs(x).max())
    return x[loud[0] : loud[-1] + 1]


def to_pcm(x: np.ndarray) -> bytes:
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()


def peak_to(x: np.ndarray, dbfs: float) -> np.ndarray:
    return x * (32767 * 10 ** (dbfs / 20) / np.abs(x).max())


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x * x)))


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise: white noise shaped by 1/sqrt(f) in the frequency domain."""
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    return np.fft.irfft(spec, n)


def impulse_train(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Claps and coughs: 20-150 ms bursts of broadband or band-passed noise with a
    fast attack and a decay, every 0.2-0.5 s with jitter, at varying levels."""
    x = np.zeros(int(seconds * RATE))
    t = 0.1
    f = np.fft.rfftfreq(int(0.15 * RATE), 1 / RATE)
    while t < seconds - 0.2:
        n = int(rng.uniform(0.02, 0.15) * RATE)
        burst = rng.normal(size=int(0.15 * RATE))
        if rng.random() < 0.5:  # a cough: noise in a band of the voice
            lo = rng.uniform(200, 600)
            spec = np.fft.rfft(burst)
            spec[(f < lo) | (f > lo * rng.uniform(3, 8))] = 0
            burst = np.fft.irfft(spec, len(burst))
        burst = burst[:n] * np.exp(-np.arange(n) / (n / 3))
        burst[:16] *= np.linspace(0, 1, 16)
        level = 32767 * 10 ** (rng.uniform(-24, -8) / 20)
        at = int(t * RATE)
        x[at : at + n] += burst / np.abs(burst).max() * level
        t += rng.uniform(0.2, 0.5)
    return x


def _note(f0: float, seconds: float, vibrato: float, harmonics: int) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    # vibrato: +-`vibrato` semitones at 5.5 Hz, once the note has settled
    semis = vibrato * np.sin(2 * np.pi * 5.5 * t) * np.clip(t / 0.15, 0, 1)
    phase = 2 * np.pi * np.cumsum(f0 * 2 ** (semis / 12)) / RATE
    x = sum(np.sin(k * phase) / k for k in range(1, harmonics + 1))
    env = np.minimum(1, t / 0.01) * np.exp(-t / (seconds * 1.5))  # attack, slow decay
    env *= np.clip((seconds - t) / 0.02, 0, 1)  # released before the next note
    return x * env


SCALE = [0, 2, 4, 5, 7, 9, 11, 12]


def music(
    seconds: float,
    rng: np.random.Generator,
    *,
    chords: bool = True,
    staccato: bool = False,
    vibrato: float = 0.3,
    swell_db: float = 10.0,
) -> np.ndarray:
    """A tune at 120 bpm: a melody of held notes with vibrato over chords held
    for a bar and a kick drum on every beat, swelling and fading by +-swell_db
    over 8 s (as music's dynamics do). Without chords it is a solo
    instrument; staccato, each note is cut short with a rest after it."""
    n = int(seconds * RATE) + 4 * RATE
    x = np.zeros(n)
    beat = 0.5
    progression = [[0, 4, 7], [5, 9, 12], [7, 11, 14], [9, 12, 16]]
    t = 0.0
    while t < seconds:
        at = int(t * RATE)
        if chords:
            for k in progression[int(t / (4 * beat)) % 4]:  # an octave below the melody
                note = _note(130.8 * 2 ** (k / 12), 4 * beat, 0.0, 6)
                x[at : at + len(note)] += 0.25 * note
            for b in range(4):
                k = np.arange(int(0.1 * RATE)) / RATE
                kick = np.sin(2 * np.pi * 60 * k) * np.exp(-k / 0.03)
                x[at + int(b * beat * RATE) : at + int(b * beat * RATE) + len(kick)] += 0.8 * kick
        u = t
        while u < t + 4 * beat:
            d = beat * float(rng.choice([0.5, 1, 1, 2]))
            note = _note(
                261.6 * 2 ** (int(rng.choice(SCALE)) / 12),
                d * (0.5 if staccato else 1.0),
                vibrato,
                8,
            )
            x[int(u * RATE) : int(u * RATE) + len(note)] += 0.6 * note
            u += d
        t += 4 * beat
    x = x[: int(seconds * RATE)]
    x *= 10 ** (swell_db * np.sin(2 * np.pi * np.arange(len(x)) / RATE / 8) / 20)
    return x / np.abs(x).max() * 32767 * 10 ** (-6 / 20)


def tone(hz: float, seconds: float, dbfs: float) -> np.ndarray:
    return (
        np.sin(2 * np.pi * hz * np.arange(int(seconds * RATE)) / RATE) * 32767 * 10 ** (dbfs / 20)
    )


def hum(seconds: float) -> np.ndarray:
    """Mains hum: 50 Hz and its harmonics, as a transformer or a fan motor makes."""
    t = np.arange(int(seconds * RATE)) / RATE
    x = sum(np.sin(2 * np.pi * 50 * k * t + k) / k for k in range(1, 9))
    return x / np.abs(x).max() * 32767 * 10 ** (-20 / 20)


SENTENCES = [
    "I am resuming the recording because the driver came back to the car and started "
    "talking to me again.",
    "The suspect left the scene on foot heading north, and I stopped recording to speak "
    "with a witness in private.",
    "We paused for a medical call and now I am back with the same people at the corner.",
    "Recording again after a break, the vehicle owner has arrived and wants to talk.",
    "Please step back from the road, we are waiting for the tow truck to arrive here.",
    "She said the bicycle was taken from outside the shop about an hour ago today.",
    "Can you tell me what happened before we got here and who else was in the flat?",
    "There were two cars involved, a blue van and a small silver hatchback parked there.",
]


def babble(clips: list[np.ndarray], seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A crowd: each talker repeats their clip from a random offset, all at the same
    level, mixed; no talker stands out."""
    n = int(seconds * RATE)
    x = np.zeros(n)
    for clip in clips:
        talker = np.tile(np.concatenate([clip, np.zeros(int(0.3 * RATE))]), n // len(clip) + 2)
        at = int(rng.integers(0, len(clip)))
        x += talker[at : at + n] / rms(clip)
    return x / np.abs(x).max() * 32767 * 10 ** (-6 / 20)


# -- feeding the meter as the pipeline does -------------------------------------------

CHUNK = RATE // 10  # 100 ms: the runtime asks for the count on every 100 ms tick


def feed(
    x: np.ndarray, watch: list[int] | None = None, window_s: float = 20.0
) -> tuple[SpeechMeter, float]:
    """Feed `x` (from time 0) in 100 ms chunks; after each chunk ask for the count
    of every window in `watch` (start times) that is open, as the note check does
    on every tick. Returns the meter and the most any window ever showed, so a
    provisional count at the live end that later falls cannot hide."""
    meter = SpeechMeter()
    pcm = to_pcm(x)
    most = 0.0
    for i in range(0, len(pcm) // 2, CHUNK):
        meter.feed(pcm[2 * i : 2 * (i + CHUNK)], i * 1_000_000 // RATE)
        now = min(len(pcm) // 2, i + CHUNK) * 1_000_000 // RATE
        for w in watch or []:
            if w <= now:
                most = max(most, meter.seconds(w, min(now, w + int(window_s * 1e6))))
    return meter, most


def windows(
    meter: SpeechMeter, seconds: float, window_s: float = 20.0, step_s: float = 0.5
) -> float:
    """The most speech counted in any window of `window_s` within the first `seconds`."""
    starts = np.arange(0.0, max(0.0, seconds - window_s) + 1e-9, step_s)
    return max(meter.seconds(int(s * 1e6), int((s + window_s) * 1e6)) for s in starts)


# -- espeak-ng output, made once for the module -----------------------------------------

NOTE_TEXT = "I am resuming the recording because the driver came back to the car and wants to talk."


@pytest.fixture(scope="module")
def note() -> np.ndarray:
    """About five seconds of an officer's reason, peaking at -3 dBFS."""
    x = trim(espeak(NOTE_TEXT))
    assert 4.5 <= len(x) / RATE <= 6.0, len(x) / RATE
    return peak_to(x, -3)


VOICES = {  # voice, speed, pitch, text: officers differ
    "en-us": ("en-us", 160, 40, NOTE_TEXT),
    "en+f3": ("en+f3", 150, 60, NOTE_TEXT),
    "en+m3": (
        "en+m3",
        175,
        45,
        "Recording again after a break, the vehicle owner has arrived and wants to talk.",
    ),
    "de": (
        "de",
        150,
        50,
        "Ich setze die Aufnahme fort, weil der Fahrer zum Auto zurückgekommen ist.",
    ),
    "fr": (
        "fr",
        150,
        50,
        "Je reprends l'enregistrement parce que le conducteur est revenu vers la voiture.",
    ),
}


@pytest.fixture(scope="module")
def voices() -> dict[str, np.ndarray]:
    return {
        name: peak_to(trim(espeak(text, v, s, p)), -6) for name, (v, s, p, text) in VOICES.items()
    }


CROWD = [
    ("en", 150, 50),
    ("en-us", 170, 30),
    ("en+f3", 140, 70),
    ("en+m3", 180, 40),
    ("de", 160, 55),
    ("fr", 150, 45),
    ("en-gb-scotland", 130, 60),
    ("en+f2", 175, 65),
]


@pytest.fixture(scope="module")
def crowd() -> list[np.ndarray]:
    """Eight talkers, each with their own sentence, voice, speed and pitch."""
    return [trim(espeak(SENTENCES[i], v, s, p)) for i, (v, s, p) in enumerate(CROWD)]


# -- a note is heard ----------------------------------------------------------------------


def with_noise(x: np.ndarray, kind: str, snr_db: float, seed: int = 11) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = rng.normal(size=len(x)) if kind == "white" else pink(len(x), rng)
    return x + n * rms(x) / rms(n) / 10 ** (snr_db / 20)


@pytest.mark.parametrize(
    "how", ["clean", "peak -45 dBFS", "white noise 10 dB SNR", "pink noise 10 dB SNR"]
)
def test_speech_is_a_note(note: np.ndarray, how: str) -> None:
    x = {
        "clean": note,
        "peak -45 dBFS": peak_to(note, -45),
        "white noise 10 dB SNR": with_noise(note, "white", 10),
        "pink noise 10 dB SNR": with_noise(note, "pink", 10),
    }[how]
    x = np.concatenate([np.zeros(2 * RATE), x, np.zeros(2 * RATE)])
    meter, _ = feed(x)
    got = meter.seconds(2_000_000, 22_000_000)
    assert NOTE_S <= got <= len(note) / RATE + 0.3, (how, got)


@pytest.mark.parametrize("voice", list(VOICES))
def test_other_voices_are_notes(voices: dict[str, np.ndarray], voice: str) -> None:
    x = np.concatenate([np.zeros(RATE), voices[voice]])
    meter, _ = feed(x)
    assert meter.seconds(0, 20_000_000) >= NOTE_S, voice


@pytest.mark.parametrize("before", ["nothing", "silence", "room noise", "a voice"])
def test_a_note_at_the_window_start_counts_from_its_first_frame(
    note: np.ndarray, voices: dict[str, np.ndarray], before: str
) -> None:
    """Spoken the instant the window opens (from_us), the note counts as much as
    the same note spoken later in the window, and from its first frame."""
    rng = np.random.default_rng(5)
    lead = {
        "nothing": np.zeros(0),
        "silence": np.zeros(RATE + 160),  # between frames
        "room noise": rng.normal(size=3 * RATE) * 32767 * 10 ** (-60 / 20),
        "a voice": np.concatenate([voices["en+f3"][: 2 * RATE], np.zeros(RATE)]),
    }[before]
    start = len(lead) * 1_000_000 // RATE
    meter, _ = feed(np.concatenate([lead, note, np.zeros(RATE)]))
    at_start = meter.judge(start, start + 20_000_000)
    later, _ = feed(np.concatenate([np.zeros(5 * RATE), note, np.zeros(RATE)]))
    # the first frame starting in the window, and the next, count
    assert at_start.t_us[0] - start < 30_000 and at_start.speech[:2].all()
    assert meter.seconds(start, start + 20_000_000) >= later.seconds(0, 20_000_000) - 0.06


def test_a_note_counts_while_it_is_spoken(note: np.ndarray) -> None:
    """Asked every 100 ms, the count reaches the threshold before the note ends
    and ends where asking once at the end does."""
    x = np.concatenate([np.zeros(RATE), note, np.zeros(RATE)])
    meter = SpeechMeter()
    reached_at = None
    pcm = to_pcm(x)
    for i in range(0, len(x), CHUNK):
        meter.feed(pcm[2 * i : 2 * (i + CHUNK)], i * 1_000_000 // RATE)
        if reached_at is None and meter.seconds(0, (i + CHUNK) * 1_000_000 // RATE) >= NOTE_S:
            reached_at = (i + CHUNK) / RATE
    assert reached_at is not None and reached_at <= 1 + len(note) / RATE
    once, _ = feed(x)
    assert meter.seconds(0, 20_000_000) == once.seconds(0, 20_000_000)


# -- what is not a note ------------------------------------------------------------------


@pytest.mark.parametrize("talkers", [6, 8])
def test_babble_is_not_a_note(crowd: list[np.ndarray], talkers: int) -> None:
    x = babble(crowd[:talkers], 20, np.random.default_rng(talkers))
    meter, most = feed(np.concatenate([np.zeros(RATE), x]), watch=[0, 1_000_000])
    assert meter.seconds(1_000_000, 21_000_000) < NOTE_S and most < NOTE_S


def test_impulse_train_is_not_a_note_in_any_window() -> None:
    x = impulse_train(40, np.random.default_rng(4))
    meter, most = feed(x, watch=list(range(0, 21_000_000, 5_000_000)))
    assert windows(meter, 40) < NOTE_S and most < NOTE_S


@pytest.mark.parametrize("kind", ["band", "solo", "staccato"])
def test_music_is_not_a_note(kind: str) -> None:
    """A band (melody with vibrato, chords, drum), a solo instrument playing legato
    with vibrato, and one playing short notes: each swells and fades."""
    rng = np.random.default_rng(8)
    x = {
        "band": lambda: music(20, rng),
        "solo": lambda: music(20, rng, chords=False),
        "staccato": lambda: music(20, rng, chords=False, staccato=True, vibrato=0.0),
    }[kind]()
    meter, most = feed(np.concatenate([np.zeros(RATE), x]), watch=[0, 1_000_000])
    assert windows(meter, 21) < NOTE_S and most < NOTE_S


@pytest.mark.parametrize(
    "kind",
    [
        "tone 1 kHz -12 dBFS",
        "tone 300 Hz -20 dBFS",
        "hum",
        "white noise -20 dBFS",
        "white noise -45 dBFS",
    ],
)
def test_steady_sounds_are_not_notes(kind: str) -> None:
    """Starting after silence, so their onset is heard against a quiet floor."""
    rng = np.random.default_rng(2)
    x = {
        "tone 1 kHz -12 dBFS": lambda: tone(1000, 20, -12),
        "tone 300 Hz -20 dBFS": lambda: tone(300, 20, -20),
        "hum": lambda: hum(20),
        "white noise -20 dBFS": lambda: rng.normal(size=20 * RATE) * 32767 * 10 ** (-1),
        "white noise -45 dBFS": lambda: rng.normal(size=20 * RATE) * 32767 * 10 ** (-45 / 20),
    }[kind]()
    meter, most = feed(np.concatenate([np.zeros(2 * RATE), x]), watch=[0, 2_000_000])
    assert windows(meter, 22) <= 0.3 and most <= 0.3


# -- the interface the pipeline uses -------------------------------------------------------


def test_speech_list_and_forget_before(note: np.ndarray) -> None:
    meter, _ = feed(np.concatenate([np.zeros(RATE), note, np.zeros(RATE)]))
    heard = meter.speech
    assert heard == sorted(heard) and len(heard) * 0.03 == meter.seconds(0, 10**9)
    assert 0.9e6 <= heard[0] <= 1.1e6
    meter.forget_before(4_000_000)
    assert all(t >= 4_000_000 for t in meter.speech)
    assert meter.seconds(0, 4_000_000) == 0.0


# -- the unit's own voice -------------------------------------------------------------
#
# After a resume the unit says "state the reason" through the speaker beside
# the microphone. What the speaker reports playing (samples and when) is the
# echo reference: heard alone, the prompt is no speech; a voice over it counts
# where it stands 10 dB above the unit's own sound; speech the unit did not
# play counts, whatever it says (docs/CAPTURE.md, "The unit's own voice").

BLOCK = 480  # the speaker's and the microphone's 30 ms blocks


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """The unit's own rendered "state the reason", in each language it ships."""
    cache = tmp_path_factory.mktemp("prompts")
    return {
        lang: np.frombuffer(prompt_pcm("state_reason", lang, cache), "<i2").astype(np.float64)
        for lang in LANGS
    }


def own_voice(
    prompt: np.ndarray,
    *,
    gain_db: float = 0.0,
    officer: np.ndarray | None = None,
    officer_at_s: float = 0.0,
    report_us: int = 0,
    heard: bool = True,
    reported: bool = True,
    seconds: float = 25.0,
) -> tuple[SpeechMeter, int]:
    """The unit plays `prompt` 2 s in, block by block; the microphone hears it
    through the simulated unit's echo path at `gain_db` (if `heard`), plus
    `officer` from `officer_at_s` after the prompt began, plus a quiet room.
    The speaker's reports (if `reported`) are off by `report_us`. Returns
    the meter and where the prompt began (us)."""
    total = int(seconds * RATE) // BLOCK * BLOCK
    start = 2 * RATE
    spk = np.zeros(total)
    spk[start : start + len(prompt)] = prompt
    extra = np.random.default_rng(6).normal(size=total) * 32767 * 10 ** (-70 / 20)
    if officer is not None:
        at = start + int(officer_at_s * RATE)
        extra[at : at + len(officer)] += officer[: total - at]
    echo = EchoPath(0, gain_db)
    meter = SpeechMeter()
    for i in range(0, total, BLOCK):
        t_us = i * 1_000_000 // RATE
        if spk[i : i + BLOCK].any():
            played = Played(t_us, to_pcm(spk[i : i + BLOCK]))
            if heard:
                echo.heard(played)
            if reported:
                meter.played(played.pcm, t_us + report_us)
        meter.feed(to_pcm(echo.read(i, BLOCK) + extra[i : i + BLOCK]), t_us)
    return meter, start * 1_000_000 // RATE


@pytest.mark.parametrize("lang", sorted(LANGS))
@pytest.mark.parametrize("gain_db", [0.0, -12.0, 6.0])
@pytest.mark.parametrize("report_ms", [0, -100, 30])
def test_the_units_own_prompt_is_not_speech(
    prompts: dict[str, np.ndarray], lang: str, gain_db: float, report_ms: int
) -> None:
    """At the level it is played, 12 dB quieter (the issue's case) or 6 dB
    louder (clipping), and with the speaker's report off against the
    microphone's clock: 100 ms early, 30 ms late (docs/CAPTURE.md)."""
    meter, start = own_voice(prompts[lang], gain_db=gain_db, report_us=report_ms * 1000)
    assert meter.seconds(start, start + 20_000_000) == 0.0


def test_without_the_reference_the_prompt_is_speech(prompts: dict[str, np.ndarray]) -> None:
    """What the unit did not report playing is not taken out: the prompt played
    from another device (a phone's recording of it) is speech like any other."""
    meter, start = own_voice(prompts["en"], reported=False)
    assert meter.seconds(start, start + 20_000_000) >= 2.0


def test_a_reference_the_microphone_does_not_hear_takes_nothing_away(
    prompts: dict[str, np.ndarray], note: np.ndarray
) -> None:
    alone, _ = feed(np.concatenate([np.zeros(3 * RATE), note, np.zeros(RATE)]))
    meter, start = own_voice(prompts["en"], heard=False, officer=note, officer_at_s=1.0)
    want = alone.seconds(0, 20_000_000)
    assert meter.seconds(start, start + 20_000_000) >= want - 0.1


@pytest.mark.parametrize("lang", sorted(LANGS))
def test_a_voice_over_the_prompt_counts_where_it_stands_out(
    prompts: dict[str, np.ndarray], note: np.ndarray, lang: str
) -> None:
    """The officer's note (peak -9 dBFS) from 1 s into the prompt. With the
    speaker 20 dB under the voice, the whole note counts; as loud as the
    voice, only the part after the prompt (and its echo) does."""
    officer = peak_to(note, -9)
    alone, _ = feed(np.concatenate([np.zeros(3 * RATE), officer, np.zeros(RATE)]))
    whole = alone.seconds(0, 20_000_000)
    quiet, start = own_voice(prompts[lang], gain_db=-20, officer=officer, officer_at_s=1.0)
    assert quiet.seconds(start, start + 20_000_000) >= 0.85 * whole
    loud, start = own_voice(prompts[lang], gain_db=0, officer=officer, officer_at_s=1.0)
    after_s = max(0.0, 1.0 + len(officer) / RATE - len(prompts[lang]) / RATE)
    assert abs(loud.seconds(start, start + 20_000_000) - after_s) <= 0.6


# -- sung lyrics ------------------------------------------------------------------------
#
# espeak-ng "sings" with SSML: each word of a nursery rhyme at its note of the
# tune (prosody pitch), its own intonation flattened (range 0), drawn out
# (x-slow). Over the band of `music()` or alone, the voice is a voice: it
# counts, and a verse is a note. Documented in docs/CAPTURE.md.

LYRIC = [
    *("twinkle", "twinkle", "little", "star", "how", "I", "wonder", "what", "you", "are"),
    *("up", "above", "the", "world", "so", "high", "like", "a", "diamond", "in", "the", "sky"),
    *("twinkle", "twinkle", "little", "star", "how", "I", "wonder", "what", "you", "are"),
]
# semitones above middle C: C C G G A A G, F F E E D D C, G G F F E E D, ...
TUNE = [0, 0, 7, 7, 9, 9, 7, 5, 5, 4, 4, 2, 2, 0, 7, 7, 5, 5, 4, 4, 2, 7, 7, 5, 5, 4, 4, 2]
TUNE += [0, 0, 7, 7]


@pytest.fixture(scope="module")
def sung() -> np.ndarray:
    words = [
        f'<prosody pitch="+{round(100 * (2 ** (n / 12) - 1))}%" range="0" rate="x-slow">{w}'
        "</prosody>"
        for w, n in zip(LYRIC, TUNE, strict=True)
    ]
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail("espeak-ng is not installed: scripts/setup installs it")
    wav = subprocess.run(
        [exe, "-m", "-v", "en", "--stdout", "<speak>" + " ".join(words) + "</speak>"],
        capture_output=True,
        check=True,
    ).stdout
    at = wav.find(b"data") + 8
    x = np.frombuffer(wav[at : at + (len(wav) - at) // 2 * 2], "<i2").astype(np.float64)
    x = trim(resample(x, int.from_bytes(wav[24:28], "little")))
    assert 12 <= len(x) / RATE <= 16, len(x) / RATE
    return peak_to(x, -6)


@pytest.mark.parametrize("band_db", [None, -6.0, 0.0], ids=["alone", "band -6 dB", "band 0 dB"])
def test_sung_lyrics_are_a_voice_and_count(sung: np.ndarray, band_db: float | None) -> None:
    x = sung
    if band_db is not None:  # the band under the singer, `band_db` to the voice
        band = music(len(x) / RATE + 0.1, np.random.default_rng(8))[: len(x)]
        x = peak_to(x + band / rms(band) * rms(x) * 10 ** (band_db / 20), -3)
    meter, _ = feed(np.concatenate([np.zeros(RATE), x]), watch=[0, 1_000_000])
    assert windows(meter, len(x) / RATE + 1) >= NOTE_S  # a note, as documented


def test_nobody_listening_spares_the_pitch_search_and_judges_the_same(
    note: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside a note window the recorder does not listen (issue 28: the
    voice detector was 18 % of recording's cost): the pitch search waits.
    A window opened later is judged exactly as if it had listened all along,
    its context included; a whole shift of talk unheard costs no search."""
    calls = [0]
    search = SpeechMeter._pitch

    def counted(y: np.ndarray) -> tuple[float, float]:
        calls[0] += 1
        return search(y)

    monkeypatch.setattr(SpeechMeter, "_pitch", staticmethod(counted))
    gap = np.zeros(RATE // 2)
    talk = np.concatenate([note, gap, note, gap, note, gap, note, np.zeros(RATE), note])
    always, _ = feed(talk)
    searched_always = calls[0]
    calls[0] = 0
    lazy = SpeechMeter(listening=False)
    step = RATE * 30 // 1000
    opened = 3 * (len(note) + len(gap))  # the window opens as the fourth reason begins
    for i in range(0, len(talk), step):
        if i == opened - opened % step:
            lazy.listen(True)
        lazy.feed(to_pcm(talk[i : i + step]), i * 1_000_000 // RATE)
    at = opened * 1_000_000 // RATE
    end = len(talk) * 1_000_000 // RATE
    assert lazy.seconds(at, end) == always.seconds(at, end) > 3.0
    assert 0 < calls[0] < searched_always  # only what the window and its context need
    calls[0] = 0
    unheard = SpeechMeter(listening=False)
    for i in range(0, len(talk), step):
        unheard.feed(to_pcm(talk[i : i + step]), i * 1_000_000 // RATE)
    assert calls[0] == 0
