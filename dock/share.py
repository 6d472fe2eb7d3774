"""A workstation's copies, read only, for the city server's pull (S0 art. 16):

    bodycam-dock share --dock-dir D --listen HOST:PORT --agency-ca FILE
        --cert DOCK.crt --key DOCK.key

HTTPS with mutual TLS (TLS 1.3, link/pki.py): the workstation presents its
dock certificate; the client must present a certificate of the agency CA
whose role is `city` (`bodycam-flash city-cert`). Anything else is refused
right after the handshake, before a byte of HTTP is read or written: no
certificate, another CA's (the handshake fails), a dock's or a unit's
(closed at once). The city server pins each workstation by its
certificate's SHA-256 (dock/city.py).

Three GET routes (`Route`s, as the dock link's; nothing else is served):
- `/v1/listing`: what the dock holds: per unit its chain head (size,
  SHA-256), device key, last verification, the segments its index names
  (file, path, ct_sha256, size), its receipts and disposal statements;
- `/v1/index`: a snapshot of the dock's index (SQLite) with the rows sync
  reads (units, segments, receipts, retention changes, disposals, cases),
  without people, prints, the ledger, access requests and spot checks;
- `/v1/files?path=REL`: one file, by its path in the dock folder: dock.toml,
  a unit's chain, device key, verification, a receipt or a disposal
  statement, or a segment the dock's index names. No other path, no `..`,
  nothing whose real path leaves the dock folder, nothing larger than its
  kind allows.

Every connection has a handshake timeout, a timeout on each read and write
and a deadline for the whole connection, after which it is shut; at most
MAX_CONNECTIONS at once. Every request is answered (JSON errors); a fault
is one line on the workstation's stderr, never a traceback to the client.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import socket
import socketserver
import sqlite3
import ssl
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlalchemy import select

from link import pki
from link.routes import PREFIX, Route
from sealing import layout
from sealing.disposals import DISPOSALS

from .dock_locale import add_locale_arguments
from .index import VERIFICATION, Index
from .index import segments as segment_rows
from .texts import ENGLISH, Texts, msg

LISTING = Route("GET", f"{PREFIX}/listing", login=False)
INDEX = Route("GET", f"{PREFIX}/index", login=False)
FILE = Route("GET", f"{PREFIX}/files", login=False)
ROUTES = (LISTING, INDEX, FILE)

BLOCK = 1024 * 1024
HANDSHAKE_TIMEOUT_S = 10.0
IO_TIMEOUT_S = 30.0  # one read or write
CONNECTION_DEADLINE_S = 3600.0  # a whole connection, however slowly it reads
MAX_CONNECTIONS = 16
MAX_SMALL = 64 * 1024 * 1024  # a chain, key, receipt, statement, dock.toml
MAX_SEGMENT = 8 * 1024 * 1024 * 1024
MAX_TARGET = 4096  # a request's target
# the index's tables a city server needs to sync; the rest stays at the dock
KEPT_TABLES = frozenset(
    {
        "units",
        "segments",
        "receipts",
        "retention_changes",
        "disposals",
        "cases",
        "case_recordings",
        "schema",
        "meta",
        "alembic_version",
    }
)
DOCK_TOML = "dock.toml"


class ShareError(Exception):
    """`share` cannot start; its Msg says why."""


# -- what is shared ------------------------------------------------------------


class Shared:
    """The dock folder, as the city server may read it."""

    def __init__(self, dock_dir: Path) -> None:
        self.dock_dir = dock_dir
        self.root = dock_dir.resolve()

    def _index(self) -> Index:
        return Index.open(self.dock_dir / "dock.sqlite", dock=None)

    def listing(self) -> dict[str, Any]:
        idx = self._index()
        try:
            units = []
            for serial in idx.serials():
                try:
                    layout.check_serial(serial)
                except ValueError:
                    continue  # never a folder name; sync refuses it too
                unit = idx.unit(serial) or {}
                folder = self.dock_dir / "units" / serial
                segments = [
                    {
                        "file": f,
                        "path": str(r["path"]),
                        "ct_sha256": r["ct_sha256"],
                        "size": r.get("ct_len"),
                    }
                    for f, r in sorted(idx.held(serial).items())
                ]
                units.append(
                    {
                        "serial": serial,
                        "head_seq": unit.get("head_seq"),
                        "chain": _described(folder / layout.CHAIN),
                        "device_key": _described(folder / layout.DEVICE_PUB),
                        "verification": _described(folder / VERIFICATION),
                        "segments": segments,
                        "receipts": _names(folder / layout.RECEIPTS),
                        "disposals": _names(folder / DISPOSALS),
                    }
                )
        finally:
            idx.close()
        return {
            "version": 1,
            "dock_toml": (self.dock_dir / DOCK_TOML).is_file(),
            "units": units,
        }

    @contextlib.contextmanager
    def index_snapshot(self) -> Iterator[Path]:
        """A consistent copy of the dock's index (SQLite's backup), with only
        the tables sync reads kept filled; removed after."""
        fd, name = tempfile.mkstemp(prefix="bodycam-share-index-", suffix=".sqlite")
        os.close(fd)
        tmp = Path(name)
        try:
            src = sqlite3.connect(f"file:{self.dock_dir / 'dock.sqlite'}?mode=ro", uri=True)
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst)
                tables = [
                    r[0]
                    for r in dst.execute(
                        "SELECT name FROM sqlite_master WHERE type='table' "
                        "AND name NOT LIKE 'sqlite_%'"
                    )
                ]
                for table in tables:
                    if table not in KEPT_TABLES:
                        dst.execute(f'DELETE FROM "{table}"')
                dst.commit()
                dst.execute("VACUUM")
            finally:
                src.close()
                dst.close()
            yield tmp
        finally:
            tmp.unlink(missing_ok=True)

    def file(self, rel: str) -> tuple[Path, int] | None:
        """The file at `rel` if the city server may read it: (real path,
        size limit); None otherwise."""
        parts = rel.split("/")
        if (
            not rel
            or len(rel) > MAX_TARGET
            or "\\" in rel
            or "\x00" in rel
            or any(p in ("", ".", "..") for p in parts)
        ):
            return None
        if parts == [DOCK_TOML] or self._unit_file(parts):
            limit = MAX_SMALL
        elif self._indexed(rel):
            limit = MAX_SEGMENT
        else:
            return None
        try:
            real = (self.dock_dir / rel).resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not real.is_relative_to(self.root) or not real.is_file():
            return None
        return real, limit

    @staticmethod
    def _unit_file(parts: list[str]) -> bool:
        """units/<serial>/ chain, key, verification, a receipt or a statement."""
        if len(parts) < 3 or parts[0] != "units":
            return False
        try:
            layout.check_serial(parts[1])
        except ValueError:
            return False
        tail = parts[2:]
        return tail in ([layout.CHAIN], [layout.DEVICE_PUB], [VERIFICATION]) or (
            len(tail) == 2 and tail[0] in (layout.RECEIPTS, DISPOSALS) and tail[1].endswith(".json")
        )

    def _indexed(self, rel: str) -> bool:
        """A segment's file the dock's index names (by its path in the folder)."""
        idx = self._index()
        try:
            return bool(idx._fetch(select(segment_rows.c.file).where(segment_rows.c.path == rel)))
        finally:
            idx.close()


def _described(path: Path) -> dict[str, Any] | None:
    try:
        data = path.read_bytes() if path.stat().st_size <= MAX_SMALL else None
    except OSError:
        return None
    if data is None:
        return None
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.json")) if folder.is_dir() else []


# -- the server ----------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 32

    def __init__(self, addr: tuple[str, int], shared: Shared, context: ssl.SSLContext) -> None:
        self.shared = shared
        self.context = context
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, _Handler)

    def server_bind(self) -> None:
        # no DNS look-up of our own name (HTTPServer.server_bind's getfqdn)
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "bodycam-share", self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client gone mid-answer is routine; the next is answered

    def finish_request(self, request: Any, client_address: Any) -> None:
        """In the connection's own thread: the handshake (bounded), the
        client's role checked before any HTTP, then the requests, under a
        deadline for the whole connection."""
        if not self.slots.acquire(blocking=False):
            request.close()  # too many at once: the client retries later
            return
        timer: threading.Timer | None = None
        try:
            request.settimeout(HANDSHAKE_TIMEOUT_S)
            try:
                tls = self.context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                request.close()
                return
            if not _is_city(tls):
                with contextlib.suppress(OSError):
                    tls.close()
                return
            tls.settimeout(IO_TIMEOUT_S)
            timer = threading.Timer(CONNECTION_DEADLINE_S, _shut, (tls,))
            timer.daemon = True
            timer.start()
            self.RequestHandlerClass(tls, client_address, self)  # type: ignore[arg-type]
        finally:
            if timer is not None:
                timer.cancel()
            self.slots.release()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _is_city(tls: ssl.SSLSocket) -> bool:
    """The client's certificate (already verified against the agency CA by
    the handshake) was issued for the city server's role."""
    der = tls.getpeercert(binary_form=True)
    if not der:
        return False
    try:
        return pki.role_of(x509.load_der_x509_certificate(der)) == "city"
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return  # requests are not logged; faults are (_fault)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        if code == 501:
            code, message = 405, f"method {self.command!r} not allowed"
        self._send(code, {"error": message or str(code)})
        self.close_connection = True

    def _send(self, code: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        sent = False
        try:
            if len(self.path) > MAX_TARGET:
                self._send(414, {"error": "request target too long"})
                return
            url = urlsplit(self.path)
            route = next((r for r in ROUTES if r.path == url.path), None)
            if route is None:
                self._send(404, {"error": "no such route"})
                return
            sent = True
            if route is LISTING:
                self._send(200, self.server.shared.listing())
            elif route is INDEX:
                with self.server.shared.index_snapshot() as path:
                    self._file(path, path.stat().st_size)
            else:
                sent = False
                query = parse_qs(url.query, max_num_fields=4)
                rels = query.get("path") or []
                found = self.server.shared.file(rels[0]) if len(rels) == 1 else None
                if found is None:
                    self._send(404, {"error": "no such file is shared"})
                    return
                sent = True
                self._file(*found)
        except (OSError, ssl.SSLError):
            self.close_connection = True  # the client is gone, or too slow
        except Exception as exc:  # answered, logged in one line, served on
            print(
                f"dock share: {self.path[:200]!r}: {type(exc).__name__}: {exc}"[:500],
                file=sys.stderr,
                flush=True,
            )
            self.close_connection = True
            if not sent:
                with contextlib.suppress(OSError, ssl.SSLError):
                    self._send(500, {"error": "the workstation could not answer this request"})

    def _file(self, path: Path, limit: int) -> None:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                self._send(413, {"error": f"larger than the {limit} bytes shared"})
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            buf = memoryview(bytearray(BLOCK))
            left = size
            while left > 0:
                n = f.readinto(buf[: min(BLOCK, left)])
                if not n:
                    break  # shrank while sent: the client sees it cut short
                self.connection.sendall(buf[:n])
                left -= n
            if left:
                self.close_connection = True

    def do_POST(self) -> None:
        self.send_error(405, "read only")

    do_PUT = do_DELETE = do_HEAD = do_PATCH = do_POST


class Sharing:
    """The service on a background thread; `close()` stops it."""

    def __init__(self, shared: Shared, context: ssl.SSLContext, host: str, port: int) -> None:
        self.server = _Server((host, port), shared, context)
        bound, bound_port = self.server.server_address[:2]
        self.address = (bound if isinstance(bound, str) else bound.decode(), int(bound_port))
        self._thread = threading.Thread(target=self.server.serve_forever, name="share", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


def check_own_certificate(cert: Path, ca: Path) -> str:
    """The dock certificate `share` presents: issued by the agency CA, for
    a dock, able to serve TLS. Its SHA-256 fingerprint (what the city
    server enrolls); ShareError otherwise."""
    try:
        own = pki.load_cert(cert)
        authority = pki.load_cert(ca)
    except pki.PkiError as exc:
        raise ShareError(str(exc)) from None
    try:
        own.verify_directly_issued_by(authority)
    except (InvalidSignature, TypeError, ValueError) as exc:  # or a key of another type
        raise ShareError(
            msg(
                "%(cert)s was not issued by the agency CA %(ca)s (%(why)s)",
                cert=str(cert),
                ca=str(ca),
                why=type(exc).__name__,
            )
        ) from None
    if pki.role_of(own) != "dock":
        raise ShareError(msg("%(cert)s is not a dock certificate", cert=str(cert)))
    try:
        usages = own.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None
    if usages is not None and ExtendedKeyUsageOID.SERVER_AUTH not in usages:
        raise ShareError(
            msg(
                "%(cert)s was issued before docks could serve: re-issue it for the same key "
                '(docs/AGENCY.md, "The city server")',
                cert=str(cert),
            )
        )
    from cryptography.hazmat.primitives.serialization import Encoding

    return pki.cert_sha256(own.public_bytes(Encoding.DER))


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ShareError(msg("--listen %(value)r: want HOST:PORT", value=text))
    return host, int(port)


# -- command line ---------------------------------------------------------------


def add_parser(sub: Any, t: Texts = ENGLISH) -> None:
    sh = sub.add_parser(
        "share", help=t.tr("serve this dock's copies, read only, to the city server's pull")
    )
    sh.add_argument("--dock-dir", type=Path, required=True)
    sh.add_argument("--listen", required=True, metavar="HOST:PORT")
    sh.add_argument(
        "--agency-ca",
        type=Path,
        required=True,
        metavar="FILE",
        help=t.tr("the agency CA's certificate"),
    )
    sh.add_argument(
        "--cert",
        type=Path,
        required=True,
        metavar="FILE",
        help=t.tr("this dock's certificate (agency/docks/NAME.crt)"),
    )
    sh.add_argument(
        "--key",
        type=Path,
        required=True,
        metavar="FILE",
        help=t.tr("this dock's key (agency/docks/NAME.key)"),
    )
    add_locale_arguments(sh, t)


def share_command(args: argparse.Namespace, t: Texts = ENGLISH) -> int:
    try:
        if not (args.dock_dir / "dock.sqlite").is_file():
            raise ShareError(
                msg("%(folder)s is not a dock folder (no dock.sqlite)", folder=str(args.dock_dir))
            )
        host, port = parse_listen(args.listen)
        fp = check_own_certificate(args.cert, args.agency_ca)
        try:
            context = pki.server_context(args.cert, args.key, args.agency_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ShareError(msg("TLS: %(error)s", error=str(exc))) from None
        try:
            running = Sharing(Shared(args.dock_dir), context, host, port)
        except OSError as exc:
            raise ShareError(
                msg(
                    "--listen %(value)s: %(error)s",
                    value=args.listen,
                    error=exc.strerror or str(exc),
                )
            ) from None
    except ShareError as exc:
        print(f"dock: {t.say(exc.args[0])}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(
        t.tr(
            "sharing %(folder)s on %(host)s:%(port)s, read only, to the city server; "
            "this dock's certificate sha256 %(fp)s",
            folder=str(args.dock_dir),
            host=running.address[0],
            port=running.address[1],
            fp=fp,
        ),
        flush=True,
    )
    try:
        while not stop.wait(1.0):
            pass
    finally:
        running.close()
    return 0
