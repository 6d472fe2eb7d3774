"""The emulated unit's stock card: a Raspberry-Pi-OS-Lite-shaped image made
from Debian 12 packages, which `tools/flash.py image` then flashes unchanged.

Three cached steps (cache.py), each keyed by its inputs:

1. `rootfs`: `mmdebstrap` of card-packages.txt plus the kernel
   (`linux-image-<ABI>`, the ABI of the host's `linux-headers-amd64`), with
   what Raspberry Pi OS has and Debian lacks (gpio/i2c groups and their udev
   rule, lgpio in the system's site-packages as python3-lgpio would be) and
   the test layer (guest/: gpio-sim built for that kernel, two snd-aloop
   cards, i2c-stub as the MAX17048, the GPS port, the root agent). Key:
   package list, kernel version, lgpio wheel, guest/ and this file.
2. `stock_image`: the card (MBR; p1 FAT32 `bootfs` with a stock-like
   config.txt and cmdline.txt; p2 ext4 `rootfs`), optionally with the unit's
   venv made ahead ("pre-baked": bodycam-venv.service's own commands in a
   chroot, so a TCG guest need not spend many minutes on it; the service
   then skips itself by its Condition). Key: step 1, the wheelhouse and our
   wheel.
3. flashing, every run (flash.py here): never cached.

Nothing of the test layer is on the recorder's path: the recorder's unit
file, unit.toml and the venv are what `flash.py image` makes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import cache
from .run import EmuError, Log, run

HERE = Path(__file__).resolve().parent
SRC = HERE.parent.parent  # the project's tree
PACKAGES = HERE / "card-packages.txt"
GUEST = HERE / "guest"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
LGPIO = "lgpio==0.2.2.0"  # PyPI has only its sdist; built with swig, linked statically
DISK_ID = "5aa1c0de"
BOOT_START = 8192  # sectors: 4 MiB, as pi-gen
BOOT_SECTORS = 1048576  # 512 MiB
ROOT_MB = 3072  # the root partition's size: room for the first-boot venv and the journal


@dataclass(frozen=True)
class Kernel:
    abi: str  # 6.1.0-57-amd64
    version: str  # 6.1.192-3
    arch: str = "amd64"  # Debian's name: amd64, or arm64 (the soak's aarch64 card)

    @property
    def package(self) -> str:
        return f"linux-image-{self.abi}"


ARCHES = ("amd64", "arm64")


def host_kernel(arch: str = "amd64") -> Kernel:
    """The kernel the card gets: the one Debian's linux-image-amd64 names now,
    whose headers the host can install for the out-of-tree modules. arm64:
    the same build's arm64 flavour (Debian builds both from one source
    version; mmdebstrap refuses clearly if the mirror lacks it)."""
    if arch not in ARCHES:
        raise EmuError(f"architecture {arch!r}: the rig makes {', '.join(ARCHES)} cards")
    deps = run(["apt-cache", "depends", "linux-headers-amd64"], what="apt-cache depends")
    m = re.search(r"Depends: linux-headers-(\S+-amd64)", deps)
    if not m:
        raise EmuError("apt-cache names no linux-headers-*-amd64: run apt-get update first")
    abi = m.group(1)
    policy = run(["apt-cache", "policy", f"linux-image-{abi}"], what="apt-cache policy")
    v = re.search(r"Candidate: (\S+)", policy)
    if not v or v.group(1) == "(none)":
        raise EmuError(f"no candidate for linux-image-{abi}")
    return Kernel(abi.removesuffix("-amd64") + f"-{arch}", v.group(1), arch)


def packages() -> list[str]:
    return [
        line.split("#", 1)[0].strip()
        for line in PACKAGES.read_text().splitlines()
        if line.split("#", 1)[0].strip()
    ]


# -- step 1: the root file system --------------------------------------------------


def lgpio_wheel(log: Log) -> Path:
    """lgpio for the guest's CPython 3.11 (Raspberry Pi OS ships python3-lgpio;
    Debian does not): PyPI's sdist built with swig, statically linked (PYPI=1)."""
    # Debian's own python3.11 (the guest's CPython) builds it: python3-dev, swig
    out = cache.cache_dir() / f"lgpio-{cache.key(LGPIO, '/usr/bin/python3.11')}"
    if not out.exists():
        work = cache.fresh(out)
        logf = work / "build.log"
        run(
            [
                "/usr/bin/python3.11",
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                LGPIO,
                "-d",
                work,
            ],
            log_file=logf,
            what="pip download lgpio",
        )
        sdist = next(work.glob("lgpio-*.tar.gz"))
        run(["tar", "-xzf", sdist, "-C", work], log_file=logf, what="unpack lgpio")
        run(
            [
                "/usr/bin/python3.11",
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                work,
                work / sdist.name.removesuffix(".tar.gz"),
            ],
            log_file=logf,
            env={"PYPI": "1"},
            what="build the lgpio wheel (needs swig)",
        )
        out = cache.done(work)
        log(f"lgpio wheel built: {next(out.glob('*.whl')).name}")
    return next(out.glob("lgpio-*.whl"))


