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

from link import messages
from link.inventory import Known
from sealing.age import Identity

from . import pull as pulling
from .client import Client, DockError
from .credentials import dock_setup, index_arguments, limits
from .discovery import FixedUnits, GadgetLinks, Union, UnitAddress, UnitSource, parse_address
from .fingerprint import FingerprintError
from .index import INDEX_ERRORS, Index
from .officer_prints import Fingerprint, OperatorsWord, ReaderCheck
from .texts import ENGLISH, Msg, Texts, msg

# A pull's stages as the operator reads them
STAGES: dict[str, Msg] = {
    "connecting": msg("connecting"),
    "pulling": msg("pulling"),
    "verifying": msg("verifying"),
    "receipt": msg("receipt"),
    "released": msg("released"),
    "failed": msg("failed"),
}

# -- logins -------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedLogin:
    """Passwords prepared for the dock (a file per unit, or one given to
    `pull`); the fingerprint asked as the dock was told (a reader, or the
    operator's word given on the command line). A refused password is not
    tried again (it would be the same); a print not matched is scanned again
    while the unit allows, unless the verdict is the operator's word."""

    password_of: Callable[[str, str | None], str]  # (serial, officer) -> password; DockError
    fingerprint: Fingerprint
    tell: Callable[[object], None] = lambda _said: None  # a line for the operator

    def __call__(
        self, serial: str, officer: str | None, again: pulling.Retry | None
    ) -> pulling.LoginAnswer | None:
        if again is not None:
            self.tell(msg("unit %(serial)s: %(why)s", serial=serial, why=again.said))
        if again is not None and again.result == "bad_password":
            return None
        password = self.password_of(serial, officer)
        try:
            matched, reader = self.fingerprint(officer or "")
        except FingerprintError as exc:
            raise DockError(exc.args[0]) from None
        if again is not None and reader == messages.NO_READER:
            return None  # the operator's word would be the same again
        return pulling.LoginAnswer(password, matched, reader)


def password_dir(folder: Path) -> Callable[[str, str | None], str]:
    """`--password-dir`: `<dir>/<serial>` holds the unit's officer's password."""

    def password_of(serial: str, officer: str | None) -> str:
        path = folder / serial
        try:
            return path.read_text().rstrip("\n")
        except OSError:
            raise DockError(
                msg(
                    "%(serial)s: no password in %(file)s for officer %(officer)s",
                    serial=serial,
                    file=str(path),
                    officer=str(officer),
                )
            ) from None

    return password_of


@dataclass
class TerminalLogin:
    """The officer types at the dock's terminal, then puts a finger on the
    reader: one officer at a time, while the progress lines wait (they share
    the lock)."""

    lock: threading.Lock
    fingerprint: Fingerprint
    texts: Texts = ENGLISH

    def __call__(
        self, serial: str, officer: str | None, again: pulling.Retry | None
    ) -> pulling.LoginAnswer | None:
        t = self.texts
        with self.lock:
            if again is None:
                said = t.tr(
                    "unit %(serial)s, officer %(officer)s", serial=serial, officer=officer or "?"
                )
            else:  # the unit refused the last try and allows another: no re-docking
                said = t.tr("unit %(serial)s: %(why)s", serial=serial, why=again.said)
            sys.stderr.write(f"\n{said}\n")
            password = getpass.getpass("  " + t.tr("password: "))
            try:
                matched, reader = self.fingerprint(officer or "")
            except FingerprintError as exc:
                sys.stderr.write(f"  {t.say(exc.args[0])}\n")
                return None
        return pulling.LoginAnswer(password, matched, reader)


READER_FAILS: tuple[type[Exception], ...] = (DockError, OSError, *INDEX_ERRORS)


def fingerprint_of(args: Any, said: Callable[[object], None]) -> Fingerprint:
    """`--fingerprint match|no-match`: the operator's word (no reader, recorded
    so); otherwise the reader (`--reader`, default the first libfprint one)
    against the officer's print enrolled in the dock's index. `said`: how a
    line reaches the operator (the prompt for a finger, a failed scan)."""
    if args.fingerprint:
        return OperatorsWord(args.fingerprint == "match")
    from .fingerprint import LibfprintReader

    try:
        reader = LibfprintReader(
            args.reader, prompt=lambda: said(msg("fingerprint: put the finger on the reader"))
        )
    except FingerprintError as exc:
        raise DockError(
            msg(
                "%(why)s: connect a reader, or give --fingerprint match|no-match for the "
                "recorded no-reader mode",
                why=exc.args[0],
            )
        ) from None
    index = Index.open(args.index or args.dock_dir / "dock.sqlite", dock=None)
    return ReaderCheck(index, reader, lambda e: said(e.args[0]))


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
    detail: tuple[object, ...] = ()  # Msgs, errors, text: said one after the other
    result: pulling.PullResult | None = None

    @property
    def ok(self) -> bool:
        return self.stage == "released"

    def line(self, now: float, t: Texts) -> str:
        stage = t.say(STAGES.get(self.stage, self.stage))
        head = f"{self.serial:<16} {str(self.address):<34} {stage:<10}"
        got = self.done + self.current
        if self.stage in ("pulling", "verifying", "receipt"):
            took = max(now - self.started, 1e-3)
            rate = got / took
            left = (self.total - got) / rate if rate > 0 else float("inf")
            files = t.tr("%(done)s/%(total)s files", done=self.files_done, total=self.files)
            return (
                f"{head} {files}  {_size(got)}/{_size(self.total)}"
                f"  {_size(rate)}/s  {_eta(left, t) if self.stage == 'pulling' else ''}"
            ).rstrip()
        return f"{head} {self.detail_text(t)}".rstrip()

    def detail_text(self, t: Texts) -> str:
        """The detail on one line: an error of several lines (a refused
        receipt lists each problem) shows its first few, joined."""
        lines = "".join(t.say(d) for d in self.detail).splitlines()
        if len(lines) > 1:
            return lines[0] + " " + " | ".join(x.strip() for x in lines[1:4])
        return lines[0] if lines else ""


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


