"""Write a unit's card image from a stock Raspberry Pi OS (Bookworm) image.

A Pi OS card has two partitions (MBR): a FAT "bootfs" (mounted at
/boot/firmware on the unit) and an ext4 "rootfs". The stock boot files are
merged, never overwritten: the firmware needs its own lines (auto_initramfs,
the KMS overlay, root=PARTUUID=...), and ours sit in `bodycam.txt` behind one
`include`. Everything is done on a copy of the image, without mounting it
(no root needed): `mcopy` for the FAT side, `debugfs` for the ext4 side.

The unit's image gets a third partition after the root: an ext4 "data"
partition (label bodycam-data) that holds the unit directory (the evidence
store, keys, auth state), mounted over it from /etc/fstab. The root keeps its
stock size and the first-boot resize is dropped from cmdline.txt: it grows
the root partition to the end of the card, over the data partition
(docs/BOOT.md "The data partition").

A failure never leaves a half-written image: the work happens in
`<out>.partial`, which is renamed to `<out>` only when every step passed.

Debian packages: mtools (mcopy), e2fsprogs (debugfs, e2fsck, mkfs.ext4),
fdisk (sfdisk).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from boot.layout import UNIT
from link.gadget import mac_addresses

FILES = Path(__file__).resolve().parent / "files"
BODYCAM_TXT = "bodycam.txt"

# The block appended to config.txt. A final [all] so that our include applies
# on every board, whatever conditional section the stock file ends in.
INCLUDE_LINE = f"include {BODYCAM_TXT}"
CONFIG_BLOCK = (
    "# bodycam: the unit's own settings live in bodycam.txt (boot/card.py)",
    "[all]",
    INCLUDE_LINE,
)

# cmdline.txt: consoles that would put a login on the GPS UART. serial0 is
# the alias; ttyAMA0 (PL011) and ttyS0 (mini UART) are what it points to on
# a Pi 4 / Zero 2 W depending on the Bluetooth overlay.
SERIAL_CONSOLES = ("serial0", "serial1", "ttyAMA0", "ttyS0")
GADGET_MODULES = ("dwc2", "g_ether")
# cmdline.txt tokens that grow the root partition to the end of the card at
# first boot. raspberrypi-sys-mods (bookworm, 20240129) does it in its
# initramfs hook whenever "firstboot" is on the command line, without
# checking that the root is the last partition; newer pi-gen adds `resize`.
# With the data partition after the root, both must go.
FIRSTBOOT_TOKENS = ("init=/usr/lib/raspberrypi-sys-mods/firstboot", "resize")

USB0_KEYFILE = "etc/NetworkManager/system-connections/bodycam-usb0.nmconnection"
# Profiles that also claim usb0. rpi-usb-gadget creates its two with nmcli
# ("USB Gadget (client)" DHCP, "USB Gadget (shared)" 10.12.194.1/28 with NAT)
# plus a dispatcher that switches between them; its older manual package
# shipped usb0.nmconnection. Any of them would fight our static address.
CONFLICTING = (
    "etc/NetworkManager/system-connections/USB Gadget (client).nmconnection",
    "etc/NetworkManager/system-connections/USB Gadget (shared).nmconnection",
    "etc/NetworkManager/system-connections/usb0.nmconnection",
    "etc/NetworkManager/dispatcher.d/20-usb-gadget-fallback",
)
# The recorder owns the clock (docs/BOOT.md): nothing else may step it.
# fake-hwclock restores a stale time at boot, timesyncd has no server to
# reach; serial gettys would talk on the GPS UART; hciuart drives the
# Bluetooth modem we switched off. ttyAMA10 is the Pi 5's debug UART: no
# login on it either. rpi-usb-gadget cannot be purged without dpkg: its
# ICS switcher (which re-activates its "USB Gadget" profiles) and its host
# hint template (a masked template masks every instance) are masked.
MASKED_UNITS = (
    "fake-hwclock.service",
    "systemd-timesyncd.service",
    "serial-getty@ttyAMA0.service",
    "serial-getty@ttyS0.service",
    "serial-getty@serial0.service",
    "serial-getty@ttyAMA10.service",
    "hciuart.service",
    "rpi-usb-gadget-ics.service",
    "rpi-usb-gadget-hint@.service",
)
# Aliases that `systemctl enable` creates next to the units above.
UNIT_ALIASES = ("etc/systemd/system/dbus-org.freedesktop.timesync1.service",)
SYSTEMD = "etc/systemd/system"

_SETUP_HINT = "scripts/setup installs it (Debian package {pkg})"
_TOOLS = {
    "mcopy": "mtools",
    "debugfs": "e2fsprogs",
    "e2fsck": "e2fsprogs",
    "mkfs.ext4": "e2fsprogs",
    "sfdisk": "fdisk",
}

# The data partition: the evidence store gets its own file system, so that
# the OS's writes (and a read-only root) never share it.
DATA_LABEL = "bodycam-data"
DATA_NUMBER = 3  # the MBR slot after boot (1) and root (2)
ALIGN = 4 << 20  # partitions start on 4 MiB, as pi-gen aligns them
MIB = 1 << 20
DEFAULT_DATA_SIZE = 8 << 30
MIN_DATA_SIZE = 16 * MIB  # tests; a unit wants gigabytes
# noatime: no write per read; nodev/nosuid/noexec: nothing on the store runs;
# commit=1: the journal commits every second, so a power cut loses at most
# about a second of metadata (the store recovers its own torn tail).
DATA_MOUNT_OPTIONS = "defaults,noatime,nodev,nosuid,noexec,commit=1"
FSTAB = "etc/fstab"
FSTAB_MARK = "# bodycam: the evidence store's own partition (boot/card.py)"


class CardError(ValueError):
    """A bad input image, tree or argument; the message names the problem."""


# ---------------------------------------------------------------- boot files


def merge_config_txt(stock: str) -> str:
    """The stock config.txt with every line kept and our include appended once.

    Idempotent: a text that already ends with our block is returned as is; an
    older copy of our block elsewhere is moved to the end (so it still wins).
    """
    if not stock.strip():
        raise CardError("config.txt is empty: not a Raspberry Pi OS boot partition")
    nl = "\r\n" if "\r\n" in stock else "\n"
    lines = stock.splitlines()
    tail = list(CONFIG_BLOCK)
    if lines[-len(tail) :] == tail and stock.endswith(nl):
        return stock
    kept: list[str] = []
    ours = False  # just after our marker comment: its [all] is ours too
    for ln in lines:
        s = ln.strip()
        if s == CONFIG_BLOCK[0]:
            ours = True
            continue
        if ours and s == "[all]":
            ours = False
            continue
        ours = False
        if s != INCLUDE_LINE:
            kept.append(ln)
    return nl.join([*kept, *tail]) + nl


def edit_cmdline(stock: str, serial: str) -> str:
    """cmdline.txt with its tokens edited in place (one line, one newline).

    Kept: root=, rootfstype, fsck.repair, rootwait, quiet and every token we
    do not know. Removed: a console on the GPS UART, and the first-boot root
    resize (FIRSTBOOT_TOKENS: the data partition follows the root). Added or
    replaced: modules-load (merged), g_ether.host_addr/dev_addr.
    """
    lines = [ln for ln in stock.splitlines() if ln.strip()]
    if len(lines) != 1:
        raise CardError(
            f"cmdline.txt must be one line of kernel parameters, found {len(lines)} lines"
        )
    tokens = lines[0].split()
    if not any(t.startswith("root=") for t in tokens):
        raise CardError("cmdline.txt has no root= parameter: not a bootable Raspberry Pi OS one")
    host, dev = mac_addresses(serial)
    # parameters after "--" belong to init, not the kernel: edit only before it
    split = tokens.index("--") if "--" in tokens else len(tokens)
    kernel, rest = tokens[:split], tokens[split:]
    kernel = [t for t in kernel if not _is_serial_console(t) and t not in FIRSTBOOT_TOKENS]
    kernel = _merge_modules_load(kernel, GADGET_MODULES)
    kernel = _set_param(kernel, "g_ether.host_addr", host)
    kernel = _set_param(kernel, "g_ether.dev_addr", dev)
    return " ".join(kernel + rest) + "\n"


def bodycam_txt() -> str:
    """Our config.txt settings (boot/files/bodycam.txt)."""
    return (FILES / BODYCAM_TXT).read_text()


def usb0_keyfile() -> str:
    """The NetworkManager profile for the dock link (install with mode 0600:
    NetworkManager ignores keyfiles that others can read)."""
    return (
        "# The dock link: USB gadget Ethernet, the unit's only link (R18).\n"
        "# Installed by boot/card.py; NetworkManager ignores it unless mode 0600.\n"
        "[connection]\n"
        "id=bodycam-usb0\n"
        "type=ethernet\n"
        "interface-name=usb0\n"
        "autoconnect=true\n"
        # above rpi-usb-gadget's profiles (100), should any come back
        "autoconnect-priority=200\n"
        "\n"
        "[ethernet]\n"
        "\n"
        "[ipv4]\n"
        "method=manual\n"
        "address1=192.168.7.2/24\n"
        # no gateway, no DNS: the dock is the only peer
        "never-default=true\n"
        "\n"
        # link-local only, from the fixed MAC (EUI-64): every unit is
        # fe80::<its MAC> on its own link, so a dock with many units docked
        # tells them apart by interface, not by address (docs/EXPORT.md)
        "[ipv6]\n"
        "method=link-local\n"
        "addr-gen-mode=eui64\n"
    )


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes from a size such as "8G", "512M" or "16MiB" (binary units, a
    whole number), rounded up to the 4 MiB alignment; CardError if it is
    not one or is below MIN_DATA_SIZE or above what an MBR can address."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.IGNORECASE)
    if m is None:
        raise CardError(f"bad data partition size {text!r}: give a whole number with K, M, G or T")
    size = int(m.group(1)) * _UNITS[m.group(2).upper()]
    size = -(-size // ALIGN) * ALIGN
    if size < MIN_DATA_SIZE:
        raise CardError(
            f"data partition size {text!r} is too small: at least {MIN_DATA_SIZE // MIB}M"
        )
    if size // SECTOR >= 1 << 32:
        raise CardError(
            f"data partition size {text!r} is too large: an MBR partition ends below 2T"
        )
    return size


def partuuid(disk_id: int, number: int) -> str:
    """The PARTUUID Linux gives an MBR partition: `<disk id>-<number>`."""
    return f"{disk_id:08x}-{number:02d}"


def fstab_with_data(stock: str, data_partuuid: str, mountpoint: str) -> str:
    """The stock fstab with every line kept except an earlier entry for
    `mountpoint` (and our marker), and our entry for the data partition last.
    Pass 2: checked after the root at every boot (fsck.repair= on the kernel
    command line applies to it as well)."""
    kept = [
        ln
        for ln in stock.splitlines()
        if ln.strip() != FSTAB_MARK
        and not (
            not ln.lstrip().startswith("#")
            and len(ln.split()) >= 2
            and ln.split()[1].rstrip("/") == mountpoint.rstrip("/")
        )
    ]
    while kept and not kept[-1].strip():
        kept.pop()
    entry = f"PARTUUID={data_partuuid}  {mountpoint}  ext4  {DATA_MOUNT_OPTIONS}  0  2"
    return "\n".join([*kept, FSTAB_MARK, entry]) + "\n"


def _check_serial(serial: str) -> str:
    if not isinstance(serial, str) or not serial.strip() or not serial.isprintable():
        raise CardError(f"bad unit serial {serial!r}: need a non-empty printable string")
    return serial.strip()


def _is_serial_console(token: str) -> bool:
    if not token.startswith("console="):
        return False
    dev = token.removeprefix("console=").split(",", 1)[0]
    return dev in SERIAL_CONSOLES


def _merge_modules_load(tokens: list[str], mods: Iterable[str]) -> list[str]:
    """One modules-load= token (the first one's place) with every module of
    every existing modules-load= plus `mods`, in order, without duplicates."""
    found: list[str] = []
    first = None
    out: list[str] = []
    for t in tokens:
        if t.startswith("modules-load="):
            found += [m for m in t.removeprefix("modules-load=").split(",") if m]
            if first is None:
                first = len(out)
                out.append("")  # placeholder
            continue
        out.append(t)
    merged = list(dict.fromkeys([*found, *mods]))
    token = "modules-load=" + ",".join(merged)
    if first is None:
        out.append(token)
    else:
        out[first] = token
    return out


def _set_param(tokens: list[str], name: str, value: str) -> list[str]:
    """`name=value` in place of the first `name=...`, others dropped, else appended."""
    out: list[str] = []
    done = False
    for t in tokens:
        if t.split("=", 1)[0] == name:
            if not done:
                out.append(f"{name}={value}")
                done = True
            continue
        out.append(t)
    if not done:
        out.append(f"{name}={value}")
    return out


# ---------------------------------------------------------------- partitions


@dataclass(frozen=True)
class Partition:
    number: int  # 1-4, the MBR slot (img1, img2, ...)
    type_id: int  # MBR partition type byte, e.g. 0x0c FAT32 LBA, 0x83 Linux
    start: int  # bytes from the start of the image
    size: int  # bytes
    fs: str  # "fat", "ext4" or "other", from the filesystem's own magic


FAT_TYPES = {0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E}
LINUX_TYPE = 0x83
SECTOR = 512


def partitions(image: Path) -> list[Partition]:
    """The primary partitions of an MBR disk image that holds a FAT boot
    partition and an ext4 root (the Raspberry Pi OS layout)."""
    image = Path(image)
    try:
        with image.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            mbr = f.read(SECTOR)
            parts = _parse_mbr(image, mbr, size)
            parts = [_with_fs(f, p) for p in parts]
    except OSError as e:
        raise CardError(f"{image}: cannot read ({e.strerror or e})") from None
    if not any(p.fs == "fat" for p in parts):
        raise CardError(f"{image}: no FAT boot partition (Raspberry Pi OS has one first)")
    if not any(p.fs == "ext4" for p in parts):
        raise CardError(f"{image}: no ext4 root partition (Raspberry Pi OS has one second)")
    return parts


def _parse_mbr(image: Path, mbr: bytes, size: int) -> list[Partition]:
    if len(mbr) < SECTOR or mbr[510:512] != b"\x55\xaa":
        raise CardError(f"{image}: not a disk image (no MBR boot signature in sector 0)")
    parts = []
    for i in range(4):
        entry = mbr[446 + 16 * i : 446 + 16 * (i + 1)]
        status, type_id, lba, count = struct.unpack("<B3xB3xII", entry)
        if type_id == 0 or count == 0:
            continue
        if type_id == 0xEE:
            raise CardError(f"{image}: a GPT disk image; Raspberry Pi OS images use MBR")
        if status not in (0x00, 0x80):
            raise CardError(f"{image}: not a disk image (bad MBR entry {i + 1})")
        start, length = lba * SECTOR, count * SECTOR
        if start + length > size:
            raise CardError(
                f"{image}: partition {i + 1} ends at byte {start + length}, "
                f"past the end of the file ({size} bytes): truncated image?"
            )
        parts.append(Partition(i + 1, type_id, start, length, "other"))
    if not parts:
        raise CardError(f"{image}: the MBR has no partitions")
    return parts


def _with_fs(f: BinaryIO, p: Partition) -> Partition:
    f.seek(p.start)
    head = f.read(2048)
    fs = "other"
    if (
        p.type_id in FAT_TYPES
        and head[510:512] == b"\x55\xaa"
        and (head[82:87] == b"FAT32" or head[54:57] == b"FAT")
    ):
        fs = "fat"
    elif p.type_id == LINUX_TYPE and head[1024 + 56 : 1024 + 58] == b"\x53\xef":
        fs = "ext4"  # ext2/3/4 share the magic; debugfs handles all of them
    return Partition(p.number, p.type_id, p.start, p.size, fs)


def _find(parts: list[Partition], fs: str) -> Partition:
    return next(p for p in parts if p.fs == fs)


def disk_id(image: Path) -> int:
    """The MBR disk identifier (bytes 440-443): PARTUUIDs are made from it."""
    with Path(image).open("rb") as f:
        f.seek(440)
        return int(struct.unpack("<I", f.read(4))[0])


def check_source(image: Path) -> list[Partition]:
    """The partitions of a stock Pi OS image that a unit's image can be made
    from; CardError otherwise (before anything is copied or provisioned)."""
    parts = partitions(image)
    _check_stock_layout(Path(image), parts)
    return parts


def _check_stock_layout(image: Path, parts: list[Partition]) -> None:
    """The stock two partitions, root last, and a disk identifier: what the
    data partition is added after and named by."""
    layout = [(p.number, p.fs) for p in parts]
    if layout != [(1, "fat"), (2, "ext4")]:
        found = ", ".join(f"{n}: {fs}" for n, fs in layout)
        raise CardError(
            f"{image}: expected the stock Raspberry Pi OS partitions (1: fat, 2: ext4), "
            f"found {found}; is it already a unit's image?"
        )
    if disk_id(image) == 0:
        raise CardError(
            f"{image}: the MBR has no disk identifier, so no PARTUUID= can name a partition"
        )


def _add_data_partition(image: Path, root: Partition, size: int) -> Partition:
    """Partition 3 (Linux) on the next 4 MiB boundary after the root, the
    image file grown to hold it (sparse)."""
    start = -(-(root.start + root.size) // ALIGN) * ALIGN
    if (start + size) // SECTOR >= 1 << 32:
        raise CardError("the data partition would end past 2T, beyond what an MBR can address")
    with image.open("rb+") as f:
        if os.fstat(f.fileno()).st_size < start + size:
            f.truncate(start + size)
    line = f"start={start // SECTOR}, size={size // SECTOR}, type=83\n"
    _run(
        [
            _need("sfdisk"),
            "-q",
            "--no-reread",
            "--no-tell-kernel",
            "-N",
            str(DATA_NUMBER),
            str(image),
        ],
        what="adding the data partition",
        data=line.encode(),
    )
    added = next(
        (p for p in _parse_mbr(image, _mbr(image), start + size) if p.number == DATA_NUMBER), None
    )
    if added is None or (added.start, added.size) != (start, size):
        raise CardError(f"{image}: sfdisk did not write data partition {DATA_NUMBER} as asked")
    return replace(added, fs="ext4")


def _mbr(image: Path) -> bytes:
    with image.open("rb") as f:
        return f.read(SECTOR)


def _mkfs_data(image: Path, part: Partition) -> None:
    # nodiscard: mke2fs would punch holes in the file, not only in our range;
    # -m 0: no blocks reserved for root, the store's writer is not root
    _run(
        [
            _need("mkfs.ext4"),
            "-q",
            "-F",
            "-L",
            DATA_LABEL,
            "-m",
            "0",
            "-E",
            f"offset={part.start},nodiscard,root_owner=0:0",
            str(image),
            f"{part.size // 1024}k",
        ],
        what="making the data partition's file system",
    )


# ------------------------------------------------------------ tool wrappers


def _need(tool: str) -> str:
    path = shutil.which(tool) or next(
        (str(d / tool) for d in (Path("/usr/sbin"), Path("/sbin")) if (d / tool).exists()), None
    )
    if path is None:
        hint = _SETUP_HINT.format(pkg=_TOOLS.get(tool, tool))
        raise CardError(f"{tool} not found: {hint}")
    return path


def _run(args: list[str], *, what: str, data: bytes | None = None) -> bytes:
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1", DEBUGFS_PAGER="__none__", PAGER="__none__")
    r = subprocess.run(args, input=data, capture_output=True, env=env, check=False)
    if r.returncode != 0:
        msg = r.stderr.decode(errors="replace").strip() or f"exit status {r.returncode}"
        raise CardError(f"{what}: {msg}")
    return r.stdout


def _fat_target(image: Path, part: Partition) -> str:
    return f"{image}@@{part.start}"


def _ext_target(image: Path, part: Partition) -> str:
    # the unix I/O manager's offset option: no loop device, no mount
    return f"{image}?offset={part.start}"


def _fat_read(image: Path, part: Partition, path: str) -> bytes:
    name = "::/" + path.lstrip("/")
    return _run(
        [_need("mcopy"), "-n", "-i", _fat_target(image, part), name, "-"],
        what=f"reading {path} from the boot partition",
    )


def _fat_write(image: Path, part: Partition, path: str, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(prefix="card-") as tmp:
        tmp.write(data)
        tmp.flush()
        _run(
            [
                _need("mcopy"),
                "-o",
                "-n",
                "-i",
                _fat_target(image, part),
                tmp.name,
                "::/" + path.lstrip("/"),
            ],
            what=f"writing {path} to the boot partition",
        )


def _debugfs(image: Path, part: Partition, commands: list[str], *, write: bool) -> str:
    """Run debugfs commands; any error line fails (debugfs itself exits 0)."""
    with tempfile.NamedTemporaryFile("w", prefix="card-debugfs-", suffix=".cmd") as cmd:
        cmd.write("\n".join(commands) + "\n")
        cmd.flush()
        args = [_need("debugfs"), *(["-w"] if write else []), "-f", cmd.name]
        env = dict(os.environ, DEBUGFS_PAGER="__none__", PAGER="__none__")
        r = subprocess.run(
            [*args, _ext_target(image, part)], capture_output=True, env=env, check=False
        )
    errors = [
        ln
        for ln in r.stderr.decode(errors="replace").splitlines()
        if ln.strip() and not re.match(r"^debugfs \d", ln)
    ]
    if r.returncode != 0 or (write and errors):
        name = {1: "boot", 2: "root", DATA_NUMBER: "data"}.get(part.number, str(part.number))
        raise CardError(f"debugfs on the {name} partition: " + ("; ".join(errors) or "failed"))
    return r.stdout.decode(errors="replace")


def _q(path: str) -> str:
    """A path quoted for debugfs's command parser."""
    if '"' in path or any(c in path for c in "\n\r\t") or not path.isprintable():
        raise CardError(f"cannot write {path!r}: quotes and control characters are refused")
    return f'"{path}"'


# ---------------------------------------------------------- reading back


@dataclass(frozen=True)
class Entry:
    kind: str  # "file", "dir", "symlink", "other"
    mode: int  # permission bits, e.g. 0o600
    uid: int
    gid: int
    target: str | None = None  # a symlink's target


def read_file(image: Path, partition: int, path: str) -> bytes:
    """The bytes of one file on partition `partition` (1-based MBR number)."""
    part = _partition(image, partition)
    if part.fs == "fat":
        return _fat_read(Path(image), part, path)
    data = _ext_read(Path(image), part, path)
    if data is None:
        raise CardError(f"{path}: not found on partition {partition}")
    return data


def _ext_read(image: Path, part: Partition, path: str) -> bytes | None:
    with tempfile.TemporaryDirectory(prefix="card-") as d:
        dest = Path(d) / "out"
        _debugfs_read(image, part, [f"dump -p {_q(_abs(path))} {_q(str(dest))}"])
        return dest.read_bytes() if dest.exists() else None


def stat_entry(image: Path, partition: int, path: str) -> Entry | None:
    """Type, mode, owner (and a symlink's target) of one path on the ext4
    partition, or None if it does not exist."""
    part = _partition(image, partition)
    if part.fs != "ext4":
        raise CardError(f"partition {partition} is not an ext4 partition")
    parent = str(PurePosixPath(_abs(path)).parent)
    name = PurePosixPath(path).name
    listing = _listings(Path(image), part, [parent]).get(parent, {})
    if name not in listing:
        return None
    mode, uid, gid = listing[name]
    kind = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink"}.get(
        stat.S_IFMT(mode), "other"
    )
    target = None
    if kind == "symlink":
        out = _debugfs_read(image, part, [f"stat {_q(_abs(path))}"])
        m = re.search(r'Fast link dest: "(.*)"', out)
        target = m.group(1) if m else read_file(image, partition, path).decode()
    return Entry(kind, stat.S_IMODE(mode), uid, gid, target)


