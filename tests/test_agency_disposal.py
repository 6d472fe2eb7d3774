"""Disposal at the agency (issue 27, by issue 26's rules) on the real
SeaweedFS cluster (tests/seaweed.py) with the agency index on PostgreSQL
(tests/pg.py): recordings made on a clock set back 7 months (due under the
dock's rules) are synced with locks of a few seconds (sync's test-only
`test_retention_s`); `bodycam-dock dispose --to s3://` before the lock is
over is refused by the store itself (AccessDenied), shown in one line with
nothing removed and nothing recorded; after it, exactly the recording's
object versions go, the signed statement is stored (locked) and verifies,
the index and the dock's audit log record it, and a later sync does not
bring the objects back. A legal hold the store keeps is refused by the
store likewise; an unapproved request and a held recording are refused
before any call to the store."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from sqlalchemy import select

from dock import audit
from dock import index as dock_index
from dock import sync as dock_sync
from dock.agency_disposal import dispose_at_agency, segment_key, statement_key
from dock.disposal import DisposeRefused
from dock.dock_locale import dock_locale
from dock.object_store import AgencyBucket
from dock.seaweed import Cluster
from sealing.disposals import parse_disposal
from sealing.recordings import recordings
from sealing.verify import verify_store

from .access_fixtures import approved_request
from .conftest import BODYCAM_DOCK
from .english import EN_ARGS
from .export_fixtures import Link
from .pg import pg_server_fixture, pg_url_fixture  # noqa: F401  (fixtures: pg_server, pg_url)
from .seaweed import bucket_fixture, credentials_file, seaweed_fixture, store  # noqa: F401
from .test_disposal import pulled  # noqa: F401  (fixture: 3 years, 7 months, 7 months back)

pytestmark = pytest.mark.slow
SERIAL = "BC-TEST-0001"
LOCK_S = 15.0


def _chain_files(dock: Path) -> dict[int, dict[str, str]]:
    report = verify_store(dock / "units" / SERIAL, keep=True)
    return {r.start.seq: {str(x.body["file"]): str(x.body["ct_sha256"]) for x in r.media()}
            for r in recordings(report.chain)}  # fmt: skip


def _dispose(link: Link, dock: Path, seq: int, rid: str, seaweed: Cluster, bucket: str,
             pg_url: str, creds: Path) -> Any:  # fmt: skip
    import subprocess

    key = link.dir / "docks" / "dock1" / "dock.key"
    argv = [*BODYCAM_DOCK, "dispose", "--dock-dir", str(dock), "--serial", SERIAL, "--recording",
            str(seq), "--request", rid, "--by", "孙法制", "--key", str(key), "--to",
            f"s3://{bucket}", "--endpoint", seaweed.endpoint, "--credentials", str(creds),
            "--index", pg_url, *EN_ARGS]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=180)


def _rows(pg_url: str, table: Any) -> list[dict[str, Any]]:
    idx = dock_index.Index.open(pg_url, dock=None)
    try:
        return idx._fetch(select(table))
    finally:
        idx.close()


def _versions(s: AgencyBucket, files: dict[str, str]) -> dict[str, int]:
    return {f: len(s.versions_of(segment_key(SERIAL, f))) for f in files}


def _change(dock: Path, seq: int, change: str, value: str, by: str) -> None:
    idx = dock_index.Index.open(dock / "dock.sqlite")
    try:
        idx.add_retention_change({
            "serial": SERIAL, "recording": seq, "at_us": time.time_ns() // 1000,
            "change": change, "value": value, "by": by, "reason": "当事人有异议",
            "approved_by": by if change == "release" else "",
        })  # fmt: skip
    finally:
        idx.close()


def _acts(dock: Path) -> list[tuple[str, str, dict[str, Any]]]:
    entries, broken = audit.read(dock)
    assert broken is None, broken
    return [(e.target, e.result, e.detail) for e in entries if e.act == "agency-dispose"]


def test_the_store_refuses_a_disposal_before_the_lock_is_over_then_allows_it(
    pulled: tuple[Link, Path, list[int]],  # noqa: F811
    seaweed: Cluster,
    bucket: str,
    pg_url: str,
    tmp_path: Path,
) -> None:
    link, dock, (old, recent, third) = pulled
    _change(dock, third, "hold", "dispute", "赵科长")  # the store keeps it under a legal hold
    files = _chain_files(dock)
    s = store(seaweed, bucket)
    synced = dock_sync.sync(dock, s, pg_url, "dock1", test_retention_s=LOCK_S)
    assert synced.ok, synced.refused
    _change(dock, third, "release", "dispute", "钱局长")  # released at the dock, not yet synced
    creds = credentials_file(seaweed, tmp_path, "admin")  # even the store's administrator
    rid = approved_request(dock, "孙法制", "钱局长", act="dispose", serial=SERIAL)
    before = {seq: _versions(s, fs) for seq, fs in files.items()}
    assert all(n == 1 for v in before.values() for n in v.values()), before
    head = s.head(segment_key(SERIAL, sorted(files[recent])[0]))
    assert head is not None and head.until is not None and not head.hold

    # before the lock is over: the store refuses, in one line; nothing removed or recorded
    r = _dispose(link, dock, recent, rid, seaweed, bucket, pg_url, creds)
    assert datetime.now(UTC) < head.until, "the attempt came too late to test the lock"
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    line = r.stderr
    assert "AccessDenied" in line and "the store refused to delete units/" in line, line
    assert f"locked until {head.until.strftime('%Y-%m-%dT%H:%M:%SZ')}" in line, line
    assert "nothing removed, nothing recorded as disposed" in line, line
    assert {seq: _versions(s, fs) for seq, fs in files.items()} == before
    assert not list(s.keys(f"units/{SERIAL}/disposals/"))
    assert _rows(pg_url, dock_index.disposals) == []
    assert {r["file"] for r in _rows(pg_url, dock_index.segments)} == {
        f for fs in files.values() for f in fs
    }
    acts = _acts(dock)
    assert [a[1] for a in acts] == ["started", "refused"], acts
    assert acts[1][2]["store"] == "AccessDenied" and acts[1][2]["removed"] == 0

    # once it is over: the recording's object versions go, and only theirs
    time.sleep(max(0.0, (head.until - datetime.now(UTC)).total_seconds() + 1.5))
    r = _dispose(link, dock, recent, rid, seaweed, bucket, pg_url, creds)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 object versions deleted for 2 files" in r.stdout, r.stdout
    after = {seq: _versions(s, fs) for seq, fs in files.items()}
    assert after[recent] == {f: 0 for f in files[recent]}
    assert after[old] == before[old] and after[third] == before[third]
    # the signed statement, stored and locked like the unit's objects, verifies
    (skey,) = s.keys(f"units/{SERIAL}/disposals/")
    statement = parse_disposal(s.get_bytes(skey) or b"")
    assert skey == statement_key(SERIAL, statement.id) and skey in r.stdout
    body = statement.body
    assert (body["serial"], body["recording"], body["by"], body["approver"], body["request"]) == (
        SERIAL, recent, "孙法制", "钱局长", rid)  # fmt: skip
    assert {f["file"]: f["ct_sha256"] for f in body["files"]} == files[recent]
    dock_key = load_pem_private_key((link.dir / "docks" / "dock1" / "dock.key").read_bytes(), None)
    assert statement.dock == _fingerprint(dock_key)
    shead = s.head(skey)
    assert shead is not None and shead.mode == "COMPLIANCE" and shead.sha256 is not None
    assert shead.until is not None and shead.until > datetime.now(UTC) + timedelta(hours=23)
    # the prefix as an examiner downloads it verifies, the disposed files explained
    mirror = tmp_path / "mirror" / SERIAL
    for k in s.keys(f"units/{SERIAL}/"):
        path = mirror / k.removeprefix(f"units/{SERIAL}/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(s.get_bytes(k) or b"")
    report = verify_store(mirror)
    assert report.ok, report.problems
    status = {x["file"]: x["status"] for x in report.segments}
    assert {status[f] for f in files[recent]} == {"disposed"}, status
    # the agency index: the disposal's row, the files' rows gone (no row without its object)
    (row,) = _rows(pg_url, dock_index.disposals)
    assert (row["serial"], row["recording"], row["id"], row["files"]) == (
        SERIAL, recent, statement.id, 2)  # fmt: skip
    rows = {r["file"] for r in _rows(pg_url, dock_index.segments)}
    assert rows == {f for seq in (old, third) for f in files[seq]}
    for r_ in _rows(pg_url, dock_index.segments):
        assert s.head(r_["path"]) is not None
    # the dock's audit log
    acts = _acts(dock)
    assert [a[1] for a in acts] == ["started", "refused", "started", "ok"], acts
    assert acts[-1][2]["statement"] == statement.id and acts[-1][2]["versions"] == 2
    # a legal hold the store keeps (released at the dock, not yet synced; its retention
    # is over): refused by the store likewise
    r = _dispose(link, dock, third, rid, seaweed, bucket, pg_url, creds)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "AccessDenied" in r.stderr and "under a legal hold" in r.stderr, r.stderr
    assert _versions(s, files[third]) == before[third]
    assert len(_rows(pg_url, dock_index.disposals)) == 1
    assert _acts(dock)[-1][1] == "refused"
    # the dock still holds the files: its next sync does not bring them back
    again = dock_sync.sync(dock, s, pg_url, "dock1", test_retention_s=LOCK_S)
    assert again.ok, again.refused
    assert _versions(s, files[recent]) == {f: 0 for f in files[recent]}
    assert {r["file"] for r in _rows(pg_url, dock_index.segments)} == rows
    r = _dispose(link, dock, recent, rid, seaweed, bucket, pg_url, creds)
    assert r.returncode == 1 and "disposed of at the agency already" in r.stderr, r.stderr


class _NoStore:
    """A store any call to which fails the test."""

    bucket = "none"

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store was called: {name}")


def test_rules_refuse_before_any_call_to_the_store(
    pulled: tuple[Link, Path, list[int]],  # noqa: F811
    pg_url: str,
) -> None:
    link, dock, (_old, recent, third) = pulled
    key = load_pem_private_key((link.dir / "docks" / "dock1" / "dock.key").read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    locale = dock_locale(dock)
    now = int(time.time() * 1e6)

    def refused(seq: int, rid: str) -> str:
        with pytest.raises(DisposeRefused) as exc:
            dispose_at_agency(dock, _NoStore(), pg_url, SERIAL, seq, rid, "孙法制",  # type: ignore[arg-type]
                              key, now, locale, started=lambda: pytest.fail("started"))  # fmt: skip
        return str(exc.value.args[0])

    assert "no request nosuch" in refused(recent, "nosuch")
    pending = approved_request(dock, "孙法制", "赵科长", act="dispose", serial=SERIAL)
    assert "not of the role that approves disposals" in refused(recent, pending)
    rid = approved_request(dock, "孙法制", "钱局长", act="dispose", serial=SERIAL)
    _change(dock, third, "hold", "litigation", "赵科长")
    assert "is held" in refused(third, rid)
    assert _rows(pg_url, dock_index.disposals) == []


def _fingerprint(key: Any) -> str:
    from sealing.keys import fingerprint

    return fingerprint(key.public_key())
