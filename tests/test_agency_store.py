"""The agency store on a real SeaweedFS cluster (tests/seaweed.py: a master,
three volume servers keeping two copies, a filer, the S3 gateway) with the
index on a real PostgreSQL (tests/pg.py): `bodycam-dock sync --to
s3://BUCKET` (issue 27). Two workstations sync; every object's stored
checksum is the chain's hash and the index and the store agree object for
object; the store itself refuses what WORM forbids, tried as its
administrator with boto3 directly; a volume server dies mid-sync; a sync
cut anywhere is completed by the next, without duplicates or rows whose
object is missing."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from dock import index as dock_index
from dock import sync as dock_sync
from dock.cli import main as dock_main
from dock.compliance import model
from dock.dock_locale import dock_locale
from dock.object_store import AgencyBucket, StoreUnreachable
from dock.retention import add_months
from dock.seaweed import Cluster
from sealing import layout
from sealing.recordings import recordings
from sealing.records import Record, parse_line
from sealing.verify import verify_store

from .conftest import BODYCAM_DOCK
from .english import EN_ARGS
from .export_fixtures import start_link
from .pg import pg_server_fixture, pg_url_fixture  # noqa: F401  (fixtures: pg_server, pg_url)
from .seaweed import bucket_fixture, credentials_file, seaweed_fixture, store  # noqa: F401

pytestmark = pytest.mark.slow
SERIAL_A, SERIAL_B = "BC-TEST-0001", "BC-TEST-0002"


def _docked(
    base: Path,
    serial: str,
    recordings: int = 2,
    segments: int = 2,
    size: int = 150_000,
    agency: Any = None,
) -> tuple[Path, Any]:
    """A dock folder holding a unit's pull: (dock folder, the unit's link)."""
    lk = start_link(base / "unit", segments=segments, size=size, serial=serial,
                    agency=agency, recordings=recordings)  # fmt: skip
    try:
        result = lk.pull(base / "dock")
        assert result.receipt
    finally:
        lk.close()
    return base / "dock", lk


def _chain(dock_dir: Path, serial: str) -> list[Record]:
    data = (dock_dir / "units" / serial / layout.CHAIN).read_bytes()
    return [parse_line(line)[0] for line in data.splitlines()]


def _by_recording(dock_dir: Path, serial: str) -> dict[int, dict[str, str]]:
    """Each recording's start seq -> its files -> their ct_sha256 in the chain."""
    return {
        rec.start.seq: {str(r.body["file"]): str(r.body["ct_sha256"]) for r in rec.media()}
        for rec in recordings(_chain(dock_dir, serial))
    }


def _hold(dock_dir: Path, serial: str, recording: int) -> None:
    """A case hold placed at the dock (as the page does: a retention_changes row)."""
    idx = dock_index.Index.open(dock_dir / "dock.sqlite")
    try:
        idx.add_retention_change({
            "serial": serial, "recording": recording, "at_us": time.time_ns() // 1000,
            "change": "hold", "value": "case", "by": "head", "reason": "case 7",
            "approved_by": "",
        })  # fmt: skip
    finally:
        idx.close()


def _agency_rows(pg_url: str) -> list[dict[str, Any]]:
    idx = dock_index.Index.open(pg_url, dock=None)
    try:
        return idx._fetch(select(dock_index.segments))
    finally:
        idx.close()


def _agrees(s: AgencyBucket, pg_url: str, chains: dict[str, str]) -> None:
    """The index and the store agree object for object, and every segment
    object's stored checksum (and its bytes, read back) is the chain's hash."""
    rows = _agency_rows(pg_url)
    keys = {k for k in s.keys("units/") if f"/{layout.SEGMENTS}/" in k}
    assert {r["path"] for r in rows} == keys
    assert {r["file"] for r in rows} == set(chains)
    for r in rows:
        head = s.head(r["path"])
        assert head is not None and head.sha256 == chains[r["file"]] == r["ct_sha256"]
        assert s.read_back(r["path"], head.version_id) == r["ct_sha256"]
    # one version each: nothing was sent twice
    assert len([v for v in s.versions("units/") if f"/{layout.SEGMENTS}/" in v["Key"]]) == len(keys)


