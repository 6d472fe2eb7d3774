"""`<dock>/audit.jsonl`: the audit log no one edits unseen (S0 art. 22, annex
2; S2 art. 14). Every sign-in, failed sign-in, view, download, refusal and
account change at the dock is one line, appended under a lock and on disk
(fsync) before the action it records is answered.

A line is the canonical JSON (sealing.canonical) of
`{seq, at_us, who, role, act, target, result, detail, prev, sig}`: `prev` is the
SHA-256 of the line before it (64 zeros for the first), `sig` the dock's audit
key's Ed25519 signature over the line without `sig`. An edited, dropped,
inserted or reordered line breaks the chain at that line; `bodycam-dock
audit-verify` names the first break. The key (`audit.key`, 0600) is made with
the log; its fingerprint, printed by `audit-verify` and `user-add`, is what an
auditor writes down to know the key was not replaced with the whole log.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sealing.canonical import EncodingError, b64, decode, encode, unb64
from sealing.files import fsync_dir
from sealing.keys import fingerprint

from .texts import Msg, msg

AUDIT_LOG = "audit.jsonl"
AUDIT_KEY = "audit.key"
AUDIT_PUB = "audit.pub"
GENESIS = "0" * 64
MAX_FIELD = 400  # characters of a target or a reason kept in a line
MAX_LINE = 8192  # bytes: a longer line is not one this log wrote
TAIL = 64 * 1024  # what is read back to find the last line


class AuditError(Exception):
    """The log or its key cannot be used; the text says which and why."""


@dataclass(frozen=True)
class Entry:
    seq: int
    at_us: int
    who: str
    role: str
    act: str
    target: str
    result: str
    detail: dict[str, Any]  # short facts: an address, a reason, a lock's end


FIELDS = ("seq", "at_us", "who", "role", "act", "target", "result", "detail")


@dataclass(frozen=True)
class Break:
    line: int  # 1-based
    why: Msg | str


def operator() -> str:
    """Who ran a command at the dock's shell: its system account (a command
    has no page sign-in)."""
    try:
        return f"system:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"system:uid {os.getuid()}"


def _cut(text: str) -> str:
    return text if len(text) <= MAX_FIELD else text[: MAX_FIELD - 1] + "…"


def _key(dock_dir: Path) -> Ed25519PrivateKey:
    path = dock_dir / AUDIT_KEY
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), None)
    except FileNotFoundError:
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write(path, pem, 0o600, os.O_EXCL)  # two first appends: one key, the other fails
        pub = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        _write(dock_dir / AUDIT_PUB, pub, 0o644, os.O_TRUNC)
        fsync_dir(dock_dir)
        return key
    except (OSError, ValueError) as exc:
        raise AuditError(f"{path}: unusable audit key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError(f"{path}: the audit key must be Ed25519")
    return key


def _write(path: Path, data: bytes, mode: int, flag: int) -> None:
    """On disk with `mode`, whatever the umask (no one else writes either)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flag, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def public_key(dock_dir: Path) -> Ed25519PublicKey:
    path = dock_dir / AUDIT_PUB
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise AuditError(f"{path}: unusable audit public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AuditError(f"{path}: the audit key must be Ed25519")
    return key


def key_fingerprint(dock_dir: Path) -> str:
    return fingerprint(public_key(dock_dir))


def _last_line(fd: int) -> bytes | None:
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    start = max(0, size - TAIL)
    data = os.pread(fd, size - start, start)
    lines = data.rstrip(b"\n").split(b"\n")
    if start > 0 and len(lines) < 2:
        raise AuditError("the audit log's last line is longer than any line it writes")
    return lines[-1]


@dataclass
class AuditLog:
    dock_dir: Path

    @property
    def path(self) -> Path:
        return self.dock_dir / AUDIT_LOG

    def append(
        self,
        who: str,
        role: str,
        act: str,
        target: str = "",
        result: str = "ok",
        detail: dict[str, str | int] | None = None,
    ) -> Entry:
        """One line, chained and signed, on disk before this returns. Raises
        AuditError (or OSError) when it cannot be: the caller refuses the
        action rather than do it unrecorded."""
        key = _key(self.dock_dir)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)  # page threads and commands append in turn
            last = _last_line(fd)
            if last is None:
                seq, prev = 0, GENESIS
            else:
                try:
                    seq = int(decode(last)["seq"]) + 1
                except (EncodingError, KeyError, TypeError, ValueError) as exc:
                    why = f"{self.path}: the last line is not one it wrote: {exc}"
                    raise AuditError(why) from None
                prev = hashlib.sha256(last).hexdigest()
            facts = {k: _cut(v) if isinstance(v, str) else v for k, v in (detail or {}).items()}
            entry = Entry(seq, time.time_ns() // 1000, _cut(who), role, act, _cut(target),
                          result, facts)  # fmt: skip
            body = _body(entry, prev)
            line = encode({**body, "sig": b64(key.sign(encode(body)))})
            os.write(fd, line + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)  # also drops the lock
        return entry


def _body(e: Entry, prev: str) -> dict[str, Any]:
    return {**{k: getattr(e, k) for k in FIELDS}, "prev": prev}


def read(dock_dir: Path) -> tuple[list[Entry], Break | None]:
    """The log's entries up to its first break, and the break (None: intact)."""
    path = dock_dir / AUDIT_LOG
    try:
        key = public_key(dock_dir)
    except AuditError as exc:
        if not path.exists():
            return [], None  # nothing audited yet
        return [], Break(0, msg("%(error)s", error=str(exc)))
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], Break(0, msg("%(file)s is missing but its key exists: the log was removed",
                                file=str(path)))  # fmt: skip
    except OSError as exc:
        return [], Break(0, msg("%(file)s: %(error)s", file=str(path), error=str(exc.strerror)))
    entries: list[Entry] = []
    prev = GENESIS
    if data and not data.endswith(b"\n"):
        return entries, Break(data.count(b"\n") + 1, msg("the last line is cut short"))
    for n, line in enumerate(data.split(b"\n")[:-1], start=1):
        why = _problem(line, prev, len(entries), key)
        if why is not None:
            return entries, Break(n, why)
        obj = decode(line)
        entries.append(Entry(*(obj[k] for k in FIELDS)))
        prev = hashlib.sha256(line).hexdigest()
    return entries, None


def _problem(line: bytes, prev: str, seq: int, key: Ed25519PublicKey) -> Msg | None:
    if len(line) > MAX_LINE:
        return msg("longer than %(count)s bytes", count=MAX_LINE)
    try:
        obj = decode(line)
    except EncodingError as exc:
        return msg("not a line of this log: %(error)s", error=str(exc))
    if not isinstance(obj, dict) or set(obj) != {*FIELDS, "prev", "sig"}:
        return msg("not the fields of an audit line")
    if not isinstance(obj["detail"], dict):
        return msg("its detail is not an object")
    if obj["seq"] != seq:
        return msg("seq %(seq)s where %(want)s belongs: a line was removed, added or moved",
                   seq=str(obj["seq"])[:20], want=seq)  # fmt: skip
    if obj["prev"] != prev:
        return msg("it does not follow the line before it: a line before it was changed or removed")
    sig = obj.pop("sig")
    try:
        key.verify(unb64(sig) if isinstance(sig, str) else b"", encode(obj))
    except (InvalidSignature, ValueError):
        return msg("its signature does not match: the line was changed")
    return None
