"""Checking a video's in-stream signatures group by group, as it is read
(docs/FORMAT.md section 5.2; the signatures are made by capture/gopsign.py).

A `StreamChecker` takes NAL units and access-unit ends (capture/nal.py,
capture/mediaread.py) and keeps only the group being read: its NAL hashes
(at most 65,535, the count a signature can list), one count and one frame
number per picture. A closed group is judged at once and folded into a run
of like groups; what the whole file needs (the order of group indices,
which are missing) is kept as ranges per recording key. So memory does not
follow the file's length, nor how many NAL units it is cut into; where a
hostile file makes the ranges themselves many, the listing stops at a
bound and says so, and the file does not verify.
"""

from __future__ import annotations

import bisect
import hashlib
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

from . import gopsign, sei
from .nal import MAX_AU, LimitExceeded

MAX_HASHES = 0xFFFF  # a signature's count of hashed NAL units is 16 bits
MAX_PICTURES = 0xFFFF  # and every picture has a hashed slice
# the largest conforming signature SEI (65,535 hashes, escaped) is about 3.2 MB:
# a larger SEI NAL unit carries none, and is hashed like any other
MAX_SEI = 4 * 1024 * 1024
_SEI_MIN = 19  # header, payload type, size, and the 16-byte UUID a payload of ours starts with
MAX_KEYS = 16  # recording keys followed one by one; more are all "another key"
MAX_RUNS = 1000  # runs listed; beyond, counted
MAX_GAPS = 1000  # ranges of missing group indices followed per key

UNSIGNED = (
    "no signature follows these pictures (cut inside a group, re-encoded, "
    "or not from this kind of unit)"
)


@dataclass
class GroupResult:
    """One closed group, as judged (given to `on_group`)."""

    status: str  # verified | altered | incomplete | out of order | repeated
    first_au: int  # position of its first picture in the file, from 0
    pictures: int
    detail: str
    signature: gopsign.GroupSignature | None
    utc_us: tuple[int, int] | None  # first and last picture's time SEI
    clock: str | None


@dataclass
class Run:
    """Consecutive groups alike (verified, one key, indices in order), or
    one group that is not, or a stretch of unsigned pictures."""

    status: str
    intrinsic: str  # what the group's own check said, before order and keys
    key: int | None  # which recording key (an index into the checker's); None: none followed
    first_picture: int
    pictures: int
    groups: int
    first_group: int | None
    last_group: int | None
    utc_us: list[int] | None
    clock: str | None
    detail: str

    def extend(self, g: GroupResult) -> None:
        self.pictures += g.pictures
        self.groups += 1
        self.last_group = g.signature.index if g.signature else None
        if g.utc_us is not None:
            if self.utc_us is None:
                self.utc_us = [g.utc_us[0], g.utc_us[1]]
            self.utc_us[1] = g.utc_us[1]


@dataclass
class _Key:
    """What is known of one recording key's groups in the file."""

    raw: bytes
    serial: str
    groups: int = 0
    final: dict[str, int] = field(default_factory=dict)  # by status, order judged
    intrinsic: dict[str, int] = field(default_factory=dict)  # by the groups' own checks
    low: int = -1
    high: int = -1
    high_hash: bytes | None = None
    gaps: list[tuple[int, int]] = field(default_factory=list)  # missing indices, sorted
    gaps_unlisted: bool = False
    verified_from: int | None = None
    verified_to: int | None = None

    def add_gap(self, a: int, b: int) -> None:
        if a > b:
            return
        if len(self.gaps) >= MAX_GAPS:
            self.gaps_unlisted = True
            return
        bisect.insort(self.gaps, (a, b))

    def fill(self, i: int) -> bool:
        """Take index `i` out of the gaps; False when it was in none."""
        k = bisect.bisect_right(self.gaps, (i, float("inf"))) - 1
        if k < 0 or not self.gaps[k][0] <= i <= self.gaps[k][1]:
            return False
        a, b = self.gaps.pop(k)
        for part in ((a, i - 1), (i + 1, b)):
            if part[0] <= part[1]:
                bisect.insort(self.gaps, part)
        return True


@dataclass
class StreamResult:
    runs: list[Run]
    unlisted_runs: int
    counts: dict[str, int]  # groups by final status (another key's valid groups: foreign)
    groups: int
    unsigned_pictures: int
    pictures: int
    key: bytes | None  # the recording key most groups carry
    serial: str | None
    missing: list[tuple[int, int]]  # group indices absent between the first and last present
    missing_count: int
    missing_unlisted: bool
    verified_from: int | None
    verified_to: int | None
    stopped: str | None  # why reading stopped before the end, if it did

    @property
    def ok(self) -> bool:
        return (
            self.groups > 0
            and self.counts.get("verified", 0) == self.groups
            and not self.unsigned_pictures
            and not self.missing
            and not self.missing_unlisted
            and self.stopped is None
        )


