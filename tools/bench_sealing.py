"""Sealing and verification throughput against the primitives, in one run.

`bench.py sealing` measures sealing; `bench.py sealing --verify` measures
`bodycam verify --identity` (see `verify_main` below).

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
import re
import resource
import statistics
import subprocess
import sys
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
    # --verify takes its own --mib and --rounds: this parser must not take them first
    mode = argparse.ArgumentParser(prog="bench.py sealing", add_help=False)
    mode.add_argument("--dir", type=Path, default=None, help="where to write (default: a tmp dir)")
    mode.add_argument("--verify", action="store_true", help="measure `bodycam verify` instead")
    mode.add_argument("--short", action="store_true", help="--verify: a smoke run on a few MiB")
    known, rest = mode.parse_known_args(argv)
    if known.verify:
        return _verify_main(rest, short=known.short, where=known.dir)
    p = argparse.ArgumentParser(prog="bench.py sealing", parents=[mode])
    p.add_argument("--mib", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
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


# -- `bodycam verify --identity` against the primitives' limit ---------------------------
#
# A store of real sealed segments (sealing.unit/store), then the real command
# as a child process: its CPU from RUSAGE_CHILDREN, its wall time too. The
# limit is what one core needs for the work verify cannot avoid: one
# ChaCha20-Poly1305 pass and two SHA-256 passes (ciphertext and plaintext)
# over the store's bytes, at `openssl speed`'s rates on 64 KiB blocks taken in
# the same run. The `cryptography` package's own rates on 64 KiB chunks are
# printed beside: the limit reachable from Python. Start-up is `bodycam verify
# --identity` of a store with one tiny segment. The read floor is the CPU of
# only reading the store's files into a reused 1 MiB buffer (the kernel's
# copy out of the page cache): verify pays it and the limit leaves it out.
# Rounds alternate; medians.

RATES = ("chacha", "sha256", "py_chacha", "py_sha256")  # bytes/s; the other rows are seconds
READ_STEP = 1 << 20  # segcheck.BLOCK's order: about 1 MiB a read


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _openssl_rate(alg: str, seconds: int) -> float:
    """Bytes per second of one core for `alg` on 64 KiB blocks, from `openssl speed`."""
    out = subprocess.run(
        ["openssl", "speed", "-evp", alg, "-bytes", "65536", "-seconds", str(seconds)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # the last line: "<alg>  <N>k" (thousands of bytes per second, one size)
    for line in reversed(out.strip().splitlines()):
        m = re.search(r"([\d.]+)k\s*$", line)
        if m:
            return float(m.group(1)) * 1000
    raise RuntimeError(f"no rate in openssl speed output: {out!r}")


def _python_rates(mib: int) -> tuple[float, float]:
    """Bytes per CPU-second of `cryptography`'s ChaCha20-Poly1305 decryption
    and hashlib's SHA-256, on 64 KiB chunks in memory."""
    aead = ChaCha20Poly1305(os.urandom(32))
    nonce = bytes(12)
    ct = aead.encrypt(nonce, os.urandom(CHUNK), None)
    n = max(1, (mib << 20) // CHUNK)
    t = time.process_time()
    for _ in range(n):
        aead.decrypt(nonce, ct, None)
    chacha = n * CHUNK / (time.process_time() - t)
    h = hashlib.sha256()
    t = time.process_time()
    for _ in range(n):
        h.update(ct)
    sha = n * len(ct) / (time.process_time() - t)
    return chacha, sha


def _read_cpu(files: list[Path]) -> float:
    """CPU seconds (user + system) of reading `files` whole into one reused buffer."""
    buf = bytearray(READ_STEP)
    t = time.process_time()
    for path in files:
        with path.open("rb", buffering=0) as f:
            while f.readinto(buf):
                pass
    return time.process_time() - t


def _bodycam() -> list[str]:
    """The real command: the console script beside this Python, else the module."""
    script = Path(sys.executable).with_name("bodycam")
    return [str(script)] if script.exists() else [sys.executable, "-m", "firmware.cli"]


def _child(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, exit code) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {r.returncode}: {r.stderr[-2000:]!r}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, r.returncode


def _make_store(unit: Path, identity: Identity, total: int, seg: int) -> int:
    """A provisioned unit whose store holds `total` bytes of plaintext in
    segments of `seg` bytes, sealed by the real code; the ciphertext bytes."""
    provision_unit(
        unit,
        serial="BENCH-V",
        officer="BENCH",
        recipient=identity.recipient,
        docks=[Ed25519PrivateKey.generate().public_key()],
    )
    data = memoryview(os.urandom(seg))
    with open_unit(unit) as store:
        left = total
        while left > 0:
            _seal(store, data[: min(seg, left)], 1 << 20)
            left -= seg
        ct = sum(f.stat().st_size for f in store.segments.iterdir())
    return ct


def _verify_main(argv: list[str], *, short: bool, where: Path | None) -> dict:
    p = argparse.ArgumentParser(prog="bench.py sealing --verify")
    p.add_argument("--mib", type=int, default=4 if short else 320, help="plaintext in the store")
    p.add_argument(
        "--seg-mib",
        type=int,
        default=1 if short else 61,
        help="one segment's size (61: a unit's 32 s segment at 16 Mbit/s)",
    )
    p.add_argument("--rounds", type=int, default=1 if short else 3)
    p.add_argument("--openssl-seconds", type=int, default=1 if short else 2)
    args = p.parse_args(argv)
    result: dict = {"part": "sealing-verify", "short": short, "loadavg_start": _loadavg()}
    identity = Identity.generate()
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        ident = Path(tmp) / "identity.txt"
        ident.write_text(f"{identity}\n")
        big, tiny = Path(tmp) / "big", Path(tmp) / "tiny"
        ct_bytes = _make_store(big, identity, args.mib << 20, args.seg_mib << 20)
        _make_store(tiny, identity, 1 << 10, 1 << 10)
        cmd = _bodycam()
        verify_big = [*cmd, "verify", "--identity", str(ident), str(big)]
        verify_tiny = [*cmd, "verify", "--identity", str(ident), str(tiny)]
        _child(verify_big)  # warm: the page cache holds the store, as for every round
        # Start-up as installed: a wheel's modules are compiled once, but a
        # shell with PYTHONDONTWRITEBYTECODE (as here) compiles every run.
        cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        _child(verify_tiny, cached)
        rows: dict[str, list[float]] = {
            k: [] for k in (*RATES, "cpu", "wall", "start", "start_cached", "read")
        }
        files = sorted(p for p in big.rglob("*") if p.is_file())
        for _ in range(args.rounds):
            rows["chacha"].append(_openssl_rate("chacha20-poly1305", args.openssl_seconds))
            rows["sha256"].append(_openssl_rate("sha256", args.openssl_seconds))
            cpu, wall, _ = _child(verify_big)
            rows["cpu"].append(cpu)
            rows["wall"].append(wall)
            starts = [_child(verify_tiny)[0] for _ in range(3)]
            rows["start"].append(statistics.median(starts))
            starts = [_child(verify_tiny, cached)[0] for _ in range(3)]
            rows["start_cached"].append(statistics.median(starts))
            rows["read"].append(_read_cpu(files))
            pc, ps = _python_rates(4 if short else 64)
            rows["py_chacha"].append(pc)
            rows["py_sha256"].append(ps)
    med = {k: statistics.median(v) for k, v in rows.items()}

    def limit(chacha: float, sha: float) -> float:
        return ct_bytes / chacha + 2 * ct_bytes / sha

    limit_s = limit(med["chacha"], med["sha256"])
    py_limit_s = limit(med["py_chacha"], med["py_sha256"])
    work = max(med["cpu"] - med["start"], 1e-9)
    result.update(
        {
            "store_ct_bytes": ct_bytes,
            "segments": -(-(args.mib << 20) // (args.seg_mib << 20)),
            "rounds": args.rounds,
            "openssl_MBps": {
                "chacha20_poly1305": round(med["chacha"] / 1e6, 1),
                "sha256": round(med["sha256"] / 1e6, 1),
            },
            "python_MBps": {
                "chacha20_poly1305_decrypt": round(med["py_chacha"] / 1e6, 1),
                "sha256": round(med["py_sha256"] / 1e6, 1),
            },
            "limit_cpu_s": round(limit_s, 3),
            "python_limit_cpu_s": round(py_limit_s, 3),
            "verify_cpu_s": round(med["cpu"], 3),
            "verify_wall_s": round(med["wall"], 3),
            "startup_cpu_s": round(med["start"], 3),
            "startup_cpu_s_bytecode_cached": round(med["start_cached"], 3),
            "bytecode_written": "PYTHONDONTWRITEBYTECODE" not in os.environ,
            "ratio": round(limit_s / med["cpu"], 3),
            "ratio_without_startup": round(limit_s / work, 3),
            "ratio_wall": round(limit_s / med["wall"], 3),
            "read_floor_cpu_s": round(med["read"], 3),
            "ratio_without_startup_to_limit_plus_read": round((limit_s + med["read"]) / work, 3),
            "ratio_to_python_limit": round(py_limit_s / med["cpu"], 3),
            "target_ratio": 0.8,
            "target_startup_cpu_s": 0.3,
            "samples": {
                k: [round(x / 1e6, 1) if k in RATES else round(x, 3) for x in v]
                for k, v in rows.items()
            },
            "loadavg_end": _loadavg(),
            "note": "ratio = limit CPU-s (1 ChaCha20-Poly1305 + 2 SHA-256, openssl, one core) "
            "/ bodycam verify --identity CPU-s (RUSAGE_CHILDREN); rates in samples are MB/s",
        }
    )
    return result
