"""The city server's pull (S0 art. 16; issue 27): on a schedule, from every
enrolled workstation's `bodycam-dock share`, what the agency store lacks:

    bodycam-dock city-pull --docks DOCKS.toml --to s3://BUCKET --endpoint URL
        --credentials FILE --index URL --cert CITY.crt --key CITY.key
        --agency-ca FILE [--every SECONDS | --once] [--parallel N]

DOCKS.toml enrolls the workstations, one table each:

    [[dock]]
    name = "station-north"            # its name in the agency index
    address = "10.20.0.11:8443"       # where its `share` listens
    sha256 = "3f0c...e1"              # its dock certificate's SHA-256 (hex)

Per workstation (N at a time, each in its own thread): mutual TLS with the
city certificate (link/pki.py; the agency CA verifies the workstation's,
and a certificate whose SHA-256 is not the enrolled one is refused by the
workstation's name before any request), then the listing, the dock's index
snapshot and each unit's small files (chain, key, receipts, disposal
statements, verification) into a staging folder that is a dock folder
without its segments; then dock/sync.py's `sync` on it, exactly as a
workstation's own push, with each segment fetched only when the store does
not hold it, into the staging folder, and removed once stored; the next
few are fetched ahead on a second connection while one is stored (`_Fetch`).
So every check is sync's: the chain extends the agency's copy, the device
key is the same, each segment hashes to the chain's ct_sha256 before it is
stored with that SHA-256 as its checksum, it is read back before its index
row, Object Lock and legal holds as sync sets them.

Safe to cut anywhere (sync's own guarantee); the staging folder is emptied
at the start of each workstation's pull. A workstation that cannot be
reached, is not the enrolled one, or has items refused is one line (named)
and the others go on. `--once`: one round, exit 0 when every workstation
was pulled whole, 1 otherwise; `--every S`: a round every S seconds, for
ever.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import http.client
import os
import re
import shutil
import signal
import ssl
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from link import pki
from sealing import layout
from sealing.disposals import DISPOSALS

from .client import Client, DockError, read_bounded
from .dock_locale import add_locale_arguments
from .index import INDEX_ERRORS, VERIFICATION, describe_error
from .object_store import (
    AgencyBucket,
    StoreConfigError,
    StoreRefused,
    add_store_arguments,
    agency_of,
)
from .share import DOCK_TOML, FILE, INDEX, LISTING, MAX_SEGMENT, MAX_SMALL
from .sync import DOCK_NAME_RE, Missing, SyncError, SyncResult, sync
from .texts import ENGLISH, Msg, Texts, msg

BLOCK = 1024 * 1024
MAX_LISTING = 256 * 1024 * 1024
MAX_INDEX = 4 * 1024 * 1024 * 1024
PULL_DEADLINE_S = 6 * 3600.0  # one workstation's whole pull
FP_RE = re.compile(r"[0-9a-f]{64}")


class CityError(Exception):
    """Bad input: nothing can be pulled. Its Msg says why."""


class NotPulled(Exception):
    """One workstation is not pulled (this round); its Msg says why."""


@dataclass(frozen=True)
class Workstation:
    name: str
    host: str
    port: int
    sha256: str  # its dock certificate's, lower-case hex


def read_docks(path: Path) -> list[Workstation]:
    """DOCKS.toml: `[[dock]]` tables with name, address (HOST:PORT), sha256."""
    try:
        table = tomllib.loads(path.read_text())
    except OSError as exc:
        raise CityError(
            msg("%(file)s: %(error)s", file=str(path), error=exc.strerror or str(exc))
        ) from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CityError(msg("%(file)s: %(error)s", file=str(path), error=str(exc))) from None
    unknown = set(table) - {"dock"}
    docks = table.get("dock")
    if unknown or not isinstance(docks, list) or not docks:
        raise CityError(
            msg(
                "%(file)s: want one [[dock]] table per workstation (name, address, sha256)",
                file=str(path),
            )
        )
    out: list[Workstation] = []
    for n, d in enumerate(docks, 1):
        where = f"{path} [[dock]] #{n}"
        if not isinstance(d, dict) or set(d) != {"name", "address", "sha256"}:
            raise CityError(msg("%(where)s: want exactly name, address and sha256", where=where))
        name, address, fp = d["name"], d["address"], d["sha256"]
        if not isinstance(name, str) or not DOCK_NAME_RE.fullmatch(name):
            raise CityError(
                msg(
                    "%(where)s: name %(name)r: letters, digits, '.', '_', '-' (at most 64)",
                    where=where,
                    name=str(name),
                )
            )
        host, sep, port = str(address).rpartition(":")
        host = host.strip("[]")
        if (
            not isinstance(address, str)
            or not sep
            or not host
            or not port.isdigit()
            or not 0 < int(port) < 65536
        ):
            raise CityError(
                msg("%(where)s: address %(value)r: want HOST:PORT", where=where, value=str(address))
            )
        hexfp = str(fp).replace(":", "").lower()
        if not isinstance(fp, str) or not FP_RE.fullmatch(hexfp):
            raise CityError(
                msg(
                    "%(where)s: sha256: want the certificate's SHA-256 (64 hex digits)", where=where
                )
            )
        if any(w.name == name for w in out):
            raise CityError(
                msg("%(file)s: workstation %(name)s is enrolled twice", file=str(path), name=name)
            )
        out.append(Workstation(name, host, int(port), hexfp))
    return out


# -- one workstation ----------------------------------------------------------


class _Remote:
    """One workstation's share, over one keep-alive mutual-TLS connection."""

    def __init__(self, ws: Workstation, context: ssl.SSLContext) -> None:
        self.ws = ws
        self.client = Client(ws.host, ws.port, context)
        self.client.set_deadline(PULL_DEADLINE_S)

    def close(self) -> None:
        self.client.close()

    def check_identity(self) -> None:
        """The workstation's certificate (the agency CA's, checked by the
        handshake) is the one enrolled for its name."""
        try:
            der = self.client.peer_certificate()
        except ssl.SSLError as exc:
            raise NotPulled(
                msg("TLS refused (%(error)s); nothing pulled", error=exc.reason or str(exc))
            ) from None
        got = pki.cert_sha256(der)
        if got != self.ws.sha256:
            raise NotPulled(
                msg(
                    "its certificate is not the enrolled one (sha256 %(got)s, "
                    "enrolled %(want)s); nothing pulled",
                    got=got[:16],
                    want=self.ws.sha256[:16],
                )
            )
        if pki.role_of(x509.load_der_x509_certificate(der)) != "dock":
            raise NotPulled(msg("its certificate is not a dock's; nothing pulled"))

    def _get(self, route: Any, query: dict[str, int | str] | None = None) -> Any:
        resp = self.client.request(route, query=query)
        if resp.status == 404:
            resp.read(MAX_SMALL)
            return None
        if resp.status != 200:
            body = read_bounded(resp, 64 * 1024)
            raise NotPulled(
                msg(
                    "the workstation answered %(status)s to %(what)s: %(body)s",
                    status=resp.status,
                    what=route.path,
                    body=body[:200].decode(errors="replace"),
                )
            )
        return resp

    def listing(self) -> dict[str, Any]:
        import json

        resp = self._get(LISTING)
        data = json.loads(read_bounded(resp, MAX_LISTING)) if resp is not None else None
        if (
            not isinstance(data, dict)
            or data.get("version") != 1
            or not isinstance(data.get("units"), list)
        ):
            raise NotPulled(msg("its listing is not one this city server reads"))
        return data

    def download(self, route: Any, dst: Path, limit: int, rel: str | None = None) -> bool:
        """The file into `dst` (through `dst.part`); False when the
        workstation has no such file."""
        resp = self._get(route, {"path": rel} if rel is not None else None)
        if resp is None:
            return False
        length = resp.getheader("Content-Length")
        if length is None or not length.isdigit() or int(length) > limit:
            resp.close()
            self.client.close()
            raise NotPulled(
                msg(
                    "%(what)s: a reply of %(length)s bytes (at most %(limit)s)",
                    what=rel or route.path,
                    length=str(length)[:20],
                    limit=limit,
                )
            )
        left = int(length)
        part = dst.with_name(dst.name + ".part")
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            with part.open("wb") as f:
                while left > 0:
                    chunk = resp.read(min(BLOCK, left))
                    if not chunk:
                        raise http.client.IncompleteRead(b"", left)
                    f.write(chunk)
                    left -= len(chunk)
        except BaseException:
            part.unlink(missing_ok=True)
            self.client.close()
            raise
        os.replace(part, dst)
        return True


