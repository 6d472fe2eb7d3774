"""`bodycam demo`: the main job on a simulated unit, printed as a short report.

provision -> record (with pause and resume) -> stop -> dock: officer login,
clock sync, pull over mutual TLS, verify, store, receipt -> the unit checks
the receipt and frees the storage -> verify both copies.

The unit is flashed with QA's library (boot/flash.py) and docked by the
dock package (dock/), which needs the dock extra: without it the demo says
which extra to install.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from cryptography.hazmat.primitives import serialization

from link import pki
from link.inventory import read_known
from sealing import canonical
from sealing.age import Identity, decrypt
from sealing.unit import open_unit
from sealing.verify import verify_store

from . import unitconfig
from .cmd_export import start as start_export
from .cmd_verify_media import first_problem, report_of
from .demo_recording import DEMO, record_demo
from .scenario import ScenarioError, load
from .unitclock import UnitClock
from .unitconfig import ConfigError

SERIAL = "BC-DEMO-0001"
PASSWORD = "demo-password"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="keep the unit, dock and agency files here (default: temp, removed)",
    )


def run(args: argparse.Namespace) -> int:
    work = args.out or Path(tempfile.mkdtemp(prefix="bodycam-demo-"))
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"bodycam demo: cannot use {work}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        return _demo(work)
    finally:
        if args.out is None:
            shutil.rmtree(work, ignore_errors=True)


def _say(step: str, text: str) -> None:
    print(f"{step:<10} {text}", flush=True)


def _dock() -> Any:
    """The dock's modules, loaded only here: the unit itself never needs them."""
    try:
        from dock import courtcopy
        from dock.client import Client
        from dock.pull import pull
        from dock.report import report
    except ModuleNotFoundError as exc:
        raise SystemExit(
            f"bodycam demo: the dock's part needs the dock extra ({exc.name} is missing): "
            "pip install '.[dock]' (scripts/setup does)"
        ) from None
    return SimpleNamespace(Client=Client, pull=pull, report=report, courtcopy=courtcopy)


def _provision(work: Path) -> tuple[Path, Path]:
    """Flash a unit into work/sd with a throw-away QA agency in work/agency."""
    from boot import flash

    agency = work / "agency"
    flash.agency_init(agency, "qa", "dock1")
    (work / "pw").write_text(PASSWORD + "\n")
    flash.provision(
        work / "sd",
        serial=SERIAL,
        officer="OFFICER-DEMO",
        password=PASSWORD,
        profile="qa",
        agency=agency,
        force=False,
    )
    return flash.layout.unit_dir(work / "sd"), agency


def _demo(work: Path) -> int:
    if (work / "sd").exists():
        print(f"bodycam demo: {work / 'sd'} already exists; choose an empty --out")
        return 2
    dock = _dock()
    try:  # the demo's scenario, checked before anything is made
        scenario = load(DEMO, work)
    except ScenarioError as exc:
        print(f"bodycam demo: {exc}", file=sys.stderr)
        return 2
    unit, agency_dir = _provision(work)
    _say("provision", f"unit {SERIAL} flashed with bodycam-flash (QA CA, dock1) at {unit}")
    try:  # and the unit.toml flash wrote, before the store is opened
        config = unitconfig.load(unit)
    except ConfigError as exc:
        print(f"bodycam demo: {exc}", file=sys.stderr)
        return 2
    from .cmd_selftest import run_checks

    checks, _backends = run_checks(unit, config=config)
    _say("selftest", ", ".join(f"{c.status} {c.name}" for c in checks))
    agency = Identity.parse((agency_dir / "evidence.key").read_text())
    dock_key = serialization.load_pem_private_key(
        (agency_dir / "docks" / "dock1.key").read_bytes(), None
    )
    escrow = canonical.unb64((agency_dir / "escrow" / f"{SERIAL}.fss").read_text().strip())
    for step, text in record_demo(unit, work, scenario, config):
        _say(step, text)
    clock = UnitClock()
    store = open_unit(unit, clock=clock.stamp, boot_body={"cause": "docked"})
    try:
        held = sum(p.stat().st_size for p in store.segments.iterdir())
        running = start_export(unit, store, clock, "127.0.0.1", 0)
        _say("dock", f"export service on 127.0.0.1:{running.address[1]} (mutual TLS)")
        d = agency_dir / "docks"
        client = dock.Client(
            "127.0.0.1",
            running.address[1],
            pki.client_context(d / "dock1.crt", d / "dock1.key", agency_dir / "ca.crt"),
        )
        try:
            result = dock.pull(
                client,
                work / "dock",
                dock_key,
                inventory=read_known(agency_dir / "inventory.sqlite"),
                password=PASSWORD,
                fingerprint_ok=True,
                identity=agency,
                progress=lambda *_: None,
            )
        finally:
            client.close()
            running.close()
        _say("clock", f"unit clock {clock.state} from {clock.source}")
        _say(
            "export",
            f"{len(result.pulled)} files pulled, verified with the agency identity, "
            f"stored under {work / 'dock'}",
        )
        _say("receipt", f"{result.receipt[:16] if result.receipt else '-'} signed by dock1")
        left = sum(p.stat().st_size for p in store.segments.iterdir())
        _say(
            "release",
            f"{len(result.released)} files, {result.bytes_freed} bytes freed "
            f"({held} held before, {left} now)",
        )
    finally:
        store.close()
    unit_report = verify_store(unit, escrow_key=escrow)
    _say(
        "verify",
        f"unit store: {'VERIFIED' if unit_report.ok else unit_report.problems[0]}"
        " (signatures, chain, forward-secure MACs, releases)",
    )
    dock_dir = work / "dock"
    files = {p.name: p for p in dock_dir.rglob("*.age")}
    dock_report = verify_store(dock_dir / "units" / SERIAL, identity=agency, find_segment=files.get)
    _say(
        "verify",
        f"dock copy: {'VERIFIED' if dock_report.ok else dock_report.problems[0]}"
        " (decrypted, plaintext hashes match)",
    )
    media_ok, media = _signed_media(sorted(files.values()), agency, dock_dir / "units" / SERIAL)
    _say("media", media)
    court_ok, court = _court_copy(dock_dir, agency_dir, agency, work / "case")
    _say("court", court)
    t0 = time.monotonic()
    store_ok, stored = _agency_store(dock_dir)
    _say("agency", f"{stored} ({time.monotonic() - t0:.1f} s with the cluster's start and stop)")
    print()
    print(dock.report(dock_dir))
    ok = unit_report.ok and dock_report.ok and result.released and media_ok and court_ok
    ok = ok and store_ok
    return 0 if ok else 1