def _debugfs_read(image: Path, part: Partition, commands: list[str]) -> str:
    return _debugfs(Path(image), part, commands, write=False)


def _partition(image: Path, number: int) -> Partition:
    for p in partitions(Path(image)):
        if p.number == number:
            return p
    raise CardError(f"{image}: no partition {number}")


def _abs(path: str) -> str:
    return "/" + str(PurePosixPath(path)).lstrip("/")


def _listings(
    image: Path, part: Partition, dirs: Iterable[str]
) -> dict[str, dict[str, tuple[int, int, int]]]:
    """{dir: {name: (st_mode, uid, gid)}} for the directories that exist."""
    dirs = list(dict.fromkeys(dirs))
    out = _debugfs_read(image, part, [f"ls -p {_q(d)}" for d in dirs]) if dirs else ""
    result: dict[str, dict[str, tuple[int, int, int]]] = {}
    current: dict[str, tuple[int, int, int]] | None = None
    for line in out.splitlines():
        if line.startswith("debugfs: ls -p "):
            d = line.removeprefix("debugfs: ls -p ").strip().strip('"')
            current = result.setdefault(d, {})
            continue
        # /inode/mode/uid/gid/name/size/
        m = re.match(r"^/(\d+)/([0-7]+)/(\d+)/(\d+)/(.*)/(\d*)/$", line)
        if m and current is not None and m.group(5) not in (".", ".."):
            current[m.group(5)] = (int(m.group(2), 8), int(m.group(3)), int(m.group(4)))
    return result