def _stage(remote: _Remote, listing: dict[str, Any], stage: Path) -> None:
    """A dock folder without segments: the index snapshot, dock.toml and
    each unit's small files, as the listing names them."""
    if not remote.download(INDEX, stage / "dock.sqlite", MAX_INDEX):
        raise NotPulled(msg("the workstation shares no index"))
    if listing.get("dock_toml"):
        remote.download(FILE, stage / DOCK_TOML, MAX_SMALL, DOCK_TOML)
    for unit in listing["units"]:
        serial = unit.get("serial") if isinstance(unit, dict) else None
        try:
            layout.check_serial(str(serial))
        except ValueError:
            continue  # sync names what it cannot push; this is not a unit's folder
        base = f"units/{serial}"
        names = [layout.CHAIN, layout.DEVICE_PUB, VERIFICATION]
        for key, folder in (("receipts", layout.RECEIPTS), ("disposals", DISPOSALS)):
            for name in unit.get(key) or []:
                if isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9._-]{1,200}\.json", name):
                    names.append(f"{folder}/{name}")
        for name in names:
            rel = f"{base}/{name}"
            remote.download(FILE, stage / rel, MAX_SMALL, rel)


class _Fetch:
    """The segments sync asks for, downloaded into `folder`. Sync first says
    which it will ask for, in its order (`expect`: those the store lacks);
    a thread on a second connection (its certificate checked again) then
    downloads them ahead of sync, at most AHEAD files and AHEAD_BYTES
    (a larger single file still goes, alone), so the download of the next
    segments overlaps the PUT and read-back of this one. Asked for a file,
    sync gets it once downloaded (waiting for it if need be); anything not
    expected, or whose fetching ahead failed, is downloaded then, on the
    first connection, as before. Files sync passed over (the store had
    them after all) are dropped when a later one is asked for. Each file
    is removed once sync is done with it; the staging folder holds at most
    AHEAD + 1 of them."""

    AHEAD = 3
    AHEAD_BYTES = 256 * 1024 * 1024

    def __init__(self, remote: _Remote, connect: Any, folder: Path) -> None:
        self.remote = remote  # the first connection: what is not fetched ahead
        self.connect = connect  # a new _Remote, for the thread
        self.folder = folder
        self.cond = threading.Condition()
        self.pos: dict[str, int] = {}  # every expected rel not yet used: its place in sync's order
        self.sizes: dict[str, int] = {}
        self.queue: list[str] = []  # expected, not yet started, in order
        self.ready: dict[str, Path | None | BaseException] = {}  # downloaded, not yet used
        self.busy: str | None = None  # being downloaded now
        self.abandoned: set[str] = set()  # busy, but sync went past it
        self.staged = 0  # bytes downloaded or downloading, not yet used
        self.stopped = False
        self.failed = False
        self.thread: threading.Thread | None = None
        self.ahead: _Remote | None = None
        self.n = 0  # file names: the same segment twice never collides

    def expect(self, items: list[tuple[Path, int | None]]) -> None:
        with self.cond:
            for rel, size in items:
                key = rel.as_posix()
                if key not in self.pos:
                    self.pos[key] = self.n = self.n + 1
                    self.sizes[key] = size if isinstance(size, int) and size > 0 else 0
                    self.queue.append(key)
            if self.thread is None and self.queue and not self.failed:
                self.thread = threading.Thread(target=self._run, name="city-fetch", daemon=True)
                self.thread.start()
            self.cond.notify_all()

    def _room(self) -> bool:
        held = len(self.ready) + (self.busy is not None)
        if held == 0:
            return True
        return held < self.AHEAD and self.staged + self.sizes[self.queue[0]] <= self.AHEAD_BYTES

    def _forget(self, rel: str) -> None:
        """Under the lock: `rel` is used, or will not be asked for."""
        self.pos.pop(rel, None)
        self.sizes.pop(rel, None)

    def _run(self) -> None:
        try:
            self.ahead = self.connect()
            self.ahead.check_identity()
        except Exception as exc:  # DockError, OSError, TLS: said here, then not fetched ahead
            print(f"city-pull: fetching ahead not started: {type(exc).__name__}: {exc}"[:300],
                  file=sys.stderr, flush=True)  # fmt: skip
            with self.cond:  # sync's own download (the first connection) says what is wrong
                self.failed = True
                self.cond.notify_all()
            return
        while True:
            with self.cond:
                while not self.stopped and (not self.queue or not self._room()):
                    self.cond.wait()
                if self.stopped:
                    return
                rel = self.busy = self.queue.pop(0)
                size = self.sizes[rel]
                self.staged += size
                self.n += 1
                dst = self.folder / f"{self.n}-{Path(rel).name}"
            got: Path | None | BaseException
            try:
                got = dst if self.ahead.download(FILE, dst, MAX_SEGMENT, rel) else None
            except Exception as exc:  # said, and kept for sync, which downloads it again itself
                print(f"city-pull: {rel} not fetched ahead: {type(exc).__name__}: {exc}"[:300],
                      file=sys.stderr, flush=True)  # fmt: skip
                got = exc
            with self.cond:
                self.busy = None
                self.cond.notify_all()
                if self.stopped or rel in self.abandoned:
                    self.abandoned.discard(rel)
                    self.staged -= size
                    self._forget(rel)
                    if isinstance(got, Path):
                        got.unlink(missing_ok=True)
                else:
                    self.ready[rel] = got
                if isinstance(got, BaseException):
                    self.failed = True  # its connection is closed: no more fetching ahead
                if self.stopped or self.failed:
                    return

    def _take(self, rel: str) -> Path | None | BaseException | bool:
        """The file fetched ahead for `rel`: its path, None (the workstation
        has none), an exception (fetching ahead failed), or False when `rel`
        is not (or no longer) fetched ahead. Waits while it is on its way."""
        with self.cond:
            mine = self.pos.get(rel)
            if mine is None:
                return False
            for earlier in [r for r, n in self.pos.items() if n < mine]:  # sync went past them
                if earlier == self.busy:
                    self.abandoned.add(earlier)
                    continue
                if earlier in self.queue:
                    self.queue.remove(earlier)
                elif earlier in self.ready:
                    got = self.ready.pop(earlier)
                    self.staged -= self.sizes[earlier]
                    if isinstance(got, Path):
                        got.unlink(missing_ok=True)
                self._forget(earlier)
            self.cond.notify_all()
            while rel not in self.ready and not self.failed and not self.stopped:
                self.cond.wait()
            if rel not in self.ready:  # fetching ahead stopped: sync downloads it itself
                if rel in self.queue:
                    self.queue.remove(rel)
                if rel == self.busy:
                    self.abandoned.add(rel)
                else:
                    self._forget(rel)
                return False
            got = self.ready.pop(rel)
            self.staged -= self.sizes[rel]
            self._forget(rel)
            self.cond.notify_all()
            return got

    @contextlib.contextmanager
    def __call__(self, rel: Path) -> Iterator[Path]:
        got = self._take(rel.as_posix())
        if isinstance(got, BaseException) or got is False or got is True:
            with self.cond:  # not fetched ahead: downloaded now, as before
                self.n += 1
                dst = self.folder / f"{self.n}-{rel.name}"
            try:
                got = dst if self.remote.download(FILE, dst, MAX_SEGMENT, rel.as_posix()) else None
            except BaseException:
                dst.unlink(missing_ok=True)
                raise
        if got is None:
            raise Missing(msg("missing from the dock's disk; not pushed"))
        try:
            yield got
        finally:
            got.unlink(missing_ok=True)

    def close(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
            for got in self.ready.values():
                if isinstance(got, Path):
                    got.unlink(missing_ok=True)
            self.ready.clear()
        if self.ahead is not None:
            self.ahead.close()  # a download under way ends now
        if self.thread is not None:
            self.thread.join(timeout=30)


def pull_workstation(
    ws: Workstation,
    context: ssl.SSLContext,
    agency: Path | AgencyBucket,
    index: str | None,
    staging: Path,
    *,
    test_retention_s: float | None = None,
) -> SyncResult:
    """One workstation: staged, then synced as its own push would be."""
    stage = staging / ws.name
    shutil.rmtree(stage, ignore_errors=True)  # what a cut run left
    segments = stage / ".segments"
    segments.mkdir(parents=True)
    remote = _Remote(ws, context)
    try:
        remote.check_identity()
        listing = remote.listing()
        _stage(remote, listing, stage)

        fetch = _Fetch(remote, lambda: _Remote(ws, context), segments)
        try:
            return sync(
                stage, agency, index, ws.name, segments=fetch, test_retention_s=test_retention_s
            )
        finally:
            fetch.close()
    finally:
        remote.close()
        shutil.rmtree(stage, ignore_errors=True)


def _pull_line(
    ws: Workstation,
    context: ssl.SSLContext,
    agency: Path | AgencyBucket,
    index: str | None,
    staging: Path,
    t: Texts,
) -> tuple[bool, list[str]]:
    """(pulled whole, the lines to print): never raises for one workstation."""
    why: Msg | str
    try:
        result = pull_workstation(ws, context, agency, index, staging)
    except NotPulled as exc:
        why = exc.args[0]
    except DockError as exc:
        why = exc.args[0]
    except SyncError as exc:
        why = exc.args[0]
    except StoreRefused as exc:
        why = exc.args[0]
    except INDEX_ERRORS as exc:
        why = msg("index: %(error)s", error=t.say(describe_error(exc)))
    except (OSError, http.client.HTTPException, ValueError) as exc:
        why = msg(
            "cut off (%(error)s); the next round resumes", error=str(exc) or type(exc).__name__
        )
    else:
        lines = [
            t.tr("workstation %(name)s: refused: %(what)s", name=ws.name, what=t.say(r))
            for r in result.refused
        ]
        lines.append(
            t.tr(
                "workstation %(name)s pulled: %(pushed)s files stored, %(rows)s index rows "
                "written, %(refused)s refused",
                name=ws.name,
                pushed=len(result.pushed),
                rows=result.rows,
                refused=len(result.refused),
            )
        )
        return result.ok, lines
    return False, [t.tr("workstation %(name)s not pulled: %(why)s", name=ws.name, why=t.say(why))]


def pull_round(
    docks: list[Workstation],
    context: ssl.SSLContext,
    agency: Path | AgencyBucket,
    index: str | None,
    staging: Path,
    parallel: int,
    t: Texts = ENGLISH,
) -> list[str]:
    """Every workstation once, `parallel` at a time; the names of those not
    pulled whole. Each workstation's lines are printed as it finishes."""
    failed: list[str] = []
    lock = threading.Lock()

    def one(ws: Workstation) -> None:
        ok, lines = _pull_line(ws, context, agency, index, staging, t)
        with lock:
            for line in lines:
                print(f"city-pull: {line}", file=sys.stdout if ok else sys.stderr, flush=True)
            if not ok:
                failed.append(ws.name)

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        list(pool.map(one, docks))
    return sorted(failed)


# -- command line ---------------------------------------------------------------


def add_parser(sub: Any, t: Texts = ENGLISH) -> None:
    cp = sub.add_parser(
        "city-pull", help=t.tr("the city server: pull every enrolled workstation into the store")
    )
    cp.add_argument(
        "--docks",
        type=Path,
        required=True,
        metavar="FILE",
        help=t.tr("TOML: one [[dock]] per workstation (name, address, sha256)"),
    )
    cp.add_argument("--to", required=True, metavar="s3://BUCKET|AGENCY_DIR")
    add_store_arguments(cp, t)
    cp.add_argument("--index", help=t.tr("the agency index: postgresql+psycopg://..."))
    cp.add_argument(
        "--cert",
        type=Path,
        required=True,
        metavar="FILE",
        help=t.tr("the city server's certificate (agency/city/NAME.crt)"),
    )
    cp.add_argument(
        "--key",
        type=Path,
        required=True,
        metavar="FILE",
        help=t.tr("the city server's key (agency/city/NAME.key)"),
    )
    cp.add_argument(
        "--agency-ca",
        type=Path,
        required=True,
        metavar="FILE",
        help=t.tr("the agency CA's certificate"),
    )
    when = cp.add_mutually_exclusive_group(required=True)
    when.add_argument(
        "--every", type=float, metavar="SECONDS", help=t.tr("a round every SECONDS, for ever")
    )
    when.add_argument("--once", action="store_true", help=t.tr("one round, then exit"))
    cp.add_argument(
        "--parallel",
        type=int,
        default=4,
        metavar="N",
        help=t.tr("workstations pulled at once (default 4)"),
    )
    cp.add_argument(
        "--staging",
        type=Path,
        metavar="DIR",
        help=t.tr(
            "where files wait to be stored (default: a folder under the system's temporary folder)"
        ),
    )
    add_locale_arguments(cp, t)


def _setup(
    args: argparse.Namespace,
) -> tuple[list[Workstation], ssl.SSLContext, Path | AgencyBucket]:
    docks = read_docks(args.docks)
    if args.parallel < 1 or (args.every is not None and args.every <= 0):
        raise CityError(msg("--parallel and --every must be positive"))
    try:
        own = pki.load_cert(args.cert)
    except pki.PkiError as exc:
        raise CityError(str(exc)) from None
    if pki.role_of(own) != "city":
        raise CityError(
            msg(
                "%(cert)s is not a city server certificate (bodycam-flash city-cert)",
                cert=str(args.cert),
            )
        )
    try:
        context = pki.client_context(args.cert, args.key, args.agency_ca)
    except (OSError, ssl.SSLError) as exc:
        raise CityError(msg("TLS: %(error)s", error=str(exc))) from None
    agency = agency_of(args)
    if isinstance(agency, AgencyBucket):
        if args.index is None:
            raise CityError(msg("an s3:// store needs --index (the agency index: PostgreSQL)"))
        agency.ensure_bucket()
    return docks, context, agency


@contextlib.contextmanager
def _staging(folder: Path | None) -> Iterator[Path]:
    """The staging folder, one city-pull at a time in it."""
    path = folder or Path(tempfile.gettempdir()) / f"bodycam-city-{os.getuid()}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CityError(
                msg(
                    "another city-pull is running with the staging folder %(folder)s",
                    folder=str(path),
                )
            ) from None
        yield path
    finally:
        os.close(fd)


def city_pull_command(args: argparse.Namespace, t: Texts = ENGLISH) -> int:
    try:
        docks, context, agency = _setup(args)
        with _staging(args.staging) as staging:
            if args.once:
                failed = pull_round(docks, context, agency, args.index, staging, args.parallel, t)
                if failed:
                    print(
                        "city-pull: "
                        + t.tr("not pulled this round: %(names)s", names=", ".join(failed)),
                        file=sys.stderr,
                    )
                return 1 if failed else 0
            stop = threading.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
            while not stop.is_set():
                started = time.monotonic()
                pull_round(docks, context, agency, args.index, staging, args.parallel, t)
                stop.wait(max(0.0, args.every - (time.monotonic() - started)))
            return 0
    except (CityError, StoreConfigError) as exc:
        print(f"dock: {t.say(exc.args[0])}", file=sys.stderr)
        return 2
    except StoreRefused as exc:
        print(f"dock: {t.say(exc.args[0])}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            "dock: " + t.tr("city-pull stopped, run it again to resume: %(error)s", error=str(exc)),
            file=sys.stderr,
        )
        return 1
