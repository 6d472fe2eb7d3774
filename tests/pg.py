"""A real PostgreSQL server for the tests, from Debian's `postgresql` package.

`pg_server` (once per session) runs initdb and pg_ctl in a fresh folder under
/tmp, listening on a unix socket in that folder only (no TCP). PostgreSQL
refuses to run as root, and CI runs as root, so there the server runs as the
`postgres` system user (or `nobody`) through `runuser`. `pg_url` gives each
test its own empty database. A test module imports both fixtures
(`from .pg import pg_server_fixture, pg_url_fixture`). Where no server can be started the tests that
ask for one are skipped, saying why.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPERUSER = "bodycam"  # initdb's superuser; trust auth on a socket only we can reach
_names = itertools.count(1)


@dataclass(frozen=True)
class PgServer:
    bin: Path
    dir: Path  # data in dir/data, the socket in dir, the log in dir/log

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={self.dir}"


def _bindir() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(found[-1]).parent if found else None


def _run_as() -> tuple[list[str], str | None]:
    """The command prefix that runs the server as a user it accepts, and that
    user (None: this process's own user, not root)."""
    if os.geteuid() != 0:
        return [], None
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("running as root and no runuser to start PostgreSQL as another user")
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return [runuser, "-u", name, "--"], name
    pytest.skip("running as root and neither a postgres nor a nobody user to run PostgreSQL")


def _log_tail(path: Path) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-5:])
    except OSError:
        return "(no log)"


@pytest.fixture(scope="session", name="pg_server")
def pg_server_fixture() -> Iterator[PgServer]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[dock]')")
    bindir = _bindir()
    if bindir is None or not (bindir / "pg_ctl").exists():
        pytest.skip("no PostgreSQL server binaries (Debian package postgresql: scripts/setup)")
    prefix, user = _run_as()
    # not under pytest's tmp folder: that one is 0700 root's, the server's user
    # could not reach its own files there
    base = Path(tempfile.mkdtemp(prefix="bodycam-pg-"))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    os.chmod(base, 0o700)
    server = PgServer(bindir, base)
    log = base / "log"

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, *cmd], capture_output=True, text=True, timeout=120, cwd=base
        )

    init = run(
        str(bindir / "initdb"),
        "-D",
        str(base / "data"),
        "-U",
        SUPERUSER,
        "--auth=trust",
        "--no-locale",
        "-E",
        "UTF8",
        "--no-sync",  # a throwaway cluster: initdb's own fsyncs only cost time
    )
    if init.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"initdb failed: {(init.stderr or init.stdout).strip()[-300:]}")
    options = f"-c listen_addresses='' -c unix_socket_directories='{base}'"
    start = run(
        str(bindir / "pg_ctl"), "-D", str(base / "data"), "-l", str(log), "-o", options,
        "-w", "-t", "60", "start",
    )  # fmt: skip
    if start.returncode != 0:
        tail = _log_tail(log)
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {start.stderr.strip()[-200:]} {tail}")
    try:
        yield server
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(base / "data"), "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(name="pg_url")
def pg_url_fixture(pg_server: PgServer) -> str:
    """A new, empty database on the session's server."""
    import psycopg

    name = f"t{os.getpid()}_{next(_names)}"
    with psycopg.connect(
        host=str(pg_server.dir), user=SUPERUSER, dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_server.url(name)
