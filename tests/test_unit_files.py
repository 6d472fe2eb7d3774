"""Every shipped systemd unit runs as it is written: the exact ExecStartPre
and ExecStart lines of each boot/files/*.service, placeholders filled, with
the unit's Environment=, on a provisioned unit (issue 21: the recorder's
bare `--export` was refused by `bodycam run`, so no flashed unit could ever
start, and no test had run the service's own command line).

The venv unit makes a real venv from an x86_64 wheelhouse of the unit's
pins (Debian's python3, offline where this machine allows); the recorder's
lines then run that venv's `bodycam`, as on a unit after its first boot."""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from sealing import layout
from sealing.store import read_chain

ROOT = Path(__file__).resolve().parent.parent
FILES = ROOT / "boot" / "files"
UNITS = sorted(p.name for p in FILES.glob("*.service"))
DEBIAN_PYTHON = Path("/usr/bin/python3")
SERIAL = "BC-QA-000421"


@dataclass(frozen=True)
class Exec:
    key: str  # ExecStartPre | ExecStart
    ignore_failure: bool  # systemd's "-" prefix
    argv: list[str]


def render(name: str, prefix: Path, unit: Path) -> str:
    """A unit file as flashing installs it (tools/flash.py render_units)."""
    text = (FILES / name).read_text()
    return text.replace("@PREFIX@", str(prefix)).replace("@UNIT@", str(unit))


def exec_lines(text: str) -> list[Exec]:
    out = []
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep or key not in ("ExecStartPre", "ExecStart") or not value:
            continue
        ignore = value.startswith("-")
        value = value.removeprefix("-")
        assert value[:1] not in "@:+!", f"a prefix this test does not model: {line}"
        out.append(Exec(key, ignore, shlex.split(value)))
    return out


