"""The body rules of docs/FORMAT.md section 4 that a verifier enforces.

Each function returns why a body breaks its rule, or None. Bodies are open
(section 3.2: unknown fields are ignored) except the three whose shape is
exact: `power_loss`, `recording_key` and `release`. Each of those is checked
field by field against something outside the record (a file, a key in the
video, a dock's receipt), so every field it has is one the verifier vouched
for; a field no verifier checks would read as vouched for too.
"""

from __future__ import annotations

import hashlib
from typing import Any, TypeGuard

from . import canonical, layout
from .records import HEX64

STILL_SOURCES = ("sensor", "video")

_POWER_LOSS = {
    "torn_chain_line": {"cause", "dropped_bytes", "dropped_sha256", "offset"},
    "partial_segment": {
        "cause",
        "file",
        "segno",
        "kind",
        "ct_len",
        "ct_sha256",
        "last_write_wall_us",
    },
}
_RELEASE = {"receipt", "dock", "from_seq", "to_seq", "head", "files", "bytes_freed"}
_RECORDING_KEY = {"public_key", "key"}


def count(v: object) -> TypeGuard[int]:
    """A non-negative integer (JSON has no unsigned type; bool is not one)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def hex64(v: object) -> bool:
    return isinstance(v, str) and HEX64.fullmatch(v) is not None


def power_loss_problem(b: dict[str, Any]) -> str | None:
    """Exactly one of the two shapes recovery writes; nothing more."""
    cause = b.get("cause")
    fields = _POWER_LOSS.get(cause) if isinstance(cause, str) else None
    if fields is None:
        return f"cause {cause!r} is neither torn_chain_line nor partial_segment"
    if not fields <= set(b):
        return f"{cause} wants {sorted(fields)}"
    if extra := sorted(set(b) - fields):
        return f"{cause} has fields beyond its shape: {extra}"
    if cause == "torn_chain_line":
        ok = count(b["dropped_bytes"]) and count(b["offset"]) and hex64(b["dropped_sha256"])
        return None if ok else "dropped_bytes, offset, dropped_sha256 malformed"
    parsed = layout.parse_name(b["file"]) if isinstance(b["file"], str) else None
    if parsed is None or parsed.kind != b["kind"] or not count(b["last_write_wall_us"]):
        return "file, kind or last_write_wall_us malformed"
    return None


def recording_key_problem(b: dict[str, Any]) -> str | None:
    """`public_key` is 32 raw bytes in canonical base64; `key` is their fingerprint."""
    if set(b) != _RECORDING_KEY:
        return f"fields must be exactly {sorted(_RECORDING_KEY)}"
    try:
        raw = canonical.unb64(b["public_key"])
    except canonical.EncodingError:
        return "public_key is not canonical base64"
    if len(raw) != 32:
        return f"public_key is {len(raw)} bytes, not a 32-byte Ed25519 key"
    if b["key"] != hashlib.sha256(raw).hexdigest():
        return "key is not the fingerprint (SHA-256) of public_key"
    return None


def recovered_problem(b: dict[str, Any]) -> str | None:
    """The gap a restarted device left: ordered, and `gap_us` its length."""
    start, end, gap = b.get("gap_from_us"), b.get("gap_to_us"), b.get("gap_us")
    if not count(end) or not (start is None or count(start)):
        return "gap_to_us must be a non-negative integer, gap_from_us one or null"
    if start is None:
        return None if gap is None else "gap_us must be null when gap_from_us is"
    if end < start:
        return f"gap_to_us {end} is before gap_from_us {start}"
    if gap != end - start or isinstance(gap, bool):
        return f"gap_us {gap!r} is not gap_to_us - gap_from_us ({end - start})"
    return None


STALL_PARTS = ("camera", "microphone", "recorder")
STALL_COUNTS = ("from_us", "to_us", "span_us", "dropped_frames", "dropped_samples", "lost_samples")


def stall_problem(b: dict[str, Any]) -> str | None:
    """A stall's span agrees with itself (FORMAT.md section 4.1)."""
    if not all(count(b.get(k)) for k in STALL_COUNTS) or not isinstance(b.get("ongoing"), bool):
        return f"{', '.join(STALL_COUNTS)} must be non-negative integers and ongoing a boolean"
    if b["from_us"] > b["to_us"] or b["span_us"] != b["to_us"] - b["from_us"]:
        return "from_us, to_us and span_us disagree"
    what, spans = b.get("what"), b.get("spans")
    if (
        not isinstance(what, list)
        or not what
        or not all(isinstance(w, str) for w in what)
        or what != sorted(set(what))
        or not set(what) <= set(STALL_PARTS)
        or not isinstance(spans, dict)
        or sorted(spans) != what
    ):
        return f"what must list some of {', '.join(STALL_PARTS)} once, in order, as spans does"
    pairs = list(spans.values())
    if not all(
        isinstance(p, list) and len(p) == 2 and all(count(v) for v in p) and p[0] <= p[1]
        for p in pairs
    ):
        return "each span must be [from_us, to_us], in order"
    if min(p[0] for p in pairs) != b["from_us"] or max(p[1] for p in pairs) != b["to_us"]:
        return "from_us and to_us must be where the spans begin and end"
    return None


def still_problem(b: dict[str, Any]) -> str | None:
    """A Pi camera's still says where its pixels came from, in one of two words."""
    if "still" not in b:
        return None
    s = b["still"]
    if not isinstance(s, dict) or s.get("source") not in STILL_SOURCES:
        got = s.get("source") if isinstance(s, dict) else s
        return f"still.source {got!r} is neither sensor nor video"
    return None


def media_body_problem(b: dict[str, Any], truncated: bool) -> str | None:
    """Why a media record's body is not well formed, or None."""
    if not (count(b.get("ct_len")) and isinstance(b.get("ct_sha256"), str)):
        return "ct_len/ct_sha256 missing"
    if truncated:
        return None
    if not (count(b.get("pt_len")) and isinstance(b.get("pt_sha256"), str)):
        return "pt_len/pt_sha256 missing"
    times = [b.get("start"), b.get("end")]
    if not all(
        isinstance(t, dict) and count(t.get("mono_us")) and count(t.get("wall_us")) for t in times
    ):
        return "start/end times missing"
    # the monotonic clock orders a segment: the wall clock may be stepped back
    # by a dock or GPS fix while it records (a `clock` record says so)
    if b["start"]["mono_us"] > b["end"]["mono_us"]:
        return "ends before it starts (monotonic clock)"
    if not count(b.get("duration_us")):
        return "duration missing"
    return None


def release_problem(body: dict[str, Any], want: dict[str, Any]) -> str | None:
    """A release says what its receipt says (`want`), no more and no less."""
    for key, value in want.items():
        if body.get(key) != value:
            return f"its {key} differs from the receipt's"
    if not count(body.get("bytes_freed")):
        return "bytes_freed is not a non-negative integer"
    if extra := sorted(set(body) - _RELEASE):
        return f"fields beyond a release's: {extra}"
    return None
