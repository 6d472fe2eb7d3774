"""`bodycam verify` reads each segment once, hashing and decrypting the same
bytes (sealing/segcheck.py): its answers are those of the plain reader
(`age.decrypt` over the file, and SHA-256 of the whole file) on every cut,
flip and addition at the places a block or chunk boundary falls. And its
benchmark (`tools/bench.py sealing --verify`) runs and reports."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sealing.age import CHUNK, TAG, AgeError, Identity, decrypt
from sealing.segcheck import BLOCK, Beside, SegmentRead, read_segment
from sealing.store import SegmentMeta
from sealing.verify import verify_store

from .conftest import Unit, make_unit

REPO = Path(__file__).resolve().parent.parent
STRIDE = CHUNK + TAG


def _plain(path: Path, identity: Identity | None) -> SegmentRead:
    """What the one-pass reader must answer, from two plain passes."""
    data = path.read_bytes()
    out = SegmentRead(len(data), hashlib.sha256(data).hexdigest())
    if identity is not None:
        with path.open("rb") as f:
            try:
                out.plaintext = decrypt(f, identity)
            except AgeError as exc:
                out.error = str(exc)
    return out


def _variants(data: bytes, rnd: random.Random) -> dict[str, bytes]:
    hdr = data.index(b"\n", data.index(b"\n---") + 1) + 1  # the header's length
    n = len(data)
    places = {0, 5, hdr - 1, hdr, hdr + 15, hdr + 16, hdr + 16 + STRIDE - 1, hdr + 16 + STRIDE}
    places |= {BLOCK - 1, BLOCK, BLOCK + 1, BLOCK + STRIDE, n - TAG - 1, n - TAG, n - 1}
    places |= {rnd.randrange(n) for _ in range(4)}
    out = {"as sealed": data, "one byte more": data + b"x", "a chunk more": data + data[-STRIDE:]}
    for at in sorted(p for p in places if 0 <= p < n):
        flipped = bytearray(data)
        flipped[at] ^= 1 << rnd.randrange(8)
        out[f"flip {at}"] = bytes(flipped)
        out[f"cut {at}"] = data[:at]
    out["a long header line"] = data[:22] + b"A" * 5000 + data[22:]
    return out


@pytest.mark.parametrize(
    "size", [0, 100, CHUNK, CHUNK + 1, 15 * CHUNK + 3, 16 * CHUNK, 17 * CHUNK + 9, 33 * CHUNK]
)
def test_one_pass_answers_as_the_plain_reader(tmp_path: Path, size: int) -> None:
    unit = make_unit(tmp_path / "unit")
    with unit.open() as store:
        start = store.clock()
        w = store.open_segment()
        w.write(os.urandom(size))
        w.close(SegmentMeta(start=start, end=store.clock()))
        (sealed,) = store.segments.iterdir()
    data = sealed.read_bytes()
    buf = bytearray(BLOCK)
    with ThreadPoolExecutor(1) as pool:
        beside = Beside(pool, 2)  # a core to spare: every read hashed on the pool
        for name, variant in _variants(data, random.Random(size)).items():
            path = tmp_path / "variant"
            path.write_bytes(variant)
            for identity in (unit.agency.identity, None):
                want = _plain(path, identity)
                with path.open("rb") as f:
                    assert read_segment(f, len(variant), identity, buf) == want, name
                with path.open("rb") as f:  # the ciphertext hashed on another thread
                    assert read_segment(f, len(variant), identity, buf, beside) == want, name
                with path.open("rb") as f:  # a length the record does not have: not read
                    assert read_segment(f, len(variant) + 1, identity) == SegmentRead(
                        len(variant), None
                    )


def test_bench_verify_short_runs_and_reports() -> None:
    """`tools/bench.py sealing --verify --short`: it runs and reports (its
    timings on a few MiB mean nothing; without --short it measures)."""
    r = subprocess.run(
        [sys.executable, str(REPO / "tools" / "bench.py"), "sealing", "--verify", "--short"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["part"] == "sealing-verify" and out["short"] is True and out["segments"] >= 1
    for side in ("chacha20_poly1305", "sha256"):
        assert out["openssl_MBps"][side] > 0
    for key in (
        "limit_cpu_s",
        "verify_cpu_s",
        "startup_cpu_s",
        "ratio",
        "ratio_wall",
        "read_floor_cpu_s",
        "ratio_without_startup_to_limit_plus_read",
    ):
        assert out[key] > 0, key
    assert len(out["loadavg_start"]) == 3 and len(out["loadavg_end"]) == 3


def test_only_the_files_asked_for_are_read_and_the_chain_is_checked_whole(
    recorded_unit: Unit,
) -> None:
    """verify_store(only=...): the files it accepts are read and checked, the
    others reported "not read" whatever is in them; the chain's records are
    all checked."""
    store = recorded_unit.path / "store"
    identity = recorded_unit.agency.identity
    whole = verify_store(store, identity=identity)
    files = [s["file"] for s in whole.segments]
    assert whole.ok and len(files) >= 3
    asked, other = files[1], files[0]
    (store / "segments" / other).write_bytes(b"not what was sealed")
    part = verify_store(store, identity=identity, only=lambda f: f == asked)
    assert part.ok, part.problems
    assert sum(part.record_types.values()) == sum(whole.record_types.values())
    status = {s["file"]: s["status"] for s in part.segments}
    assert status == {f: "intact" if f == asked else "not read" for f in files}
    assert not verify_store(store, identity=identity).ok  # read whole, the other fails
    sealed = (store / "segments" / asked).read_bytes()
    (store / "segments" / asked).write_bytes(sealed[:-1] + bytes([sealed[-1] ^ 1]))
    part = verify_store(store, identity=identity, only=lambda f: f == asked)
    assert not part.ok and asked in str(part.problems[0]), part.problems