def _end_of_day(day: Any, dock_dir: Path) -> datetime:
    end = model.day_bounds(day, dock_locale(dock_dir))[1]
    return datetime.fromtimestamp(end / 1e6, UTC)


def test_two_workstations_sync_into_the_cluster(
    seaweed: Cluster, bucket: str, pg_url: str, tmp_path: Path
) -> None:
    da, link_a = _docked(tmp_path / "a", SERIAL_A, recordings=2)
    db, _ = _docked(tmp_path / "b", SERIAL_B, recordings=1,
                    agency=(link_a.unit.agency, link_a.ca))  # fmt: skip
    recs = _by_recording(da, SERIAL_A)
    held_rec = sorted(recs)[0]
    _hold(da, SERIAL_A, held_rec)
    s = store(seaweed, bucket)
    a = dock_sync.sync(da, s, pg_url, "dock-a")
    b = dock_sync.sync(db, s, pg_url, "dock-b")
    assert a.ok and b.ok, a.refused + b.refused
    chains = {f: h for d, n in ((da, SERIAL_A), (db, SERIAL_B))
              for files in _by_recording(d, n).values() for f, h in files.items()}  # fmt: skip
    assert len(chains) == 6
    _agrees(s, pg_url, chains)
    # receipts: rows and objects, one for one
    for serial in (SERIAL_A, SERIAL_B):
        idx = dock_index.Index.open(pg_url, dock=None)
        try:
            ids = {r["id"] for r in idx.receipts(serial)}
        finally:
            idx.close()
        assert ids and set(s.keys(f"units/{serial}/receipts/")) == {
            f"units/{serial}/receipts/{i}.json" for i in ids
        }
    # locks: COMPLIANCE to the end of the class's expiry day (supervision: six
    # months); the held recording's files under a legal hold, the other's not
    rows = {r["file"]: r for r in _agency_rows(pg_url)}
    for seq, files in recs.items():
        for f in files:
            head = s.head(rows[f]["path"])
            assert head is not None and head.mode == "COMPLIANCE"
            start = datetime.fromtimestamp(rows[f]["start_wall_us"] / 1e6, UTC)
            day = start.astimezone(dock_locale(da).zone).date()
            assert head.until is not None
            assert abs(head.until - _end_of_day(add_months(day, 6), da)) <= timedelta(days=1)
            assert head.hold is (seq == held_rec), (f, seq)
    # the unit's own objects: as long as its longest-kept recording, held with it
    for serial, held in ((SERIAL_A, True), (SERIAL_B, False)):
        for key in (layout.CHAIN, layout.DEVICE_PUB, "verification.json"):
            head = s.head(f"units/{serial}/{key}")
            assert head is not None and head.mode == "COMPLIANCE" and head.hold is held, key
    # again: nothing is sent, nothing written
    again = dock_sync.sync(da, s, pg_url, "dock-a")
    assert again.ok and again.pushed == [] and again.rows == 0 and again.relocked == 0
    # the store's copy verifies as the dock's does (downloaded as an examiner would)
    mirror = tmp_path / "mirror"
    for key in s.keys(f"units/{SERIAL_A}/"):
        path = mirror / key
        path.parent.mkdir(parents=True, exist_ok=True)
        data = s.get_bytes(key)
        assert data is not None
        path.write_bytes(data)
    report = verify_store(mirror / "units" / SERIAL_A, identity=link_a.unit.agency.identity)
    assert report.ok, report.problems
    assert {x["plaintext"] for x in report.segments} == {"decrypted, hash matches"}


