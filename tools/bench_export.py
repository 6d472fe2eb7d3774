"""Dock pull throughput over loopback mutual TLS against a bare TLS socket
sending the same bytes, in one run; and the time to check a receipt for and
release 1,000 segments.

Export path (the ratio): the reference dock's `_download` for every segment (HTTP range
request through the unit's export service, written to a .part file, fsync,
SHA-256 checked against the chain, rename). Bare path: a TLS 1.3 socket with
the same certificates; the server sendall()s each file, the client reads and
discards. Rounds alternate; medians reported.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dock import Client, _download

from firmware import pki
from firmware.auth import set_password
from firmware.export_service import ExportHooks, ExportService, serve
from sealing.age import Identity
from sealing.receipts import apply_receipt, make_receipt, media_entries
from sealing.store import SegmentMeta, Store
from sealing.unit import open_unit, provision_unit


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


def _bare(files: list[Path], server_ctx, client_ctx) -> float:  # noqa: ANN001
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def send() -> None:
        conn, _ = srv.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            for f in files:
                with f.open("rb") as fh:
                    while chunk := fh.read(256 * 1024):
                        tls.sendall(chunk)

    t = threading.Thread(target=send)
    t.start()
    want = sum(f.stat().st_size for f in files)
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as raw, client_ctx.wrap_socket(raw) as tls:
        got = 0
        buf = bytearray(256 * 1024)
        while got < want:
            n = tls.recv_into(buf)
            if not n:
                break
            got += n
    elapsed = time.perf_counter() - start
    t.join()
    srv.close()
    return elapsed


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="bench.py export")
    p.add_argument("--mib", type=int, default=1024, help="sealed data to pull (default 1 GiB)")
    p.add_argument("--segment-mib", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--release-segments", type=int, default=1000)
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        return _run(tmp, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(tmp: Path, args: argparse.Namespace) -> dict:
    dock_key = Ed25519PrivateKey.generate()
    unit = tmp / "unit"
    provision_unit(
        unit,
        serial="BENCH-EXPORT",
        officer="B",
        docks=[dock_key.public_key()],
        recipient=Identity.generate().recipient,
    )
    set_password(unit, "pw")
    ca = pki.make_ca("qa")
    for name, key, role in (
        ("unit", Ed25519PrivateKey.generate(), "unit"),
        ("dock", dock_key, "dock"),
    ):
        (tmp / f"{name}.key").write_bytes(pki.pem_key(key))
        (tmp / f"{name}.crt").write_bytes(
            pki.pem_cert(
                pki.issue(ca, cn=name, role=role, public_key=key.public_key(), hosts=["127.0.0.1"])
            )
        )
    (tmp / "ca.crt").write_bytes(pki.pem_cert(ca.cert))
    server_ctx = pki.server_context(tmp / "unit.crt", tmp / "unit.key", tmp / "ca.crt")
    client_ctx = pki.client_context(tmp / "dock.crt", tmp / "dock.key", tmp / "ca.crt")
    store = open_unit(unit)
    _fill(store, args.mib << 20, args.segment_mib << 20)
    service = ExportService(
        store,
        unit,
        ExportHooks(
            clock_status=lambda: {"state": "synced", "source": "dock"}, on_dock_time=lambda t, d: {}
        ),
    )
    running = serve(service, server_ctx, "127.0.0.1", 0)
    client = Client(*running.address, client_ctx)
    code, auth = client.json("POST", "/v1/auth", {"password": "pw", "fingerprint_ok": True})
    client.token = auth["token"]
    entries = {e["file"]: e for e in media_entries(store.records())}
    files = sorted(store.segments / f for f in entries)
    total = sum(f.stat().st_size for f in files)
    export_s, bare_s, http_s = [], [], []
    buf = memoryview(bytearray(1 << 20))
    for r in range(args.rounds):
        bare_s.append(_bare(files, server_ctx, client_ctx))
        start = time.perf_counter()  # the service over HTTP, bytes discarded
        for f in files:
            resp = client.request("GET", f"/v1/segments/{f.name}")
            while resp.readinto(buf):
                pass
        http_s.append(time.perf_counter() - start)
        dest = tmp / f"dock{r}"
        start = time.perf_counter()
        for f in files:
            _download(
                client,
                f.name,
                dest / f.name,
                entries[f.name]["ct_sha256"],
                f.stat().st_size,
                lambda *_: None,
            )
        export_s.append(time.perf_counter() - start)
        shutil.rmtree(dest)
    client.close()
    running.close()
    # receipt check + release of N small segments
    for f in files:
        f.unlink()  # make room; these records stay (release skips absent files)
    for _ in range(args.release_segments):
        w = store.open_segment()
        w.write(b"x" * 1024)
        w.close(SegmentMeta(start=store.clock(), end=store.clock()))
    recs = store.records()
    small = [e for e in media_entries(recs) if e["file"] not in entries]
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
    release_s = time.perf_counter() - start
    store.close()
    e_med, b_med = statistics.median(export_s), statistics.median(bare_s)
    h_med = statistics.median(http_s)
    return {
        "part": "export",
        "bytes": total,
        "segments": len(files),
        "rounds": args.rounds,
        "export_MBps_median": round(total / e_med / 1e6, 1),
        "bare_tls_MBps_median": round(total / b_med / 1e6, 1),
        "ratio": round(b_med / e_med, 3),
        "target_ratio": 0.5,
        "service_only_MBps_median": round(total / h_med / 1e6, 1),
        "service_only_ratio": round(b_med / h_med, 3),
        "note": "export = range GET + write + fsync + SHA-256 at the dock; service_only = "
        "the same GETs with the bytes discarded; sender and receiver share 2 cores",
        "release_segments": len(done.files),
        "receipt_check_and_release_s": round(release_s, 3),
    }