def gpio_sim_module(kernel: Kernel, log: Log) -> Path:
    """gpio-sim for the card's kernel (Debian 12 builds neither it nor IRQ_SIM):
    gpio-sim.c + irq_sim.c from linux-source in one out-of-tree module.
    `irq_to_desc` is not exported, so irq_sim calls `generic_handle_irq`."""
    headers = Path(f"/usr/src/linux-headers-{kernel.abi}")
    out = cache.cache_dir() / f"gpio-sim-{cache.key(kernel.abi, kernel.version)}"
    if not out.exists():
        if not headers.is_dir():  # the card's kernel moved on since scripts/setup ran
            run(["apt-get", "install", "-y", "-qq", f"linux-headers-{kernel.abi}"],
                what=f"apt-get install linux-headers-{kernel.abi}")  # fmt: skip
        work = cache.fresh(out)
        logf = work / "build.log"
        run(
            ["apt-get", "download", "linux-source-6.1"],
            cwd=work,
            log_file=logf,
            what="apt-get download linux-source-6.1",
        )
        deb = next(work.glob("linux-source-6.1_*.deb"))
        tarball = work / "src.tar.xz"
        with tarball.open("wb") as f:
            dpkg = subprocess.Popen(
                ["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE
            )
            tar = subprocess.run(
                ["tar", "-xO", "./usr/src/linux-source-6.1.tar.xz"],
                stdin=dpkg.stdout,
                stdout=f,
                check=False,
            )
            dpkg.wait()
        if dpkg.returncode or tar.returncode:
            raise EmuError(f"could not take linux-source-6.1.tar.xz out of {deb.name}")
        wanted = ["drivers/gpio/gpio-sim.c", "drivers/gpio/gpiolib.h", "kernel/irq/irq_sim.c"]
        run(
            [
                "tar",
                "-xJf",
                tarball,
                "-C",
                work,
                "--strip-components=1",
                *(f"linux-source-6.1/{w}" for w in wanted),
            ],
            log_file=logf,
            what="unpack sources",
        )
        build = work / "build"
        build.mkdir()
        shutil.copy(work / wanted[0], build / "gpio-sim-main.c")
        shutil.copy(work / wanted[1], build / "gpiolib.h")
        irq = (work / wanted[2]).read_text()
        fixed = irq.replace(
            "handle_simple_irq(irq_to_desc(irqnum));", "generic_handle_irq(irqnum);"
        )
        if fixed == irq:
            raise EmuError("irq_sim.c of this kernel differs: the irq_to_desc line was not found")
        (build / "irq_sim.c").write_text(fixed)
        (build / "Kbuild").write_text(
            "obj-m := gpio-sim.o\ngpio-sim-y := gpio-sim-main.o irq_sim.o\n"
        )
        run(
            ["make", "-C", headers, f"M={build}", "modules"],
            log_file=logf,
            what="build gpio-sim.ko",
        )
        shutil.copy(build / "gpio-sim.ko", work / "gpio-sim.ko")
        for p in (build, tarball, deb, work / "drivers", work / "kernel"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        out = cache.done(work)
        log(f"gpio-sim.ko built for {kernel.abi}")
    return out / "gpio-sim.ko"


# Bumped by hand when rootfs() or _pi_os_parts() change what they make; the
# test layer and everything after are step 2 (a change there costs no mmdebstrap).
ROOTFS_RECIPE = "1"


def rootfs_key(kernel: Kernel) -> str:
    return cache.key(
        PACKAGES, kernel.abi, kernel.version, kernel.arch, "\n".join(MIRRORS), LGPIO, ROOTFS_RECIPE
    )


def rootfs(kernel: Kernel, log: Log) -> Path:
    """The card's root file system as a folder (cached; root-owned files)."""
    out = cache.cache_dir() / f"root-{rootfs_key(kernel)}"
    if out.exists():
        return out / "root"
    # lgpio is built here by the host's CPython: amd64 only. The arm64 card
    # goes without (its soak boots with no GPIO chip: the gpio fault path)
    lgpio = lgpio_wheel(log) if kernel.arch == "amd64" else None
    if kernel.arch == "arm64" and not Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists():
        raise EmuError("the arm64 root needs qemu-aarch64 in binfmt_misc (scripts/setup --emulate)")
    work = cache.fresh(out)
    root = work / "root"
    took = "10-20 min" if kernel.arch == "amd64" else "30-60 min through qemu-user"
    log(f"mmdebstrap: Debian 12 {kernel.arch} + {kernel.package} into {root} ({took})")
    run(
        [
            "mmdebstrap",
            "--variant=apt",
            "--mode=root",
            f"--architectures={kernel.arch}",
            "--dpkgopt=force-unsafe-io",
            '--aptopt=Acquire::Retries "3"',
            f"--include={','.join([*packages(), kernel.package])}",
            "bookworm",
            root,
            *MIRRORS,
        ],
        log_file=work / "mmdebstrap.log",
        what="mmdebstrap",
        timeout=3 * 3600,
    )
    _pi_os_parts(root, lgpio)
    log("root file system ready")
    return cache.done(work) / "root"


def _pi_os_parts(root: Path, lgpio: Path | None) -> None:
    """What Raspberry Pi OS Lite has and Debian lacks, where the unit relies on it."""
    (root / "etc" / "hostname").write_text("raspberrypi\n")
    run(
        [
            "chroot",
            root,
            "sh",
            "-c",
            "groupadd -f -r gpio && groupadd -f -r i2c && groupadd -f -r spi",
        ],
        what="add Raspberry Pi OS's gpio/i2c/spi groups",
    )
    # as raspberrypi-sys-mods' 99-com.rules: those groups own the char devices
    (root / "etc/udev/rules.d/99-com.rules").write_text(
        'SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"\n'
        'SUBSYSTEM=="i2c-dev", GROUP="i2c", MODE="0660"\n'
    )
    (root / "etc/fstab").write_text(
        "proc            /proc           proc    defaults          0       0\n"
        f"PARTUUID={DISK_ID}-01  /boot/firmware  vfat    defaults          0       2\n"
        f"PARTUUID={DISK_ID}-02  /               ext4    defaults,noatime  0       1\n"
    )
    (root / "boot/firmware").mkdir(parents=True, exist_ok=True)
    # python3-lgpio stands in as the wheel unpacked into the system's site-packages
    if lgpio is not None:
        with zipfile.ZipFile(lgpio) as z:
            z.extractall(root / "usr/lib/python3/dist-packages")


def _test_layer(root: Path, kernel: Kernel, module: Path | None) -> None:
    """EMU only (never on a unit): the stand-ins' module, their setup, the agent."""
    if module is not None:
        extra = root / "lib/modules" / kernel.abi / "extra"
        extra.mkdir(parents=True, exist_ok=True)
        shutil.copy(module, extra / "gpio-sim.ko")
        run(["chroot", root, "depmod", kernel.abi], what="depmod")
    for src in sorted(p for p in GUEST.rglob("*") if p.is_file()):
        rel = src.relative_to(GUEST)
        if rel.parts[0] == "root":  # guest/root/... -> the same path on the card
            dest = root / Path(*rel.parts[1:])
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest)
            dest.chmod(0o755 if os.access(src, os.X_OK) else 0o644)
    # the replay camera's clip (devices.toml): 4 s of a test pattern, a keyframe a second
    run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x180:rate=10",
         "-t", "4", "-c:v", "libx264", "-g", "10", "-bf", "0", "-pix_fmt", "yuv420p",
         "-y", root / "opt/emu/clip.h264"], what="ffmpeg: the replay camera's clip")  # fmt: skip
    wants = root / "etc/systemd/system/sysinit.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "emu-devices.service").symlink_to("../emu-devices.service")
    # the agent alone owns the virtio console: no getty there
    (root / "etc/systemd/system/serial-getty@hvc0.service").symlink_to("/dev/null")


