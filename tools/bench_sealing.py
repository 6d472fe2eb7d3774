"""Sealing throughput against the raw primitives, measured in one run.

Sealing path: Store.open_segment -> write in 16 KiB steps -> close, i.e.
age STREAM encryption (ChaCha20-Poly1305), SHA-256 of plaintext and of
ciphertext, real file writes with the 1 s checkpoint + fdatasync policy, the
rename and the signed, MACed, fsynced `segment` record.
Raw: SHA-256(plaintext) + ChaCha20-Poly1305 over the same 64 KiB chunks +
SHA-256(ciphertext), in memory. Rounds alternate; medians are reported.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from sealing.age import CHUNK, Identity
from sealing.store import SegmentMeta, Store
from sealing.unit import open_unit, provision_unit


def _seal(store: Store, data: memoryview, step: int) -> float:
    t = time.perf_counter()
    start = store.clock()
    w = store.open_segment()
    for i in range(0, len(data), step):
        w.write(data[i : i + step])
    w.close(SegmentMeta(start=start, end=store.clock()))
    return time.perf_counter() - t


def _raw(data: memoryview) -> float:
    t = time.perf_counter()
    aead = ChaCha20Poly1305(os.urandom(32))
    pt, ct = hashlib.sha256(), hashlib.sha256()
    nonce = bytes(12)
    for i in range(0, len(data), CHUNK):
        chunk = data[i : i + CHUNK]
        pt.update(chunk)
        ct.update(aead.encrypt(nonce, bytes(chunk), None))
    return time.perf_counter() - t


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="bench.py sealing")
    p.add_argument("--mib", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--dir", type=Path, default=None, help="where to write (default: a tmp dir)")
    args = p.parse_args(argv)
    data = memoryview(os.urandom(args.mib << 20))
    result = {"part": "sealing", "bytes": len(data), "rounds": args.rounds, "target_ratio": 0.8}
    result["disk"] = _run(data, args.rounds, args.dir)
    # The same in RAM (tmpfs) separates the code path's cost from the disk's.
    if args.dir is None and Path("/dev/shm").is_dir():
        result["tmpfs"] = _run(data, args.rounds, Path("/dev/shm"))
    return result


def _run(data: memoryview, rounds: int, where: Path | None) -> dict:
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        unit = Path(tmp) / "unit"
        provision_unit(
            unit,
            serial="BENCH-1",
            officer="BENCH",
            recipient=Identity.generate().recipient,
            docks=[Ed25519PrivateKey.generate().public_key()],
        )
        sealed, raw = [], []
        with open_unit(unit) as store:
            for _ in range(rounds):
                raw.append(_raw(data))
                sealed.append(_seal(store, data, 16 << 10))
                for f in store.segments.iterdir():
                    f.unlink()  # keep the disk footprint to one segment
            t = time.perf_counter()
            n = 200
            for i in range(n):
                store.append("mark", {"i": i})
            append_s = time.perf_counter() - t
    mb = len(data) / 1e6
    s_med, r_med = statistics.median(sealed), statistics.median(raw)
    return {
        "dir": tmp,
        "sealing_MBps_median": round(mb / s_med, 1),
        "raw_hash_aead_MBps_median": round(mb / r_med, 1),
        "ratio": round(r_med / s_med, 3),
        "chain_appends_per_s": round(n / append_s, 1),
        "note": "sealing includes file writes, 1 s checkpoint+fdatasync, rename, signed record",
    }
