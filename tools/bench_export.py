"""Dock export throughput over loopback mutual TLS, in one run, against bare
TLS streams carrying the same bytes; and the time to check a receipt for and
release 1,000 segments.

Per round, with N units (default 4) each holding its share of sealed data:
- bare: N TLS 1.3 sockets at once with the same certificates; each server
  thread sendall()s its unit's files, each client reads and discards.
- service only (the unit side): N docks' GETs at once through each unit's
  export service (HTTP range requests), bytes discarded; logged in before
  the clock starts. The unit is the
  constrained end; the real link is a USB 2.0 gadget (~35 MB/s).
- export: the dock service pulling the N units at once (dock/service.py,
  `run_once`): status, login, chain, every segment written + fsync +
  SHA-256, the safety check (every segment re-read from disk after its pages
  were dropped, chain verified), receipt, release. The units are refilled
  between rounds (not timed).
Ratios are bare time / path time (1.0 = as fast as bare TLS); medians.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import shutil
import socket
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dock.client import Client
from dock.discovery import FixedUnits, UnitAddress
from dock.officer_prints import OperatorsWord
from dock.service import Board, DockService, PreparedLogin, password_dir
from firmware.auth import set_password
from firmware.export_service import ExportHooks, ExportService, RunningService, serve
from link import messages, pki, routes
from link.inventory import Known, active_entry
from sealing.age import Identity
from sealing.keys import fingerprint
from sealing.receipts import apply_receipt, make_receipt, media_entries
from sealing.store import SegmentMeta, Store
from sealing.unit import open_unit, provision_unit

PASSWORD = "bench password"


@dataclass
class BenchUnit:
    store: Store
    running: RunningService

    def files(self) -> list[Path]:
        return sorted(self.store.segments.iterdir())


def _fill(store: Store, total: int, seg: int) -> None:
    block = os.urandom(1 << 20)
    done = 0
    while done < total:
        start = store.clock()
        w = store.open_segment(stamp=start)
        for _ in range(min(seg, total - done) >> 20):
            w.write(block)
        w.close(SegmentMeta(start=start, end=store.clock()))
        done += seg


def _parallel(jobs: list[Any]) -> float:
    """Run the callables at once on their own threads; wall time of all."""
    threads = [threading.Thread(target=j) for j in jobs]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def _bare(units: list[BenchUnit], server_ctx: Any, client_ctx: Any) -> float:
    servers = [socket.create_server(("127.0.0.1", 0)) for _ in units]

    def send(srv: socket.socket, files: list[Path]) -> None:
        conn, _ = srv.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            for f in files:
                with f.open("rb") as fh:
                    while chunk := fh.read(256 * 1024):
                        tls.sendall(chunk)

    def receive(port: int, want: int) -> None:
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            client_ctx.wrap_socket(raw) as tls,
        ):
            got, buf = 0, bytearray(256 * 1024)
            while got < want and (n := tls.recv_into(buf)):
                got += n

    senders = [
        threading.Thread(target=send, args=(srv, u.files()))
        for srv, u in zip(servers, units, strict=True)
    ]
    for t in senders:
        t.start()
    jobs = [
        functools.partial(receive, srv.getsockname()[1], sum(f.stat().st_size for f in u.files()))
        for srv, u in zip(servers, units, strict=True)
    ]
    took = _parallel(jobs)
    for t in senders:
        t.join()
    for srv in servers:
        srv.close()
    return took


def _service_only(units: list[BenchUnit], client_ctx: Any) -> float:
    """The GETs alone: each dock logs in first (scrypt, a fixed cost per
    pull that the export path pays and this one does not), then the clock runs."""
    clients = []
    for u in units:
        client = Client(*u.running.address, client_ctx)
        code, auth = client.json(routes.AUTH, {"password": PASSWORD, "fingerprint_ok": True})
        if code != 200:
            raise RuntimeError(f"benchmark login refused: {auth}")
        client.token = messages.parse_session(auth).token
        clients.append(client)

    def get_all(u: BenchUnit, client: Client) -> None:
        buf = memoryview(bytearray(1 << 20))
        for f in u.files():
            resp = client.request(routes.SEGMENT, f.name)
            while resp.readinto(buf):
                pass

    took = _parallel(
        [functools.partial(get_all, u, c) for u, c in zip(units, clients, strict=True)]
    )
    for c in clients:
        c.close()
    return took


def main(argv: list[str]) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="bench.py export")
    p.add_argument("--mib", type=int, default=1024, help="sealed data in all (default 1 GiB)")
    p.add_argument("--units", type=int, default=4, help="units pulled at once")
    p.add_argument("--segment-mib", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--release-segments", type=int, default=1000)
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        return _run(tmp, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _credentials(tmp: Path, ca: pki.Issued, name: str, key: Ed25519PrivateKey, role: str) -> bytes:
    """NAME.crt and NAME.key in tmp, issued to NAME (a unit's serial); the DER."""
    cert = pki.issue(ca, cn=name, role=role, public_key=key.public_key(), hosts=["127.0.0.1"])
    (tmp / f"{name}.key").write_bytes(pki.pem_key(key))
    (tmp / f"{name}.crt").write_bytes(pki.pem_cert(cert))
    return cert.public_bytes(serialization.Encoding.DER)


def _run(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    dock_key = Ed25519PrivateKey.generate()
    ca = pki.make_ca("qa")
    (tmp / "ca.crt").write_bytes(pki.pem_cert(ca.cert))
    _credentials(tmp, ca, "dock", dock_key, "dock")
    client_ctx = pki.client_context(tmp / "dock.crt", tmp / "dock.key", tmp / "ca.crt")
    entries = []
    share = (args.mib << 20) // args.units
    passwords = tmp / "passwords"
    passwords.mkdir()
    units = []
    for i in range(args.units):
        serial = f"BENCH-{i + 1:04d}"
        path = tmp / serial
        provision_unit(
            path,
            serial=serial,
            officer="B",
            docks=[dock_key.public_key()],
            recipient=Identity.generate().recipient,
        )
        set_password(path, PASSWORD)
        (passwords / serial).write_text(PASSWORD)
        der = _credentials(tmp, ca, serial, Ed25519PrivateKey.generate(), "unit")
        server_ctx = pki.server_context(
            tmp / f"{serial}.crt", tmp / f"{serial}.key", tmp / "ca.crt"
        )
        store = open_unit(path)
        entries.append(active_entry(serial, fingerprint(store.keys.public), der))
        hooks = ExportHooks(
            clock_status=lambda: {"state": "synced", "source": "dock"},
            on_dock_time=lambda t, d: {},
        )
        running = serve(ExportService(store, path, hooks), server_ctx, "127.0.0.1", 0)
        units.append(BenchUnit(store, running))
    bare_s, service_s, export_s = [], [], []
    total = 0
    for r in range(args.rounds):
        for u in units:
            _fill(u.store, share, args.segment_mib << 20)
        total = sum(f.stat().st_size for u in units for f in u.files())
        bare_s.append(_bare(units, server_ctx, client_ctx))
        service_s.append(_service_only(units, client_ctx))
        dock = DockService(
            FixedUnits(tuple(UnitAddress(*u.running.address) for u in units)),
            tmp / f"dock{r}",
            dock_key,
            client_ctx,
            PreparedLogin(password_dir(passwords), OperatorsWord(True)),
            Board(io.StringIO(), threading.Lock()),
            Known(tmp / "inventory", tuple(entries)),
            workers=args.units,
        )
        start = time.perf_counter()
        states = dock.run_once()
        export_s.append(time.perf_counter() - start)
        bad = [f"{s.serial}: {s.detail}" for s in states if not s.ok]
        if bad or len(states) != len(units):
            raise RuntimeError(f"a pull failed in the benchmark: {bad}")
        shutil.rmtree(tmp / f"dock{r}")
    for u in units:
        u.running.close()
    release_s, released = _release(units[0].store, dock_key, args.release_segments)
    for u in units:
        u.store.close()
    b, s, e = (statistics.median(x) for x in (bare_s, service_s, export_s))
    return {
        "part": "export",
        "units": args.units,
        "bytes": total,
        "rounds": args.rounds,
        "bare_tls_MBps_median": round(total / b / 1e6, 1),
        "service_only_MBps_median": round(total / s / 1e6, 1),
        "export_MBps_median": round(total / e / 1e6, 1),
        "ratio": round(b / e, 3),
        "target_ratio": 0.5,
        "service_only_ratio": round(b / s, 3),
        "target_service_only_ratio": 0.8,
        "note": f"{args.units} units at once over loopback, sender and receiver share the "
        "machine's cores; export = the dock service's whole pull (login, fsync, "
        "SHA-256, re-read after dropping the cache, chain check, receipt, release)",
        "release_segments": released,
        "receipt_check_and_release_s": round(release_s, 3),
    }


def _release(store: Store, dock_key: Ed25519PrivateKey, n: int) -> tuple[float, int]:
    """A receipt check and release of n small segments."""
    for _ in range(n):
        w = store.open_segment()
        w.write(b"x" * 1024)
        w.close(SegmentMeta(start=store.clock(), end=store.clock()))
    recs = store.records()
    held = {p.name for p in store.segments.iterdir()}
    small = [e for e in media_entries(recs) if e["file"] in held]
    receipt = make_receipt(
        dock_key,
        serial=store.serial,
        from_seq=0,
        to_seq=recs[-1].seq,
        head=recs[-1].hash,
        segments=small,
        dock_time_us=1,
    )
    start = time.perf_counter()
    done = apply_receipt(store, receipt.to_bytes())
    return time.perf_counter() - start, len(done.files)
