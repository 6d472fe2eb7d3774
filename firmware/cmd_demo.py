"""`bodycam demo`: the main job on a simulated unit, printed as a short report.

provision -> record (with pause and resume) -> stop -> dock: officer login,
clock sync, pull over mutual TLS, verify, store, receipt -> the unit checks
the receipt and frees the storage -> verify both copies.

The dock is the reference dock, tools/dock.py, loaded from this source tree
(the demo runs from a checkout: scripts/demo).
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealing.age import Identity
from sealing.unit import open_unit, provision_unit
from sealing.verify import verify_store

from . import pki
from .auth import set_password
from .cmd_export import start as start_export
from .demo_recording import record_demo
from .unitclock import UnitClock

HELP = "run the main job on a simulated unit and print a short report"
SERIAL = "BC-DEMO-0001"
PASSWORD = "demo-password"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=None,
                        help="keep the unit, dock and agency files here (default: temp, removed)")


def run(args: argparse.Namespace) -> int:
    work = args.out or Path(tempfile.mkdtemp(prefix="bodycam-demo-"))
    try:
        return _demo(work)
    finally:
        if args.out is None:
            shutil.rmtree(work, ignore_errors=True)


def _say(step: str, text: str) -> None:
    print(f"{step:<10} {text}", flush=True)


def _load_dock() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "tools" / "dock.py"
    if not path.exists():
        raise SystemExit(f"bodycam demo: the reference dock {path} is not in this tree")
    sys.path.insert(0, str(path.parent))
    return importlib.import_module("dock")


def _provision(work: Path) -> tuple[Path, Identity, Ed25519PrivateKey, bytes]:
    agency, dock_key = Identity.generate(), Ed25519PrivateKey.generate()
    unit = work / "unit"
    escrow = provision_unit(unit, serial=SERIAL, officer="OFFICER-DEMO",
                            recipient=agency.recipient, docks=[dock_key.public_key()])
    set_password(unit, PASSWORD)
    ca = pki.make_ca("qa")
    tls = unit / "tls"
    tls.mkdir()
    unit_tls = Ed25519PrivateKey.generate()
    (tls / "unit.key").write_bytes(pki.pem_key(unit_tls))
    (tls / "unit.crt").write_bytes(pki.pem_cert(pki.issue(
        ca, cn=SERIAL, role="unit", public_key=unit_tls.public_key(), hosts=["127.0.0.1"])))
    (tls / "ca.crt").write_bytes(pki.pem_cert(ca.cert))
    d = work / "agency"
    d.mkdir()
    (d / "ca.crt").write_bytes(pki.pem_cert(ca.cert))
    (d / "evidence.key").write_text(f"{agency}\n")
    (d / "dock1.key").write_bytes(pki.pem_key(dock_key))
    (d / "dock1.crt").write_bytes(pki.pem_cert(pki.issue(
        ca, cn="dock1", role="dock", public_key=dock_key.public_key())))
    return unit, agency, dock_key, escrow


def _demo(work: Path) -> int:
    if (work / "unit").exists():
        print(f"bodycam demo: {work / 'unit'} already exists; choose an empty --out")
        return 2
    dock = _load_dock()
    unit, agency, dock_key, escrow = _provision(work)
    _say("provision", f"unit {SERIAL} (QA CA, dock1 enrolled) at {unit}")
    for step, text in record_demo(unit, work):
        _say(step, text)
    clock = UnitClock()
    store = open_unit(unit, clock=clock.stamp, boot_body={"cause": "docked"})
    try:
        held = sum(p.stat().st_size for p in store.segments.iterdir())
        running = start_export(unit, store, clock, "127.0.0.1", 0)
        _say("dock", f"export service on 127.0.0.1:{running.address[1]} (mutual TLS)")
        a = work / "agency"
        client = dock.Client("127.0.0.1", running.address[1],
                             pki.client_context(a / "dock1.crt", a / "dock1.key", a / "ca.crt"))
        try:
            result = dock.pull(client, work / "dock", dock_key, password=PASSWORD,
                               fingerprint_ok=True, identity=agency,
                               progress=lambda *_: None)
        finally:
            client.close()
            running.close()
        _say("clock", f"unit clock {clock.state} from {clock.source}")
        _say("export", f"{len(result.pulled)} files pulled, verified with the agency identity, "
                       f"stored under {work / 'dock'}")
        _say("receipt", f"{result.receipt[:16] if result.receipt else '-'} signed by dock1")
        left = sum(p.stat().st_size for p in store.segments.iterdir())
        _say("release", f"{len(result.released)} files, {result.bytes_freed} bytes freed "
                        f"({held} held before, {left} now)")
    finally:
        store.close()
    unit_report = verify_store(unit, escrow_key=escrow)
    _say("verify", f"unit store: {'VERIFIED' if unit_report.ok else unit_report.problems[0]}"
                   " (signatures, chain, forward-secure MACs, releases)")
    dock_dir = work / "dock"
    files = {p.name: p for p in dock_dir.rglob("*.age")}
    dock_report = verify_store(dock_dir / "units" / SERIAL, identity=agency,
                               find_segment=files.get)
    _say("verify", f"dock copy: {'VERIFIED' if dock_report.ok else dock_report.problems[0]}"
                   " (decrypted, plaintext hashes match)")
    print()
    print(dock.report(dock_dir))
    return 0 if unit_report.ok and dock_report.ok and result.released else 1
