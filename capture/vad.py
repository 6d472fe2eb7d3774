"""Voice activity: how many seconds of speech the microphone heard in a window.

A spoken note must be one voice talking, not just sound: a cough or clap
train, a crowd's babble, music, a tone, hum or noise must not make one.
Sound is judged in three steps (docs/CAPTURE.md, "How a spoken note is
judged"):

1. Each 30 ms frame (16 kHz mono) gets its RMS level, and a voicing score
   and pitch: the peak of the normalised autocorrelation of the 60-1000 Hz
   band over the last 60 ms, at lags for 70-400 Hz. A frame is *audible*
   when its RMS is at least -65 dBFS (speech peaking at -45 dBFS has most
   of its frames above that) and 6 dB above the noise floor (the quietest
   90 ms within 3 s either side: steady sound is background). It is
   *voiced* when audible with a voicing score of at least 0.8: one voice's
   vowels are; overlapping voices, chords and noise bursts are not.
2. Each audible frame is judged on the stretch around it. It *passes* when,
   over the 2 s around it, at least 40% of the audible frames are voiced
   (2 s, so a cluster of consonants does not break a sentence) and at most
   30% of the voiced frames are in held notes (pitch steady within 0.1
   semitone for 150 ms, as an instrument or a tone holds it; a voice
   drifts); and over the second around it the level above the floor swings
   (standard deviation) by at least 3 dB, as syllables make it. Babble and
   impulse trains fail on voicing, sustained music on voicing and the
   swing, detached notes on held pitch; tones, hum and noise are the floor.
3. Passing frames are joined into utterances across gaps of at most 300 ms
   (between words); an utterance of at least 0.6 s counts in full, first
   frame to last, gaps included. A passing frame on its own never counts.

Before all three, the unit's own sound is taken out: every block its
speaker played (`played`, with the instant the speaker says it left it) is
the echo reference. The echo path from speaker to microphone is learnt from
the reference and the microphone together (cross-spectra over the unit's
playback: a voice over it is uncorrelated with the prompt and averages
out), and each frame gets the echo it predicts. A frame is the unit's own
(never audible) unless the microphone is at least `ECHO_MARGIN_DB` above
that prediction, so an officer speaking over a prompt counts wherever the
voice stands that far above the unit's own.

The WebRTC VAD is not used: it heard none of the frames of speech peaking
at -45 dBFS and called every frame of babble and music speech, so it added
nothing the voicing score does not.

`feed` only measures frames; `seconds()` judges the frames of the window
(with 2.7 s of context either side) each time it is asked, vectorised
(about 0.2 ms for 60 s on a desktop core). So an utterance counts from
its first frame once it is confirmed, a note spoken at the instant the
window opens counts in full, and the newest second is judged on what has
arrived so far.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, fields

import numpy as np

RATE = 16_000
FRAME = 480  # 30 ms at 16 kHz
FRAME_US = 30_000

MIN_DBFS = -65.0  # RMS: speech peaking at -45 dBFS has most frames above it
ABOVE_FLOOR_DB = 6.0
FLOOR_HALF = 50  # the noise floor is the quietest of the 3 s either side
VOICED = 0.8  # normalised autocorrelation of one voice's vowel
LAG_MIN, LAG_MAX = RATE // 400, RATE // 70  # pitch 400..70 Hz
BAND_HZ = (60.0, 1000.0)  # where the voice's fundamental and first harmonics are
HALF_WINDOW = 16  # frames either side: the second a frame is judged on
MIN_VOICED_FRACTION = 0.4
MIN_SWING_DB = 3.0
MAX_HELD_FRACTION = 0.3
HELD_SEMITONES = 0.1
HELD_FRAMES = 5  # 150 ms of steady pitch is a held note
LONG_HALF_WINDOW = 33  # frames either side: voicing and held notes are judged on 2 s
MAX_GAP_FRAMES = 10  # 300 ms between words
MIN_UTTERANCE_FRAMES = 20  # 0.6 s
# what the frames at a window's ends are judged with (2.7 s)
CONTEXT_US = (FLOOR_HALF + LONG_HALF_WINDOW + HELD_FRAMES + 2) * FRAME_US
KEEP_FRAMES = 10_000  # 300 s of frame features (about 150 kB)
# samples kept for the pitch search while nobody listens: a window's context
# (CONTEXT_US) and the time until its first judgement, with room (about 540 kB)
RAW_KEEP = 2 * ((CONTEXT_US + 1_000_000) // FRAME_US)

# The unit's own playback (the echo reference)
ECHO_N = 2048  # 128 ms: the echo path is learnt and predicted on this window
ECHO_MARGIN_DB = 10.0  # over the unit's own sound, a frame counts only this far above it
ECHO_DECAY_DB = 3.0  # per frame (100 dB/s): the room's echo held after the unit stops playing
ECHO_FORGET = 0.99  # per frame played: the path is learnt over the last ~3 s of playback
ECHO_MIN_DB = -80.0  # a reference or a predicted echo below this is nothing

_N = 2 * FRAME  # analysis length: this frame and the one before
_NFFT = 2048  # >= 2 * _N: the autocorrelation does not wrap
_FREQS = np.fft.rfftfreq(_NFFT, 1 / RATE)
_BAND = (BAND_HZ[0] <= _FREQS) & (BAND_HZ[1] >= _FREQS)
_LAGS = np.arange(LAG_MIN - 1, LAG_MAX + 2)  # one more each side for interpolation
_ECHO_WIN = np.hanning(ECHO_N)
_ECHO_POWER = float(np.sum(_ECHO_WIN**2)) * 32768.0**2  # a full-scale window's energy


def _sample(t_us: int) -> int:
    """The sample index of instant `t_us` on the unit's clock (16 kHz)."""
    return (t_us * RATE + 500_000) // 1_000_000