def _agency_store(dock_dir: Path) -> tuple[bool, str]:
    """The dock synced to the agency store (issue 27): a SeaweedFS cluster
    started here on loopback (a master, three volume servers replicating, a
    filer, the S3 gateway), a bucket with Object Lock; then the store's own
    administrator tries to delete a segment, which the store must refuse.
    The cluster and its index live in a temporary folder, gone afterwards."""
    with tempfile.TemporaryDirectory(prefix="bodycam-agency-") as tmp:
        return _synced(dock_dir, Path(tmp))


def _synced(dock_dir: Path, base: Path) -> tuple[bool, str]:
    _dock()  # the dock extra, or the one line saying it is missing
    from dock import seaweed
    from dock.object_store import AgencyBucket, StoreConfig, StoreRefused
    from dock.sync import sync

    writer = ("Read", "Write", "List", *seaweed.LOCK_ACTIONS)
    ids = [seaweed.new_identity("admin", ("Admin",)), seaweed.new_identity("dock", writer)]
    try:
        cluster = seaweed.start_cluster(base, ids, volumes=3, replication="001")
    except seaweed.ClusterError as exc:
        return False, f"no agency store: {exc}"
    try:

        def bucket(who: str) -> AgencyBucket:
            i = cluster.identity(who)
            return AgencyBucket.connect(
                StoreConfig(cluster.endpoint, "evidence", i.access_key, i.secret_key)
            )

        admin = bucket("admin")
        admin.ensure_bucket()
        result = sync(dock_dir, bucket("dock"), base / "agency.sqlite", "dock1")
        segment = next(k for k in result.pushed if "/segments/" in k)
        version = admin.versions_of(segment)[0][0]
        try:
            admin.delete_version(segment, version)
            refused = "DELETED (the lock did not hold)"
        except StoreRefused as exc:
            refused = f"refused by the store ({exc.code})"
        ok = result.ok and refused.startswith("refused")
        return ok, (
            f"{len(result.pushed)} objects in s3://evidence on SeaweedFS (3 volume servers), "
            f"each SHA-256 checked and read back, locked until its retention ends; "
            f"the administrator's delete of a segment: {refused}"
        )
    finally:
        cluster.close()


def _court_copy(dock_dir: Path, agency_dir: Path, agency: Identity, out: Path) -> tuple[bool, str]:
    """The examiner's court copy of the first recording (dock/courtcopy/)."""
    courtcopy = _dock().courtcopy
    try:
        report = courtcopy.verified_copy(dock_dir, SERIAL)
        first = courtcopy.recordings(report.chain)[0].start.seq
        signing = courtcopy.Signing(
            (agency_dir / "c2pa" / "court.crt").read_bytes(),
            (agency_dir / "c2pa" / "court.key").read_bytes(),
            (agency_dir / "ca.crt").read_bytes(),
        )
        case = courtcopy.export_case(dock_dir, SERIAL, first, agency, signing, out, "dock1")
    except courtcopy.CaseError as exc:
        return False, f"no court copy: {exc}"
    return True, (
        f"{case.mp4.name}: {case.joined.duration_us / 1e6:.1f} s with its pauses as gaps, "
        f"C2PA {case.validation.state} with the agency CA (TEST certificate); report.html, "
        f"report.pdf, SHA256SUMS in {out} (bodycam-dock export-case)"
    )


def _signed_media(segments: list[Path], agency: Identity, chain: Path) -> tuple[bool, str]:
    """What an examiner would run on a decrypted copy: the in-stream signatures
    of the first video segment, rooted in the dock's copy of the chain."""
    seg = next((p for p in segments if p.name.endswith(".ts.age")), None)
    if seg is None:
        return False, "no video segment to check"
    plain = seg.parent / seg.name.removesuffix(".age")
    with seg.open("rb") as f, plain.open("wb") as out:
        decrypt(f, agency, out)
    r = report_of(plain, chain)
    plain.unlink()
    if not r["ok"]:
        return False, f"{seg.name}: in-stream signatures NOT verified: {first_problem(r)}"
    return True, (
        f"{seg.name}: {r['groups']} groups of pictures signed in the stream, verified, "
        f"key sealed in chain record {r['chain']['seq']} (bodycam verify-media)"
    )
