"""The dock service: watch for units, pull several at once, one progress line
per unit, and release each only after the safety check (dock/pull.py).

    bodycam-dock serve --dock-dir DIR (--agency DIR --name N | --cert ...)
        [--usb] [--unit HOST:PORT ...] [--once] [--password-dir DIR]

Units are found by dock/discovery.py. A unit is pulled when its address
first answers a TCP connection; it is pulled again only after it went away
(undocked) and came back. A failed pull is not retried while the unit stays
docked: an officer login that failed must not be repeated into the unit's
lockout.
"""

from __future__ import annotations

import getpass
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from link.inventory import Known
from sealing.age import Identity

from . import pull as pulling
from .client import Client, DockError
from .credentials import dock_setup, index_arguments, limits
from .discovery import FixedUnits, GadgetLinks, Union, UnitAddress, UnitSource, parse_address

# -- logins -------------------------------------------------------------------


@dataclass(frozen=True)
class PasswordDir:
    """The officers' answers prepared at the dock: `<dir>/<serial>` holds the
    password; the fingerprint reader's verdict is given for all (simulated)."""

    folder: Path
    fingerprint_ok: bool

    def __call__(self, serial: str, officer: str | None) -> tuple[str, bool]:
        path = self.folder / serial
        try:
            return path.read_text().rstrip("\n"), self.fingerprint_ok
        except OSError:
            raise DockError(f"{serial}: no password in {path} for officer {officer}") from None


@dataclass
class TerminalLogin:
    """The officer types at the dock's terminal: one prompt at a time, while
    the progress lines wait (they share the lock)."""

    lock: threading.Lock
    fingerprint: str | None = None  # "match"/"no-match" from the reader; None: ask

    def __call__(self, serial: str, officer: str | None) -> tuple[str, bool]:
        with self.lock:
            sys.stderr.write(f"\nunit {serial}, officer {officer or '?'}\n")
            password = getpass.getpass("  password: ")
            verdict = self.fingerprint or (
                "match" if input("  fingerprint matched? [y/N] ").lower().startswith("y") else ""
            )
        return password, verdict == "match"


# -- one unit's progress ------------------------------------------------------


@dataclass
class UnitState:
    address: UnitAddress
    serial: str = "?"
    officer: str | None = None
    stage: str = "connecting"  # connecting, pulling, verifying, receipt, released, failed
    files: int = 0
    files_done: int = 0
    total: int = 0
    done: int = 0  # bytes of finished segments
    current: int = 0  # bytes of the segment arriving
    started: float = 0.0
    finished: float | None = None
    detail: str = ""
    result: pulling.PullResult | None = None

    @property
    def ok(self) -> bool:
        return self.stage == "released"

    def line(self, now: float) -> str:
        head = f"{self.serial:<16} {str(self.address):<34} {self.stage:<10}"
        got = self.done + self.current
        if self.stage in ("pulling", "verifying", "receipt"):
            took = max(now - self.started, 1e-3)
            rate = got / took
            left = (self.total - got) / rate if rate > 0 else float("inf")
            return (
                f"{head} {self.files_done}/{self.files} files  {_size(got)}/{_size(self.total)}"
                f"  {_size(rate)}/s  {_eta(left) if self.stage == 'pulling' else ''}"
            ).rstrip()
        return f"{head} {self.detail}".rstrip()


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


def _eta(seconds: float) -> str:
    if seconds == float("inf"):
        return "time left unknown"
    m, s = divmod(int(seconds + 0.5), 60)
    return f"{m}m{s:02d}s left" if m else f"{s}s left"


class Board:
    """The lines the operator reads: redrawn in place on a terminal, else a
    line per unit whenever its stage changes and every `every` seconds."""

    def __init__(self, out: TextIO, lock: threading.Lock, every: float = 2.0) -> None:
        self.out = out
        self.lock = lock
        self.every = every
        self.tty = out.isatty()
        self.units: list[UnitState] = []
        self._drawn = 0
        self._last: dict[int, float] = {}

    def add(self, state: UnitState) -> None:
        with self.lock:
            self.units.append(state)
        self.show(state, force=True)

    def show(self, state: UnitState, *, force: bool = False) -> None:
        now = time.monotonic()
        with self.lock:
            if self.tty:
                if force or now - self._last.get(id(self), 0) >= 0.2:
                    self._last[id(self)] = now
                    self._redraw(now)
                return
            if force or now - self._last.get(id(state), 0) >= self.every:
                self._last[id(state)] = now
                self.out.write(state.line(now) + "\n")
                self.out.flush()

    def _redraw(self, now: float) -> None:
        if self._drawn:
            self.out.write(f"\x1b[{self._drawn}F")
        for s in self.units:
            self.out.write("\x1b[2K" + s.line(now) + "\n")
        self._drawn = len(self.units)
        self.out.flush()


# -- the service --------------------------------------------------------------


