"""Chain records: fields, the signed line format, and checking one line.

A line of chain.jsonl is the canonical JSON of
    {"mac": <hex HMAC-SHA256 under k[seq]>, "rec": <record>, "sig": <b64 Ed25519>}
followed by "\\n". The record's hash (what the next record's `prev` holds) is
SHA-256 of canonical(rec); the signature is over SIG_DOMAIN + canonical(rec).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import canonical, fss

VERSION = 1
SIG_DOMAIN = b"bodycam-record-v1\n"
GENESIS_PREV = "0" * 64
CLOCK_STATES = ("synced", "holdover", "unverified")
# Twice the largest receipt, so a `release` listing every file it may name
# fits; a verifier reading a hostile chain stops at this length.
MAX_LINE = 8 * 1024 * 1024
HEX64 = re.compile(r"[0-9a-f]{64}")

# Types this version interprets. Any other type is still hashed, signed and
# MACed like these, so an older verifier checks it and only skips its body.
KNOWN_TYPES = frozenset(
    {
        "genesis",
        "boot",
        "segment",
        "still",
        "pause",
        "resume",
        "resume_note",
        "clock",
        "fault",
        "recovered",
        "stall",
        "power_loss",
        "storage_low",
        "battery_low",
        "mark",
        "export",
        "release",
        "record_start",
        "record_stop",
        "selftest",
        "recording_key",
        "auth",
        "officer",
    }
)


class RecordError(ValueError):
    pass


@dataclass(frozen=True)
class Stamp:
    """When a record was made, and how far the wall clock can be trusted."""

    mono_us: int
    wall_us: int
    clock_state: str = "unverified"
    clock_source: str = "none"

    def as_dict(self) -> dict[str, Any]:
        return {
            "mono_us": self.mono_us,
            "wall_us": self.wall_us,
            "clock": {"state": self.clock_state, "source": self.clock_source},
        }


@dataclass(frozen=True)
class Record:
    seq: int
    type: str
    body: dict[str, Any]
    stamp: Stamp
    serial: str
    officer: str
    prev: str
    boot: int  # how many `boot` records precede this one (monotonic time restarts at boot)
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "serial": self.serial,
            "officer": self.officer,
            "seq": self.seq,
            "prev": self.prev,
            "type": self.type,
            "boot": self.boot,
            **self.stamp.as_dict(),
            "body": self.body,
        }

    @property
    def hash(self) -> str:
        return hashlib.sha256(canonical.encode(self.to_dict())).hexdigest()


def seal_line(record: Record, signing_key: Ed25519PrivateKey, mac_key: bytes) -> bytes:
    msg = canonical.encode(record.to_dict())
    sig = signing_key.sign(SIG_DOMAIN + msg)
    line = {"mac": fss.mac(mac_key, msg), "rec": record.to_dict(), "sig": canonical.b64(sig)}
    out = canonical.encode(line) + b"\n"
    if len(out) > MAX_LINE:
        raise canonical.EncodingError(f"record line of {len(out)} bytes is over {MAX_LINE}")
    return out


def parse_line(line: bytes) -> tuple[Record, bytes, str]:
    """Parse one line (without its newline) into (record, signature, mac).

    Raises RecordError for anything but a well-formed, canonical line; it does
    not check the signature (see `check_signature`).
    """
    try:
        outer = canonical.decode(line)
    except canonical.EncodingError as exc:
        raise RecordError(str(exc)) from None
    if not isinstance(outer, dict) or set(outer) != {"mac", "rec", "sig"}:
        raise RecordError("line is not {mac, rec, sig}")
    rec = outer["rec"]
    want = {
        "v",
        "serial",
        "officer",
        "seq",
        "prev",
        "type",
        "boot",
        "mono_us",
        "wall_us",
        "clock",
        "body",
    }
    if not isinstance(rec, dict) or set(rec) != want:
        raise RecordError("record fields are not those of format version 1")
    if rec["v"] != VERSION:
        raise RecordError(f"format version {rec['v']!r} is not 1")
    ints = ("seq", "boot", "mono_us", "wall_us")
    if any(not isinstance(rec[k], int) or isinstance(rec[k], bool) or rec[k] < 0 for k in ints):
        raise RecordError("seq, boot, mono_us and wall_us must be non-negative integers")
    clock = rec["clock"]
    if (
        not isinstance(clock, dict)
        or set(clock) != {"state", "source"}
        or clock["state"] not in CLOCK_STATES
        or not isinstance(clock["source"], str)
    ):
        raise RecordError("clock must be {state: synced|holdover|unverified, source}")
    strs = ("serial", "officer", "prev", "type")
    if any(not isinstance(rec[k], str) for k in strs) or not isinstance(rec["body"], dict):
        raise RecordError("serial, officer, prev, type must be strings and body an object")
    if not HEX64.fullmatch(rec["prev"]):
        raise RecordError("prev must be a SHA-256 in 64 lowercase hex digits")
    try:
        sig = canonical.unb64(outer["sig"])
    except (canonical.EncodingError, AttributeError):
        raise RecordError("signature is not base64") from None
    record = Record(
        seq=rec["seq"],
        type=rec["type"],
        body=rec["body"],
        stamp=Stamp(rec["mono_us"], rec["wall_us"], clock["state"], clock["source"]),
        serial=rec["serial"],
        officer=rec["officer"],
        prev=rec["prev"],
        boot=rec["boot"],
        raw=rec,
    )
    # well formed even when no escrow key is given to check it against
    if not isinstance(outer["mac"], str) or not HEX64.fullmatch(outer["mac"]):
        raise RecordError("mac must be an HMAC-SHA256 in 64 lowercase hex digits")
    return record, sig, outer["mac"]


def check_signature(record: Record, sig: bytes, public_key: Ed25519PublicKey) -> bool:
    return signed_by(canonical.encode(record.to_dict()), sig, public_key)


def signed_by(rec_bytes: bytes, sig: bytes, public_key: Ed25519PublicKey) -> bool:
    """Whether `sig` signs a record given as its canonical bytes."""
    try:
        public_key.verify(sig, SIG_DOMAIN + rec_bytes)
    except InvalidSignature:
        return False
    return True


def rec_bytes(line: bytes) -> bytes:
    """canonical(rec) of a line `parse_line` accepted: the line is canonical,
    so its record is the bytes between `{"mac":"<64 hex>","rec":` and
    `,"sig":"` (the signature is base64: it holds no quote), not re-encoded."""
    return line[len(b'{"mac":"') + 64 + len(b'","rec":') : line.rindex(b',"sig":"')]
