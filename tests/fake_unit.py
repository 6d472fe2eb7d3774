"""A hostile unit on loopback: mutual TLS like a unit, answers as a test says.

It starts from an honest unit's material (a `Link`: its TLS certificate, its
status, chain, offered list and segments) and each test replaces what it
wants: another serial, a broken chain, a segment that never ends, a reply
that drips one byte at a time. It records every request, so a test can
check that the dock never logged in or never sent a receipt.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO

from .export_fixtures import Link

# What a route answers: a status and a JSON object or bytes, or a writer that
# sends the whole response itself (headers included) for the unusual ones.
Answer = tuple[int, Any] | Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Script:
    status: dict[str, Any]
    chain: bytes
    offered: dict[str, Any]
    segments: dict[str, bytes]
    receipts: dict[str, bytes] = field(default_factory=dict)
    override: dict[str, Answer] = field(default_factory=dict)  # "GET /v1/chain" -> answer

    @classmethod
    def of(cls, link: Link) -> Script:
        """What the honest unit behind `link` would say now."""
        seg = link.unit.path / "store" / "segments"
        rec = link.unit.path / "store" / "receipts"
        return cls(
            status=link.service.status(),
            chain=link.store.chain_bytes(0),
            offered={"segments": link.service.unexported()},
            segments={p.name: p.read_bytes() for p in seg.iterdir()},
            receipts={p.stem: p.read_bytes() for p in rec.glob("*.json")},
        )


class FakeUnit:
    def __init__(self, link: Link, script: Script) -> None:
        self.script = script
        self.requests: list[str] = []
        tls = link.unit.path / "tls"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls / "unit.crt", tls / "unit.key")
        ctx.load_verify_locations(tls / "ca.crt")
        ctx.verify_mode = ssl.CERT_REQUIRED
        self.server = _Server(("127.0.0.1", 0), _Handler, self, ctx)
        self.address: tuple[str, int] = self.server.server_address[:2]  # type: ignore[assignment]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def saw(self, prefix: str) -> bool:
        return any(r.startswith(prefix) for r in self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: Any, handler: Any, fake: FakeUnit, ctx: ssl.SSLContext) -> None:
        self.fake, self.ctx = fake, ctx
        super().__init__(addr, handler)

    def get_request(self) -> Any:
        sock, addr = super().get_request()
        return self.ctx.wrap_socket(sock, server_side=True), addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # the dock hanging up on a hostile answer is the point


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _answer(self, code: int, obj: Any) -> None:
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _route(self, method: str) -> None:
        fake = self.server.fake
        s = fake.script
        path = self.path.split("?", 1)[0]
        key = f"{method} {path}"
        fake.requests.append(key)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        for prefix, answer in s.override.items():
            if key == prefix or (prefix.endswith("/") and key.startswith(prefix)):
                if callable(answer):
                    answer(self)
                else:
                    self._answer(*answer)
                return
        if key == "GET /v1/status":
            self._answer(200, s.status)
        elif key == "POST /v1/auth":
            self._answer(200, {"token": "ab" * 16, "expires_in_s": 900})
        elif key == "POST /v1/time":
            self._answer(200, {"stepped_us": 0})
        elif key == "GET /v1/chain":
            self._answer(200, s.chain)
        elif key == "GET /v1/offered":
            self._answer(200, s.offered)
        elif path.startswith("/v1/segments/") and path[13:] in s.segments:
            self._answer(200, s.segments[path[13:]])
        elif path.startswith("/v1/receipts/") and path[13:] in s.receipts:
            self._answer(200, s.receipts[path[13:]])
        elif key == "POST /v1/receipt":
            self._answer(409, {"error": "this fake never releases"})
        else:
            self._answer(404, {"error": "no"})

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")


def endless(chunk: bytes, *, pause_s: float = 0.0, length: int | None = None) -> Answer:
    """A body that never ends (no Content-Length; or a false one), sent as
    fast as the dock reads, or `chunk` every `pause_s` (a drip)."""

    def send(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        if length is not None:
            h.send_header("Content-Length", str(length))
        h.send_header("Connection", "close")
        h.end_headers()
        out: BinaryIO = h.wfile  # type: ignore[assignment]
        try:
            while True:
                out.write(chunk)
                out.flush()
                if pause_s:
                    time.sleep(pause_s)
        except OSError:
            return  # the dock hung up

    return send


def files_outside(base: Path, allowed: Path) -> list[Path]:
    """Files under `base` that are not under `allowed` (what a pull wrote
    where it must not)."""
    return [p for p in base.rglob("*") if p.is_file() and allowed not in p.parents]