# -- step 2: the stock card ----------------------------------------------------------

# What our own wheel is built from (it is in the pre-baked venv): every package
# the unit imports (pyproject's list without the dock, which no unit runs)
PROJECT_PARTS = ("firmware", "capture", "sealing", "hal", "boot", "link", "pyproject.toml")
CONFIG_TXT = """# For more options and information see
# http://rptl.io/configtxt
dtparam=audio=on
camera_auto_detect=1
display_auto_detect=1
auto_initramfs=1
dtoverlay=vc4-kms-v3d
max_framebuffers=2
disable_fw_kms_setup=1
arm_64bit=1
disable_overscan=1
arm_boost=1

[cm4]
otg_mode=1

[cm5]
dtoverlay=dwc2,dr_mode=host

[all]
"""
# Raspberry Pi OS Lite's own, before its first boot
CMDLINE_TXT = (
    f"console=serial0,115200 console=tty1 root=PARTUUID={DISK_ID}-02 rootfstype=ext4 "
    "fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n"
)


@dataclass(frozen=True)
class StockCard:
    image: Path  # stock.img: what flash.py image takes
    kernel: Path  # vmlinuz and initrd.img, as the Pi's firmware would load them
    initrd: Path
    wheels: Path  # the wheelhouse (python -m boot.wheelhouse build --arch ARCH)
    prebaked: bool
    arch: str = "amd64"


