"""Dock receipts, and the release of storage they alone may authorise.

A receipt file is canonical JSON {"receipt": R, "sig": b64 Ed25519 over
RECEIPT_DOMAIN + canonical(R)}; its id is SHA-256 of canonical(R). R names the
unit's serial, the chain range the dock verified (`from_seq`..`to_seq`), the
hash of record `to_seq` (`head`), every segment it holds with the ciphertext
hash it checked, the dock's key and its time.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import canonical, layout
from .files import fsync_dir, write_durably
from .keys import fingerprint, raw_public
from .recordings import is_media
from .records import HEX64, Record

if TYPE_CHECKING:
    from .store import Store

RECEIPT_DOMAIN = b"bodycam-receipt-v1\n"
MAX_RECEIPT_BYTES = 4 << 20
_NONCE = re.compile(r"[0-9a-f]{32}")


class ReceiptRefused(ValueError):
    """The receipt was not applied; nothing was deleted. The message says why."""


@dataclass(frozen=True)
class Receipt:
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
        return canonical.encode({"receipt": self.body, "sig": canonical.b64(self.sig)})


def media_entries(records: list[Record]) -> list[dict[str, Any]]:
    """What a receipt lists for the media records among `records`."""
    out = []
    for r in records:
        if is_media(r.type, r.body):
            out.append({"seq": r.seq, "file": r.body["file"], "ct_sha256": r.body["ct_sha256"]})
    return out


def make_receipt(
    dock: Ed25519PrivateKey,
    *,
    serial: str,
    from_seq: int,
    to_seq: int,
    head: str,
    segments: list[dict[str, Any]],
    dock_time_us: int,
) -> Receipt:
    body = {
        "v": 1,
        "serial": serial,
        "dock_key": canonical.b64(raw_public(dock.public_key())),
        "from_seq": from_seq,
        "to_seq": to_seq,
        "head": head,
        "segments": segments,
        "dock_time_us": dock_time_us,
        "nonce": os.urandom(16).hex(),
    }
    sig = dock.sign(RECEIPT_DOMAIN + canonical.encode(body))
    return Receipt(body, sig, dock.public_key())


def parse_receipt(data: bytes) -> Receipt:
    """Parse and check the signature against the key the receipt names.
    Whether that key is an enrolled dock is the caller's check."""
    if len(data) > MAX_RECEIPT_BYTES:
        raise ReceiptRefused("receipt is larger than 4 MiB")
    try:
        # the exact bytes, no whitespace around: one receipt, one byte string
        outer = canonical.decode(data)
        body, sig = outer["receipt"], canonical.unb64(outer["sig"])
        if set(outer) != {"receipt", "sig"} or body.get("v") != 1:
            raise ValueError("not a version 1 receipt")
        want = {
            "v",
            "serial",
            "dock_key",
            "from_seq",
            "to_seq",
            "head",
            "segments",
            "dock_time_us",
            "nonce",
        }
        if set(body) != want:
            raise ValueError(f"fields must be {sorted(want)}")
        for k in ("from_seq", "to_seq", "dock_time_us"):
            if not _count(body[k]):
                raise ValueError(f"{k} must be a non-negative integer")
        if not isinstance(body["serial"], str):
            raise ValueError("serial must be a string")
        if not isinstance(body["head"], str) or not HEX64.fullmatch(body["head"]):
            raise ValueError("head must be 64 lowercase hex digits")
        if not isinstance(body["nonce"], str) or not _NONCE.fullmatch(body["nonce"]):
            raise ValueError("nonce must be 16 random bytes as 32 lowercase hex digits")
        _check_entries(body["segments"])
        key = Ed25519PublicKey.from_public_bytes(canonical.unb64(body["dock_key"]))
    except (canonical.EncodingError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ReceiptRefused(f"malformed receipt: {exc}") from None
    try:
        key.verify(sig, RECEIPT_DOMAIN + canonical.encode(body))
    except InvalidSignature:
        raise ReceiptRefused(
            "bad signature: the receipt was not signed by the key it names"
        ) from None
    return Receipt(body, sig, key)


def _count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _check_entries(segments: object) -> None:
    if not isinstance(segments, list) or not all(
        isinstance(s, dict)
        and set(s) == {"seq", "file", "ct_sha256"}
        and _count(s["seq"])
        and isinstance(s["file"], str)
        and layout.parse_name(s["file"]) is not None
        and isinstance(s["ct_sha256"], str)
        and HEX64.fullmatch(s["ct_sha256"])
        for s in segments
    ):
        raise ValueError(
            "segments must be a list of {seq, file: a segment file name, ct_sha256: 64 hex}"
        )
    files = [s["file"] for s in segments]
    if len(set(files)) != len(files):
        raise ValueError("a file is listed more than once")


@dataclass(frozen=True)
class Released:
    receipt: str
    files: list[str]
    bytes_freed: int
    already_applied: bool


def check_against_chain(
    receipt: Receipt, serial: str, records: list[Record], open_files: set[str]
) -> list[Record]:
    """Every refusal rule of FORMAT.md; returns the media records to release."""
    b = receipt.body
    if b["serial"] != serial:
        raise ReceiptRefused(f"receipt is for device {b['serial']!r}, this is {serial!r}")
    head = records[-1].seq
    if not 0 <= b["from_seq"] <= b["to_seq"] <= head:
        raise ReceiptRefused(
            f"range {b['from_seq']}..{b['to_seq']} is not in this chain (0..{head})"
        )
    by_seq = {r.seq: r for r in records}
    if by_seq[b["to_seq"]].hash != b["head"]:
        raise ReceiptRefused(f"head hash does not match record {b['to_seq']}")
    out: list[Record] = []
    seen: set[str] = set()
    for entry in b["segments"]:
        file, seq = entry["file"], entry["seq"]
        if file in open_files:
            raise ReceiptRefused(f"{file} is still being written")
        if file in seen:
            raise ReceiptRefused(f"{file} is listed twice")
        seen.add(file)
        if not b["from_seq"] <= seq <= b["to_seq"]:
            raise ReceiptRefused(f"{file}: record {seq} is outside the receipt's range")
        rec = by_seq[seq]
        if rec.body.get("file") != file or "ct_sha256" not in rec.body:
            raise ReceiptRefused(f"record {seq} is not the media record of {file}")
        if rec.body["ct_sha256"] != entry["ct_sha256"]:
            raise ReceiptRefused(f"{file}: hash does not match the chain")
        out.append(rec)
    return out


def apply_receipt(store: Store, data: bytes) -> Released:
    """Check a receipt against the unit's chain and, only if every check
    passes, delete exactly the segments it names, then append `release`.
    One receipt at a time per store: the same receipt sent twice at once is
    applied once (the other call answers `already_applied`)."""
    receipt = parse_receipt(data)
    if receipt.dock not in store.keys.docks:
        raise ReceiptRefused(f"dock key {receipt.dock[:16]} is not enrolled on this unit")
    with store.exclusive():
        return _apply(store, receipt)


def _apply(store: Store, receipt: Receipt) -> Released:
    records = store.records()
    for r in records:
        if r.type == "release" and r.body.get("receipt") == receipt.id:
            return Released(receipt.id, list(r.body.get("files", [])), 0, True)
    open_files = {
        name for name in (e["file"] for e in receipt.body["segments"]) if store.is_open(name)
    }
    targets = check_against_chain(receipt, store.serial, records, open_files)
    _keep(store, receipt)
    freed = 0
    files = []
    for rec in targets:
        path = store.segments / rec.body["file"]
        if path.exists():
            freed += path.stat().st_size
            path.unlink()
        files.append(rec.body["file"])
    fsync_dir(store.segments)
    store.append(
        "release",
        {
            "receipt": receipt.id,
            "dock": receipt.dock,
            "from_seq": receipt.body["from_seq"],
            "to_seq": receipt.body["to_seq"],
            "head": receipt.body["head"],
            "files": files,
            "bytes_freed": freed,
        },
    )
    return Released(receipt.id, files, freed, False)


def _keep(store: Store, receipt: Receipt) -> None:
    """Store the receipt durably before deleting anything it authorises."""
    path = store.receipts / f"{receipt.id}.json"
    if not path.exists():
        write_durably(path, receipt.to_bytes())


def finish_pending(store: Store) -> list[str]:
    """At open: complete any release a crash interrupted after its receipt was kept."""
    for leftover in store.receipts.glob("*.json.tmp"):
        leftover.unlink()  # a keep cut short: the dock still holds the receipt
    done = {r.body.get("receipt") for r in store.records() if r.type == "release"}
    finished = []
    for path in sorted(store.receipts.glob("*.json")):
        if path.stem in done:
            continue
        try:
            apply_receipt(store, path.read_bytes())
        except ReceiptRefused:
            continue  # the verifier reports a kept receipt that never applied
        finished.append(path.stem)
    return finished
