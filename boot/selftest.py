"""The pre-use self-test (R3, R4): one small check per thing that must hold,
each returning PASS or FAIL with the reason, or N/A where there is nothing
of the kind to check (never a PASS: it says the thing was not checked).
Device checks take the device objects, so the same checks run on the Pi
backends and on simulated ones.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import os
import re
import time
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
# Reading and hashing the venv's files (about 20 MB: cryptography's library
# is most of it) takes a second or two on a Pi's card; past this it is a FAIL
# (not checked is not passed). In the field it runs beside the recorder
# (firmware/preuse.py), below its priority: the recording never waits for it.
VENV_BUDGET_S = 20.0
VENV = f"{layout.PREFIX}/venv"  # made at first boot (bodycam-venv.service)
WHEELS = f"{layout.PREFIX}/wheels"  # the flashed wheelhouse it is made from
REQUIREMENTS = "unit-requirements.txt"
SHOWN = 10  # differences named in a reason, then a count


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    reason: str = ""
    applicable: bool = True  # False: nothing of the kind here to check (ok is then False)

    @property
    def status(self) -> str:
        """PASS, FAIL, or N/A (not applicable: neither passed nor failed)."""
        return "N/A" if not self.applicable else "PASS" if self.ok else "FAIL"

    @property
    def failed(self) -> bool:
        return self.applicable and not self.ok

    def line(self) -> str:
        if self.ok:  # a pass may say what it could not look at
            return f"PASS {self.name}" + (f" ({self.reason})" if self.reason else "")
        return f"{self.status} {self.name}: {self.reason}"

    def recorded(self) -> str:
        """What the `selftest` chain record keeps: PASS, the failure's reason
        (as before), or N/A with why."""
        if not self.applicable:
            return f"N/A: {self.reason}"
        return "PASS" if self.ok else self.reason


def not_applicable(name: str, reason: str) -> CheckResult:
    return CheckResult(name, False, reason, applicable=False)


def _check(name: str, fn: Callable[[], str | None]) -> CheckResult:
    """Run one check; a returned string or any exception is the failure reason."""
    try:
        reason = fn()
    except Exception as exc:
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
                continue
            try:
                data = path.read_bytes()
            except PermissionError:
                # root's 0600 files (NetworkManager ignores a keyfile others can
                # read): the recorder's user cannot read them; said, not failed
                if entry.get("mode") != oct(0o600):
                    raise
                unread.append(entry["path"])
                continue
            if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                bad.append(f"changed {entry['path']}")
        listed = {e["path"] for e in files}
        for top in (layout.PREFIX,):  # the unit directory gains files as it runs
            for p in sorted((root / top).rglob("*")):
                rel = str(p.relative_to(root))
                if p.is_file() and rel not in listed and layout.covered(rel):
                    bad.append(f"extra {rel}")
        return "; ".join(bad[:10]) or None

    unread: list[str] = []
    result = _check("firmware integrity", run)
    if result.ok and unread:
        result = CheckResult(
            result.name, True, f"not readable by this user, not checked: {', '.join(unread)}"
        )
    return result


def _project_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def wheelhouse_versions(wheels: Path) -> dict[str, str]:
    """Name -> version of what the first boot installs from the card's
    wheelhouse: the hash-pinned requirements, and every wheel there (the
    project's own wheel is installed by name, not pinned)."""
    out: dict[str, str] = {}
    req = wheels / REQUIREMENTS
    if req.is_file():
        for raw in req.read_text().replace("\\\n", " ").splitlines():
            spec = raw.split("#", 1)[0].split(" --", 1)[0].strip()
            m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*(\S+)", spec)
            if m:
                out[_project_name(m[1])] = m[2]
    for whl in sorted(wheels.glob("*.whl")):
        name, _, rest = whl.name.partition("-")
        out.setdefault(_project_name(name), rest.split("-", 1)[0])
    return out


def _sha256_record(path: Path) -> str:
    """A file's SHA-256 as RECORD writes it: urlsafe base64, no padding."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()


def check_venv(root: Path | None, budget_s: float = VENV_BUDGET_S) -> CheckResult:
    """The first-boot venv against its wheels: every file that each
    distribution from the wheelhouse lists in its `*.dist-info/RECORD` with a
    hash is there with that SHA-256 (RECORD itself and the .pyc files pip
    compiles have none and are skipped). N/A where there is no unit venv (a
    simulated unit, a card before its first boot). RECORD is the installed
    one: it is not signed, so a file changed together with its RECORD line
    is not seen here."""
    name = "venv integrity"
    venv = None if root is None else root / VENV
    if root is None or venv is None or not (venv / "pyvenv.cfg").is_file():
        return not_applicable(
            name, f"no unit venv (/{VENV} is made at first boot; a simulated unit has none)"
        )

    def run() -> str | None:
        wanted = wheelhouse_versions(root / WHEELS)
        if not wanted:
            return f"no wheelhouse in /{WHEELS} to check /{VENV} against"
        sites = [str(p) for p in sorted(venv.glob("lib/python3*/site-packages"))]
        installed: dict[str, importlib.metadata.Distribution] = {}
        for dist in importlib.metadata.distributions(path=sites):
            installed.setdefault(_project_name(dist.metadata["Name"] or ""), dist)
        bad = [f"not installed: {n}" for n in sorted(wanted) if n not in installed]
        deadline = time.monotonic() + budget_s
        checked = 0
        for n in sorted(set(wanted) & set(installed)):
            dist = installed[n]
            if dist.version != wanted[n]:
                bad.append(f"{n} is {dist.version}, the wheelhouse has {wanted[n]}")
            files = dist.files
            if files is None:
                bad.append(f"{n}: no RECORD")
                continue
            for f in files:
                if f.hash is None:
                    continue
                if time.monotonic() > deadline:  # unchecked is never passed
                    late = f"not finished within {budget_s:g} s ({checked} files checked)"
                    return _named([late, *bad])
                path = Path(os.path.normpath(Path(str(dist.locate_file(f)))))
                rel = os.path.relpath(path, root)
                checked += 1
                if f.hash.mode != "sha256":
                    bad.append(f"{n}: {f} hashed with {f.hash.mode}, not sha256")
                elif not path.is_file():
                    bad.append(f"missing {rel}")
                elif _sha256_record(path) != f.hash.value:
                    bad.append(f"changed {rel}")
        return _named(bad) if bad else None

    return _check(name, run)


def _named(bad: list[str]) -> str:
    more = f" (+{len(bad) - SHOWN} more)" if len(bad) > SHOWN else ""
    return "; ".join(bad[:SHOWN]) + more


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
