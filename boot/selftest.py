"""The pre-use self-test (R3, R4): one small check per thing that must hold,
each returning PASS or FAIL with the reason. Device checks take the device
objects, so the same checks run on the Pi backends and on simulated ones.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sealing import canonical
from sealing.files import write_synced
from sealing.keys import KeyFileError, UnitKeys, fingerprint
from sealing.store import read_chain

from . import layout

MIN_FREE_BYTES = 1 << 30
MIN_BATTERY_PERCENT = 20


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    reason: str = ""

    def line(self) -> str:
        return f"PASS {self.name}" if self.ok else f"FAIL {self.name}: {self.reason}"


def _check(name: str, fn: Callable[[], str | None]) -> CheckResult:
    """Run one check; a returned string or any exception is the failure reason."""
    try:
        reason = fn()
    except Exception as exc:  # noqa: BLE001 - a self-test reports, it does not crash
        return CheckResult(name, False, f"{type(exc).__name__}: {exc}")
    return CheckResult(name, reason is None, reason or "")


def check_keys(unit: Path) -> CheckResult:
    def run() -> str | None:
        try:
            keys = UnitKeys.load(unit / "keys")
        except KeyFileError as exc:
            return str(exc)
        tls = unit / "tls"
        cert = x509.load_pem_x509_certificate((tls / "unit.crt").read_bytes())
        ca = x509.load_pem_x509_certificate((tls / "ca.crt").read_bytes())
        key = serialization.load_pem_private_key((tls / "unit.key").read_bytes(), None)
        if cert.public_key() != key.public_key():
            return "tls/unit.crt does not match tls/unit.key"
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            return "tls/unit.crt is not issued by tls/ca.crt"
        genesis = read_chain(unit / "store" / "chain.jsonl").lines[0].record
        if genesis.body.get("device_key") != fingerprint(keys.public):
            return "the store was made for another device key"
        if not keys.docks:
            return "no enrolled docks"
        return None

    return _check("keys", run)


def check_store(unit: Path) -> CheckResult:
    def run() -> str | None:
        probe = unit / "store" / ".selftest-probe"
        data = os.urandom(4096)
        write_synced(probe, data)
        try:
            if probe.read_bytes() != data:
                return "read back differs from what was written"
        finally:
            probe.unlink()
        return None

    return _check("store writable and fsync", run)


def check_free_space(unit: Path, free_bytes: int, floor: int = MIN_FREE_BYTES) -> CheckResult:
    return _check(
        "free space",
        lambda: (
            None if free_bytes >= floor else f"{free_bytes >> 20} MiB free, need {floor >> 20} MiB"
        ),
    )


def check_firmware(root: Path | None) -> CheckResult:
    def run() -> str | None:
        if root is None:
            return "not a flashed unit (no MANIFEST.json above the unit directory)"
        manifest = (root / layout.MANIFEST).read_bytes()
        ca = x509.load_pem_x509_certificate((layout.unit_dir(root) / "tls" / "ca.crt").read_bytes())
        ca_key = ca.public_key()
        if not isinstance(ca_key, Ed25519PublicKey):
            return "CA key is not Ed25519"
        try:
            sig = canonical.unb64((root / layout.MANIFEST_SIG).read_text().strip())
            ca_key.verify(sig, manifest)
        except (InvalidSignature, canonical.EncodingError, OSError):
            return "MANIFEST.json is not signed by this unit's CA"
        files = json.loads(manifest)["files"]
        bad = []
        for entry in files:
            path = root / entry["path"]
            if not path.is_file():
                bad.append(f"missing {entry['path']}")
            elif hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
                bad.append(f"changed {entry['path']}")
        listed = {e["path"] for e in files}
        for top in (layout.PREFIX,):  # the unit directory gains files as it runs
            for p in sorted((root / top).rglob("*")):
                rel = str(p.relative_to(root))
                if p.is_file() and rel not in listed and layout.covered(rel):
                    bad.append(f"extra {rel}")
        return "; ".join(bad[:10]) or None

    return _check("firmware integrity", run)


def check_clock(state: str) -> CheckResult:
    return _check(
        "clock",
        lambda: (
            None
            if state in ("synced", "holdover")
            else "unverified: no dock, GPS or RTC time (recording will be flagged)"
        ),
    )


def check_battery(percent: int) -> CheckResult:
    return _check(
        "battery",
        lambda: (
            None
            if percent >= MIN_BATTERY_PERCENT
            else f"{percent} % (need {MIN_BATTERY_PERCENT} %)"
        ),
    )


def check_camera(next_frame: Callable[[int], Any], frames: int = 5) -> CheckResult:
    def run() -> str | None:
        got = [next_frame(i * 33_333) for i in range(frames)]
        if not got or not got[0].keyframe or not all(f.data for f in got):
            return "no keyframe or empty frames"
        return None

    return _check("camera frames", run)


def check_microphone(read: Callable[[int, int], Any]) -> CheckResult:
    return _check(
        "microphone frames", lambda: None if len(read(0, 480).data) == 960 else "short read"
    )


def check_gps(sentences_ok: int, garbage: int) -> CheckResult:
    return _check(
        "gps sentences",
        lambda: None if sentences_ok > 0 else f"no valid sentence ({garbage} unreadable)",
    )
