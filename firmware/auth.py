"""Officer authorisation for export (R16): a scrypt password hash held on the
unit, the dock's fingerprint-reader verdict, and a lockout that grows.

State lives in files under the unit directory so that a power cycle does not
reset the lockout:
    <unit>/officer.scrypt     "scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>"
    <unit>/auth_state.json    {"failures": int, "locked_until": float, "lockouts": int}
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
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


@dataclass
class AuthState:
    failures: int = 0
    locked_until: float = 0.0
    lockouts: int = 0


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
            # A damaged state file must not unlock export: treat it as locked once.
            return AuthState(failures=MAX_FAILURES, locked_until=0.0, lockouts=1)

    def _save(self, state: AuthState) -> None:
        write_durably(self._state_path, json.dumps(asdict(state)).encode())

    def attempt(self, password: str, fingerprint_ok: bool, now: float) -> Verdict:
        state = self._load()
        if now < state.locked_until:
            return Verdict(False, "locked", state.locked_until - now, state.failures)
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
            state.locked_until = now + BASE_LOCK_S * (2**state.lockouts)
            state.lockouts += 1
            state.failures = 0
            self._save(state)
            return Verdict(False, result, state.locked_until - now, MAX_FAILURES)
        self._save(state)
        return Verdict(False, result, 0.0, state.failures)