# ------------------------------------------------------------ the root plan


@dataclass
class _Plan:
    """debugfs commands for the root partition, checked against what is
    already there (probed first) so that every command is meant to succeed:
    debugfs reports failures on stderr only, and any of them fails the write."""

    kinds: dict[str, str]  # "/path" -> "dir" | "file" | "symlink" | "other"
    commands: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def kind(self, path: str) -> str | None:
        return self.kinds.get(path)

    def mkdirs(self, path: str, mode: int = 0o755) -> None:
        parts = PurePosixPath(path).parts[1:]
        for i in range(1, len(parts) + 1):
            p = "/" + "/".join(parts[:i])
            k = self.kind(p)
            if k == "dir":
                continue
            if k is not None:
                raise CardError(f"{p} on the image is a {k}, the tree needs a directory there")
            self.commands += [f"mkdir {_q(p)}", f"sif {_q(p)} mode 0{stat.S_IFDIR | mode:o}"]
            self.kinds[p] = "dir"

    def remove(self, path: str) -> bool:
        k = self.kind(path)
        if k is None:
            return False
        if k == "dir":
            raise CardError(f"{path} on the image is a directory, refusing to replace it")
        self.commands.append(f"rm {_q(path)}")
        del self.kinds[path]
        return True

    def file(self, path: str, local: Path, mode: int) -> None:
        self.mkdirs(str(PurePosixPath(path).parent))
        self.remove(path)
        self.commands += [
            f"write {_q(str(local))} {_q(path)}",
            f"sif {_q(path)} mode 0{stat.S_IFREG | mode:o}",
            # root-owned, whoever staged the tree on the QA station
            f"sif {_q(path)} uid 0",
            f"sif {_q(path)} gid 0",
        ]
        self.kinds[path] = "file"
        self.written.append(path)

    def symlink(self, path: str, target: str) -> None:
        self.mkdirs(str(PurePosixPath(path).parent))
        self.remove(path)
        self.commands.append(f"symlink {_q(path)} {_q(target)}")
        self.kinds[path] = "symlink"
        self.written.append(path)


