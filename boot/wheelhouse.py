"""The unit's offline Python dependencies: an aarch64 wheelhouse built once on
the QA station, and the commands that make the unit's venv from it at first
boot without any network (R18).

Split (docs/QA.md "Offline dependencies"): picamera2, libcamera, PyAV, numpy,
Pillow, lgpio, pyaudio, pyserial and smbus2 come from Debian
(boot/unit-debian-packages.txt) and are seen through `--system-site-packages`;
the wheelhouse holds only boot/unit-requirements.txt (hash-pinned) and the
project's own wheel.

    python -m boot.wheelhouse build OUT [-r REQUIREMENTS] [--project SRC] [--arch amd64]
    python -m boot.wheelhouse check DIR [-r REQUIREMENTS] [--arch amd64]
    python -m boot.wheelhouse arm64 DIR --sysroot ARM64_ROOT   (qemu-user import test)
    python -m boot.wheelhouse commands [--prefix /opt/bodycam]

`--arch amd64` makes (and checks) the same wheelhouse for x86_64: the
emulated unit's card (tests/emulate), never a Pi's.

Exit codes: 0 fine, 1 the wheelhouse is incomplete or a build failed,
2 bad usage (missing file or directory, unreadable requirements).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "boot" / "unit-requirements.txt"
DEBIAN_PACKAGES = ROOT / "boot" / "unit-debian-packages.txt"
REQUIREMENTS_NAME = "unit-requirements.txt"  # its name inside the wheels folder
PROJECT = "bodycam"
# What builds the project's own wheel (pyproject.toml's build-system), kept in
# OUT/_build (not copied to the card) so that flashing builds it offline.
BUILD_DIR = "_build"
# Babel: setup.py compiles the dock's catalogs (.po -> .mo) into the wheel.
BUILD_REQUIREMENTS = (
    "setuptools==80.9.0"
    " --hash=sha256:062d34222ad13e0cc312a4c02d73f059e86a4acbfbdea8f8f76b28c99f306922\n"
    "Babel==2.19.0"
    " --hash=sha256:6d49734aed1d595b2c065d012174df8c83964692f26fc461702281634dd7555b\n"
)

PYTHON_VERSION = (3, 11)
# Raspberry Pi OS Bookworm has glibc 2.36: any manylinux_2_x wheel with x <= 36
# runs there. pip is given them all (it does not widen a --platform itself).
GLIBC_MAX = 36
# Debian's architecture name -> the wheel tags' machine name. arm64 is the
# unit; amd64 only the emulated unit's card (tests/emulate).
MACHINES = {"arm64": "aarch64", "amd64": "x86_64"}
UNIT_ARCH = "arm64"


def platforms(arch: str = UNIT_ARCH) -> tuple[str, ...]:
    machine = MACHINES[arch]
    return (
        *(f"manylinux_2_{minor}_{machine}" for minor in range(GLIBC_MAX, 16, -1)),
        f"manylinux2014_{machine}",
        f"linux_{machine}",
    )


ELF_MACHINES = {0xB7: "arm64", 0x3E: "amd64"}  # e_machine: EM_AARCH64, EM_X86_64


def elf_arch(head: bytes) -> str | None:
    """The Debian architecture of an ELF program from its first 20 bytes, or
    None (not ELF, or a machine no unit has)."""
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    return ELF_MACHINES.get(machine)


def _target_flags(arch: str) -> list[str]:
    return [
        *(f"--platform={p}" for p in platforms(arch)),
        "--implementation=cp",
        f"--python-version={PYTHON_VERSION[0]}.{PYTHON_VERSION[1]}",
        "--abi=cp311",
        "--abi=abi3",
        "--abi=none",
        "--only-binary=:all:",
    ]


class WheelhouseError(Exception):
    """A build or a wheelhouse that cannot serve the unit; the message says why."""


@dataclass(frozen=True)
class Pin:
    name: str  # normalized (PEP 503)
    version: str
    line: str


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_requirements(path: Path) -> list[Pin]:
    """The `name==version` lines of a requirements file (continuations and
    `--hash` options joined and dropped). Anything but an exact pin is an
    error: the unit must get exactly what was tested."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise WheelhouseError(f"cannot read requirements {path}: {exc.strerror}") from None
    pins: list[Pin] = []
    for raw in text.replace("\\\n", " ").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        spec = line.split(" --", 1)[0].strip()
        if spec.startswith("-"):
            raise WheelhouseError(f"{path}: options are not allowed here: {spec}")
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([A-Za-z0-9.+!-]+)", spec)
        if m is None:
            raise WheelhouseError(f"{path}: not an exact pin (name==version): {spec}")
        pins.append(Pin(_normalize(m.group(1)), m.group(2), spec))
    if not pins:
        raise WheelhouseError(f"{path}: no requirements")
    return pins


