"""The dock link's message shapes, checked where they are read.

Each side trusts nothing the other sends: a dock reads a unit's replies
through the `parse_*` functions here, a unit reads a dock's requests the
same way, and a value of the wrong type, size or form is a `LinkError`
naming the field. docs/EXPORT.md, "Endpoints", is the prose of this file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sealing.canonical import MAX_INT, encode
from sealing.layout import check_serial, parse_name
from sealing.people import MAX_NAME, person_name

HEX64 = re.compile(r"[0-9a-f]{64}")
TOKEN = re.compile(r"[0-9a-f]{16,128}")
MAX_TEXT = 200  # an error or a name shown to people
MAX_PASSWORD = 1024
MAX_PEM = 4096

# The largest reply body a dock reads for each kind of answer: a status, a
# login and a clock answer are small; the offered list and a release name
# every file still held (a full 512 GB card of 8 s segments is ~250,000).
MAX_SMALL_REPLY = 64 * 1024
MAX_LIST_REPLY = 64 * 1024 * 1024


class LinkError(ValueError):
    """A message that is not what the link says; the text names the field."""


def _field(obj: Any, key: str) -> Any:
    if not isinstance(obj, Mapping):
        raise LinkError("the reply is not a JSON object")
    if key not in obj:
        raise LinkError(f"`{key}` is missing")
    return obj[key]


def text(obj: Any, key: str, *, limit: int = MAX_TEXT, allow_empty: bool = False) -> str:
    v = _field(obj, key)
    if not isinstance(v, str):
        raise LinkError(f"`{key}` is not a string")
    if len(v) > limit:
        raise LinkError(f"`{key}` is longer than {limit} characters")
    if not allow_empty and not v:
        raise LinkError(f"`{key}` is empty")
    if not v.isprintable() and key != "device_key_pem":
        raise LinkError(f"`{key}` holds control characters")
    return v


def integer(obj: Any, key: str, lo: int = 0, hi: int = MAX_INT) -> int:
    v = _field(obj, key)
    if not isinstance(v, int) or isinstance(v, bool):
        raise LinkError(f"`{key}` is not an integer")
    if not lo <= v <= hi:
        raise LinkError(f"`{key}` = {v} is outside {lo}..{hi}")
    return v


def flag(obj: Any, key: str) -> bool:
    v = _field(obj, key)
    if not isinstance(v, bool):
        raise LinkError(f"`{key}` is not true or false")
    return v


def hex64(obj: Any, key: str) -> str:
    v = _field(obj, key)
    if not isinstance(v, str) or not HEX64.fullmatch(v):
        raise LinkError(f"`{key}` is not 64 lowercase hex digits")
    return v


def file_name(obj: Any, key: str) -> str:
    v = _field(obj, key)
    if not isinstance(v, str) or parse_name(v) is None:
        raise LinkError(f"`{key}` is not a sealed file's name")
    return v


def error_text(obj: Any) -> str:
    """The `error` of an answer, made safe to print on one line."""
    v = obj.get("error") if isinstance(obj, Mapping) else None
    if not isinstance(v, str):
        return "no reason given"
    clean = "".join(c if c.isprintable() else "?" for c in v[:MAX_TEXT])
    return clean or "no reason given"


# -- a unit's answers, as a dock reads them ---------------------------------


@dataclass(frozen=True)
class Status:
    serial: str
    officer: str
    device_key_pem: str
    head_seq: int


def parse_status(obj: Any) -> Status:
    serial = text(obj, "serial", limit=32)
    try:
        check_serial(serial)
    except ValueError:
        raise LinkError("`serial` is not a unit serial") from None
    pem = text(obj, "device_key_pem", limit=MAX_PEM)
    if not pem.isascii() or "-----BEGIN PUBLIC KEY-----" not in pem:
        raise LinkError("`device_key_pem` is not a PEM public key")
    return Status(
        serial=serial,
        officer=text(obj, "officer", limit=MAX_TEXT),
        device_key_pem=pem,
        head_seq=integer(obj, "head_seq"),
    )


@dataclass(frozen=True)
class Session:
    token: str
    expires_in_s: int


def parse_session(obj: Any) -> Session:
    token = text(obj, "token", limit=128)
    if not TOKEN.fullmatch(token):
        raise LinkError("`token` is not a hex token")
    return Session(token, integer(obj, "expires_in_s", 1, 24 * 3600))


def retry_after(obj: Any) -> int | None:
    """A refused login's wait, if it gave a well-formed one."""
    try:
        return integer(obj, "retry_after_s", 0, 10**9)
    except LinkError:
        return None