def _kinds(listings: dict[str, dict[str, tuple[int, int, int]]]) -> dict[str, str]:
    kinds = {"/": "dir"}
    names = {stat.S_IFDIR: "dir", stat.S_IFREG: "file", stat.S_IFLNK: "symlink"}
    for d, entries in listings.items():
        for name, (mode, _, _) in entries.items():
            p = "/" + str(PurePosixPath(d, name)).lstrip("/")
            kinds[p] = names.get(stat.S_IFMT(mode), "other")
    return kinds


def _ancestors(paths: Iterable[str]) -> list[str]:
    dirs: dict[str, None] = {"/": None}
    for p in paths:
        for a in reversed(PurePosixPath(p).parents):
            dirs[str(a)] = None
    return list(dirs)


@dataclass(frozen=True)
class _TreeItem:
    path: str  # "/opt/bodycam/x"
    kind: str  # "dir", "file", "symlink"
    local: Path
    mode: int


def _walk_tree(root_tree: Path) -> list[_TreeItem]:
    if not root_tree.is_dir():
        raise CardError(f"root tree {root_tree} is not a directory")
    items: list[_TreeItem] = []
    for dirpath, dirnames, filenames in os.walk(root_tree):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(dirnames) + sorted(filenames):
            local = base / name
            rel = local.relative_to(root_tree).as_posix()
            st = local.lstat()
            if stat.S_ISLNK(st.st_mode):
                kind = "symlink"
            elif stat.S_ISDIR(st.st_mode):
                kind = "dir"
            elif stat.S_ISREG(st.st_mode):
                kind = "file"
            else:
                raise CardError(f"root tree: {rel} is not a file, directory or symlink")
            items.append(_TreeItem("/" + rel, kind, local, stat.S_IMODE(st.st_mode)))
    # os.walk lists a symlink to a directory under dirnames, never descends it
    return items


