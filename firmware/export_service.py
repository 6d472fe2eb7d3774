"""The unit's export service: HTTPS with mutual TLS, spoken to only by an
enrolled dock (R16-R18). Endpoints are documented in docs/EXPORT.md.

Runs in the recorder's process (it shares the open Store, the only writer),
on the configured address only: the USB gadget interface in the field,
loopback in tests. Every request is answered; a bad one gets a 4xx with a
reason and changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import shutil
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from link import messages, routes
from sealing import layout
from sealing.canonical import unb64
from sealing.keys import fingerprint, public_pem
from sealing.receipts import (
    MAX_RECEIPT_BYTES,
    ReceiptRefused,
    apply_receipt,
    media_entries,
    parse_receipt,
)
from sealing.store import Store, StoreError

from .auth import MAX_FAILURES, AuthError, Authoriser

MAX_BODY = MAX_RECEIPT_BYTES
SESSION_S = 15 * 60
HANDSHAKE_TIMEOUT_S = 10.0
BLOCK = 1024 * 1024
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class ExportHooks:
    """What the service needs from the rest of the unit (the daemon wires these)."""

    clock_status: Callable[[], dict[str, str]]
    on_dock_time: Callable[[int, str], dict[str, Any]]
    now: Callable[[], float] = time.time
    # a verified check-out: (assignment, the dock's name) -> the answer. The
    # recorder's own when it runs (it refuses while recording); without one,
    # the service seals it itself
    on_assign: Callable[[messages.Assignment, str], tuple[int, dict[str, Any]]] | None = None


@dataclass
class _Session:
    dock: str
    expires: float


@dataclass
class ExportService:
    store: Store
    unit_dir: Path
    hooks: ExportHooks
    sessions: dict[str, _Session] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.auth = Authoriser(self.unit_dir)
        self._lock = threading.Lock()

    # -- the parts each endpoint needs --------------------------------------

    def status(self) -> dict[str, Any]:
        unexported = self.unexported()
        now_us = int(self.hooks.now() * 1e6)
        oldest = min((e["wall_us"] for e in unexported), default=None)
        return {
            "serial": self.store.serial,
            "officer": self.store.officer,
            "device_key_pem": public_pem(self.store.keys.public).decode(),
            "clock": self.hooks.clock_status(),
            "head_seq": self.store.head.seq,
            "free_bytes": shutil.disk_usage(self.store.root).free,
            "unexported": {
                "count": len(unexported),
                "oldest_age_s": None if oldest is None else max(0, (now_us - oldest) // 1_000_000),
            },
        }

    def unexported(self) -> list[dict[str, Any]]:
        """Sealed media still on the unit (offered to the dock)."""
        out = []
        records = {r.seq: r for r in self.store.records()}
        for e in media_entries(list(records.values())):
            if (self.store.segments / e["file"]).exists():
                out.append({**e, "wall_us": records[e["seq"]].stamp.wall_us})
        return out

    def login(
        self, dock: str, password: str, fingerprint_ok: bool, reader: str = ""
    ) -> tuple[int, dict]:
        with self._lock:
            try:
                v = self.auth.attempt(password, fingerprint_ok)  # on the monotonic clock
            except AuthError as exc:
                self.store.append("auth", {"dock": dock, "result": "error", "reason": str(exc)})
                return 503, {"error": str(exc)}
            self.store.append(
                "auth",
                {
                    "dock": dock,
                    "result": v.result,
                    "failures": v.failures,
                    "fingerprint_ok": fingerprint_ok,
                    # whose fingerprint verdict: a reader's identity, or "none"
                    # (the dock operator's word), or "" (the dock did not say)
                    "reader": reader,
                },
            )
            if v.ok:
                token = secrets.token_hex(16)
                self.sessions[token] = _Session(dock, time.monotonic() + SESSION_S)
                return 200, {"token": token, "expires_in_s": SESSION_S}
            if v.result == "locked" or v.retry_after_s:
                return 429, {
                    "error": "export locked after repeated failures",
                    "retry_after_s": round(v.retry_after_s),
                }
            return 401, {
                "error": f"not authorised: {v.result}",
                "result": v.result,
                "failures": v.failures,
                # the dock may ask the officer again, this many times, without re-docking
                "attempts_left": max(0, MAX_FAILURES - v.failures),
            }

    def assign(self, req: Any, dock: str) -> tuple[int, dict[str, Any]]:
        """A check-out: the assignment must name this unit and carry a valid
        signature by an enrolled dock's key; a refusal is recorded."""
        try:
            a = messages.parse_assignment(req)
        except messages.LinkError as exc:
            return 400, {"error": f"want an assignment: {exc}"}
        why = None
        key = self.store.keys.docks.get(a.dock_key)
        if a.serial != self.store.serial:
            why = f"the assignment is for {a.serial}, this unit is {self.store.serial}"
        elif key is None:
            why = "the assignment is signed by a key no enrolled dock has"
        else:
            try:
                key.verify(unb64(a.signature), a.signed_bytes())
            except (InvalidSignature, ValueError):
                why = "the assignment's signature does not match it"
        if why is not None:
            with self._lock:
                self.store.append("fault", {"what": "assignment", "dock": dock, "reason": why})
            return 403, {"error": why}
        if self.hooks.on_assign is not None:
            return self.hooks.on_assign(a, dock)
        with self._lock:
            rec = self.store.set_officer(a.officer, assignment_body(a, dock))
        return 200, {"seq": rec.seq, "officer": a.officer}

    def session(self, token: str | None, dock: str) -> bool:
        s = self.sessions.get(token or "")
        return s is not None and s.dock == dock and time.monotonic() < s.expires


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, addr: tuple[str, int], service: ExportService, context: ssl.SSLContext
    ) -> None:
        self.service = service
        self.context = context
        if ":" in addr[0]:
            # "::" on a unit: the gadget link's IPv4 address and its IPv6
            # link-local one, whichever NetworkManager has brought up
            self.address_family = socket.AF_INET6
        super().__init__(addr, _Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # HTTPServer.server_bind would look the address up in DNS (getfqdn);
        # a unit has no DNS, and its name is its certificate
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "bodycam", self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A dock that drops the link mid-response is routine (cut cable, resume
        # later); the next request is answered as usual.
        return

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs in the request's thread, with a timeout, so a
        # stalled client cannot hold up the accept loop.
        request.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            request.close()
            return
        tls.settimeout(60)
        self.RequestHandlerClass(tls, client_address, self)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # HTTP/0.9 answers have no status line; a dock speaks 1.1, so every
    # answer, even to garbage, carries one.
    default_request_version = "HTTP/1.1"

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.1"
            self.send_error(400, "HTTP/0.9 is not spoken here")
            return False
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # The stdlib says 501 for a method it has no handler for; for the dock
        # that is a request error (405), not a server fault.
        if code == 501:
            code, message = 405, f"method {self.command!r} not allowed"
        self.close_connection = True
        super().send_error(code, message, explain)

    def log_message(self, format: str, *args: Any) -> None:
        return  # the daemon logs requests through the chain where they matter

    # -- helpers ------------------------------------------------------------

    def _send(
        self,
        code: int,
        obj: dict[str, Any] | bytes,
        ctype: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _dock(self) -> str | None:
        der = self.connection.getpeercert(binary_form=True)  # type: ignore[attr-defined]
        if not der:
            return None
        key = x509.load_der_x509_certificate(der).public_key()
        try:
            fp = fingerprint(key)  # type: ignore[arg-type]
        except (TypeError, AttributeError):
            return None
        return fp if fp in self.server.service.store.keys.docks else None

    def _body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        # ASCII digits only: "²".isdigit() is true, and int("²") raises
        if length is None or not (length.isascii() and length.isdigit()):
            # where the body ends is unknown: take what came with the request (so
            # closing does not reset the connection and lose the answer), answer,
            # and close
            self.connection.settimeout(0.2)
            with contextlib.suppress(TimeoutError, OSError):  # nothing more came: done
                while self.rfile.read1(65536):
                    continue
            self._send(411, {"error": "Content-Length required"})
            self.close_connection = True
            return None
        n = int(length)
        if n > MAX_BODY:
            self._send(413, {"error": f"body larger than {MAX_BODY} bytes"})
            self.close_connection = True
            return None
        return self.rfile.read(n)

    def _json(self) -> dict[str, Any] | None:
        raw = self._body()
        if raw is None:
            return None
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            self._send(400, {"error": "body is not JSON"})
            return None
        except RecursionError:
            self._send(400, {"error": "body is nested too deeply"})
            return None
        if not isinstance(obj, dict):
            self._send(400, {"error": "body must be a JSON object"})
            return None
        return obj

    def _authorised(self, dock: str) -> bool:
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        if not self.server.service.session(token, dock):
            self._send(401, {"error": f"log in first ({routes.AUTH.method} {routes.AUTH.path})"})
            return False
        return True

    # -- routing (link/routes.py is the table) --------------------------------

    def _route(self, method: str) -> None:
        try:
            self._dispatch(method)
        except Exception as exc:
            # A fault of ours must still answer the dock with a status line and
            # leave a trace on the unit; the connection is not reused.
            self.close_connection = True
            with contextlib.suppress(OSError, StoreError):
                self.server.service.store.append(
                    "fault", {"what": "export", "reason": f"{type(exc).__name__}: {exc}"[:200]}
                )
            with contextlib.suppress(OSError):
                self._send(500, {"error": "the unit could not answer this request (recorded)"})

    def _dispatch(self, method: str) -> None:
        svc = self.server.service
        dock = self._dock()
        if dock is None:
            self._send(403, {"error": "client certificate is not an enrolled dock"})
            self.close_connection = True
            return
        found = routes.match(method, self.path)
        route = found.route
        if route is None:
            what = self.path.split("?", 1)[0][:100]
            if found.status == 405:
                self._send(405, {"error": f"{method} not allowed on {what!r}"})
            else:
                self._send(404, {"error": f"no such endpoint {what!r}"})
            return
        if route.login and not self._authorised(dock):
            return
        if route is routes.STATUS:
            self._send(200, svc.status())
        elif route is routes.AUTH:
            req = self._json()
            if req is None:
                return
            try:
                login = messages.parse_login(req)
            except messages.LinkError as exc:
                self._send(400, {"error": f"want {{password, fingerprint_ok}}: {exc}"})
                return
            code, obj = svc.login(dock, login.password, login.fingerprint_ok, login.reader)
            self._send(code, obj)
        elif route is routes.TIME:
            req = self._json()
            if req is None:
                return
            try:
                t = messages.parse_dock_time(req)
            except messages.LinkError as exc:
                self._send(400, {"error": f"want {{dock_time_us}}: {exc}"})
                return
            answer = svc.hooks.on_dock_time(t, dock)
            self._send(400 if "error" in answer else 200, answer)
        elif route is routes.ASSIGN:
            req = self._json()
            if req is None:
                return
            self._send(*svc.assign(req, dock))
        elif route is routes.OFFERED:
            self._send(200, {"segments": svc.unexported()})
        elif route is routes.CHAIN:
            frm = parse_qs(found.query).get("from", ["0"])[0]
            # ASCII digits only: "²".isdigit() is true, and int("²") raises
            if not (frm.isascii() and frm.isdigit()) or len(frm) > 16:
                self._send(400, {"error": "from must be a non-negative integer"})
                return
            self._send(200, svc.store.chain_bytes(int(frm)), "application/x-ndjson")
        elif route is routes.SEGMENT:
            self._segment(found.item, dock)
        elif route is routes.RECEIPT:
            self._receipt(found.item)
        elif route is routes.RELEASE:
            self._release(dock)

    def _release(self, dock: str) -> None:
        svc = self.server.service
        raw = self._body()
        if raw is None:
            return
        try:
            signer = parse_receipt(raw).dock
            if signer != dock:
                raise ReceiptRefused(
                    f"signed by dock {signer[:16]}, but dock {dock[:16]} is logged in"
                )
            done = apply_receipt(svc.store, raw)
        except ReceiptRefused as exc:
            svc.store.append("fault", {"what": "receipt_refused", "dock": dock, "reason": str(exc)})
            self._send(409, {"error": f"receipt refused, nothing released: {exc}"})
            return
        self._send(
            200,
            {
                "receipt": done.receipt,
                "released": done.files,
                "bytes_freed": done.bytes_freed,
                "already_applied": done.already_applied,
            },
        )

    def _receipt(self, rid: str) -> None:
        """A receipt the chain cites, as kept: a dock that did not sign it
        needs it to verify its copy (docs/FORMAT.md section 8.4)."""
        if not messages.HEX64.fullmatch(rid):
            self._send(400, {"error": "a receipt id is 64 lowercase hex digits"})
            return
        path = self.server.service.store.receipts / f"{rid}.json"
        try:
            data = path.read_bytes() if path.is_file() and not path.is_symlink() else None
        except OSError:
            data = None
        if data is None:
            self._send(404, {"error": f"no receipt {rid[:16]} on this unit"})
            return
        self._send(200, data, "application/json")

    def _segment(self, name: str, dock: str) -> None:
        svc = self.server.service
        if layout.parse_name(name) is None or name.endswith(layout.PARTIAL):
            self._send(400, {"error": "not a segment file name"})
            return
        offered = {e["file"] for e in svc.unexported()}
        if name not in offered:
            self._send(
                404, {"error": f"{name} is not offered (unknown, released, or still being written)"}
            )
            return
        path = svc.store.segments / name
        size = path.stat().st_size
        start, end = 0, size - 1
        rng = self.headers.get("Range")
        if rng is not None:
            m = _RANGE.match(rng.strip())
            if not m or int(m[1]) >= max(size, 1) or (m[2] and int(m[2]) < int(m[1])):
                self._send(
                    416,
                    {"error": f"unsatisfiable range {rng[:60]!r} for {size} bytes"},
                    headers={"Content-Range": f"bytes */{size}"},
                )
                return
            start = int(m[1])
            end = min(int(m[2]), size - 1) if m[2] else size - 1
        self.send_response(206 if rng is not None else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        if rng is not None:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        buf = memoryview(bytearray(BLOCK))  # one buffer, reused: no per-block allocation
        with path.open("rb") as f:
            f.seek(start)
            left = end - start + 1
            while left > 0:
                n = f.readinto(buf[: min(BLOCK, left)])
                if not n:
                    break
                self.connection.sendall(buf[:n])
                left -= n
        if end == size - 1 and left == 0:
            # what was sent, not the whole file: a resumed pull sends only its tail
            svc.store.append(
                "export",
                {"file": name, "dock": dock, "from": start, "bytes": end - start + 1, "size": size},
            )

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")


class RunningService:
    """The service on a background thread; `close()` stops it."""

    def __init__(
        self, service: ExportService, context: ssl.SSLContext, host: str, port: int
    ) -> None:
        self.server = _Server((host, port), service, context)
        bound, port = self.server.server_address[:2]
        self.address: tuple[str, int] = (
            bound if isinstance(bound, str) else bound.decode(),
            int(port),
        )
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="export", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


def serve(service: ExportService, context: ssl.SSLContext, host: str, port: int) -> RunningService:
    return RunningService(service, context, host, port)


def assignment_body(a: messages.Assignment, dock: str) -> dict[str, Any]:
    """What the `officer` record keeps of a check-out: who approved it, which
    dock, and the dock's signature, so the chain itself proves it."""
    return {
        "cause": "checkout",
        "approver": a.approver,
        "dock": dock,
        "dock_key": a.dock_key,
        "at_us": a.at_us,
        "signature": a.signature,
    }
