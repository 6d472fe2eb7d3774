"""The unit's offline dependencies (boot/wheelhouse.py): the aarch64 wheelhouse
is complete and resolves with --no-index for cp311 aarch64; the first-boot
recipe (bodycam-venv.service) really makes a working venv offline, run here
on x86 with host wheels of the same pins; the unit file verifies."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from boot import wheelhouse

ROOT = Path(__file__).resolve().parent.parent

SERVICE = ROOT / "boot" / "files" / "bodycam-venv.service"
PINS = wheelhouse.read_requirements(wheelhouse.REQUIREMENTS)
DEBIAN_PYTHON = Path("/usr/bin/python3")
HANG_S = 900  # a subprocess that takes longer has hung (pip, venv, imports on a busy machine)
# What must come from Debian and never from the wheelhouse (it would shadow
# Debian's copy for picamera2, or does not work on a Pi 5).
DEBIAN_ONLY = {"numpy", "av", "pillow", "picamera2", "rpi-gpio", "lgpio", "pyaudio", "simplejpeg"}


def _pin(name: str) -> wheelhouse.Pin:
    return next(p for p in PINS if p.name == name)


def _wheelhouse(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "boot.wheelhouse", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


# --- the requirements and the split -------------------------------------------------------------


def test_requirements_are_hash_pinned_and_leave_debian_its_packages() -> None:
    text = wheelhouse.REQUIREMENTS.read_text().replace("\\\n", " ")
    reqs = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(reqs) == len(PINS)
    assert all("--hash=sha256:" in ln for ln in reqs), reqs
    names = {p.name for p in PINS}
    assert not names & DEBIAN_ONLY
    debian = [
        ln.split("#")[0].split("=")[0].strip()
        for ln in wheelhouse.DEBIAN_PACKAGES.read_text().splitlines()
        if ln.split("#")[0].strip()
    ]
    for pkg in ("python3-picamera2", "python3-av", "python3-numpy", "python3-pil", "python3-venv"):
        assert pkg in debian
    assert "python3-av=10.0.0-1+b1" in wheelhouse.DEBIAN_PACKAGES.read_text()


def test_a_loose_requirement_is_refused(tmp_path: Path) -> None:
    req = tmp_path / "r.txt"
    req.write_text("pynmea2>=1.19\n")
    with pytest.raises(wheelhouse.WheelhouseError, match="not an exact pin"):
        wheelhouse.read_requirements(req)


def test_unit_tags_are_cp311_aarch64_only() -> None:
    tags = wheelhouse.unit_tags()
    assert "cp311-abi3-manylinux_2_28_aarch64" in tags
    assert "cp311-cp311-manylinux_2_17_aarch64" in tags
    assert "py3-none-any" in tags
    assert not [t for t in tags if "x86_64" in t or "cp312" in t or "manylinux_2_38" in t]


# --- (a) the aarch64 wheelhouse from the registry ------------------------------------------------


@pytest.fixture(scope="module")
def aarch64(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("aarch64")
    try:
        wheels = wheelhouse.build(out, wheelhouse.REQUIREMENTS)
    except wheelhouse.WheelhouseError as exc:
        pytest.fail(f"build failed: {exc}")
    return out, wheels


@pytest.mark.slow
def test_aarch64_wheelhouse_has_every_pin_and_resolves_offline(
    aarch64: tuple[Path, list[Path]],
) -> None:
    out, wheels = aarch64
    assert len(wheels) == len(PINS)
    got = {wheelhouse.wheel_info(w)[0] for w in wheels}  # type: ignore[index]
    assert got == {p.name for p in PINS}
    crypto = next(w.name for w in wheels if w.name.startswith("cryptography-"))
    assert crypto.endswith("aarch64.whl") and "-cp311-" in crypto, crypto
    assert (out / wheelhouse.REQUIREMENTS_NAME).read_bytes() == wheelhouse.REQUIREMENTS.read_bytes()
    assert list((out / wheelhouse.BUILD_DIR).glob("setuptools-*.whl"))
    assert wheelhouse.check(out, wheelhouse.REQUIREMENTS) == []
    r = _wheelhouse(["check", str(out)])
    assert r.returncode == 0 and r.stdout.startswith("ok:"), r.stdout + r.stderr


@pytest.mark.slow
def test_check_names_a_missing_wheel_and_an_x86_one(
    aarch64: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    out, _ = aarch64
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (next(broken.glob("pynmea2-*.whl"))).unlink()
    problems = wheelhouse.check(broken, wheelhouse.REQUIREMENTS)
    assert any(p.startswith(f"{_pin('pynmea2').line}: no wheel") for p in problems), problems
    assert any("offline resolve" in p and "pynmea2" in p for p in problems), problems
    r = _wheelhouse(["check", str(broken)])
    assert r.returncode == 1 and "FAIL pynmea2==1.19.0" in r.stdout and "Traceback" not in r.stderr

    # a wheel for the wrong machine is no wheel for the unit
    crypto = next(broken.glob("cryptography-*.whl"))
    crypto.rename(crypto.with_name(crypto.name.replace("aarch64", "x86_64")))
    problems = wheelhouse.check(broken, wheelhouse.REQUIREMENTS)
    assert any("does not fit cp311 aarch64" in p for p in problems), problems
    (broken / "pynmea2-1.19.0.tar.gz").write_bytes(b"")
    assert any("not a wheel" in p for p in wheelhouse.check(broken, wheelhouse.REQUIREMENTS))


def test_cli_errors_are_short(tmp_path: Path) -> None:
    r = _wheelhouse(["check", str(tmp_path / "nowhere")])
    assert r.returncode == 2 and "no such directory" in r.stderr and "Traceback" not in r.stderr
    r = _wheelhouse(["check", str(tmp_path), "-r", str(tmp_path / "none.txt")])
    assert r.returncode == 2 and "no requirements file" in r.stderr
    r = _wheelhouse(["commands", "--prefix", "/opt/bodycam"])
    assert r.returncode == 0
    assert r.stdout.splitlines() == wheelhouse.venv_commands("/opt/bodycam")


# --- (b) the first-boot recipe, offline, on this machine -----------------------------------------


def _offline(cmd: list[str]) -> list[str]:
    """`cmd` in a network namespace with only loopback, where this machine allows it."""
    try:
        ok = subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    except OSError:
        ok = False
    return ["unshare", "-n", *cmd] if ok else cmd


@pytest.mark.slow
@pytest.mark.skipif(not DEBIAN_PYTHON.exists(), reason="needs Debian's /usr/bin/python3")
# pip, a venv and imports of av and numpy take minutes on a loaded machine: the
# timeouts here only catch a hang, they bound nothing the unit promises
@pytest.mark.timeout(HANG_S * 4)
def test_first_boot_recipe_makes_a_working_venv_offline(tmp_path: Path) -> None:
    # what a flash does, with wheels for this machine instead of aarch64
    host = tmp_path / "host-wheels"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--require-hashes"]
        + ["-r", str(wheelhouse.REQUIREMENTS), "-d", str(host)],
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert r.returncode == 0, r.stderr
    shutil.copyfile(wheelhouse.REQUIREMENTS, host / wheelhouse.REQUIREMENTS_NAME)
    wheelhouse.fetch_build_deps(host / wheelhouse.BUILD_DIR)
    assert wheelhouse.check(host, wheelhouse.REQUIREMENTS)  # x86 wheels are no good for the unit
    prefix = tmp_path / "opt" / "bodycam"
    copied = wheelhouse.install_wheelhouse(host, prefix)
    assert len(copied) == len(PINS) + 1
    assert not (prefix / "wheels" / wheelhouse.BUILD_DIR).exists()
    built = wheelhouse.project_wheel(ROOT, prefix / "wheels", host / wheelhouse.BUILD_DIR)
    assert built.name == "bodycam-0.1.0-py3-none-any.whl"

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    for cmd in wheelhouse.venv_commands(str(prefix), str(DEBIAN_PYTHON)):
        r = subprocess.run(
            _offline(shlex.split(cmd)), capture_output=True, text=True, env=env, timeout=HANG_S
        )
        assert r.returncode == 0, f"{cmd}\n{r.stdout}\n{r.stderr}"
    venv = prefix / "venv"
    assert (venv / "bin" / "bodycam").exists()
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()

    probe = """