def wheelhouse(log: Log, arch: str = "amd64") -> Path:
    """The unit's pins for the card's CPU, from boot/wheelhouse.py, exactly as
    QA makes the aarch64 one (cached by the requirements file)."""
    reqs = SRC / "boot" / "unit-requirements.txt"
    out = cache.cache_dir() / f"wheels-{arch}-{cache.key(reqs)}"
    if not out.exists():
        work = cache.fresh(out)
        run(
            [
                sys.executable,
                "-m",
                "boot.wheelhouse",
                "build",
                work / "wheels",
                "--arch",
                arch,
            ],
            log_file=work / "build.log",
            what=f"wheelhouse.py build --arch {arch}",
        )
        out = cache.done(work)
        log(f"{arch} wheelhouse ready")
    return out / "wheels"


def stock_key(kernel: Kernel, wheels: Path, prebake: bool) -> str:
    return cache.key(
        rootfs_key(kernel),
        wheels,
        GUEST,
        Path(__file__),
        str(prebake),
        *(SRC / part for part in PROJECT_PARTS),
    )


def stock_card(kernel: Kernel, log: Log, *, prebake: bool = True) -> StockCard:
    """The Pi-OS-shaped card (cached): the root, the test layer and, when
    `prebake`, the unit's venv made ahead from the wheelhouse and our wheel."""
    wheels = wheelhouse(log, kernel.arch)
    flavour = "card-prebaked-" if prebake else "card-firstboot-"
    if kernel.arch != "amd64":
        flavour = f"card-{kernel.arch}-" + flavour.removeprefix("card-")
    out = cache.cache_dir() / f"{flavour}{stock_key(kernel, wheels, prebake)}"
    if not out.exists():
        root_src = rootfs(kernel, log)
        # gpio-sim is built by the host's compiler for the amd64 kernel only
        module = gpio_sim_module(kernel, log) if kernel.arch == "amd64" else None
        work = cache.fresh(out)
        logf = work / "build.log"
        root = work / "root"
        run(["cp", "-a", "--reflink=auto", root_src, root], what="copy the root")
        _test_layer(root, kernel, module)
        if prebake:
            _prebake_venv(root, wheels, logf)
        for name, dest in (("vmlinuz", "vmlinuz"), ("initrd.img", "initrd.img")):
            found = sorted((root / "boot").glob(f"{name}-{kernel.abi}"))
            if not found:
                raise EmuError(f"{name}-{kernel.abi} not in the root's /boot")
            shutil.copy(found[0], work / dest)
        _card_image(root, work / "stock.img", logf)
        cache.remove(root)
        out = cache.done(work)
        cache.prune(flavour, keep=out)
        log(f"stock card ready ({'venv pre-baked' if prebake else 'venv at first boot'})")
    return StockCard(
        out / "stock.img", out / "vmlinuz", out / "initrd.img", wheels, prebake, kernel.arch
    )


