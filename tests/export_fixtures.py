"""A unit with its export service running on loopback mTLS, and a dock for it."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding

from dock.client import Client
from dock.pull import PullResult, pull
from firmware.auth import set_password
from firmware.export_service import ExportHooks, ExportService, RunningService, serve
from link import pki
from link.inventory import Inventory, cert_sha256, read_known
from sealing.keys import fingerprint
from sealing.store import Store

from .conftest import Agency, Unit, make_unit, write_segment

PASSWORD = "correct horse 7"


@dataclass
class Link:
    unit: Unit
    store: Store
    service: ExportService
    running: RunningService
    dir: Path
    ca: pki.Issued
    tls_der: bytes
    clock_steps: list[int] = field(default_factory=list)

    @property
    def inventory(self) -> Path:
        """The QA inventory listing this unit (start_link writes it, as QA does)."""
        return self.dir / "inventory.sqlite"

    def inventory_row(self, status: str = "active") -> dict[str, str]:
        return {
            "serial": self.store.serial,
            "officer": self.store.officer,
            "profile": "qa",
            "device_key": fingerprint(self.store.keys.public),
            "tls_cert_sha256": cert_sha256(self.tls_der),
            "firmware": "test",
            "date": "2026-11-01T00:00:00+00:00",
        }

    def files(self) -> set[str]:
        return {p.name for p in (self.unit.path / "store" / "segments").iterdir()}

    def client(self, name: str = "dock1") -> Client:
        d = self.dir / "docks" / name
        ctx = pki.client_context(d / "dock.crt", d / "dock.key", self.dir / "ca.crt")
        host, port = self.running.address
        return Client(host, port, ctx)

    def raw(self, name: str = "dock1") -> RawDock:
        """A dock that sends whatever a test says: methods, paths, bodies."""
        d = self.dir / "docks" / name
        ctx = pki.client_context(d / "dock.crt", d / "dock.key", self.dir / "ca.crt")
        host, port = self.running.address
        return RawDock(host, port, ctx)

    def pull(self, dock_dir: Path | None = None, name: str = "dock1", **kw: Any) -> PullResult:
        client = self.client(name)
        key = self.unit.agency.dock if name == "dock1" else self.unit.agency.other_dock
        try:
            return pull(
                client,
                dock_dir or self.dir / "dockstore",
                key,
                inventory=kw.pop("inventory", None) or read_known(self.inventory),
                password=kw.pop("password", PASSWORD),
                fingerprint_ok=kw.pop("fingerprint_ok", True),
                progress=lambda *_: None,
                **kw,
            )
        finally:
            client.close()

    def close(self) -> None:
        self.running.close()
        self.store.close()


@dataclass
class RawDock:
    """An HTTPS client with the dock's credentials and no rules of its own:
    how tests send a unit what no honest dock would."""

    host: str
    port: int
    context: ssl.SSLContext
    token: str | None = None
    _conn: http.client.HTTPSConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> http.client.HTTPResponse:
        if self._conn is None:
            self._conn = http.client.HTTPSConnection(
                self.host, self.port, context=self.context, timeout=30
            )
        h = dict(headers or {})
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        try:
            self._conn.request(method, path, body=body, headers=h)
            return self._conn.getresponse()
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def json(self, method: str, path: str, obj: Any = None) -> tuple[int, Any]:
        body = json.dumps(obj).encode() if obj is not None else None
        resp = self.request(method, path, body, {"Content-Type": "application/json"})
        data = resp.read()
        try:
            return resp.status, json.loads(data)
        except ValueError:
            return resp.status, {"error": data[:200].decode(errors="replace")}

    def login(self) -> None:
        code, auth = self.json("POST", "/v1/auth", {"password": PASSWORD, "fingerprint_ok": True})
        assert code == 200, auth
        self.token = auth["token"]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def write_dock_creds(base: Path, ca: pki.Issued, key: Ed25519PrivateKey, name: str) -> None:
    d = base / "docks" / name
    d.mkdir(parents=True, exist_ok=True)
    cert = pki.issue(ca, cn=name, role="dock", public_key=key.public_key())
    (d / "dock.crt").write_bytes(pki.pem_cert(cert))
    (d / "dock.key").write_bytes(pki.pem_key(key))


def start_link(
    base: Path,
    segments: int = 3,
    size: int = 300_000,
    *,
    serial: str = "BC-TEST-0001",
    agency: tuple[Agency, pki.Issued] | None = None,
    listen: str = "127.0.0.1",
    clock: Any = None,
    recordings: int = 0,
) -> Link:
    """A unit serving on loopback; units given the same `agency` (its
    identity and docks, and its CA) can be pulled by the same dock.
    `clock`: the store's (sealing.store.Clock; the system's by default);
    `recordings`: that many recordings (record_start, `segments` files,
    record_stop) instead of bare segments."""
    unit = make_unit(base / "unit", serial, agency[0] if agency else None)
    set_password(unit.path, PASSWORD)
    ca = agency[1] if agency else pki.make_ca("qa")
    (base / "ca.crt").write_bytes(pki.pem_cert(ca.cert))
    write_dock_creds(base, ca, unit.agency.dock, "dock1")
    write_dock_creds(base, ca, unit.agency.other_dock, "dock2")
    tls_key = Ed25519PrivateKey.generate()
    tls = unit.path / "tls"
    tls.mkdir()
    (tls / "unit.key").write_bytes(pki.pem_key(tls_key))
    cert = pki.issue(
        ca, cn=serial, role="unit", public_key=tls_key.public_key(), hosts=["127.0.0.1"]
    )
    (tls / "unit.crt").write_bytes(pki.pem_cert(cert))
    (tls / "ca.crt").write_bytes(pki.pem_cert(ca.cert))
    store = unit.open(boot_body={"cause": "export test"}, **({"clock": clock} if clock else {}))
    for _ in range(recordings or 1):
        if recordings:
            store.append("record_start", {"cause": "button"})
        for _ in range(segments):
            write_segment(store, os.urandom(size), step=32_768)
        if recordings:
            store.append("record_stop", {"cause": "button"})
    steps: list[int] = []

    def on_dock_time(t_us: int, dock_fp: str) -> dict[str, Any]:
        steps.append(t_us)
        before = time.time_ns() // 1000
        store.append(
            "clock",
            {
                "before_us": before,
                "after_us": t_us,
                "source": "dock",
                "dock": dock_fp,
                "state": "synced",
            },
        )
        return {"stepped_us": t_us - before}

    service = ExportService(
        store,
        unit.path,
        ExportHooks(
            clock_status=lambda: {"state": "synced", "source": "dock"}, on_dock_time=on_dock_time
        ),
    )
    ctx = pki.server_context(tls / "unit.crt", tls / "unit.key", tls / "ca.crt")
    running = serve(service, ctx, listen, 0)
    link = Link(unit, store, service, running, base, ca, cert.public_bytes(Encoding.DER), steps)
    write_inventory(base, [link])
    return link


def write_inventory(agency: Path, links: list[Link]) -> Path:
    """agency/inventory.sqlite listing the units, written by QA's own code."""
    agency.mkdir(parents=True, exist_ok=True)
    inv = Inventory(agency)
    try:
        for link in links:
            inv.add(link.inventory_row())
    finally:
        inv.close()
    return agency / "inventory.sqlite"


class CuttingProxy:
    """A TCP proxy on loopback that drops the link once, after `cut_after`
    bytes have gone from the unit to the dock: a real cut mid-transfer."""

    def __init__(self, target: tuple[str, int], cut_after: int) -> None:
        import socket
        import threading

        self.target = target
        self.cut_after = cut_after
        self.down_bytes = 0
        self.cuts = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = self.sock.getsockname()[:2]
        self._threading = threading
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b, down in ((client, upstream, False), (upstream, client, True)):
                self._threading.Thread(
                    target=self._pump, args=(a, b, down, client, upstream), daemon=True
                ).start()

    def _pump(self, src: Any, dst: Any, down: bool, *both: Any) -> None:
        try:
            while data := src.recv(65536):
                if down:
                    if self.cuts == 0 and self.down_bytes + len(data) > self.cut_after:
                        self.cuts += 1
                        half = data[: len(data) // 2]
                        dst.sendall(half)
                        self.down_bytes += len(half)  # what reached the dock, not what was read
                        raise OSError("cut")
                    self.down_bytes += len(data)
                dst.sendall(data)
        except OSError:
            pass
        import socket

        for s in both:  # shutdown, not just close: wakes the other pump, sends FIN
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