def _split_unit(tree: list[_TreeItem], unit: str) -> tuple[list[_TreeItem], list[_TreeItem]]:
    """(the root's items, the unit directory's items re-rooted at "/"): the
    unit directory's contents go to the data partition, mounted there."""
    top = "/" + unit.strip("/")
    root = [i for i in tree if i.path != top and not i.path.startswith(top + "/")]
    data = [replace(i, path=i.path.removeprefix(top)) for i in tree if i.path.startswith(top + "/")]
    return root, data


def _plan_data(image: Path, part: Partition, items: list[_TreeItem], mode: int) -> _Plan:
    """The unit directory's files on the (new) data file system. Root-owned
    like the root's: the recorder's user is made by systemd-sysusers at boot
    (no fixed uid), and systemd-tmpfiles hands it the directory after the
    mount (etc/tmpfiles.d/bodycam.conf)."""
    probe = _ancestors([i.path for i in items]) + [i.path for i in items if i.kind == "dir"]
    plan = _Plan(_kinds(_listings(image, part, probe)))
    plan.commands += [f"sif {_q('/')} mode 0{stat.S_IFDIR | mode:o}"]
    for item in items:
        if item.kind == "dir":
            plan.mkdirs(item.path, item.mode)
        elif item.kind == "file":
            plan.file(item.path, item.local, item.mode)
        else:
            plan.symlink(item.path, os.readlink(item.local))
    return plan