def _prebake_venv(root: Path, wheels: Path, logf: Path) -> None:
    """/opt/bodycam/venv made now, by bodycam-venv.service's own commands in a
    chroot, from the same wheels flashing puts on the card (our wheel built
    from this tree): the service then skips itself (ConditionPathExists)."""
    tmp = root / "tmp" / "wheels"
    tmp.mkdir(parents=True)
    for whl in wheels.glob("*.whl"):
        shutil.copy(whl, tmp)
    shutil.copy(wheels / "unit-requirements.txt", tmp)
    build = wheels / "_build"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-index",
            f"--find-links={build}",
            "-w",
            tmp,
            _project_copy(root),
        ],
        log_file=logf,
        what="build our wheel",
        env={"PIP_CONFIG_FILE": os.devnull},
    )
    for line in _venv_commands("/opt/bodycam", "/tmp/wheels"):
        run(
            [
                "chroot",
                root,
                "/usr/bin/env",
                "PIP_CONFIG_FILE=/dev/null",
                "PIP_DISABLE_PIP_VERSION_CHECK=1",
                "sh",
                "-c",
                line,
            ],
            log_file=logf,
            what=f"pre-bake: {line[:60]}",
        )
    shutil.rmtree(tmp)
    shutil.rmtree(root / "tmp" / "bodycam-src")


def _project_copy(root: Path) -> Path:
    copy = root / "tmp" / "bodycam-src"
    for part in PROJECT_PARTS:
        src = SRC / part
        if src.is_dir():
            shutil.copytree(src, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            copy.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, copy / part)
    return copy


def _venv_commands(prefix: str, wheels: str) -> list[str]:
    """bodycam-venv.service's ExecStart lines, the wheelhouse taken from `wheels`."""
    text = (SRC / "boot" / "files" / "bodycam-venv.service").read_text()
    lines = [ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith("ExecStart=")]
    return [ln.replace("@PREFIX@/wheels", wheels).replace("@PREFIX@", prefix) for ln in lines]


def _card_image(root: Path, image: Path, logf: Path) -> None:
    """MBR; p1 FAT32 (0x0c) "bootfs" with the stock config.txt and cmdline.txt;
    p2 ext4 "rootfs". No mount, no loop device."""
    size_mb = 4 + 512 + ROOT_MB
    image.unlink(missing_ok=True)
    with image.open("wb") as f:
        f.truncate(size_mb << 20)
    root_start = BOOT_START + BOOT_SECTORS
    layout = (
        f"label: dos\nlabel-id: 0x{DISK_ID}\nunit: sectors\n"
        f"{BOOT_START},{BOOT_SECTORS},c\n{root_start},,83\n"
    )
    subprocess.run(
        ["sfdisk", "-q", str(image)], input=layout, text=True, check=True, capture_output=True
    )
    run(
        [
            "mkfs.vfat",
            "-F",
            "32",
            "-n",
            "BOOTFS",
            "--offset",
            str(BOOT_START),
            image,
            str(BOOT_SECTORS // 2),
        ],
        log_file=logf,
        what="mkfs.vfat",
    )
    boot_files = image.parent / "bootfs"
    boot_files.mkdir()
    (boot_files / "config.txt").write_text(CONFIG_TXT)
    (boot_files / "cmdline.txt").write_text(CMDLINE_TXT)
    run(
        [
            "mcopy",
            "-i",
            f"{image}@@{BOOT_START * 512}",
            boot_files / "config.txt",
            boot_files / "cmdline.txt",
            "::/",
        ],
        log_file=logf,
        what="mcopy the boot files",
    )
    shutil.rmtree(boot_files)
    run(
        [
            "mkfs.ext4",
            "-q",
            "-L",
            "rootfs",
            "-E",
            f"offset={root_start * 512}",
            "-d",
            root,
            image,
            f"{ROOT_MB}M",
        ],
        log_file=logf,
        what="mkfs.ext4 -d the root",
    )
