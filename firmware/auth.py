"""Officer authorisation for export (R16): a scrypt password hash held on the
unit, the dock's fingerprint-reader verdict, and a lockout that grows.

State lives in files under the unit directory so that a power cycle does not
reset the lockout:
    <unit>/officer.scrypt     "scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>"
    <unit>/auth_state.json    {"failures", "lockouts", "lock_left_s", "lock_mono", "boot_id"}

The lockout runs on the monotonic clock, never the wall clock: a clock set
back (by a dock, or anyone) must neither lift a lockout nor stretch one for
years. What is left of it is saved with the monotonic instant and the boot
it was measured in; after a power cycle the saved remainder starts again
(time powered off does not count towards it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sealing.files import write_durably

MAX_FAILURES = 5
BASE_LOCK_S = 60.0
SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class AuthError(ValueError):
    pass


def hash_password(password: str, salt: bytes | None = None) -> str:
    if not password:
        raise AuthError("empty password")
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **SCRYPT)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${salt.hex()}${digest.hex()}"


def set_password(unit: Path, password: str) -> None:
    write_durably(Path(unit) / "officer.scrypt", (hash_password(password) + "\n").encode())
    os.chmod(Path(unit) / "officer.scrypt", 0o600)


def check_password(stored: str, password: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.strip().split("$")
        if kind != "scrypt":
            raise ValueError(kind)
        got = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), dklen=32, n=int(n), r=int(r), p=int(p)
        )
    except ValueError as exc:
        raise AuthError(f"unusable password hash on the unit: {exc}") from None
    return hmac.compare_digest(got.hex(), digest)


BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    """This boot's id (the monotonic clock's base changes with it)."""
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


@dataclass
class AuthState:
    failures: int = 0
    lockouts: int = 0
    lock_left_s: float = 0.0  # what was left of the lockout at lock_mono
    lock_mono: float = 0.0
    boot_id: str = ""

    def left(self, mono: float, boot: str) -> float:
        if self.lock_left_s <= 0:
            return 0.0
        spent = mono - self.lock_mono if self.boot_id == boot else 0.0
        return max(0.0, self.lock_left_s - max(0.0, spent))


@dataclass(frozen=True)
class Verdict:
    ok: bool
    result: str  # ok | bad_password | no_fingerprint | locked
    retry_after_s: float = 0.0
    failures: int = 0


class Authoriser:
    """Decides one attempt at a time; the caller records each in the chain."""

    def __init__(self, unit: Path) -> None:
        self.unit = Path(unit)
        self._state_path = self.unit / "auth_state.json"

    def _load(self) -> AuthState:
        try:
            return AuthState(**json.loads(self._state_path.read_text()))
        except FileNotFoundError:
            return AuthState()
        except (ValueError, TypeError):
            # A damaged (or older) state file must not unlock export: locked once.
            return AuthState(lockouts=1, lock_left_s=BASE_LOCK_S)

    def _save(self, state: AuthState) -> None:
        write_durably(self._state_path, json.dumps(asdict(state)).encode())

    def attempt(self, password: str, fingerprint_ok: bool, mono: float | None = None) -> Verdict:
        """One try; `mono` is the monotonic clock (seconds), read here by default."""
        mono = time.monotonic() if mono is None else mono
        boot = boot_id()
        state = self._load()
        left = state.left(mono, boot)
        if left > 0:
            state.lock_left_s, state.lock_mono, state.boot_id = left, mono, boot
            self._save(state)  # progress kept across a power cycle
            return Verdict(False, "locked", left, state.failures)
        try:
            stored = (self.unit / "officer.scrypt").read_text()
        except FileNotFoundError:
            raise AuthError("no officer password is set on this unit") from None
        good = check_password(stored, password) and fingerprint_ok
        if good:
            self._save(AuthState(lockouts=state.lockouts))
            return Verdict(True, "ok")
        state.failures += 1
        result = (
            "bad_password"
            if fingerprint_ok or not check_password(stored, password)
            else "no_fingerprint"
        )
        if state.failures >= MAX_FAILURES:
            # each lockout doubles: 60 s, 120 s, 240 s, ...
            state.lock_left_s = BASE_LOCK_S * (2**state.lockouts)
            state.lock_mono, state.boot_id = mono, boot
            state.lockouts += 1
            state.failures = 0
            self._save(state)
            return Verdict(False, result, state.lock_left_s, MAX_FAILURES)
        self._save(state)
        return Verdict(False, result, 0.0, state.failures)