def environment(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        if line.startswith("Environment="):
            for item in shlex.split(line.removeprefix("Environment=")):
                k, _, v = item.partition("=")
                env[k] = v
    return env


def _offline(argv: list[str]) -> list[str]:
    """In a network namespace with loopback only, where this machine allows it
    (the venv unit has PrivateNetwork=yes)."""
    ok = subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    return ["unshare", "-n", *argv] if ok else argv


def _flash(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "flash.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def flashed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder flashed as an x86_64 root (its usr/bin/true says so) with an
    x86_64 wheelhouse of the unit's pins: what a card is before first boot."""
    base = tmp_path_factory.mktemp("units")
    wheels = base / "wheels"
    r = subprocess.run(
        [sys.executable, "-m", "boot.wheelhouse", "build", str(wheels)]
        + ["--arch", "amd64", "--project", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (base / "pw").write_text("unit-files-pw\n")
    assert _flash("agency-init", "--profile", "qa", "--agency", str(base / "qa")).returncode == 0
    target = base / "root"
    (target / "usr" / "bin").mkdir(parents=True)
    shutil.copy("/usr/bin/true", target / "usr" / "bin" / "true")
    r = _flash(
        str(target),
        *("--serial", SERIAL, "--officer", "P1234", "--password-file", str(base / "pw")),
        *("--agency", str(base / "qa"), "--wheelhouse", str(wheels)),
    )
    assert r.returncode == 0, r.stderr
    return target


def test_every_shipped_unit_is_covered() -> None:
    # a new unit file must come with the means to run it here
    assert UNITS == ["bodycam-recorder.service", "bodycam-venv.service"]


@pytest.mark.slow
@pytest.mark.skipif(not DEBIAN_PYTHON.exists(), reason="the venv unit runs Debian's python3")
def test_each_units_exec_lines_run_on_a_provisioned_unit(flashed: Path, tmp_path: Path) -> None:
    prefix, unit = flashed / "opt" / "bodycam", flashed / "var" / "lib" / "bodycam"
    base_env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(tmp_path)}

    # first boot: bodycam-venv.service, each ExecStart in order, as root would
    text = render("bodycam-venv.service", prefix, unit)
    lines = exec_lines(text)
    assert [e.key for e in lines] == ["ExecStart"] * 3
    for e in lines:
        r = subprocess.run(
            _offline(e.argv),
            capture_output=True,
            text=True,
            env={**base_env, **environment(text)},
            timeout=600,
        )
        assert r.returncode == 0, f"{e.argv}\n{r.stdout}\n{r.stderr}"
    assert (prefix / "venv" / "bin" / "bodycam").exists()

    # every start: bodycam-recorder.service's one command, the pre-use check inside it
    text = render("bodycam-recorder.service", prefix, unit)
    env = {**base_env, **environment(text)}
    (start,) = exec_lines(text)
    assert start.key == "ExecStart"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(120)  # a ceiling for a busy machine, not a measurement
    child = subprocess.Popen(
        start.argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env, "NOTIFY_SOCKET": str(tmp_path / "notify")},
    )
    try:
        got: list[str] = []
        while "WATCHDOG=1" not in got:  # Type=notify: ready, then the loop's pings
            got.append(notify.recv(200).decode())
        assert got[0] == "READY=1", got
        port = 8443  # unit.toml [export], which a bare --export serves
        with socket.create_connection(("::1", port), timeout=30):
            pass
        # the pre-use check beside the recorder, the venv the other unit made included
        deadline = time.monotonic() + 120  # a ceiling for a busy machine
        while not (checked := _records(unit, "selftest")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert checked, "no selftest record from the running recorder"
        assert checked[-1]["beside"] == "recorder"
        assert checked[-1]["checks"]["venv integrity"] == "PASS", checked[-1]
    finally:
        child.send_signal(signal.SIGTERM)
        out = child.communicate(timeout=120)[0]
        notify.close()
    assert child.returncode == 0, out
    assert "export service on" in out and "Traceback" not in out, out
    assert re.search(r"^done: \d+ segments sealed", out, re.M), out
    assert "pre-use PASS venv integrity" in out, out


def _records(unit: Path, type_: str) -> list[dict]:
    """The bodies of the chain's `type_` records (read as `bodycam status`
    does, beside the running recorder)."""
    lines = read_chain(unit / "store" / layout.CHAIN).lines
    return [ln.record.body for ln in lines if ln.record.type == type_]


def test_a_bare_export_is_unit_tomls_address(tmp_path: Path) -> None:
    # the argument alone: before the fix argparse refused '' as ADDRESS:PORT
    r = subprocess.run(
        [sys.executable, "-m", "firmware.cli", "run", "--unit", str(tmp_path / "none"), "--export"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert "ADDRESS:PORT" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 2 and r.stderr.startswith("bodycam run: "), r.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "firmware.cli", "run", "--unit", str(tmp_path), "--export", "x"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert bad.returncode == 2 and "'x' is not ADDRESS:PORT" in bad.stderr


def test_flashing_takes_the_roots_architecture(flashed: Path) -> None:
    # the x86_64 wheelhouse fitted the x86_64 root; a root with no program to
    # tell is a Pi's (arm64), and the same wheelhouse is refused for it
    base = flashed.parent
    assert any("x86_64" in w.name for w in (flashed / "opt/bodycam/wheels").glob("*.whl"))
    r = _flash(
        str(base / "pi-root"),
        *("--serial", "BC-QA-000422", "--officer", "P1234", "--password-file", str(base / "pw")),
        *("--agency", str(base / "qa"), "--wheelhouse", str(base / "wheels")),
    )
    assert r.returncode == 1 and "(arm64)" in r.stderr and "x86_64" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def _writable_in_sandbox(text: str, path: str) -> bool:
    """Whether the service may write `path` under its ProtectSystem=strict:
    its own /tmp (PrivateTmp=yes) or a ReadWritePaths= entry."""
    settings = dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln)
    if path == "/tmp" or path.startswith("/tmp/"):
        return settings.get("PrivateTmp") == "yes"
    allowed = settings.get("ReadWritePaths", "").split()
    return any(path == a or path.startswith(a.rstrip("/") + "/") for a in allowed)


def test_lgpio_gets_a_writable_working_directory(tmp_path: Path) -> None:
    # lgpio makes its FIFO in LG_WD (else the cwd, / and read-only here)
    text = render("bodycam-recorder.service", Path("/opt/bodycam"), Path("/var/lib/bodycam"))
    assert re.search(r"^ProtectSystem=strict$", text, re.M)
    lg_wd = environment(text).get("LG_WD")
    workdir = re.search(r"^WorkingDirectory=(\S+)$", text, re.M)
    where = lg_wd or (workdir.group(1) if workdir else "/")
    assert _writable_in_sandbox(text, where), f"lgpio's FIFO would go to read-only {where}"
    # the check itself can fail: without the line, the cwd / is read-only
    assert not _writable_in_sandbox(text.replace("Environment=LG_WD=/tmp\n", ""), "/")