import json, importlib, importlib.metadata as md
out = {}
for mod, dist in [("cryptography", "cryptography"), ("cffi", "cffi"), ("pynmea2", "pynmea2"),
                  ("gpiozero", "gpiozero"), ("colorzero", "colorzero"),
                  ("setuptools", "setuptools"), ("firmware.cli", "bodycam"),
                  ("sealing.age", "bodycam"), ("av", "av"), ("numpy", "numpy"), ("PIL", "pillow")]:
    try:
        m = importlib.import_module(mod)
    except ImportError:
        continue
    out[mod] = [m.__file__, md.version(dist)]
print(json.dumps(out))
"""
    r = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        capture_output=True,
        text=True,
        env={**env, "GPIOZERO_PIN_FACTORY": "mock"},
        cwd=tmp_path,
        timeout=HANG_S,
    )
    assert r.returncode == 0, r.stderr
    mods = json.loads(r.stdout)
    site = str(venv / "lib")
    for mod, dist in [("cryptography", "cryptography"), ("pynmea2", "pynmea2")]:
        where, version = mods[mod]
        assert where.startswith(site) and version == _pin(dist).version, mods[mod]
    assert mods["gpiozero"][1] == _pin("gpiozero").version
    assert mods["setuptools"][1] == _pin("setuptools").version  # Debian's venv already had it
    assert mods["firmware.cli"][0].startswith(site) and mods["sealing.age"][0].startswith(site)
    # Debian's packages, where this machine has them, are not shadowed
    for mod in ("av", "numpy", "PIL"):
        if mod in mods:
            assert mods[mod][0].startswith("/usr/lib/python3/dist-packages/"), mods[mod]
    r = subprocess.run(
        [str(venv / "bin" / "bodycam"), "--help"], capture_output=True, text=True, timeout=HANG_S
    )
    assert r.returncode == 0, r.stderr


# --- (c) the unit file --------------------------------------------------------------------------


def _exec_lines(text: str) -> list[str]:
    return [ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith("ExecStart=")]


def test_service_runs_the_recipe_and_verifies(tmp_path: Path) -> None:
    prefix = str(tmp_path / "opt")
    text = SERVICE.read_text().replace("@PREFIX@", prefix)
    assert "@" not in text
    assert _exec_lines(text) == wheelhouse.venv_commands(prefix)
    assert f"ConditionPathExists=!{prefix}/venv/bin/bodycam" in text
    assert re.search(r"^PrivateNetwork=yes$", text, re.M)
    assert re.search(r"^Environment=.*PIP_CONFIG_FILE=/dev/null", text, re.M)
    if shutil.which("systemd-analyze") is None:
        pytest.fail("no systemd-analyze: scripts/setup installs systemd")
    path = tmp_path / "bodycam-venv.service"
    path.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    noise = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    assert r.returncode == 0 and not noise, noise


# --- (d) the aarch64 wheels, imported by an arm64 CPython under qemu-user -----------------------


def _arm64_ready() -> bool:
    if shutil.which("qemu-aarch64-static") is None or shutil.which("dpkg") is None:
        return False
    r = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True)
    return "arm64" in r.stdout.split()


@pytest.mark.slow
@pytest.mark.skipif(
    not _arm64_ready(),
    reason="needs qemu-user-static and `dpkg --add-architecture arm64` (docs/QA.md)",
)
def test_aarch64_wheels_install_and_import_on_arm64_under_qemu(
    aarch64: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    out, _ = aarch64
    try:
        sysroot = wheelhouse.arm64_sysroot(tmp_path / "arm64")
    except wheelhouse.WheelhouseError as exc:
        pytest.skip(str(exc))
    assert wheelhouse.arm64_import(out, sysroot) == []
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    next(broken.glob("cffi-*.whl")).unlink()
    problems = wheelhouse.arm64_import(broken, sysroot)
    assert problems and "cffi" in problems[0], problems


# picamera2's Pi 5 encoder (LibavH264Encoder._encode) forces a keyframe by
# assigning a string to the frame's picture type; PyAV >= 14 takes only its
# enum. A resume asks for a keyframe, so this is the line that must run.
PICAMERA2_FORCED_KEYFRAME = (
    "import av\n"
    "frame = av.VideoFrame(64, 64, 'yuv420p')\n"
    "frame.pict_type = 'I'\n"
    "print(av.__version__)\n"
)


def test_the_pyav_the_unit_ships_takes_picamera2s_forced_keyframe() -> None:
    """Debian's python3-av (pinned in unit-debian-packages.txt, installed here by
    scripts/setup) runs picamera2's forced-keyframe line; the PyPI PyAV of the
    development venv does not, which is why the unit must not have it."""
    pin = next(
        ln.split("=", 1)[1].split("-")[0]
        for ln in wheelhouse.DEBIAN_PACKAGES.read_text().splitlines()
        if ln.startswith("python3-av=")
    )
    unit = subprocess.run(
        [str(DEBIAN_PYTHON), "-c", PICAMERA2_FORCED_KEYFRAME],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unit.returncode == 0, unit.stderr
    assert unit.stdout.strip() == pin  # the same version the image pins
    dev = subprocess.run(
        [sys.executable, "-c", PICAMERA2_FORCED_KEYFRAME],
        capture_output=True,
        text=True,
        timeout=60,
    )
    import av

    if int(av.__version__.split(".")[0]) >= 14:
        assert dev.returncode != 0, "PyAV >= 14 took a string picture type"