# --- wheel file names and tags ------------------------------------------------


def _packaging() -> tuple[object, object, object]:
    try:
        from packaging import tags, utils, version
    except ImportError:  # pip vendors it
        from pip._vendor.packaging import tags, utils, version  # type: ignore[no-redef]
    return tags, utils, version


def unit_tags(arch: str = UNIT_ARCH) -> frozenset[str]:
    """Every wheel tag the unit's CPython 3.11 on aarch64 (glibc 2.36) accepts
    (on x86_64 with `arch="amd64"`)."""
    tags, _, _ = _packaging()
    cpython = tags.cpython_tags(  # type: ignore[attr-defined]
        python_version=PYTHON_VERSION, abis=["cp311", "abi3", "none"], platforms=platforms(arch)
    )
    generic = tags.compatible_tags(  # type: ignore[attr-defined]
        python_version=PYTHON_VERSION, interpreter="cp311", platforms=platforms(arch)
    )
    return frozenset(str(t) for t in [*cpython, *generic])


def wheel_info(path: Path) -> tuple[str, str, frozenset[str]] | None:
    """(normalized name, version, tags) of a wheel file, or None if the name
    is not a valid wheel file name."""
    _, utils, _ = _packaging()
    try:
        name, ver, _build, wtags = utils.parse_wheel_filename(path.name)  # type: ignore[attr-defined]
    except ValueError:  # InvalidWheelFilename, InvalidVersion (both ValueErrors)
        return None
    return _normalize(str(name)), str(ver), frozenset(str(t) for t in wtags)


def _same_version(a: str, b: str) -> bool:
    _, _, version = _packaging()
    try:
        return bool(version.Version(a) == version.Version(b))  # type: ignore[attr-defined]
    except ValueError:  # InvalidVersion: compare as written
        return a == b


def static_problems(
    wheelhouse: Path, pins: list[Pin], accepted: frozenset[str], arch: str = UNIT_ARCH
) -> list[str]:
    """Requirements with no fitting wheel in the folder, and files that are
    not wheels (an sdist would need a compiler on the unit)."""
    problems: list[str] = []
    wheels: list[tuple[Path, tuple[str, str, frozenset[str]]]] = []
    for f in sorted(wheelhouse.iterdir()):
        if f.name == REQUIREMENTS_NAME or f.is_dir():
            continue
        info = wheel_info(f) if f.suffix == ".whl" else None
        if info is None:
            problems.append(f"{f.name}: not a wheel (the unit cannot build anything)")
        else:
            wheels.append((f, info))
    for pin in pins:
        same = [(f, i) for f, i in wheels if i[0] == pin.name and _same_version(i[1], pin.version)]
        if not same:
            problems.append(f"{pin.line}: no wheel in {wheelhouse}")
        elif not any(i[2] & accepted for _, i in same):
            names = ", ".join(f.name for f, _ in same)
            problems.append(f"{pin.line}: {names} does not fit cp311 {MACHINES[arch]} (glibc 2.36)")
    return problems


# --- pip ----------------------------------------------------------------------


