"""`bodycam demo`: the main job on a simulated unit, printed as a short report.

Stages run in order; each one that exists in this tree runs against the real
code (sealed store, age, receipts, verifier). See README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealing.age import Identity
from sealing.receipts import apply_receipt, make_receipt, media_entries
from sealing.store import SegmentMeta
from sealing.unit import open_unit, provision_unit
from sealing.verify import verify_store

HELP = "run the main job on a simulated unit and print a short report"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=None,
                        help="keep the unit and agency files here (default: a temp dir, removed)")


def run(args: argparse.Namespace) -> int:
    work = args.out or Path(tempfile.mkdtemp(prefix="bodycam-demo-"))
    try:
        return _demo(work)
    finally:
        if args.out is None:
            shutil.rmtree(work, ignore_errors=True)


def _line(step: str, text: str) -> None:
    print(f"{step:<10} {text}")


def _demo(work: Path) -> int:
    if (work / "unit").exists():
        print(f"bodycam demo: {work / 'unit'} already exists; choose an empty --out")
        return 2
    agency = Identity.generate()
    dock = Ed25519PrivateKey.generate()
    unit = work / "unit"
    escrow = provision_unit(unit, serial="BC-DEMO-0001", officer="OFFICER-DEMO",
                            recipient=agency.recipient, docks=[dock.public_key()])
    (work / "agency.key").write_text(f"{agency}\n")
    _line("provision", f"unit BC-DEMO-0001 at {unit}")
    with open_unit(unit, boot_body={"cause": "demo"}) as store:
        store.append("record_start", {"cause": "button"})
        for i in range(2):
            start = store.clock()
            w = store.open_segment(stamp=start)
            for _ in range(32):
                w.write(os.urandom(8192))  # sample bytes: the capture pipeline is issue 3
            end = store.clock()
            rec = w.close(SegmentMeta(start=start, end=end,
                                      duration_us=end.mono_us - start.mono_us))
            _line("seal", f"{rec.body['file']} ({rec.body['ct_len']} bytes ciphertext)")
            if i == 0:
                store.append("pause", {"reason": "to_be_stated"})
                store.append("resume", {"after_pause_us": 0})
        store.append("record_stop", {"cause": "button"})
        recs = store.records()
        receipt = make_receipt(dock, serial=store.serial, from_seq=0, to_seq=recs[-1].seq,
                               head=recs[-1].hash, segments=media_entries(recs),
                               dock_time_us=time.time_ns() // 1000)
        done = apply_receipt(store, receipt.to_bytes())
        _line("release", f"{len(done.files)} segments, {done.bytes_freed} bytes freed "
                         f"under receipt {done.receipt[:16]}")
    report = verify_store(unit, escrow_key=escrow)
    _line("verify", "VERIFIED" if report.ok else f"FAILED: {report.problems[0]}")
    _line("chain", ", ".join(r["type"] for r in report.records))
    return 0 if report.ok else 1
