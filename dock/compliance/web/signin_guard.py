"""Failed sign-ins slow down, then lock: per name and per address.

After `free` failures in a row, each further failure makes the next attempt
wait, twice as long each time (2 s, 4 s, 8 s, ...) up to `max_wait_s`; an
attempt while the wait lasts is refused without its password being checked,
and counts for nothing. Slowing down is done by refusing, never by holding a
worker thread asleep (four slow attempts would stall the page for everyone).
Failures are forgotten `forget_after_s` after the last one, and a name's and
an address's on a successful sign-in.

Names that no supervisor could have (see accounts.NAME_RE) are counted by
address only; every other name is counted whether or not it exists, so the
answer never tells a guesser which names do.

The locks run on the monotonic clock and are kept in
`<dock>/signin-locks.json` (0600) with wall-clock times, so a restart keeps
them: read back, a lock stands for what remained of it, never more than
`max_wait_s` (a wall clock stepped back cannot stretch it).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .clock import Clock
from .errors import PageError
from .private_files import write_private

LOCKS = "signin-locks.json"


@dataclass(frozen=True)
class Policy:
    free: int  # failures in a row before any wait
    first_wait_s: float
    max_wait_s: float
    forget_after_s: float

    def wait_after(self, failures: int) -> float:
        if failures < self.free:
            return 0.0
        return min(self.first_wait_s * 2.0 ** (failures - self.free), self.max_wait_s)


# Every supervisor signs in from the dock itself, so the address is nearly
# always 127.0.0.1: it gets more room than one name before it locks.
POLICIES = {
    "name": Policy(free=3, first_wait_s=2, max_wait_s=15 * 60, forget_after_s=3600),
    "address": Policy(free=10, first_wait_s=2, max_wait_s=15 * 60, forget_after_s=3600),
}


@dataclass(frozen=True)
class Key:
    scope: str  # "name" or "address"
    who: str

    @property
    def text(self) -> str:
        return f"{self.scope}:{self.who}"


@dataclass
class Entry:
    failures: int
    last_failure: float  # monotonic
    locked_until: float  # monotonic; not locked once passed
    refused: int = 0  # attempts refused while this lock stands


@dataclass(frozen=True)
class Lock:
    """A lock in force: who, until when (monotonic and wall), how many refused."""

    key: Key
    until: float
    until_wall: float
    refused: int

    def seconds_left(self, clock: Clock) -> float:
        return max(0.0, self.until - clock.monotonic())


class SigninGuard:
    def __init__(self, path: Path, clock: Clock, entries: dict[str, Entry]) -> None:
        self._path = path
        self._clock = clock
        self._entries = entries
        self._lock = threading.Lock()

    @classmethod
    def load(cls, dock_dir: Path, clock: Clock) -> SigninGuard:
        """The locks kept by the page's last run; PageError when unreadable
        (starting without them would lift every lock)."""
        path = dock_dir / LOCKS
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return cls(path, clock, {})
        except (OSError, ValueError) as exc:
            raise PageError(f"{path}: unreadable ({exc}); remove it to lift every lock") from None
        try:
            entries = _entries_from(data, clock)
        except (KeyError, TypeError, ValueError) as exc:
            raise PageError(
                f"{path}: not the page's lock file ({exc}); remove it to lift every lock"
            ) from None
        return cls(path, clock, entries)

    def lock_on(self, keys: Sequence[Key]) -> Lock | None:
        """The lock that stands longest among these keys, its refusal counted;
        None when the attempt may go ahead."""
        with self._lock:
            now = self._clock.monotonic()
            standing = [
                (e.locked_until, k)
                for k in keys
                if (e := self._entries.get(k.text)) is not None and e.locked_until > now
            ]
            if not standing:
                return None
            until, key = max(standing, key=lambda t: t[0])
            entry = self._entries[key.text]
            entry.refused += 1  # kept in memory only: a refusal changes no lock
            return Lock(key, until, self._clock.wall_at(until), entry.refused)

    def failed(self, keys: Sequence[Key]) -> Lock | None:
        """A wrong password: counted against every key, saved. The lock this
        failure starts, if any. OSError when the locks cannot be saved."""
        with self._lock:
            now = self._clock.monotonic()
            self._forget_old(now)
            for k in keys:
                e = self._entries.setdefault(k.text, Entry(0, now, now))
                e.failures += 1
                e.last_failure = now
                e.locked_until = now + POLICIES[k.scope].wait_after(e.failures)
                e.refused = 0
            self._save(now)
            standing = [(self._entries[k.text].locked_until, k) for k in keys]
            until, key = max(standing, key=lambda t: t[0])
            return Lock(key, until, self._clock.wall_at(until), 0) if until > now else None

    def succeeded(self, keys: Sequence[Key]) -> None:
        with self._lock:
            now = self._clock.monotonic()
            self._forget_old(now)
            dropped = [self._entries.pop(k.text, None) for k in keys]  # every key, no short cut
            if any(e is not None for e in dropped):
                self._save(now)

    def _forget_old(self, now: float) -> None:
        for text, e in list(self._entries.items()):
            policy = POLICIES[text.split(":", 1)[0]]
            if e.locked_until <= now and now - e.last_failure >= policy.forget_after_s:
                del self._entries[text]

    def _save(self, now: float) -> None:
        wall = self._clock.wall()
        data = {
            "saved": wall,
            "entries": {
                text: {
                    "failures": e.failures,
                    "last_failure": wall - (now - e.last_failure),
                    "locked_until": wall + max(0.0, e.locked_until - now),
                }
                for text, e in sorted(self._entries.items())
            },
        }
        write_private(self._path, json.dumps(data, indent=1) + "\n")


def _entries_from(data: Any, clock: Clock) -> dict[str, Entry]:
    now, wall = clock.monotonic(), clock.wall()
    entries = data["entries"] if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise ValueError("no object of entries")
    out = {}
    for text, e in entries.items():
        scope = text.split(":", 1)[0]
        if scope not in POLICIES or not isinstance(e, dict):
            raise ValueError(f"unknown entry {text!r}")
        failures, last, until = e["failures"], float(e["last_failure"]), float(e["locked_until"])
        if not isinstance(failures, int) or isinstance(failures, bool) or failures < 1:
            raise ValueError(f"{text}: failures must be a positive integer")
        left = min(max(0.0, until - wall), POLICIES[scope].max_wait_s)
        out[text] = Entry(failures, now - max(0.0, wall - last), now + left)
    return out