def _offline_env() -> dict[str, str]:
    """The environment for a pip that must see nothing but the given folder:
    no pip.conf (Raspberry Pi OS's adds an index; a QA machine's may add
    find-links) and no PIP_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _pip(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


def _pip_errors(r: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in (r.stderr + r.stdout).splitlines() if ln.startswith("ERROR")]
    return "\n".join(lines) or (r.stderr.strip().splitlines() or ["pip failed"])[-1]


def build(out: Path, requirements: Path = REQUIREMENTS, arch: str = UNIT_ARCH) -> list[Path]:
    """Download the aarch64/cp311 wheels of `requirements` into `out` (from the
    registry the QA machine's pip is set up for; sdists are refused), copy the
    requirements file beside them, and check the result. Returns the wheels
    of the pinned requirements. Raises WheelhouseError."""
    pins = read_requirements(requirements)
    out.mkdir(parents=True, exist_ok=True)
    r = _pip(
        [
            "download",
            *_target_flags(arch),
            "--require-hashes",
            "-r",
            str(requirements),
            "-d",
            str(out),
        ]
    )
    if r.returncode != 0:
        raise WheelhouseError(f"pip download failed:\n{_pip_errors(r)}")
    shutil.copyfile(requirements, out / REQUIREMENTS_NAME)
    fetch_build_deps(out / BUILD_DIR)
    problems = check(out, requirements, arch)
    if problems:
        raise WheelhouseError("\n".join(problems))
    found = []
    for f in sorted(out.glob("*.whl")):
        info = wheel_info(f)
        if info and any(info[0] == p.name and _same_version(info[1], p.version) for p in pins):
            found.append(f)
    return found


def fetch_build_deps(dest: Path) -> None:
    """Download (for the QA machine itself) what builds the project's wheel, so
    `project_wheel` runs offline later. Raises WheelhouseError."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wheelhouse-build-") as tmp:
        breq = Path(tmp) / "build-requirements.txt"
        breq.write_text(BUILD_REQUIREMENTS)
        r = _pip(
            [
                "download",
                "--only-binary=:all:",
                "--require-hashes",
                "-r",
                str(breq),
                "-d",
                str(dest),
            ]
        )
    if r.returncode != 0:
        raise WheelhouseError(f"pip download of the build requirements failed:\n{_pip_errors(r)}")


def check(wheelhouse: Path, requirements: Path = REQUIREMENTS, arch: str = UNIT_ARCH) -> list[str]:
    """What stops the unit from installing `requirements` from `wheelhouse`
    offline; empty when nothing does. Looks at the wheel files, then runs
    pip's resolver with --no-index for cp311 aarch64 (a dry run)."""
    if not wheelhouse.is_dir():
        return [f"{wheelhouse}: no such directory"]
    try:
        pins = read_requirements(requirements)
    except WheelhouseError as exc:
        return [str(exc)]
    problems = static_problems(wheelhouse, pins, unit_tags(arch), arch)
    with tempfile.TemporaryDirectory(prefix="wheelhouse-check-") as tmp:
        r = _pip(
            [
                "install",
                "--dry-run",
                "--ignore-installed",
                "--no-index",
                f"--find-links={wheelhouse}",
                *_target_flags(arch),
                f"--target={tmp}",
                "--require-hashes",
                "-r",
                str(requirements),
            ],
            env=_offline_env(),
        )
    if r.returncode != 0:
        problems.append(f"offline resolve for cp311 {MACHINES[arch]} failed:\n{_pip_errors(r)}")
    return problems


def project_wheel(src: Path, out: Path, build_deps: Path | None = None) -> Path:
    """Build this project's own wheel (pure Python) into `out`, offline, from
    a copy of `src` (so the tree copied to the card gets no build/ or
    egg-info), with the setuptools that `build` put in OUT/_build
    (`build_deps`). Replaces an older bodycam wheel there. Raises
    WheelhouseError."""
    if not (src / "pyproject.toml").is_file():
        raise WheelhouseError(f"{src}: no pyproject.toml")
    build_deps = build_deps or out / BUILD_DIR
    if not any(build_deps.glob("setuptools-*.whl")):
        raise WheelhouseError(
            f"no setuptools wheel in {build_deps}: run `wheelhouse.py build` first"
        )
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{PROJECT}-*.whl"):
        old.unlink()
    skip = shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "build", "dist", "*.egg-info", ".*_cache", "tests"
    )
    with tempfile.TemporaryDirectory(prefix="bodycam-wheel-") as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(src, copy, ignore=skip, symlinks=True)
        r = _pip(
            [
                "wheel",
                "--no-deps",
                "--no-index",
                f"--find-links={build_deps}",
                "-w",
                str(out),
                str(copy),
            ],
            env=_offline_env(),
        )
    if r.returncode != 0:
        raise WheelhouseError(f"building the {PROJECT} wheel failed:\n{_pip_errors(r)}")
    built = sorted(out.glob(f"{PROJECT}-*.whl"))
    if len(built) != 1:
        raise WheelhouseError(f"expected one {PROJECT} wheel in {out}, found {len(built)}")
    return built[0]