@dataclass
class DockService:
    source: UnitSource
    dock_dir: Path
    dock_key: Ed25519PrivateKey
    context: Any  # ssl.SSLContext: the dock's client credentials
    login: pulling.Login
    board: Board
    inventory: Known  # the units QA made: checked before any login
    identity: Identity | None = None
    limits: pulling.Limits = field(default_factory=pulling.Limits)
    workers: int = 4
    probe_timeout_s: float = 1.0
    now: Callable[[], float] = time.time
    index: dict[str, Any] = field(default_factory=dict)  # credentials.index_arguments
    _running: dict[UnitAddress, Future[UnitState]] = field(default_factory=dict)
    _seen: set[UnitAddress] = field(default_factory=set)

    def run_once(self) -> list[UnitState]:
        """Pull every unit that answers now, in parallel; wait for all."""
        found = [a for a in self.source.scan() if self._answers(a)]
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            futures = [pool.submit(self.pull_one, a) for a in found]
            return [f.result() for f in futures]

    def serve(self, stop: threading.Event, poll_s: float = 2.0) -> None:
        """Until `stop`: pull each unit when it appears, again after it left."""
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            while not stop.is_set():
                present = {a for a in self.source.scan() if self._answers(a)}
                for address in present - self._seen:
                    if address not in self._running:
                        self._running[address] = pool.submit(self.pull_one, address)
                for address, fut in list(self._running.items()):
                    if fut.done():
                        del self._running[address]
                # a unit still present (pulled, or failed) is not asked again;
                # one that left is forgotten, and pulled when it is back
                self._seen = present | set(self._running)
                stop.wait(poll_s)

    def pull_one(self, address: UnitAddress) -> UnitState:
        state = UnitState(address, started=time.monotonic())
        self.board.add(state)
        client = Client(address.host, address.port, self.context)
        try:
            state.result = pulling.pull(
                client,
                self.dock_dir,
                self.dock_key,
                login=self.login,
                identity=self.identity,
                inventory=self.inventory,
                limits=self.limits,
                progress=lambda name, got, want: self._bytes(state, got, want),
                stage=lambda name, info: self._stage(state, name, info),
                now=self.now,
                **self.index,
            )
        except (DockError, OSError, ValueError) as exc:
            state.stage = "failed"
            state.detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if len(str(exc).splitlines()) > 1:
                state.detail += " " + " | ".join(s.strip() for s in str(exc).splitlines()[1:4])
        else:
            r = state.result
            state.stage = "released"
            state.detail = (
                f"pulled {len(r.pulled)} files ({_size(state.done)}), verified, "
                f"receipt {r.receipt[:16] if r.receipt else '-'}, released {len(r.released)} "
                f"({_size(r.bytes_freed)})"
                + (f"; MISSING {', '.join(r.missing)}" if r.missing else "")
                + (
                    "; segment numbers never sealed: "
                    + ", ".join(f"{g.after + 1}..{g.before - 1}" for g in r.segno_gaps)
                    if r.segno_gaps
                    else ""
                )
            )
        finally:
            client.close()
            state.finished = time.monotonic()
        self.board.show(state, force=True)
        return state

    def _bytes(self, state: UnitState, got: int, want: int) -> None:
        if got >= want:
            state.done += want
            state.current = 0
            state.files_done += 1
        else:
            state.current = got
        self.board.show(state)

    def _stage(self, state: UnitState, name: str, info: dict[str, Any]) -> None:
        if name == "status":
            state.serial = str(info.get("serial"))
            state.officer = info.get("officer")
            return
        state.stage = name
        if name == "pulling":
            state.files, state.total = int(info["files"]), int(info["bytes"])
            state.started = time.monotonic()
        self.board.show(state, force=True)

    def _answers(self, address: UnitAddress) -> bool:
        """Docked and its export service listening: a TCP connection opens."""
        try:
            with socket.create_connection((address.host, address.port), self.probe_timeout_s):
                return True
        except OSError:
            return False


def main(args: Any) -> int:
    """`bodycam-dock serve` (arguments parsed by dock/cli.py)."""
    lock = threading.Lock()
    try:
        sources: list[UnitSource] = []
        if args.unit:
            sources.append(FixedUnits(tuple(parse_address(u) for u in args.unit)))
        if args.usb:
            sources.append(GadgetLinks(port=args.usb_port))
        if not sources:
            raise DockError("give --usb, or one or more --unit HOST:PORT")
        if args.workers < 1:
            raise DockError("--workers must be at least 1")
        if args.password_dir is not None and not args.password_dir.is_dir():
            raise DockError(f"--password-dir {args.password_dir}: not a folder")
        ctx, key, identity, inventory = dock_setup(args)
        pull_limits = limits(args)
    except (DockError, OSError) as exc:
        print(f"dock: {exc}", file=sys.stderr)
        return 2
    login: pulling.Login = (
        PasswordDir(args.password_dir, args.fingerprint != "no-match")
        if args.password_dir
        else TerminalLogin(lock, args.fingerprint)
    )
    service = DockService(
        Union(tuple(sources)),
        args.dock_dir,
        key,
        ctx,
        login,
        Board(sys.stderr, lock),
        inventory,
        identity=identity,
        limits=pull_limits,
        workers=args.workers,
        index=index_arguments(args),
    )
    if args.once:
        states = service.run_once()
        for s in states:
            print(f"{s.serial} {s.address}: {s.stage}: {s.detail}")
        if not states:
            print("no unit answered", file=sys.stderr)
        return 0 if states and all(s.ok for s in states) else 1
    stop = threading.Event()
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(
        f"dock: watching for units ({', '.join(type(s).__name__ for s in sources)})",
        file=sys.stderr,
    )
    service.serve(stop)
    return 0
