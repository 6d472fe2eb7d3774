"""The agency store's throughput (issue 27), in one run, on one SeaweedFS
cluster started here (dock/seaweed.py: a master, three volume servers
keeping two copies, a filer, the S3 gateway, on loopback):

- sync: `bodycam-dock sync --to s3://` (dock/sync.py's `sync`, in process:
  the command without its interpreter start) of a dock folder holding one
  unit's sealed segments into a new bucket with Object Lock: hashing the
  dock's copy, PUT with the SHA-256 checksum and the lock, GET read-back,
  index rows (a SQLite agency index here; PostgreSQL in production);
- city-pull: the same dock served by `share` (in process, mutual TLS on
  loopback) and pulled by dock/city.py's `pull_workstation` into a new
  bucket: the same sync, with each segment first downloaded over TLS;
- direct: the same boto3 client PUTting the same files to a new bucket
  with the same checksum and lock, nothing else.

Rounds alternate; medians of each; ratio = direct time / path time (1.0:
as fast as the bare upload; the target is >= 0.8). The load average is
reported at the start and the end. `--short`: a few MB, one round each,
for the smoke test (it must run and report; its timings mean nothing).

The unit is made and pulled into the dock folder as `bench.py export` does
(bench_export.Agency: the unit in its own process, the dock service's pull).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench_export import Agency
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding

from dock import city as dock_city
from dock import share as dock_share
from dock import sync as dock_sync
from dock.index import Index
from dock.object_store import AgencyBucket, Lock, StoreConfig
from dock.seaweed import Cluster, Identity, start_cluster
from link import pki

ADMIN = ("Admin",)
SERIAL = "BC-BENCH-0001"


def _cluster(base: Path) -> Cluster:
    ids = [Identity("admin", "AKADMIN000000000000", secrets.token_hex(20), ADMIN)]
    return start_cluster(base / "seaweed", ids, volumes=3, replication="001")


def _bucket(cluster: Cluster, name: str) -> AgencyBucket:
    i = cluster.identity("admin")
    b = AgencyBucket.connect(StoreConfig(cluster.endpoint, name, i.access_key, i.secret_key))
    b.ensure_bucket()
    return b


def _dock(base: Path, total: int, seg: int) -> tuple[Path, list[tuple[Path, str]], pki.Issued]:
    """A dock folder holding one unit's pull (the unit in its own process, as
    `bench.py export` runs it): (folder, [(segment, sha256)], the agency CA)."""
    agency = Agency.make(base)
    unit = agency.start(agency.provision(SERIAL))
    try:
        unit.ask({"fill": total, "segment": seg})
        agency.pull([unit], base / "dock")
    finally:
        unit.stop()
    idx = Index.open(base / "dock" / "dock.sqlite", dock=None)
    try:
        files = [(base / "dock" / str(r["path"]), str(r["ct_sha256"]))
                 for r in idx.held(SERIAL).values()]  # fmt: skip
    finally:
        idx.close()
    return base / "dock", files, agency.ca


def _direct(b: AgencyBucket, files: list[tuple[Path, str]]) -> float:
    lock = Lock(datetime.now(UTC) + timedelta(days=1))
    t = time.perf_counter()
    for path, sha in files:
        with path.open("rb") as f:
            b._put(f"direct/{path.name}", f, sha, lock)
    return time.perf_counter() - t


def _sync(b: AgencyBucket, dock: Path, index: Path) -> float:
    t = time.perf_counter()
    r = dock_sync.sync(dock, b, index, "bench")
    took = time.perf_counter() - t
    assert r.ok and r.pushed, r.refused
    return took


def _city(b: AgencyBucket, ws: dock_city.Workstation, ctx: Any, index: Path, stage: Path) -> float:
    t = time.perf_counter()
    r = dock_city.pull_workstation(ws, ctx, b, str(index), stage)
    took = time.perf_counter() - t
    assert r.ok and r.pushed, r.refused
    return took


def _share(
    base: Path, dock: Path, ca: pki.Issued
) -> tuple[dock_share.Sharing, Any, dock_city.Workstation]:
    certs = base / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_bytes(pki.pem_cert(ca.cert))
    pairs = {}
    for name, role in (("dock", "dock"), ("city", "city")):
        key = Ed25519PrivateKey.generate()
        cert = pki.issue(ca, cn=name, role=role, public_key=key.public_key())
        (certs / f"{name}.crt").write_bytes(pki.pem_cert(cert))
        (certs / f"{name}.key").write_bytes(pki.pem_key(key))
        pairs[name] = cert
    server_ctx = pki.server_context(certs / "dock.crt", certs / "dock.key", certs / "ca.crt")
    running = dock_share.Sharing(dock_share.Shared(dock), server_ctx, "127.0.0.1", 0)
    client_ctx = pki.client_context(certs / "city.crt", certs / "city.key", certs / "ca.crt")
    fp = pki.cert_sha256(pairs["dock"].public_bytes(Encoding.DER))
    return running, client_ctx, dock_city.Workstation("bench-ws", "127.0.0.1",
                                                       running.address[1], fp)  # fmt: skip


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="bench.py agency")
    p.add_argument("--mib", type=int, default=96, help="the unit's sealed data (default 96)")
    p.add_argument("--segment-mib", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--short", action="store_true", help="a smoke test: 4 MiB, one round")
    args = p.parse_args(argv)
    mib, seg_mib, rounds = (4, 1, 1) if args.short else (args.mib, args.segment_mib, args.rounds)
    base = Path(tempfile.mkdtemp(prefix="bodycam-bench-agency-"))
    load_start = os.getloadavg()
    cluster = _cluster(base)
    running = None
    try:
        dock, files, ca = _dock(base, mib << 20, seg_mib << 20)
        nbytes = sum(path.stat().st_size for path, _ in files)
        assert all(hashlib.sha256(path.read_bytes()).hexdigest() == h for path, h in files[:1])
        running, ctx, ws = _share(base, dock, ca)
        times: dict[str, list[float]] = {"direct": [], "sync": [], "city_pull": []}
        for n in range(rounds):
            times["direct"].append(_direct(_bucket(cluster, f"bench-direct-{n}"), files))
            times["sync"].append(
                _sync(_bucket(cluster, f"bench-sync-{n}"), dock, base / f"sync-{n}.sqlite")
            )
            times["city_pull"].append(
                _city(
                    _bucket(cluster, f"bench-city-{n}"),
                    ws,
                    ctx,
                    base / f"city-{n}.sqlite",
                    base / "staging",
                )  # fmt: skip
            )
        med = {k: statistics.median(v) for k, v in times.items()}
        mbs = {k: round(nbytes / v / 1e6, 1) for k, v in med.items()}
        return {
            "part": "agency",
            "short": args.short,
            "bytes": nbytes,
            "segments": len(files),
            "rounds": rounds,
            "cluster": "SeaweedFS: 1 master, 3 volume servers (replication 001), filer, S3",
            "seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
            "MB_s": mbs,
            "ratio_sync": round(med["direct"] / med["sync"], 3),
            "ratio_city_pull": round(med["direct"] / med["city_pull"], 3),
            "target_ratio": 0.8,
            "loadavg_start": [round(x, 2) for x in load_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "cpus": os.cpu_count(),
        }
    finally:
        if running is not None:
            running.close()
        cluster.close()
        shutil.rmtree(base, ignore_errors=True)