def venv_commands(prefix: str, python: str = "/usr/bin/python3") -> list[str]:
    """The commands the unit runs at first boot (bodycam-venv.service), in
    order. No network: --no-index, and pip.conf ignored (PIP_CONFIG_FILE
    must be /dev/null in their environment, as the service sets it). The
    last one creates PREFIX/venv/bin/bodycam, the service's condition."""
    venv = f"{prefix}/venv"
    wheels = f"{prefix}/wheels"
    pip = f"{venv}/bin/python -m pip install --no-index --no-cache-dir --find-links {wheels}"
    return [
        f"{python} -m venv --clear --system-site-packages {venv}",
        f"{pip} --require-hashes -r {wheels}/{REQUIREMENTS_NAME}",
        f"{pip} --no-deps {PROJECT}",
    ]


# Run as aarch64 code by `arm64_import`: imports what the wheelhouse installed
# and exercises the compiled parts (cffi, cryptography's Rust/OpenSSL).
_ARM64_PROBE = """
import importlib, platform, sys
mods = sys.argv[1:]
for m in mods:
    importlib.import_module(m)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
import _cffi_backend
k = Ed25519PrivateKey.generate()
k.public_key().verify(k.sign(b"evidence"), b"evidence")
a, b = X25519PrivateKey.generate(), X25519PrivateKey.generate()
assert a.exchange(b.public_key()) == b.exchange(a.public_key())
c, n = ChaCha20Poly1305(ChaCha20Poly1305.generate_key()), bytes(12)
assert c.decrypt(n, c.encrypt(n, b"x", None), None) == b"x"
print(platform.machine(), " ".join(mods))
"""


def arm64_import(
    wheelhouse: Path,
    sysroot: Path,
    requirements: Path = REQUIREMENTS,
    qemu: str = "qemu-aarch64-static",
) -> list[str]:
    """Install the wheelhouse with Debian 12's own pip (the unit's, 23.0.1)
    running as aarch64 code under qemu-user (no binfmt_misc needed), into a
    temporary --target, then import every package there with the arm64
    CPython and run a few signatures and AEAD round trips. `sysroot` is a
    folder with Debian 12 arm64 libc6 and python3.11-minimal and
    libpython3.11-stdlib unpacked (docs/QA.md, Offline dependencies).
    Returns problems; empty when fine."""
    python = sysroot / "usr" / "bin" / "python3.11"
    if shutil.which(qemu) is None:
        return [f"{qemu} not found (apt-get install qemu-user-static)"]
    if not python.exists():
        return [f"{python}: no arm64 Python in the sysroot"]
    pips = sorted((sysroot / "usr/share/python-wheels").glob("pip-*.whl")) or sorted(
        Path("/usr/share/python-wheels").glob("pip-*.whl")
    )
    if not pips:
        return ["no pip wheel (Debian's python3-pip-whl) in the sysroot or on this machine"]
    pins = read_requirements(requirements)
    run = [qemu, "-L", str(sysroot), str(python)]
    env = {"PATH": "/usr/bin:/bin", "PIP_CONFIG_FILE": os.devnull, "LC_ALL": "C.UTF-8"}
    modules = [_IMPORT_NAMES.get(p.name, p.name.replace("-", "_")) for p in pins]
    if any(wheelhouse.glob(f"{PROJECT}-*.whl")):
        modules += ["sealing.age", "sealing.records"]
    with tempfile.TemporaryDirectory(prefix="wheelhouse-arm64-") as tmp:
        target = Path(tmp) / "site"
        pip = [*run, f"{pips[-1]}/pip", "install", "--no-index", "--no-cache-dir"]
        pip += ["--disable-pip-version-check", f"--find-links={wheelhouse}", f"--target={target}"]
        steps = [[*pip, "--require-hashes", "-r", str(requirements)]]
        if any(wheelhouse.glob(f"{PROJECT}-*.whl")):
            steps.append([*pip, "--no-deps", PROJECT])
        for cmd in steps:
            r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
            if r.returncode != 0:
                return [f"arm64 pip install failed:\n{_pip_errors(r)}"]
        r = subprocess.run(
            [*run, "-c", _ARM64_PROBE, *modules],
            capture_output=True,
            text=True,
            env={**env, "PYTHONPATH": str(target)},
            timeout=300,
        )
    if r.returncode != 0 or not r.stdout.startswith("aarch64"):
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return [f"arm64 import failed: {tail}"]
    return []


_IMPORT_NAMES = {"pyserial": "serial", "pillow": "PIL"}