def attempts_left(obj: Any) -> int | None:
    """How many more tries a refused login allows before the unit locks, if said."""
    try:
        return integer(obj, "attempts_left", 0, 1000)
    except LinkError:
        return None


def login_result(obj: Any) -> str | None:
    """A refused login's reason code (firmware/auth.py), if well-formed."""
    v = obj.get("result") if isinstance(obj, Mapping) else None
    return v if v in ("bad_password", "no_fingerprint", "locked") else None


def failures(obj: Any) -> int | None:
    try:
        return integer(obj, "failures", 0, 10**6)
    except LinkError:
        return None


@dataclass(frozen=True)
class Offer:
    seq: int
    file: str
    ct_sha256: str


def parse_offered(obj: Any) -> list[Offer]:
    items = _field(obj, "segments")
    if not isinstance(items, list):
        raise LinkError("`segments` is not a list")
    out = []
    for i, e in enumerate(items):
        try:
            out.append(Offer(integer(e, "seq"), file_name(e, "file"), hex64(e, "ct_sha256")))
        except LinkError as exc:
            raise LinkError(f"segments[{i}]: {exc}") from None
    return out


@dataclass(frozen=True)
class Released:
    receipt: str
    files: list[str]
    bytes_freed: int
    already_applied: bool


def parse_released(obj: Any) -> Released:
    files = _field(obj, "released")
    if not isinstance(files, list):
        raise LinkError("`released` is not a list")
    for i, f in enumerate(files):
        if not isinstance(f, str) or parse_name(f) is None:
            raise LinkError(f"released[{i}] is not a sealed file's name")
    return Released(
        hex64(obj, "receipt"), files, integer(obj, "bytes_freed"), flag(obj, "already_applied")
    )


# -- a dock's requests, as a unit reads them ----------------------------------


# what a dock says of the fingerprint when it has no reader: the verdict is
# the operator's word (`--fingerprint`, or the y/N question), and the unit's
# `auth` record, and the page, say so
NO_READER = "none"


@dataclass(frozen=True)
class Login:
    password: str
    fingerprint_ok: bool
    reader: str = ""  # the fingerprint reader's identity; NO_READER; "" not said


def parse_login(obj: Any) -> Login:
    pw = _field(obj, "password")
    if not isinstance(pw, str) or not 0 < len(pw) <= MAX_PASSWORD:
        raise LinkError(f"`password` is not a string of 1..{MAX_PASSWORD} characters")
    reader = text(obj, "reader", limit=80) if isinstance(obj, Mapping) and "reader" in obj else ""
    if reader and not reader.isprintable():
        raise LinkError("`reader` holds a character that is not printable")
    return Login(pw, flag(obj, "fingerprint_ok"), reader)


@dataclass(frozen=True)
class Assignment:
    """A unit handed to an officer at the dock (the usage ledger's check-out):
    what the dock signed with its receipt key, and the signature."""

    serial: str
    officer: str
    approver: str
    dock_key: str  # the fingerprint of the dock key that signed it
    at_us: int  # the dock's time of the check-out
    signature: str  # base64 Ed25519 over `signed_bytes()`

    def signed_fields(self) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "officer": self.officer,
            "approver": self.approver,
            "dock_key": self.dock_key,
            "at_us": self.at_us,
        }

    def signed_bytes(self) -> bytes:
        return encode({"assignment": self.signed_fields()})


def parse_assignment(obj: Any) -> Assignment:
    """A dock's assignment as the unit reads it: names checked as a person's
    name is everywhere (sealing.people), the rest by form."""
    serial = text(obj, "serial", limit=64)
    try:
        check_serial(serial)
        officer = person_name(text(obj, "officer", limit=MAX_NAME), "officer")
        approver = person_name(text(obj, "approver", limit=MAX_NAME), "approver")
    except ValueError as exc:
        raise LinkError(str(exc)) from None
    if officer != obj["officer"] or approver != obj["approver"]:
        raise LinkError("`officer` and `approver` must be sent NFC-normalised")
    dock_key = text(obj, "dock_key", limit=64)
    if not HEX64.fullmatch(dock_key):
        raise LinkError("`dock_key` is not a key fingerprint")
    signature = text(obj, "signature", limit=128)
    return Assignment(serial, officer, approver, dock_key, integer(obj, "at_us", 1), signature)


def parse_dock_time(obj: Any) -> int:
    return integer(obj, "dock_time_us", 1)