def test_the_store_itself_refuses_what_worm_forbids(
    seaweed: Cluster, bucket: str, pg_url: str, tmp_path: Path
) -> None:
    """As the store's administrator, with boto3 directly: delete a locked
    version, overwrite it, shorten its retention, take off a legal hold
    without the authority: each refused by SeaweedFS (an overwrite makes a
    new version; the locked one stays whole). Locks of a few seconds
    (sync's test_retention_s): once over, the unheld version can be deleted."""
    from botocore.exceptions import ClientError

    dd, _ = _docked(tmp_path, SERIAL_A, recordings=2)
    recs = _by_recording(dd, SERIAL_A)
    held_rec, free_rec = sorted(recs)
    _hold(dd, SERIAL_A, held_rec)
    s = store(seaweed, bucket)
    lock_s = 8.0
    result = dock_sync.sync(dd, s, pg_url, "dock1", test_retention_s=lock_s)
    assert result.ok, result.refused
    rows = {r["file"]: r for r in _agency_rows(pg_url)}
    free_file, held_file = sorted(recs[free_rec])[0], sorted(recs[held_rec])[0]
    free_key, held_key = rows[free_file]["path"], rows[held_file]["path"]
    free, held = s.head(free_key), s.head(held_key)
    assert free is not None and held is not None and held.hold and not free.hold
    assert free.until is not None
    admin = store(seaweed, bucket, "admin").client
    auditor = store(seaweed, bucket, "auditor").client

    def refused(call: Any, **kw: Any) -> str:
        with pytest.raises(ClientError) as exc:
            call(Bucket=bucket, **kw)
        return str(exc.value.response["Error"]["Code"])

    # delete the locked version: refused, by the store
    assert refused(admin.delete_object, Key=free_key, VersionId=free.version_id) == "AccessDenied"
    assert refused(admin.delete_object, Key=free_key, VersionId=free.version_id,
                   BypassGovernanceRetention=True) == "AccessDenied"  # fmt: skip
    # overwrite it: a new version on top; the locked one is still there, whole
    forged = admin.put_object(Bucket=bucket, Key=free_key, Body=b"forged")
    assert forged["VersionId"] != free.version_id
    assert s.read_back(free_key, free.version_id) == recs[free_rec][free_file]
    assert {v["VersionId"] for v in s.versions(free_key)} == {free.version_id, forged["VersionId"]}
    # shorten its retention, or turn it into GOVERNANCE: refused
    shorter = {"Mode": "COMPLIANCE", "RetainUntilDate": free.until - timedelta(seconds=4)}
    assert refused(admin.put_object_retention, Key=free_key, VersionId=free.version_id,
                   Retention=shorter) == "AccessDenied"  # fmt: skip
    governance = {"Mode": "GOVERNANCE", "RetainUntilDate": free.until}
    assert (
        refused(admin.put_object_retention, Key=free_key, VersionId=free.version_id,
                Retention=governance, BypassGovernanceRetention=True) == "AccessDenied"
    )  # fmt: skip
    # take off the legal hold without the authority: refused to an auditor,
    # and to the administrator where the bucket's policy withholds it
    off = {"Status": "OFF"}
    assert refused(auditor.put_object_legal_hold, Key=held_key, VersionId=held.version_id,
                   LegalHold=off) == "AccessDenied"  # fmt: skip
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Action": ["s3:PutObjectLegalHold"],
        "Principal": {"AWS": ["arn:aws:iam::admin:user/admin",
                              "arn:aws:iam::000000000000:user/admin"]},
        "Resource": [f"arn:aws:s3:::{bucket}/*"]}]}  # fmt: skip
    admin.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    try:
        assert refused(admin.put_object_legal_hold, Key=held_key, VersionId=held.version_id,
                       LegalHold=off) == "AccessDenied"  # fmt: skip
    finally:
        admin.delete_bucket_policy(Bucket=bucket)
    assert s.head(held_key, held.version_id).hold  # type: ignore[union-attr]
    # around the gateway: the filer's own HTTP API wants a signed token (security.toml)
    gone = urllib.request.Request(f"{seaweed.filer_url}/buckets/{bucket}/{held_key}.versions/",
                                  method="DELETE")  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as http:
        urllib.request.urlopen(gone, timeout=10)
    assert http.value.code == 401
    # the next sync names the overwrite: the store's current bytes are not the chain's
    again = dock_sync.sync(dd, s, pg_url, "dock1", test_retention_s=lock_s)
    assert any(free_file in str(r) and "other bytes" in str(r) for r in again.refused)
    # once the lock is over, the unheld version can go; the held one cannot
    wait = (free.until - datetime.now(UTC)).total_seconds() + 1.5
    time.sleep(max(0.0, wait))
    admin.delete_object(Bucket=bucket, Key=free_key, VersionId=free.version_id)
    assert s.head(free_key, free.version_id) is None
    assert refused(admin.delete_object, Key=held_key, VersionId=held.version_id) == "AccessDenied"