def _plan_root(
    image: Path,
    part: Partition,
    tree: list[_TreeItem],
    scratch: Path,
    *,
    unit: str,
    unit_mode: int,
    fstab_entry: str,
) -> _Plan:
    """Our files on the root partition, the masks, and the data partition's
    mount point and fstab line (`fstab_entry` is its PARTUUID)."""
    sysd = "/" + SYSTEMD
    fixed = [
        "/" + USB0_KEYFILE,
        "/" + FSTAB,
        "/" + unit.strip("/"),
        *("/" + c for c in CONFLICTING),
        *("/" + a for a in UNIT_ALIASES),
        *(f"{sysd}/{u}" for u in MASKED_UNITS),
    ]
    probe = _ancestors([i.path for i in tree] + fixed) + [i.path for i in tree if i.kind == "dir"]
    listings = _listings(image, part, probe)
    # the *.wants/*.requires directories may hold enablement links of units we mask
    deps = [
        f"{sysd}/{n}"
        for n, (m, _, _) in listings.get(sysd, {}).items()
        if stat.S_ISDIR(m) and n.endswith((".wants", ".requires"))
    ]
    listings.update(_listings(image, part, deps))
    plan = _Plan(_kinds(listings))

    for item in tree:
        if item.kind == "dir":
            plan.mkdirs(item.path, item.mode)  # modes of existing OS dirs are left alone
        elif item.kind == "file":
            plan.file(item.path, item.local, item.mode)
        else:
            plan.symlink(item.path, os.readlink(item.local))

    keyfile = scratch / "usb0.nmconnection"
    keyfile.write_text(usb0_keyfile())
    plan.file("/" + USB0_KEYFILE, keyfile, 0o600)
    # the mount point: empty on the root, the data partition goes over it
    plan.mkdirs("/" + unit.strip("/"), unit_mode)
    stock = _ext_read(image, part, "/" + FSTAB) if plan.kind("/" + FSTAB) == "file" else b""
    fstab = scratch / "fstab"
    fstab.write_text(
        fstab_with_data(_text(stock or b"", FSTAB), fstab_entry, "/" + unit.strip("/"))
    )
    plan.file("/" + FSTAB, fstab, 0o644)
    for c in CONFLICTING:
        if plan.remove("/" + c):
            plan.removed.append("/" + c)
    for d in deps:
        for unit in MASKED_UNITS:
            if plan.remove(f"{d}/{unit}"):
                plan.removed.append(f"{d}/{unit}")
    for a in UNIT_ALIASES:
        if plan.remove("/" + a):
            plan.removed.append("/" + a)
    for unit in MASKED_UNITS:
        # masked: a link to /dev/null in /etc wins over any unit file or
        # enablement link, and over a unit generated from an init.d script
        plan.symlink(f"{sysd}/{unit}", "/dev/null")
    return plan


