"""The city server's pull (issue 27, S0 art. 16), through the real commands:
two workstations each serve their dock folder with `bodycam-dock share`
(mutual TLS, the agency CA), and `bodycam-dock city-pull` pulls both into
the SeaweedFS cluster (tests/seaweed.py) with the index on PostgreSQL
(tests/pg.py). Every object's checksum is the chain's hash and the index
and the store agree object for object; a workstation whose certificate is
not the enrolled one is refused by name while the other is pulled; `share`
answers nothing to a client without the city certificate; the scheduled
pull SIGKILLed at 10 random (seeded) instants, then run once more, leaves
no duplicate, no missing object and no index row without its object."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding

from dock.object_store import AgencyBucket
from dock.seaweed import Cluster
from link import pki
from sealing import layout

from .conftest import BODYCAM_DOCK
from .english import EN_ARGS
from .pg import pg_server_fixture, pg_url_fixture  # noqa: F401  (fixtures: pg_server, pg_url)
from .seaweed import bucket_fixture, credentials_file, seaweed_fixture, store  # noqa: F401
from .test_agency_store import SERIAL_A, SERIAL_B, _agency_rows, _by_recording, _docked

pytestmark = pytest.mark.slow
SERIAL_C = "BC-TEST-0003"
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Share:
    name: str
    dock_dir: Path
    cert: Path
    address: str
    sha256: str
    proc: subprocess.Popen[str]


@dataclass
class City:
    base: Path
    ca: Path
    cert: Path
    key: Path
    shares: dict[str, Share]
    chains: dict[str, str]  # every segment file of ws-a and ws-b -> its chain's ct_sha256
    many: dict[str, str]  # ws-c's (many small segments: the cut test's)
    other_ca: pki.Issued


def _write_pair(folder: Path, name: str, ca: pki.Issued, role: str,
                key: Ed25519PrivateKey | None = None) -> tuple[Path, Path]:  # fmt: skip
    key = key or Ed25519PrivateKey.generate()
    cert = pki.issue(ca, cn=name, role=role, public_key=key.public_key())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.crt").write_bytes(pki.pem_cert(cert))
    (folder / f"{name}.key").write_bytes(pki.pem_key(key))
    (folder / f"{name}.key").chmod(0o600)
    return folder / f"{name}.crt", folder / f"{name}.key"


def _fp(cert: Path) -> str:
    return pki.cert_sha256(pki.load_cert(cert).public_bytes(Encoding.DER))


def _share(name: str, dock_dir: Path, ca: Path, cert: Path, key: Path) -> Share:
    proc = subprocess.Popen(
        [*BODYCAM_DOCK, "share", "--dock-dir", str(dock_dir), "--listen", "127.0.0.1:0",
         "--agency-ca", str(ca), "--cert", str(cert), "--key", str(key), *EN_ARGS],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r" on 127\.0\.0\.1:(\d+),.* sha256 ([0-9a-f]{64})", line)
    if m is None:
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"share did not start: {line!r} {err!r}")
    assert m[2] == _fp(cert)  # what it says it presents is what the city enrolls
    return Share(name, dock_dir, cert, f"127.0.0.1:{m[1]}", m[2], proc)


@pytest.fixture(scope="module", name="city")
def city_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    base = tmp_path_factory.mktemp("city")
    da, link_a = _docked(base / "a", SERIAL_A, recordings=2)
    db, _ = _docked(base / "b", SERIAL_B, recordings=1, agency=(link_a.unit.agency, link_a.ca))
    ca = base / "a" / "unit" / "ca.crt"
    city_cert, city_key = _write_pair(base / "city", "city", link_a.ca, "city")
    shares: dict[str, Share] = {}
    try:
        for name, dock_dir, sub in (("ws-a", da, "a"), ("ws-b", db, "b")):
            creds = base / sub / "unit" / "docks" / "dock1"
            shares[name] = _share(name, dock_dir, ca, creds / "dock.crt", creds / "dock.key")
        # another agency's workstation: its CA is not ours
        other = pki.make_ca("qa", org="Other agency")
        (base / "other-ca.crt").write_bytes(pki.pem_cert(other.cert))
        oc, ok = _write_pair(base / "other", "ws-x", other, "dock")
        shares["ws-x"] = _share("ws-x", da, base / "other-ca.crt", oc, ok)
        # ours, but not the certificate enrolled for the name it is enrolled under
        rc, rk = _write_pair(base / "rogue", "ws-r", link_a.ca, "dock")
        shares["ws-r"] = _share("ws-r", db, ca, rc, rk)
        # many small segments, so that the cuts fall all along a pull
        dc, _ = _docked(base / "c", SERIAL_C, recordings=4, segments=10, size=10_000,
                        agency=(link_a.unit.agency, link_a.ca))  # fmt: skip
        creds = base / "c" / "unit" / "docks" / "dock1"
        shares["ws-c"] = _share("ws-c", dc, ca, creds / "dock.crt", creds / "dock.key")
        many = {f: h for files in _by_recording(dc, SERIAL_C).values() for f, h in files.items()}
        chains = {f: h for d, n in ((da, SERIAL_A), (db, SERIAL_B))
                  for files in _by_recording(d, n).values() for f, h in files.items()}  # fmt: skip
        yield City(base, ca, city_cert, city_key, shares, chains, many, other)
    finally:
        for s in shares.values():
            s.proc.terminate()
        for s in shares.values():
            try:
                s.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait(timeout=10)


def _docks_toml(city: City, path: Path, entries: list[tuple[str, Share, str | None]]) -> Path:
    """[[dock]] tables: (enrolled name, the share at its address, sha256 or
    None for the share's own)."""
    text = "".join(
        f'[[dock]]\nname = "{name}"\naddress = "{s.address}"\nsha256 = "{fp or s.sha256}"\n\n'
        for name, s, fp in entries
    )
    path.write_text(text)
    return path


def _argv(city: City, seaweed: Cluster, bucket: str, pg_url: str, docks: Path,
          *when: str) -> list[str]:  # fmt: skip
    creds = credentials_file(seaweed, city.base)
    return [*BODYCAM_DOCK, "city-pull", "--docks", str(docks), "--to", f"s3://{bucket}",
            "--endpoint", seaweed.endpoint, "--credentials", str(creds), "--index", pg_url,
            "--cert", str(city.cert), "--key", str(city.key), "--agency-ca", str(city.ca),
            "--parallel", "2", "--staging", str(city.base / f"staging-{bucket}"),
            *(when or ("--once",)), *EN_ARGS]  # fmt: skip


def _agree(s: AgencyBucket, pg_url: str, chains: dict[str, str], docks: set[str]) -> None:
    """Index and store object for object; each segment once, its stored
    checksum and its bytes read back the chain's hash; no row twice."""
    rows = _agency_rows(pg_url)
    keys = {k for k in s.keys("units/") if f"/{layout.SEGMENTS}/" in k}
    assert sorted((r["dock"], r["file"]) for r in rows) == sorted(
        {(r["dock"], r["file"]) for r in rows}
    )
    assert {r["dock"] for r in rows} == docks
    assert {r["path"] for r in rows} == keys
    assert {r["file"] for r in rows} == set(chains)
    for r in rows:
        assert r["ct_sha256"] == chains[r["file"]]
    for key in keys:
        versions = s.versions(key)
        assert len(versions) == 1, key  # stored once
        head = s.head(key)
        assert head is not None and head.mode == "COMPLIANCE"
        assert head.sha256 == chains[key.rsplit("/", 1)[1]]
        assert s.read_back(key, head.version_id) == head.sha256


def _staged_since(staging: Path, t: float) -> bool:
    """A workstation's staging folder made since `t` (its pull has begun)."""
    try:
        return any(p.name != ".lock" and p.stat().st_mtime >= t for p in staging.iterdir())
    except OSError:
        return False


def _no_row_without_its_object(s: AgencyBucket, pg_url: str) -> None:
    for r in _agency_rows(pg_url):
        head = s.head(r["path"])
        assert head is not None and head.sha256 == r["ct_sha256"], r["file"]


def test_city_pull_once_stores_every_workstation(
    city: City, seaweed: Cluster, bucket: str, pg_url: str
) -> None:
    a, b = city.shares["ws-a"], city.shares["ws-b"]
    docks = _docks_toml(city, city.base / "docks.toml", [("ws-a", a, None), ("ws-b", b, None)])
    argv = _argv(city, seaweed, bucket, pg_url, docks)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "workstation ws-a pulled" in r.stdout and "workstation ws-b pulled" in r.stdout
    s = store(seaweed, bucket)
    _agree(s, pg_url, city.chains, {"ws-a", "ws-b"})
    # the unit's own objects came too: chain, key, receipts, verification, locked
    for serial, dock_dir in ((SERIAL_A, a.dock_dir), (SERIAL_B, b.dock_dir)):
        for name in (layout.CHAIN, layout.DEVICE_PUB, "verification.json"):
            head = s.head(f"units/{serial}/{name}")
            assert head is not None and head.mode == "COMPLIANCE", name
        chain = s.get_bytes(f"units/{serial}/{layout.CHAIN}")
        assert chain == (dock_dir / "units" / serial / layout.CHAIN).read_bytes()
        receipts = {p.name for p in (dock_dir / "units" / serial / layout.RECEIPTS).glob("*.json")}
        assert receipts and set(s.keys(f"units/{serial}/{layout.RECEIPTS}/")) == {
            f"units/{serial}/{layout.RECEIPTS}/{n}" for n in receipts
        }
    # again: nothing stored, nothing written
    again = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("0 files stored, 0 index rows written, 0 refused") == 2, again.stdout
    # the staging folder keeps nothing behind
    staging = city.base / f"staging-{bucket}"
    assert [p.name for p in staging.iterdir()] == [".lock"]


def test_a_workstation_not_enrolled_is_refused_by_name(
    city: City, seaweed: Cluster, bucket: str, pg_url: str
) -> None:
    a, b = city.shares["ws-a"], city.shares["ws-b"]
    x, rogue = city.shares["ws-x"], city.shares["ws-r"]
    docks = _docks_toml(
        city,
        city.base / "docks-mixed.toml",
        [
            ("ws-a", a, None),
            ("ws-x", x, None),  # another CA: the handshake fails
            ("ws-b", rogue, b.sha256),  # our CA, but not ws-b's enrolled certificate
        ],
    )
    r = subprocess.run(_argv(city, seaweed, bucket, pg_url, docks), capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    assert "workstation ws-a pulled" in r.stdout
    assert re.search(r"workstation ws-x not pulled: TLS refused", r.stderr), r.stderr
    assert re.search(r"workstation ws-b not pulled: its certificate is not the enrolled one",
                     r.stderr), r.stderr  # fmt: skip
    assert "not pulled this round: ws-b, ws-x" in r.stderr
    # ws-a whole, nothing of the others
    s = store(seaweed, bucket)
    a_files = {f for files in _by_recording(a.dock_dir, SERIAL_A).values() for f in files}
    _agree(s, pg_url, {f: city.chains[f] for f in a_files}, {"ws-a"})
    assert list(s.keys(f"units/{SERIAL_B}/")) == []


def _tls(city: City, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(city.ca)
    ctx.check_hostname = False
    if cert is not None and key is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


def _get(city: City, share: Share, target: str, cert: Path | None, key: Path | None) -> bytes:
    """One raw HTTP/1.1 GET over TLS; the whole answer (b"" if closed unanswered)."""
    host, port = share.address.rsplit(":", 1)
    request = f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        _tls(city, cert, key).wrap_socket(raw) as tls,
    ):
        tls.sendall(request)
        out = b""
        while chunk := tls.recv(65536):
            out += chunk
        return out


def test_share_answers_only_the_city_server(city: City) -> None:
    a = city.shares["ws-a"]
    # the city's certificate: the listing
    answer = _get(city, a, "/v1/listing", city.cert, city.key)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    listing = json.loads(body)
    assert [u["serial"] for u in listing["units"]] == [SERIAL_A]
    assert len(listing["units"][0]["segments"]) == 4
    for seg_row in listing["units"][0]["segments"]:  # each size is the file's
        assert seg_row["size"] == (a.dock_dir / seg_row["path"]).stat().st_size, seg_row
    # a dock's certificate of the same CA: closed at the TLS layer, no HTTP at all
    creds = city.base / "b" / "unit" / "docks" / "dock1"
    with _closed():
        assert _get(city, a, "/v1/listing", creds / "dock.crt", creds / "dock.key") == b""
    # no certificate: the handshake is refused
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _get(city, a, "/v1/listing", None, None)
    # another CA's city certificate: refused too
    oc, ok = _write_pair(city.base / "other-city", "city", city.other_ca, "city")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _get(city, a, "/v1/listing", oc, ok)
    # only named files, no way out of the dock folder, an answer to everything
    seg = listing["units"][0]["segments"][0]["path"]
    for target, code in [
        (f"/v1/files?path={seg}", b"200"),
        ("/v1/files?path=dock.sqlite", b"404"),
        ("/v1/files?path=../a/dock/dock.sqlite", b"404"),
        (f"/v1/files?path=units/{SERIAL_A}/../../dock.sqlite", b"404"),
        ("/v1/files?path=/etc/passwd", b"404"),
        (f"/v1/files?path=units/{SERIAL_A}/segments/nope.age", b"404"),
        ("/v1/files", b"404"),
        ("/v1/nothing", b"404"),
        ("/v1/files?path=" + "a" * 5000, b"414"),
        ("/v1/index", b"200"),
    ]:
        answer = _get(city, a, target, city.cert, city.key)
        assert answer.split(b" ", 2)[1] == code, (target, answer[:200])
        assert b"Traceback" not in answer
    # the index snapshot keeps no people, prints or ledger
    answer = _get(city, a, "/v1/index", city.cert, city.key)
    snap = city.base / "snapshot.sqlite"
    snap.write_bytes(answer.partition(b"\r\n\r\n")[2])
    import sqlite3

    conn = sqlite3.connect(snap)
    try:
        assert conn.execute("SELECT count(*) FROM segments").fetchone()[0] == 4
        for table in ("people", "prints", "ledger"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0
    finally:
        conn.close()
    # garbage is answered, and the service goes on
    host, port = a.address.rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        _tls(city, city.cert, city.key).wrap_socket(raw) as tls,
    ):
        tls.sendall(b"\x00\xffNONSENSE\r\n\r\n")
        assert tls.recv(100).startswith(b"HTTP/1.1 400")
    assert _get(city, a, "/v1/listing", city.cert, city.key).startswith(b"HTTP/1.1 200")


class _closed:
    """The connection closes without an answer: b"" read, or a reset."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, value: Any, tb: Any) -> bool:
        return kind is not None and issubclass(kind, (ssl.SSLError, ConnectionError))


@pytest.mark.parametrize(
    "times", [3, pytest.param(10, marks=pytest.mark.soak)], ids=["3 cuts", "10 cuts"]
)
def test_the_scheduled_pull_cut_then_completed(
    city: City, seaweed: Cluster, bucket: str, pg_url: str, times: int
) -> None:
    """SIGKILLs at seeded random instants (BODYCAM_CUT_SEED), then a run that
    completes it: 3 in the default run, the issue's 10 with `-m soak`."""
    a, b, c = city.shares["ws-a"], city.shares["ws-b"], city.shares["ws-c"]
    docks = _docks_toml(city, city.base / "docks-cut.toml",
                        [("ws-a", a, None), ("ws-b", b, None), ("ws-c", c, None)])  # fmt: skip
    argv = _argv(city, seaweed, bucket, pg_url, docks, "--every", "0.5")
    s = store(seaweed, bucket)
    rng = random.Random(int(os.environ.get("BODYCAM_CUT_SEED", "27")))
    cuts = []
    staging = city.base / f"staging-{bucket}"
    for _ in range(times):
        # a random instant once the round has begun (a workstation staged):
        # the interpreter's start is not where a cut hurts
        at = rng.uniform(0.2, 1.6)
        started = time.time() - 0.05
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if _staged_since(staging, started):
                break
            time.sleep(0.01)
        time.sleep(at)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        rows = len(_agency_rows(pg_url))
        cuts.append(f"+{at:.2f}s:{rows}")
        _no_row_without_its_object(s, pg_url)
    print(
        f"\ncity-pull SIGKILLed (after the round began: index rows): {' '.join(cuts)}",
        file=sys.stderr,
    )
    r = subprocess.run(_argv(city, seaweed, bucket, pg_url, docks), capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    _agree(s, pg_url, {**city.chains, **city.many}, {"ws-a", "ws-b", "ws-c"})


def test_bench_agency_short_runs_and_reports() -> None:
    """`tools/bench.py agency --short`: it runs and reports (its timings on a
    few MB mean nothing; `python tools/bench.py agency` measures)."""
    r = subprocess.run([sys.executable, str(REPO / "tools" / "bench.py"), "agency", "--short"],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["part"] == "agency" and out["short"] is True and out["segments"] >= 1
    for side in ("direct", "sync", "city_pull"):
        assert out["MB_s"][side] > 0
    assert out["ratio_sync"] > 0 and out["ratio_city_pull"] > 0
    assert len(out["loadavg_start"]) == 3


class _FakeRemote:
    """A workstation's share for `_Fetch`: files by rel; 'gone' has none;
    'cut' fails its download; `calls` records (connection, rel)."""

    def __init__(self, name: str, calls: list[tuple[str, str]], gate: Any = None) -> None:
        self.name, self.calls, self.gate = name, calls, gate

    def check_identity(self) -> None:
        pass

    def close(self) -> None:
        pass

    def download(self, route: Any, dst: Path, limit: int, rel: str | None = None) -> bool:
        assert rel is not None
        if self.gate is not None:
            self.gate.wait(10)
        self.calls.append((self.name, rel))
        if rel == "gone":
            return False
        if rel == "cut" and self.name == "ahead":
            raise OSError("the link drops")
        dst.write_bytes(rel.encode())
        return True


def test_segments_fetched_ahead_in_sync_order_with_fallbacks(tmp_path: Path) -> None:
    """`_Fetch` (dock/city.py): what sync will ask for is downloaded ahead on
    a second connection, never more than AHEAD files; a file sync passes
    over is dropped; a missing one is Missing; once fetching ahead fails,
    sync's own connection downloads the rest; nothing is left behind."""
    import threading

    from dock.city import _Fetch
    from dock.sync import Missing

    calls: list[tuple[str, str]] = []
    gate = threading.Event()
    fetch = _Fetch(_FakeRemote("first", calls), lambda: _FakeRemote("ahead", calls, gate),  # type: ignore[arg-type]
                   tmp_path)  # fmt: skip
    names = ["a", "b", "skipped", "c", "gone", "d", "cut", "e"]
    fetch.expect([(Path(n), 10) for n in names])
    gate.set()
    deadline = time.monotonic() + 60  # only a hang fails it
    while len(calls) < fetch.AHEAD and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert len([c for c in calls if c[0] == "ahead"]) == fetch.AHEAD  # bounded
    got = []
    for n in ["a", "b", "c", "gone", "d", "cut", "e", "unexpected"]:
        try:
            with fetch(Path(n)) as path:
                got.append(path.read_text())
                assert len(list(tmp_path.iterdir())) <= fetch.AHEAD + 1
        except Missing:
            got.append("-")
    fetch.close()
    assert got == ["a", "b", "c", "-", "d", "cut", "e", "unexpected"]
    ahead = [r for who, r in calls if who == "ahead"]
    assert ahead == ["a", "b", "skipped", "c", "gone", "d", "cut"]  # stops at the failure
    assert [r for who, r in calls if who == "first"] == ["cut", "e", "unexpected"]
    assert list(tmp_path.iterdir()) == []