def test_a_volume_server_killed_mid_sync_loses_nothing(
    seaweed: Cluster, bucket: str, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dd, _ = _docked(tmp_path, SERIAL_A, recordings=2, segments=4, size=300_000)
    chains = {f: h for files in _by_recording(dd, SERIAL_A).values() for f, h in files.items()}
    s = store(seaweed, bucket)
    real = AgencyBucket.put_verified
    segments_put = []

    def put(self: AgencyBucket, key: str, body: Any, sha256: str, lock: Any) -> Any:
        if f"/{layout.SEGMENTS}/" in key:
            segments_put.append(key)
            if len(segments_put) == 3:
                seaweed.volumes[1].kill()  # a crash, mid-sync
        return real(self, key, body, sha256, lock)

    monkeypatch.setattr(AgencyBucket, "put_verified", put)
    try:
        try:
            first = dock_sync.sync(dd, s, pg_url, "dock1")
            done = first.ok
        except OSError:
            done = False
        assert not seaweed.volumes[1].running
        print(f"\nvolume server killed mid-sync: the sync {'finished' if done else 'stopped'}")
        if not done:  # a rerun completes it, one server still down
            rest = dock_sync.sync(dd, s, pg_url, "dock1")
            assert rest.ok, rest.refused
        # every object re-read and re-hashed, with the server still down
        _agrees(s, pg_url, chains)
        for key in s.keys(f"units/{SERIAL_A}/"):
            head = s.head(key)
            assert head is not None and head.sha256 is not None
            assert s.read_back(key, head.version_id) == head.sha256, key
    finally:
        seaweed.restart_volume(1)
    assert seaweed.volume_nodes() == 3


def test_a_sync_cut_anywhere_is_completed_by_the_next(
    seaweed: Cluster, bucket: str, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cuts injected where a crash hurts most (an object stored but not read
    back; read back but not indexed; the unit's own objects; the unit row),
    then a real SIGKILL of `bodycam-dock sync` mid-run: after each, every
    index row has its object; the last run completes it, nothing twice."""
    dd, _ = _docked(tmp_path, SERIAL_A, recordings=2, segments=3, size=200_000)
    chains = {f: h for files in _by_recording(dd, SERIAL_A).values() for f, h in files.items()}
    s = store(seaweed, bucket)

    def cut(m: pytest.MonkeyPatch, cls: Any, name: str, nth: int, when: Any) -> None:
        real = getattr(cls, name)
        calls = []

        def cutting(*args: Any, **kw: Any) -> Any:
            if when(*args, **kw):
                calls.append(1)
                if len(calls) == nth:
                    raise StoreUnreachable("the power goes")
            return real(*args, **kw)

        m.setattr(cls, name, cutting)

    def no_row_without_its_object() -> None:
        for r in _agency_rows(pg_url):
            head = s.head(r["path"])
            assert head is not None and head.sha256 == r["ct_sha256"], r["file"]

    cuts = [
        (AgencyBucket, "read_back", 2, lambda *a, **k: True),  # stored, not yet read back
        (dock_index.Index, "add_segment", 2, lambda *a, **k: True),  # read back, not indexed
        (AgencyBucket, "put_verified",  1, lambda self, key, *a: key.endswith(layout.CHAIN)),
        (dock_index.Index, "put_unit", 1, lambda *a, **k: True),  # all but the unit row
    ]  # fmt: skip
    for cls, name, nth, when in cuts:
        with monkeypatch.context() as m:
            cut(m, cls, name, nth, when)
            with pytest.raises(OSError):
                dock_sync.sync(dd, s, pg_url, "dock1")
        no_row_without_its_object()
    # a real kill: `bodycam-dock sync` SIGKILLed once its first segment is stored
    creds = credentials_file(seaweed, tmp_path)
    argv = [*BODYCAM_DOCK, "sync", "--dock-dir", str(dd), "--to", f"s3://{bucket}",
            "--endpoint", seaweed.endpoint, "--credentials", str(creds), "--index", pg_url,
            "--name", "dock2", *EN_ARGS]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if any(r["dock"] == "dock2" for r in _agency_rows(pg_url)):
            break
        time.sleep(0.02)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]
    no_row_without_its_object()
    # the next runs complete it
    for name in ("dock1", "dock2"):
        r = subprocess.run([*argv[:-3], name, *EN_ARGS], capture_output=True, text=True,
                           timeout=300)  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert "0 refused" in r.stdout, r.stdout
    rows = _agency_rows(pg_url)
    assert sorted((r["dock"], r["file"]) for r in rows) == sorted(
        (d, f) for d in ("dock1", "dock2") for f in chains
    )  # no duplicate, none missing
    _agrees_by_dock(s, rows, chains)
    final = dock_sync.sync(dd, s, pg_url, "dock1")
    assert final.ok and final.pushed == [] and final.rows == 0


def _agrees_by_dock(s: AgencyBucket, rows: list[dict[str, Any]], chains: dict[str, str]) -> None:
    keys = {k for k in s.keys("units/") if f"/{layout.SEGMENTS}/" in k}
    assert {r["path"] for r in rows} == keys and len(keys) == len(chains)
    for key in keys:
        versions = s.versions(key)
        assert len(versions) == 1, key  # stored once, whatever the cuts
        head = s.head(key)
        assert head is not None and s.read_back(key, head.version_id) == head.sha256


def test_store_settings_are_checked_in_one_line(
    seaweed: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    dd, _ = _docked(tmp_path, SERIAL_A, recordings=1, segments=1, size=10_000)
    creds = credentials_file(seaweed, tmp_path)
    base = ["sync", "--dock-dir", str(dd), "--to", "s3://evidence-x", "--endpoint",
            seaweed.endpoint, "--index", str(tmp_path / "agency.sqlite"), *EN_ARGS]  # fmt: skip

    def fails(argv: list[str], text: str) -> None:
        assert dock_main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("dock: ") and text in err and err.count("\n") == 1, err

    creds.chmod(0o640)
    fails([*base, "--credentials", str(creds)], "can be read by others than its owner")
    creds.chmod(0o600)
    env = {k: os.environ.pop(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
           if k in os.environ}  # fmt: skip
    try:
        fails(base, "no store credentials")
    finally:
        os.environ.update(env)
    fails([*base[:7], "--credentials", str(creds), *EN_ARGS], "needs --index")
    fails([*base[:3], "--to", str(tmp_path / "agency"), "--endpoint", seaweed.endpoint,
           *EN_ARGS], "are for an s3:// store")  # fmt: skip
    # a bucket without Object Lock is refused, not used
    admin = store(seaweed, "plain-bucket", "admin")
    admin.client.create_bucket(Bucket="plain-bucket")
    fails([*base[:4], "s3://plain-bucket", *base[5:], "--credentials", str(creds)],
          "exists without Object Lock")  # fmt: skip
    # the dock's identity may not make a bucket: the store says so
    fails([*base, "--credentials", str(creds)], "AccessDenied")
    # an object PUT with a wrong SHA-256 is refused by the store (BadDigest)
    from botocore.exceptions import ClientError

    name = "evidence-digest"
    assert store(seaweed, name, "admin").ensure_bucket()
    with pytest.raises(ClientError) as exc:
        store(seaweed, name).client.put_object(
            Bucket=name, Key="k", Body=b"evidence",
            ChecksumSHA256=base64.b64encode(hashlib.sha256(b"other").digest()).decode(),
        )  # fmt: skip
    assert exc.value.response["Error"]["Code"] == "BadDigest"