class StreamChecker:
    """Feed with `nal()` and `end_au()` (a capture.nal.NalSink); `finish()`
    gives the result. `on_group` sees every closed group."""

    def __init__(self, on_group: Callable[[GroupResult], None] | None = None) -> None:
        self.on_group = on_group
        self.aus = 0  # access units (pictures) ended so far
        self.runs: list[Run] = []
        self.unlisted_runs = 0
        self.keys: list[_Key] = []
        self.key_of: dict[bytes, int] = {}
        self.nokey: dict[str, int] = {}  # groups with no (followed) key, by status
        self.unsigned_pictures = 0
        self._new_au()
        self._new_group()

    # -- the sink ------------------------------------------------------------------------

    def _new_au(self) -> None:
        self.au_bytes = 0
        self.au_hashes = 0
        self.au_sig: bytes | None = None
        self.au_time: sei.FrameSei | None = None

    def _new_group(self) -> None:
        self.g_first = self.aus
        self.g_aus = 0
        self.g_nhashes = 0
        self.g_hashes = bytearray()
        self.g_counts = array("I")  # hashed NAL units per picture
        self.g_frames = array("q")  # each picture's frame number, -1 if it has none
        self.g_over = False  # beyond a group's limits: details dropped, only counted
        self.g_time: list[int] | None = None
        self.g_clock: str | None = None

    def nal(self, unit: bytes | memoryview) -> None:
        self.au_bytes += len(unit)
        if self.au_bytes > MAX_AU:
            raise LimitExceeded(
                f"picture {self.aus} is larger than {MAX_AU} bytes, "
                "the format's limit for an access unit"
            )
        t = unit[0] & 0x1F
        if t in (9, 12):
            return  # delimiters and filler: muxers add and drop them
        if t == 6 and _SEI_MIN <= len(unit) <= MAX_SEI:
            for p in gopsign.sei_payloads(bytes(unit)):  # a view's bytes: SEIs are small
                if p[:16] == gopsign.UUID.bytes:
                    if self.au_sig is None:
                        self.au_sig = p[16:]
                    return  # the signature's own SEI is not hashed
                if self.au_time is None:
                    self.au_time = sei.parse_payload(p)
        self.au_hashes += 1
        self.g_nhashes += 1
        if not self.g_over:
            self.g_hashes += hashlib.sha256(unit).digest()
            if self.g_nhashes > MAX_HASHES:
                self._over()

    def end_au(self) -> None:
        t = self.au_time
        self.g_aus += 1
        if not self.g_over:
            self.g_counts.append(self.au_hashes)
            self.g_frames.append(t.frame if t else -1)
            if self.g_aus > MAX_PICTURES:
                self._over()
        if t is not None:
            if self.g_time is None:
                self.g_time = [t.utc_us, t.utc_us]
                self.g_clock = f"{t.clock_state}/{t.clock_source}"
            self.g_time[1] = t.utc_us
        sig = self.au_sig
        self.aus += 1
        self._new_au()
        if sig is not None:
            self._close(sig)
            self._new_group()

    def _over(self) -> None:
        self.g_over = True
        self.g_hashes = bytearray()
        self.g_counts = array("I")
        self.g_frames = array("q")

    # -- one group -----------------------------------------------------------------------

    def _close(self, payload: bytes) -> None:
        times = (self.g_time[0], self.g_time[1]) if self.g_time else None
        g = GroupResult("", self.g_first, self.g_aus, "", None, times, self.g_clock)
        sig = gopsign.parse(payload)
        key = None
        if sig is None:
            g.status, g.detail = "altered", "the signature message is damaged"
        elif not sig.valid():
            # its key and index are anyone's to write: they count for nothing
            g.signature, g.status, g.detail = sig, "altered", "the signature does not verify"
        else:
            g.signature = sig
            g.status, g.detail = self._judge(sig)
            key = self._key(sig)
        intrinsic = g.status
        if key is not None and sig is not None:
            k = self.keys[key]
            self._order(k, g, sig)
            k.final[g.status] = k.final.get(g.status, 0) + 1
            k.intrinsic[intrinsic] = k.intrinsic.get(intrinsic, 0) + 1
            if g.status == "verified" and times is not None:
                if k.verified_from is None:
                    k.verified_from = times[0]
                k.verified_to = times[1]
        elif sig is not None and sig.valid():  # a key beyond the ones followed
            status = "foreign" if intrinsic == "verified" else intrinsic
            self.nokey[status] = self.nokey.get(status, 0) + 1
        else:
            self.nokey[intrinsic] = self.nokey.get(intrinsic, 0) + 1
        if self.on_group is not None:
            self.on_group(g)
        self._run(g, intrinsic, key)

    def _judge(self, sig: gopsign.GroupSignature) -> tuple[str, str]:
        n = self.g_aus
        if self.g_over:
            return "altered", (
                f"more than {MAX_HASHES} NAL units or pictures since the last signature: "
                "beyond the format's limits for a group"
            )
        got = bytes(self.g_hashes)
        want = b"".join(sig.hashes)
        if got == want and n == sig.frames:
            return "verified", ""
        if self.g_first == 0 and n < sig.frames and want.endswith(got):
            return "incomplete", (
                f"the file starts inside this group: its last {n} of {sig.frames} pictures "
                "match, the rest is not here"
            )
        pos = 0
        for k, count in enumerate(self.g_counts):
            for _ in range(count):
                if got[pos : pos + 32] != want[pos : pos + 32]:
                    frame = self.g_frames[k]
                    at = f" (frame {frame})" if frame >= 0 else ""
                    return "altered", f"picture {k + 1} of {n}{at} differs from what was signed"
                pos += 32
        if len(want) > pos:
            return "altered", f"{(len(want) - pos) // 32} NAL units signed are not here"
        return "altered", f"{n} pictures where {sig.frames} were signed"

    def _key(self, sig: gopsign.GroupSignature) -> int | None:
        k = self.key_of.get(sig.key)
        if k is None and len(self.keys) < MAX_KEYS:
            k = self.key_of[sig.key] = len(self.keys)
            self.keys.append(_Key(sig.key, sig.serial))
        return k

    def _order(self, k: _Key, g: GroupResult, sig: gopsign.GroupSignature) -> None:
        """Where the group's index falls among its key's: in order, after a
        gap (the gap is missing until filled), out of order, or again."""
        i = sig.index
        k.groups += 1
        verified = g.status == "verified"
        if k.high < 0:
            k.low = k.high = i
            k.high_hash = sig.group_hash
        elif i > k.high:
            if i == k.high + 1:
                if verified and k.high_hash is not None and sig.prev != k.high_hash:
                    g.status, g.detail = "altered", f"does not follow group {i - 1} as signed"
            else:
                k.add_gap(k.high + 1, i - 1)
            k.high, k.high_hash = i, sig.group_hash
        elif i < k.low:
            k.add_gap(i + 1, k.low - 1)
            k.low = i
            if verified:
                g.status, g.detail = "out of order", f"group {i} comes after group {k.high}"
        elif k.fill(i):
            if verified:
                g.status, g.detail = "out of order", f"group {i} comes after group {k.high}"
        elif verified:
            # seen before (or, past MAX_GAPS ranges, possibly out of order): one
            # stretch of pictures would play twice
            g.status, g.detail = "repeated", f"group {i} is in the file more than once"

    def _run(self, g: GroupResult, intrinsic: str, key: int | None) -> None:
        last = self.runs[-1] if self.runs else None
        if (
            last is not None
            and g.status == "verified"
            and last.status == "verified"
            and last.key == key
            and g.signature is not None
            and last.last_group is not None
            and g.signature.index == last.last_group + 1
            and g.first_au == last.first_picture + last.pictures
            and g.clock == last.clock
        ):
            last.extend(g)
            return
        if len(self.runs) >= MAX_RUNS:
            self.unlisted_runs += 1
            return
        index = g.signature.index if g.signature else None
        self.runs.append(
            Run(
                g.status,
                intrinsic,
                key,
                g.first_au,
                g.pictures,
                1,
                index,
                index,
                list(g.utc_us) if g.utc_us else None,
                g.clock,
                g.detail,
            )
        )

    # -- the end -------------------------------------------------------------------------

    def finish(self, stopped: str | None = None) -> StreamResult:
        if self.g_aus:
            self.unsigned_pictures += self.g_aus
            detail = UNSIGNED + (" (beyond the format's limits for a group)" if self.g_over else "")
            times = list(self.g_time) if self.g_time else None
            run = Run(
                "unsigned",
                "unsigned",
                None,
                self.g_first,
                self.g_aus,
                0,
                None,
                None,
                times,
                self.g_clock,
                detail,
            )
            if len(self.runs) < MAX_RUNS:
                self.runs.append(run)
            else:
                self.unlisted_runs += 1
        own = max(range(len(self.keys)), key=lambda k: self.keys[k].groups, default=None)
        counts: dict[str, int] = {}

        def add(status: str, n: int) -> None:
            counts[status] = counts.get(status, 0) + n

        for k, key in enumerate(self.keys):
            for status, n in (key.final if k == own else key.intrinsic).items():
                add("foreign" if k != own and status == "verified" else status, n)
        for status, n in self.nokey.items():
            add(status, n)
        for run in self.runs:
            if run.intrinsic == "verified" and run.key != own:
                run.status = "foreign"
                other = self.keys[run.key] if run.key is not None else None
                run.detail = (
                    f"signed by another recording's key {other.raw.hex()[:16]} "
                    f"(unit {other.serial}): spliced in"
                    if other
                    else "signed by yet another recording's key: spliced in"
                )
        mine = self.keys[own] if own is not None else None
        missing = list(mine.gaps) if mine else []
        return StreamResult(
            runs=self.runs,
            unlisted_runs=self.unlisted_runs,
            counts=counts,
            groups=sum(counts.values()),
            unsigned_pictures=self.unsigned_pictures,
            pictures=self.aus,
            key=mine.raw if mine else None,
            serial=mine.serial if mine else None,
            missing=missing,
            missing_count=sum(b - a + 1 for a, b in missing),
            missing_unlisted=bool(mine and mine.gaps_unlisted),
            verified_from=mine.verified_from if mine else None,
            verified_to=mine.verified_to if mine else None,
            stopped=stopped,
        )