def _window_db(x: np.ndarray) -> float:
    return 10 * float(np.log10(float(np.sum(x * x)) / _ECHO_POWER + 1e-12))


class _Echo:
    """The unit's own playback as the microphone hears it: the reference
    blocks on the sample timeline, the echo path learnt from them
    (H = <M R*> / <|R|^2>, forgetting slowly), and the decision per frame."""

    def __init__(self) -> None:
        self._blocks: deque[tuple[int, np.ndarray]] = deque()  # (first sample, samples)
        self._sxy = np.zeros(ECHO_N // 2 + 1, complex)
        self._sxx = np.zeros(ECHO_N // 2 + 1)
        self._env_db = -np.inf  # the predicted echo, held and decaying
        # the microphone's last frames (at least ECHO_N samples), joined only when needed
        self._recent: deque[np.ndarray] = deque(maxlen=-(-ECHO_N // FRAME) + 1)
        self._mic_end: int | None = None  # the sample after them
        self.judged_to: int | None = None  # frames ending before this are judged

    def played(self, pcm: bytes, at_us: int) -> tuple[int, int] | None:
        """A block the speaker played from `at_us`. Returns its sample span
        if frames it overlaps were already judged without it (a late report)."""
        x = np.frombuffer(pcm, "<i2").astype(np.float64)
        if not len(x):
            return None
        s = _sample(at_us)
        self._blocks.append((s, x))
        if self.judged_to is not None and s < self.judged_to:
            return s, s + len(x)
        return None

    def own(self, x: np.ndarray, t_us: int) -> bool:
        """Is the frame of samples `x` from `t_us` the unit's own sound?"""
        s0 = _sample(t_us)
        end = s0 + len(x)
        if self._mic_end != s0:  # a hole in the sound: the window starts afresh
            self._recent.clear()
        self._recent.append(x)
        self._mic_end = self.judged_to = end
        lo = end - ECHO_N
        while self._blocks and self._blocks[0][0] + len(self._blocks[0][1]) <= lo:
            self._blocks.popleft()
        if not self._blocks and self._env_db == -np.inf:
            return False  # the unit is not playing, and its echo has died away
        recent = np.concatenate(self._recent)[-ECHO_N:]
        mic = np.concatenate((np.zeros(ECHO_N - len(recent)), recent))
        ref = np.zeros(ECHO_N)
        for s, block in self._blocks:
            a, b = max(s, lo), min(s + len(block), end)
            if a < b:
                ref[a - lo : b - lo] = block[a - s : b - s]
        echo_db = -np.inf
        if _window_db(ref) > ECHO_MIN_DB:
            r = np.fft.rfft(_ECHO_WIN * ref)
            m = np.fft.rfft(_ECHO_WIN * mic)
            self._sxy = ECHO_FORGET * self._sxy + m * np.conj(r)
            self._sxx = ECHO_FORGET * self._sxx + (r * np.conj(r)).real
            h = self._sxy / (self._sxx + 1e-3 * (self._sxx.max() + 1e-12))
            echo_db = _window_db(np.fft.irfft(h * r, ECHO_N))
        self._env_db = max(echo_db, self._env_db - ECHO_DECAY_DB)
        if self._env_db < ECHO_MIN_DB:
            self._env_db = -np.inf
            return False
        return _window_db(_ECHO_WIN * mic) < self._env_db + ECHO_MARGIN_DB


@dataclass
class _Frames:
    """Per-frame features, oldest first; the oldest half is dropped when full."""

    t_us: np.ndarray = field(default_factory=lambda: np.zeros(KEEP_FRAMES, np.int64))
    db: np.ndarray = field(default_factory=lambda: np.zeros(KEEP_FRAMES, np.float32))
    voicing: np.ndarray = field(default_factory=lambda: np.zeros(KEEP_FRAMES, np.float32))
    semitone: np.ndarray = field(default_factory=lambda: np.zeros(KEEP_FRAMES, np.float32))
    own: np.ndarray = field(default_factory=lambda: np.zeros(KEEP_FRAMES, bool))  # the unit's
    n: int = 0

    def append(self, t_us: int, db: float, voicing: float, semi: float, own: bool) -> None:
        if self.n == KEEP_FRAMES:
            self.drop(KEEP_FRAMES // 2)
        i = self.n
        self.t_us[i], self.db[i] = t_us, db
        self.voicing[i], self.semitone[i], self.own[i] = voicing, semi, own
        self.n += 1

    def drop(self, k: int) -> None:
        k = min(k, self.n)
        for a in (self.t_us, self.db, self.voicing, self.semitone, self.own):
            a[: self.n - k] = a[k : self.n]
        self.n -= k


def _sliding_sum(a: np.ndarray, half: int) -> np.ndarray:
    """Sum over [i-half, i+half], clipped to the array."""
    c = np.concatenate(([0.0], np.cumsum(a, dtype=np.float64)))
    i = np.arange(len(a))
    return c[np.minimum(len(a), i + half + 1)] - c[np.maximum(0, i - half)]


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) indices of the runs of True in `mask`."""
    d = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


@dataclass
class Judgement:
    """What `judge` saw, per frame of the judged stretch (for tests and tuning)."""

    t_us: np.ndarray
    own: np.ndarray  # the unit's own playback (never audible)
    audible: np.ndarray
    voiced: np.ndarray
    passing: np.ndarray  # judged like speech on the second around it
    speech: np.ndarray  # part of an utterance that counts
    voiced_fraction: np.ndarray  # of the audible frames of the second around
    swing: np.ndarray  # dB: standard deviation of the level above the floor
    held_fraction: np.ndarray  # of the voiced frames of the 2 s around


@dataclass
class SpeechMeter:
    _frames: _Frames = field(default_factory=_Frames, repr=False)
    _buf: bytearray = field(default_factory=bytearray, repr=False)
    _next_us: int | None = None
    _prev: np.ndarray = field(default_factory=lambda: np.zeros(FRAME), repr=False)
    _echo: _Echo = field(default_factory=_Echo, repr=False)
    # Nobody listening (no note window open): the pitch search, most of the
    # meter's cost, waits; the last RAW_KEEP frames' samples are kept so that
    # a window opened now still has its context judged in full (`listen`).
    listening: bool = True
    _raw: deque[tuple[int, np.ndarray]] = field(default_factory=deque, repr=False)

    def listen(self, on: bool) -> None:
        """Start (or stop) judging as the sound comes; starting catches up
        on the frames kept from before."""
        self.listening = on
        if on:
            self._pitch_pending()

    def played(self, pcm: bytes, at_us: int) -> None:
        """The unit's speaker played `pcm` (16 kHz mono s16) from `at_us`:
        what the microphone hears of it is not a voice of the window."""
        late = self._echo.played(pcm, at_us)
        if late is not None:  # frames judged before it was reported: the unit's, to be safe
            fr = self._frames
            lo = late[0] * 1_000_000 // RATE - FRAME_US
            hi = late[1] * 1_000_000 // RATE + int(ECHO_N * 1_000_000 // RATE)
            t = fr.t_us[: fr.n]
            fr.own[: fr.n] |= (t >= lo) & (t < hi)

    def hole(self) -> None:
        """The sound stops coming for a while: a part frame is not joined to
        what comes after (the echo finds the hole by the frames' times)."""
        self._buf.clear()
        self._next_us = None

    def feed(self, pcm: bytes, pts_us: int) -> None:
        if self._next_us is None or not self._buf:
            self._next_us = pts_us - len(self._buf) // 2 * 1_000_000 // RATE
        self._buf += pcm
        while len(self._buf) >= FRAME * 2:
            x = np.frombuffer(bytes(self._buf[: FRAME * 2]), "<i2").astype(np.float64)
            del self._buf[: FRAME * 2]
            self._analyse(x, self._next_us)
            self._next_us += FRAME_US

    def _analyse(self, x: np.ndarray, t_us: int) -> None:
        db = 10 * float(np.log10(np.mean(x * x) / 32768.0**2 + 1e-12))
        voicing, semi = 0.0, 0.0
        if db >= MIN_DBFS:  # a quieter frame is never audible: spare the pitch search
            if self.listening:
                voicing, semi = self._pitch(np.concatenate((self._prev, x)))
            else:
                voicing = semi = np.nan  # searched when someone listens (_pitch_pending)
                self._raw.append((t_us, np.concatenate((self._prev, x))))
                while len(self._raw) > RAW_KEEP:
                    self._raw.popleft()
        self._prev = x
        self._frames.append(t_us, db, voicing, semi, self._echo.own(x, t_us))

    def _pitch_pending(self) -> None:
        """The pitch of every kept frame not searched yet; frames whose
        samples are no longer kept count as unvoiced."""
        fr = self._frames
        t = fr.t_us[: fr.n]
        for t_us, y in self._raw:
            i = int(np.searchsorted(t, t_us))
            if i < fr.n and t[i] == t_us and np.isnan(fr.voicing[i]):
                fr.voicing[i], fr.semitone[i] = self._pitch(y)
        self._raw.clear()
        stale = np.isnan(fr.voicing[: fr.n])
        fr.voicing[: fr.n][stale] = 0.0
        fr.semitone[: fr.n][stale] = 0.0

    @staticmethod
    def _pitch(y: np.ndarray) -> tuple[float, float]:
        """(voicing, pitch in semitones) from the normalised autocorrelation of
        the 60-1000 Hz band; voicing 0 when there is nothing to correlate."""
        spec = np.fft.rfft(y, _NFFT)
        spec[~_BAND] = 0
        z = np.fft.irfft(spec, _NFFT)[:_N]  # the band, in time
        acf = np.fft.irfft(np.abs(np.fft.rfft(z, _NFFT)) ** 2, _NFFT)[_LAGS]
        e = np.concatenate(([0.0], np.cumsum(z * z)))
        norm = np.sqrt(e[_N - _LAGS] * (e[_N] - e[_LAGS]))
        if e[_N] <= 1e-3:
            return 0.0, 0.0
        nccf = acf / np.maximum(norm, 1e-9)
        inner = nccf[1:-1]
        best = float(inner.max())
        # the shortest lag that is nearly as periodic: the fundamental, not a
        # multiple of its period (an octave below)
        peaks = np.flatnonzero((inner >= 0.92 * best) & (inner >= nccf[:-2]) & (inner >= nccf[2:]))
        k = int(peaks[0]) + 1 if len(peaks) else int(inner.argmax()) + 1
        a, b, c = nccf[k - 1], nccf[k], nccf[k + 1]
        den = a - 2 * b + c
        lag = _LAGS[k] + (min(0.5, max(-0.5, 0.5 * (a - c) / den)) if den < 0 else 0.0)
        return best, 12 * float(np.log2(RATE / lag / 440.0))

    # -- judging -------------------------------------------------------------------

    def judge(self, from_us: int, to_us: int) -> Judgement:
        """Judge the frames starting in [from_us, to_us) with their context."""
        if self._raw:
            self._pitch_pending()
        fr = self._frames
        t = fr.t_us[: fr.n]
        lo = int(np.searchsorted(t, from_us - CONTEXT_US))
        hi = int(np.searchsorted(t, to_us + CONTEXT_US))
        j = _judge(t[lo:hi], fr.db[lo:hi], fr.voicing[lo:hi], fr.semitone[lo:hi], fr.own[lo:hi])
        keep = (j.t_us >= from_us) & (j.t_us < to_us)
        return Judgement(*(getattr(j, f.name)[keep] for f in fields(Judgement)))

    def seconds(self, from_us: int, to_us: int) -> float:
        """Seconds of speech heard in [from_us, to_us)."""
        return int(self.judge(from_us, to_us).speech.sum()) * FRAME_US / 1e6

    @property
    def speech(self) -> list[int]:
        """Start times of the buffered frames that count as speech."""
        fr = self._frames
        if not fr.n:
            return []
        j = self.judge(int(fr.t_us[0]), int(fr.t_us[fr.n - 1]) + 1)
        return [int(v) for v in j.t_us[j.speech]]

    @property
    def span_us(self) -> tuple[int, int] | None:
        """Where the frames heard (and kept) begin and end."""
        fr = self._frames
        return (int(fr.t_us[0]), int(fr.t_us[fr.n - 1]) + FRAME_US) if fr.n else None

    def forget_before(self, t_us: int) -> None:
        fr = self._frames
        fr.drop(int(np.searchsorted(fr.t_us[: fr.n], t_us)))


def _window_min(a: np.ndarray, half: int) -> np.ndarray:
    """Minimum over [i-half, i+half], clipped to the array (van Herk: O(n))."""
    w = 2 * half + 1
    n = len(a)
    pad = np.full(half + n + half + (-(n + 2 * half)) % w, np.inf)
    pad[half : half + n] = a
    blocks = pad.reshape(-1, w)
    pre = np.minimum.accumulate(blocks, axis=1).reshape(-1)
    suf = np.minimum.accumulate(blocks[:, ::-1], axis=1)[:, ::-1].reshape(-1)
    i = np.arange(n)
    return np.minimum(suf[i], pre[i + w - 1])


def _judge(
    t_us: np.ndarray, db: np.ndarray, voicing: np.ndarray, semitone: np.ndarray, own: np.ndarray
) -> Judgement:
    n = len(t_us)
    # the noise floor: the quietest 90 ms (3 frames averaged, so one quiet frame
    # inside a word is not the floor) within 3 s either side
    smooth = np.convolve(db, np.ones(3) / 3, "same") if n >= 3 else db
    floor = np.maximum(_window_min(smooth, FLOOR_HALF), MIN_DBFS - ABOVE_FLOOR_DB)
    audible = (db >= MIN_DBFS) & (db >= floor + ABOVE_FLOOR_DB) & ~own
    voiced = audible & (voicing >= VOICED)
    # a new frame after a gap in the timestamps does not continue the one before
    joined = np.concatenate(([False], np.diff(t_us) == FRAME_US))
    steady = np.zeros(n, bool)
    if n > 1:
        steady[1:] = (
            voiced[1:] & voiced[:-1] & joined[1:] & (np.abs(np.diff(semitone)) < HELD_SEMITONES)
        )
    held = np.zeros(n, bool)
    starts, ends = _runs(steady)
    for s, e in zip(starts, ends, strict=True):
        if e - s >= HELD_FRAMES - 1:  # steps between HELD_FRAMES frames
            held[max(0, s - 1) : e] = True  # from the frame the first step leaves
    frames = _sliding_sum(np.ones(n), HALF_WINDOW)
    n_aud = _sliding_sum(audible, LONG_HALF_WINDOW)
    n_voiced = _sliding_sum(voiced, LONG_HALF_WINDOW)
    # modulation: how far the level above the floor swings over the second
    lift = np.maximum(db, floor) - floor
    mean = _sliding_sum(lift, HALF_WINDOW) / frames
    swing = np.sqrt(np.maximum(0.0, _sliding_sum(lift * lift, HALF_WINDOW) / frames - mean**2))
    voiced_fraction = n_voiced / np.maximum(n_aud, 1)
    held_fraction = _sliding_sum(held, LONG_HALF_WINDOW) / np.maximum(n_voiced, 1)
    passing = (
        audible
        & (voiced_fraction >= MIN_VOICED_FRACTION)
        & (swing >= MIN_SWING_DB)
        & (held_fraction <= MAX_HELD_FRACTION)
    )
    speech = np.zeros(n, bool)
    idx = np.flatnonzero(passing)
    if len(idx):
        # utterances: passing frames no more than MAX_GAP_FRAMES apart in time
        gap = np.diff(t_us[idx]) > (MAX_GAP_FRAMES + 1) * FRAME_US
        first = np.concatenate(([0], np.flatnonzero(gap) + 1))
        last = np.concatenate((np.flatnonzero(gap), [len(idx) - 1]))
        for a, b in zip(idx[first], idx[last], strict=True):
            if t_us[b] - t_us[a] + FRAME_US >= MIN_UTTERANCE_FRAMES * FRAME_US:
                speech[a : b + 1] = True
    return Judgement(
        t_us, own, audible, voiced, passing, speech, voiced_fraction, swing, held_fraction
    )