# ------------------------------------------------------------ the writer


@dataclass(frozen=True)
class CardReport:
    image: Path
    boot_edited: tuple[str, ...]  # merged or edited stock files on bootfs
    boot_written: tuple[str, ...]  # files of ours on bootfs
    root_written: tuple[str, ...]  # "/path" on rootfs, files and symlinks
    removed: tuple[str, ...]  # "/path" on rootfs
    masked: tuple[str, ...]  # unit names
    host_mac: str
    dev_mac: str
    data_partuuid: str  # partition 3, mounted at the unit directory
    data_size: int  # bytes
    data_written: tuple[str, ...]  # "/path" on the data partition


def write_image(
    src: Path,
    out: Path,
    *,
    root_tree: Path,
    serial: str,
    data_size: int = DEFAULT_DATA_SIZE,
    unit: str = UNIT,
) -> CardReport:
    """A copy of the Pi OS image `src` at `out`, set up as a bodycam unit,
    with a data partition of `data_size` bytes holding `root_tree`'s `unit`
    directory (mounted there by fstab).

    `src` is only read. On any failure nothing is left at `out` or
    `<out>.partial`.
    """
    src, out, root_tree = Path(src), Path(out), Path(root_tree)
    serial = _check_serial(serial)
    data_size = parse_size(f"{data_size}")
    for tool in _TOOLS:
        _need(tool)
    if not src.is_file():
        raise CardError(f"source image {src} is not a file")
    if out.exists() and out.resolve() == src.resolve():
        raise CardError(f"output {out} is the source image; write to another file")
    if not out.parent.is_dir():
        raise CardError(f"output folder {out.parent} does not exist")
    parts = check_source(src)  # refuse a bad source before copying anything
    tree = _walk_tree(root_tree)
    partial = out.with_name(out.name + ".partial")
    try:
        _sparse_copy(src, partial)
        report = _edit(partial, parts, tree, serial, data_size=data_size, unit=unit)
        os.replace(partial, out)
    except OSError as e:
        partial.unlink(missing_ok=True)
        raise CardError(f"writing {out}: {e.strerror or e}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return replace(report, image=out)


def _edit(
    image: Path,
    parts: list[Partition],
    tree: list[_TreeItem],
    serial: str,
    *,
    data_size: int,
    unit: str,
) -> CardReport:
    boot, root = _find(parts, "fat"), _find(parts, "ext4")
    config = _text(_fat_read(image, boot, "config.txt"), "config.txt")
    cmdline = _text(_fat_read(image, boot, "cmdline.txt"), "cmdline.txt")
    new_cmdline = edit_cmdline(cmdline, serial)  # refuses a bad one before any write
    _fat_write(image, boot, "config.txt", merge_config_txt(config).encode())
    _fat_write(image, boot, "cmdline.txt", new_cmdline.encode())
    _fat_write(image, boot, BODYCAM_TXT, bodycam_txt().encode())

    data = _add_data_partition(image, root, data_size)
    _mkfs_data(image, data)
    data_uuid = partuuid(disk_id(image), DATA_NUMBER)
    root_items, unit_items = _split_unit(tree, unit)
    top = "/" + unit.strip("/")
    unit_mode = next((i.mode for i in tree if i.path == top), 0o700)
    with tempfile.TemporaryDirectory(prefix="card-") as scratch:
        plan = _plan_root(
            image,
            root,
            root_items,
            Path(scratch),
            unit=unit,
            unit_mode=unit_mode,
            fstab_entry=data_uuid,
        )
        _debugfs(image, root, plan.commands, write=True)
        data_plan = _plan_data(image, data, unit_items, unit_mode)
        _debugfs(image, data, data_plan.commands, write=True)
    # a read-only full check: what we wrote must leave clean filesystems
    _run([_need("e2fsck"), "-f", "-n", _ext_target(image, root)], what="e2fsck of the root")
    _run(
        [_need("e2fsck"), "-f", "-n", _ext_target(image, data)], what="e2fsck of the data partition"
    )
    with image.open("rb+") as f:
        os.fsync(f.fileno())
    host, dev = mac_addresses(serial)
    return CardReport(
        image,
        boot_edited=("config.txt", "cmdline.txt"),
        boot_written=(BODYCAM_TXT,),
        root_written=tuple(plan.written),
        removed=tuple(plan.removed),
        masked=MASKED_UNITS,
        host_mac=host,
        dev_mac=dev,
        data_partuuid=data_uuid,
        data_size=data.size,
        data_written=tuple(data_plan.written),
    )


def _text(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CardError(f"{name} on the boot partition is not UTF-8 text") from None


# ------------------------------------------------------------ sparse copy

_CHUNK = 1 << 20


def _sparse_copy(src: Path, dst: Path) -> None:
    """Copy keeping holes: only data extents are read (SEEK_DATA), and
    all-zero chunks are skipped, so a 4 GB image with 2 GB used stays 2 GB."""
    with src.open("rb") as fi, dst.open("wb") as fo:
        size = os.fstat(fi.fileno()).st_size
        fo.truncate(size)
        for start, end in _data_regions(fi.fileno(), size):
            fi.seek(start)
            pos = start
            while pos < end:
                chunk = fi.read(min(_CHUNK, end - pos))
                if not chunk:
                    break
                if chunk.count(0) != len(chunk):
                    fo.seek(pos)
                    fo.write(chunk)
                pos += len(chunk)
        fo.flush()
        os.fsync(fo.fileno())


def _data_regions(fd: int, size: int) -> Iterator[tuple[int, int]]:
    pos = 0
    while pos < size:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # only a hole is left
                return
            if e.errno in (errno.EINVAL, errno.EOPNOTSUPP):  # no SEEK_DATA here
                yield pos, size
                return
            raise
        hole = os.lseek(fd, data, os.SEEK_HOLE)
        yield data, hole
        pos = hole