# Debian 12 arm64 packages enough to run the unit's CPython under qemu-user.
ARM64_DEBS = (
    "libc6",
    "libgcc-s1",
    "zlib1g",
    "libexpat1",
    "libffi8",
    "libssl3",
    "libbz2-1.0",
    "liblzma5",
    "libuuid1",
    "libpython3.11-minimal",
    "python3.11-minimal",
    "libpython3.11-stdlib",
)


def arm64_sysroot(dest: Path) -> Path:
    """Unpack Debian 12's arm64 Python into `dest` for `arm64_import` (on a
    Debian machine that has run `dpkg --add-architecture arm64 && apt-get
    update`). Raises WheelhouseError."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="arm64-debs-") as tmp:
        r = subprocess.run(
            ["apt-get", "download", *(f"{d}:arm64" for d in ARM64_DEBS)],
            capture_output=True,
            text=True,
            cwd=tmp,
            timeout=600,
        )
        if r.returncode != 0:
            raise WheelhouseError(f"apt-get download failed: {r.stderr.strip()[-300:]}")
        for deb in sorted(Path(tmp).glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True, timeout=120)
    return dest


def install_wheelhouse(wheelhouse: Path, target_prefix: Path) -> list[Path]:
    """Flash time: copy a checked wheelhouse (wheels and the requirements
    file) into TARGET/opt/bodycam/wheels (`target_prefix` is that
    opt/bodycam). Returns the copied files."""
    dest = target_prefix / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for f in sorted(wheelhouse.iterdir()):
        if f.suffix == ".whl" or f.name == REQUIREMENTS_NAME:
            shutil.copy2(f, dest / f.name)
            copied.append(dest / f.name)
    return copied


# --- CLI ----------------------------------------------------------------------


ARCH_HELP = "the unit's arm64 (default), or amd64 for the emulated unit (tests/emulate)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m boot.wheelhouse", description=__doc__.split("\n\n")[0]
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="download the aarch64 wheelhouse into OUT and check it")
    b.add_argument("out", type=Path)
    b.add_argument("-r", "--requirements", type=Path, default=REQUIREMENTS)
    b.add_argument("--project", type=Path, help="also build this project's wheel from SRC")
    b.add_argument("--arch", choices=sorted(MACHINES), default=UNIT_ARCH, help=ARCH_HELP)
    c = sub.add_parser("check", help="check that DIR installs the requirements offline")
    c.add_argument("dir", type=Path)
    c.add_argument("-r", "--requirements", type=Path, default=REQUIREMENTS)
    c.add_argument("--arch", choices=sorted(MACHINES), default=UNIT_ARCH, help=ARCH_HELP)
    a = sub.add_parser("arm64", help="install DIR with arm64 pip under qemu-user and import")
    a.add_argument("dir", type=Path)
    a.add_argument("--sysroot", type=Path, required=True, help="Debian 12 arm64 files")
    a.add_argument("-r", "--requirements", type=Path, default=REQUIREMENTS)
    v = sub.add_parser("commands", help="print the first-boot commands")
    v.add_argument("--prefix", default="/opt/bodycam")
    args = p.parse_args(argv)

    if args.cmd == "commands":
        print("\n".join(venv_commands(args.prefix)))
        return 0
    if not args.requirements.is_file():
        print(f"error: no requirements file {args.requirements}", file=sys.stderr)
        return 2
    if args.cmd in ("check", "arm64"):
        if not args.dir.is_dir():
            print(f"error: no such directory {args.dir}", file=sys.stderr)
            return 2
        if args.cmd == "arm64":
            problems = arm64_import(args.dir, args.sysroot, args.requirements)
            for line in problems:
                print(f"FAIL {line}")
            if not problems:
                print(f"ok: {args.dir} installs and imports on arm64 (qemu-user)")
            return 1 if problems else 0
        problems = check(args.dir, args.requirements, args.arch)
        for line in problems:
            print(f"FAIL {line}")
        if not problems:
            print(
                f"ok: {args.dir} installs {args.requirements.name} offline "
                f"on cp311 {MACHINES[args.arch]}"
            )
        return 1 if problems else 0
    try:
        wheels = build(args.out, args.requirements, args.arch)
        if args.project:
            wheels.append(project_wheel(args.project, args.out))
    except WheelhouseError as exc:
        print(f"FAIL {exc}")
        return 1
    for w in wheels:
        print(w)
    return 0


if __name__ == "__main__":
    sys.exit(main())
