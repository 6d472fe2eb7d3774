"""Disposal statements: a dock's signed word that it removed a recording's
files from its copy at the end of their retention (S0 art. 24-25), so a
verifier of that copy reports them as disposed, not missing.

A statement file is canonical JSON {"disposal": D, "sig": b64 Ed25519 over
DISPOSAL_DOMAIN + canonical(D)}, kept as `disposals/<id>.json` beside the
chain in the dock's copy of a unit (`<dock>/units/<serial>/`); its id is the
SHA-256 of canonical(D). D names the unit's serial, the recording (its
`record_start` seq), every file removed with the seq of its chain record
and the ciphertext hash the chain gives, the class it was kept under, the
last day it was kept, when it was removed, who removed it and who approved
it (and the request that approval answered), and the dock's key. The key
must be one the unit's genesis names among its docks (as for receipts):
docs/FORMAT.md, "Disposals".
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import canonical
from .bodies import count
from .keys import fingerprint, raw_public
from .records import HEX64

DISPOSAL_DOMAIN = b"bodycam-disposal-v1\n"
DISPOSALS = "disposals"
MAX_DISPOSAL_BYTES = 1 << 20
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
FIELDS = {
    "v", "serial", "recording", "files", "class", "kept_until", "disposed_us", "by",
    "approver", "request", "dock_key",
}  # fmt: skip


class DisposalRefused(ValueError):
    """Not a disposal statement this format allows; the message says why."""


@dataclass(frozen=True)
class Disposal:
    body: dict[str, Any]
    sig: bytes
    dock_key: Ed25519PublicKey

    @property
    def id(self) -> str:
        return hashlib.sha256(canonical.encode(self.body)).hexdigest()

    @property
    def dock(self) -> str:
        return fingerprint(self.dock_key)

    def to_bytes(self) -> bytes:
        return canonical.encode({"disposal": self.body, "sig": canonical.b64(self.sig)})


def make_disposal(dock: Ed25519PrivateKey, **fields: Any) -> Disposal:
    """`fields`: every field of D but `v` and `dock_key`."""
    body = {"v": 1, **fields, "dock_key": canonical.b64(raw_public(dock.public_key()))}
    _check_body(body)
    return Disposal(body, dock.sign(DISPOSAL_DOMAIN + canonical.encode(body)), dock.public_key())


def parse_disposal(data: bytes) -> Disposal:
    """Parse and check the signature against the key it names; whether that
    key is an enrolled dock is the caller's check."""
    if len(data) > MAX_DISPOSAL_BYTES:
        raise DisposalRefused("disposal statement is larger than 1 MiB")
    try:
        outer = canonical.decode(data)
        if not isinstance(outer, dict) or set(outer) != {"disposal", "sig"}:
            raise ValueError("not a disposal statement")
        body, sig = outer["disposal"], canonical.unb64(outer["sig"])
        _check_body(body)
        key = Ed25519PublicKey.from_public_bytes(canonical.unb64(body["dock_key"]))
    except (canonical.EncodingError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise DisposalRefused(f"malformed disposal statement: {exc}") from None
    try:
        key.verify(sig, DISPOSAL_DOMAIN + canonical.encode(body))
    except InvalidSignature:
        raise DisposalRefused("bad signature: not signed by the key it names") from None
    return Disposal(body, sig, key)


def _check_body(body: Any) -> None:
    if not isinstance(body, dict) or body.get("v") != 1 or set(body) != FIELDS:
        raise ValueError(f"a version 1 statement has exactly the fields {sorted(FIELDS)}")
    for k in ("recording", "disposed_us"):
        if not count(body[k]):
            raise ValueError(f"{k} must be a non-negative integer")
    for k in ("serial", "class", "by", "approver", "request"):
        if not isinstance(body[k], str) or not body[k].isprintable() or len(body[k]) > 200:
            raise ValueError(f"{k} must be printable text of at most 200 characters")
    if not isinstance(body["kept_until"], str) or not _DAY.fullmatch(body["kept_until"]):
        raise ValueError("kept_until must be a day, YYYY-MM-DD")
    files = body["files"]
    if not isinstance(files, list) or not files or len(files) > 100_000:
        raise ValueError("files must list what was removed")
    for e in files:
        if (
            not isinstance(e, dict)
            or set(e) != {"seq", "file", "ct_sha256"}
            or not count(e["seq"])
            or not isinstance(e["file"], str)
            or not isinstance(e["ct_sha256"], str)
            or not HEX64.fullmatch(e["ct_sha256"])
        ):
            raise ValueError("each file is {seq, file, ct_sha256}")