def _eta(seconds: float, t: Texts) -> str:
    if seconds == float("inf"):
        return t.tr("time left unknown")
    m, s = divmod(int(seconds + 0.5), 60)
    if m:
        return t.tr("%(minutes)sm%(seconds)02ds left", minutes=m, seconds=s)
    return t.tr("%(seconds)ss left", seconds=s)


class Board:
    """The lines the operator reads: redrawn in place on a terminal, else a
    line per unit whenever its stage changes and every `every` seconds."""

    def __init__(
        self, out: TextIO, lock: threading.Lock, every: float = 2.0, texts: Texts = ENGLISH
    ) -> None:
        self.out = out
        self.lock = lock
        self.texts = texts
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
                self.out.write(state.line(now, self.texts) + "\n")
                self.out.flush()

    def _redraw(self, now: float) -> None:
        if self._drawn:
            self.out.write(f"\x1b[{self._drawn}F")
        for s in self.units:
            self.out.write("\x1b[2K" + s.line(now, self.texts) + "\n")
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
            state.detail = (exc if str(exc) else type(exc).__name__,)
        except Exception as exc:  # a bug of ours: one line, and nothing was released
            state.stage = "failed"
            error = (type(exc).__name__ + ": " + str(exc))[:200]
            state.detail = (
                msg("internal error (%(error)s): the pull stopped before any receipt", error=error),
            )
        else:
            r = state.result
            state.stage = "released"
            state.detail = _released(r, state.done)
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


def _released(r: pulling.PullResult, done: int) -> tuple[Msg, ...]:
    """The line of a unit whose pull ended with a receipt the unit applied."""
    parts: list[Msg] = [
        msg(
            "pulled %(files)s files (%(size)s), verified, receipt %(receipt)s, released "
            "%(released)s (%(freed)s)",
            files=len(r.pulled),
            size=_size(done),
            receipt=r.receipt[:16] if r.receipt else "-",
            released=len(r.released),
            freed=_size(r.bytes_freed),
        )
    ]
    if r.missing:
        parts.append(msg("; MISSING %(files)s", files=", ".join(r.missing)))
    if r.segno_gaps:
        gaps = ", ".join(f"{g.after + 1}..{g.before - 1}" for g in r.segno_gaps)
        parts.append(msg("; segment numbers never sealed: %(gaps)s", gaps=gaps))
    return tuple(parts)


def _say(lock: threading.Lock, texts: Texts, what: object) -> None:
    with lock:
        sys.stderr.write(f"  {texts.say(what)}\n")


def main(args: Any, texts: Texts = ENGLISH) -> int:
    """`bodycam-dock serve` (arguments parsed by dock/cli.py)."""
    lock = threading.Lock()
    try:
        sources: list[UnitSource] = []
        if args.unit:
            sources.append(FixedUnits(tuple(parse_address(u) for u in args.unit)))
        if args.usb:
            sources.append(GadgetLinks(port=args.usb_port))
        if not sources:
            raise DockError(msg("give --usb, or one or more --unit HOST:PORT"))
        if args.workers < 1:
            raise DockError(msg("--workers must be at least 1"))
        if args.password_dir is not None and not args.password_dir.is_dir():
            raise DockError(
                msg("--password-dir %(folder)s: not a folder", folder=str(args.password_dir))
            )
        ctx, key, identity, inventory = dock_setup(args, texts)
        pull_limits = limits(args)
    except (DockError, OSError) as exc:
        print(f"dock: {texts.say(exc)}", file=sys.stderr)
        return 2
    try:
        fingerprint = fingerprint_of(args, lambda what: _say(lock, texts, what))
    except READER_FAILS as exc:
        print(f"dock: {texts.say(exc.args[0] if exc.args else exc)}", file=sys.stderr)
        return 2
    login: pulling.Login = (
        PreparedLogin(
            password_dir(args.password_dir), fingerprint, lambda what: _say(lock, texts, what)
        )
        if args.password_dir
        else TerminalLogin(lock, fingerprint, texts)
    )
    service = DockService(
        Union(tuple(sources)),
        args.dock_dir,
        key,
        ctx,
        login,
        Board(sys.stderr, lock, texts=texts),
        inventory,
        identity=identity,
        limits=pull_limits,
        workers=args.workers,
        index=index_arguments(args),
    )
    if args.once:
        states = service.run_once()
        for s in states:
            stage = texts.say(STAGES.get(s.stage, s.stage))
            print(f"{s.serial} {s.address}: {stage}: {s.detail_text(texts)}")
        if not states:
            print(texts.tr("no unit answered"), file=sys.stderr)
        return 0 if states and all(s.ok for s in states) else 1
    stop = threading.Event()
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(
        "dock: "
        + texts.tr(
            "watching for units (%(sources)s)",
            sources=", ".join(type(s).__name__ for s in sources),
        ),
        file=sys.stderr,
    )
    service.serve(stop)
    return 0
