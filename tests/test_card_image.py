"""boot/card.py against a real (synthetic) Raspberry Pi OS card image.

The image is built the way a Pi OS Lite image is laid out: an MBR (sfdisk),
a FAT32 "bootfs" (mkfs.vfat --offset) with the stock Bookworm config.txt and
cmdline.txt, and an ext4 "rootfs" (mkfs.ext4 -E offset= -d) holding what the
stock OS has that we change. Everything is read back with real tools.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from boot import card, flash, layout
from boot.card import CardError
from link import gadget

TOOLS = {
    "sfdisk": "fdisk",
    "mkfs.vfat": "dosfstools",
    "mcopy": "mtools",
    "mkfs.ext4": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "e2fsck": "e2fsprogs",
}

# pi-gen bookworm stage1/00-boot-files/files/config.txt
STOCK_CONFIG = """\
# For more options and information see
# http://rptl.io/configtxt
# Some settings may impact device functionality. See link above for details

# Uncomment some or all of these to enable the optional hardware interfaces
#dtparam=i2c_arm=on
#dtparam=i2s=on
#dtparam=spi=on

# Enable audio (loads snd_bcm2835)
dtparam=audio=on

# Additional overlays and parameters are documented
# /boot/firmware/overlays/README

# Automatically load overlays for detected cameras
camera_auto_detect=1

# Automatically load overlays for detected DSI displays
display_auto_detect=1

# Automatically load initramfs files, if found
auto_initramfs=1

# Enable DRM VC4 V3D driver
dtoverlay=vc4-kms-v3d
max_framebuffers=2

# Don't have the firmware create an initial video= setting in cmdline.txt.
# Use the kernel's default instead.
disable_fw_kms_setup=1

# Run in 64-bit mode
arm_64bit=1

# Disable compensation for displays with overscan
disable_overscan=1

# Run as fast as firmware / board allows
arm_boost=1

[cm4]
# Enable host mode on the 2711 built-in XHCI USB controller.
# This line should be removed if the legacy DWC2 controller is required
# (e.g. for USB device mode) or if USB support is not required.
otg_mode=1

[cm5]
dtoverlay=dwc2,dr_mode=host

[all]
"""
STOCK_CMDLINE = (
    "console=serial0,115200 console=tty1 root=PARTUUID=12345678-02 rootfstype=ext4 "
    "fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n"
)
MB = 1 << 20
BOOT_START, BOOT_SIZE = 8192, 128 * MB // 512  # sectors, like pi-gen (4 MiB aligned)
ROOT_START = BOOT_START + BOOT_SIZE
IMAGE_SIZE = 300 * MB
DATA_SIZE = 18 * MB  # rounded up to 20 MiB (4 MiB alignment)
# pi-gen bookworm stage1/00-boot-files: fstab names both partitions by PARTUUID
STOCK_FSTAB = """\
proc            /proc           proc    defaults          0       0
PARTUUID=12345678-01  /boot/firmware  vfat    defaults          0       2
PARTUUID=12345678-02  /               ext4    defaults,noatime  0       1
"""


@pytest.fixture(scope="module", autouse=True)
def tools() -> None:
    missing = [f"{t} (Debian package {p})" for t, p in TOOLS.items() if not _which(t)]
    if missing:
        pytest.fail("missing tools: " + ", ".join(missing) + "; scripts/setup installs them")


def _which(tool: str) -> str | None:
    return shutil.which(tool) or next(
        (f"{d}/{tool}" for d in ("/usr/sbin", "/sbin") if os.path.exists(f"{d}/{tool}")), None
    )


def _run(*args: str | Path | int, data: bytes | None = None) -> None:
    cmd = [_which(str(args[0])) or str(args[0]), *map(str, args[1:])]
    subprocess.run(cmd, input=data, check=True, capture_output=True)


def _mbr(image: Path, *parts: tuple[int, int | None, str]) -> None:
    lines = ["label: dos", "label-id: 0x12345678"]
    for start, size, kind in parts:
        lines.append(f"start={start}" + (f", size={size}" if size else "") + f", type={kind}")
    _run("sfdisk", "-q", image, data=("\n".join(lines) + "\n").encode())


def _fat(image: Path, start: int, sectors: int, files: dict[str, str]) -> None:
    # block count in KiB; -s 1 keeps FAT32 above its minimum cluster count
    _run("mkfs.vfat", "-F", "32", "-s", "1", "-n", "bootfs", "--offset", start, image, sectors // 2)
    for name, text in files.items():
        local = image.with_name(name)
        local.write_text(text)
        _run("mcopy", "-i", f"{image}@@{start * 512}", local, f"::{name}")
        local.unlink()


def _stock_rootfs(d: Path) -> None:
    """What a Pi OS Lite rootfs has that card.py must change or keep."""
    (d / "etc/NetworkManager/system-connections").mkdir(parents=True)
    (d / "etc/machine-id").write_text("")
    (d / "etc/hostname").write_text("raspberrypi\n")
    (d / "etc/fstab").write_text(STOCK_FSTAB)
    lib = d / "lib/systemd/system"
    lib.mkdir(parents=True)
    for unit in ("fake-hwclock.service", "systemd-timesyncd.service", "hciuart.service"):
        (lib / unit).write_text("[Unit]\n")
    sysd = d / "etc/systemd/system"
    for wants, unit in (
        ("sysinit.target.wants", "fake-hwclock.service"),
        ("sysinit.target.wants", "systemd-timesyncd.service"),
        ("multi-user.target.wants", "hciuart.service"),
    ):
        (sysd / wants).mkdir(parents=True, exist_ok=True)
        (sysd / wants / unit).symlink_to(f"/lib/systemd/system/{unit}")
    (sysd / "dbus-org.freedesktop.timesync1.service").symlink_to(
        "/lib/systemd/system/systemd-timesyncd.service"
    )
    gadget = d / "etc/NetworkManager/system-connections/USB Gadget (client).nmconnection"
    gadget.write_text("[connection]\nid=USB Gadget (client)\ninterface-name=usb0\n")
    gadget.chmod(0o600)


def _build_image(
    image: Path, work: Path, *, config: str = STOCK_CONFIG, cmdline: str = STOCK_CMDLINE
) -> None:
    with image.open("wb") as f:
        f.truncate(IMAGE_SIZE)  # sparse, like a freshly written image file
    _mbr(image, (BOOT_START, BOOT_SIZE, "c"), (ROOT_START, None, "83"))
    _fat(image, BOOT_START, BOOT_SIZE, {"config.txt": config, "cmdline.txt": cmdline})
    rootfs = work / "stock-rootfs"
    _stock_rootfs(rootfs)
    root_kib = (IMAGE_SIZE - ROOT_START * 512) // 1024
    _run(
        "mkfs.ext4",
        "-q",
        "-F",
        "-L",
        "rootfs",
        "-E",
        f"offset={ROOT_START * 512}",
        "-d",
        rootfs,
        image,
        f"{root_kib}k",
    )


def _root_tree(d: Path) -> Path:
    """What our provisioning stages: scripts, a secret, a symlink, nested dirs,
    and files under directories the stock image already has."""
    tree = d / "tree"
    src = tree / "opt/bodycam/src/firmware"
    src.mkdir(parents=True)
    (src / "__init__.py").write_text("")
    run = tree / "opt/bodycam/bin/bodycam-run"
    run.parent.mkdir(parents=True)
    run.write_text("#!/bin/sh\nexec true\n")
    run.chmod(0o755)
    keys = tree / "var/lib/bodycam/keys"
    keys.mkdir(parents=True)
    keys.parent.chmod(0o750)
    secret = keys / "device.key"
    secret.write_bytes(b"\x00secret\xff")
    secret.chmod(0o600)
    (tree / "opt/bodycam/current").symlink_to("src")
    sysd = tree / "etc/systemd/system"
    (sysd / "multi-user.target.wants").mkdir(parents=True)
    (sysd / "bodycam-recorder.service").write_text("[Unit]\nDescription=rec\n")
    (sysd / "multi-user.target.wants/bodycam-recorder.service").symlink_to(
        "../bodycam-recorder.service"
    )
    (tree / "etc/hostname").write_text("bc-qa-000001\n")  # replaces a stock file
    return tree


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(4 * MB), b""):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="module")
def stock(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("card")
    image = work / "stock.img"
    _build_image(image, work)
    return image


@pytest.fixture(scope="module")
def written(stock: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    work = tmp_path_factory.mktemp("out")
    tree = _root_tree(work)
    before = _sha256(stock)
    out = work / "unit.img"
    report = card.write_image(
        stock, out, root_tree=tree, serial="BC-QA-000001", data_size=DATA_SIZE
    )
    return {"out": out, "report": report, "before": before, "work": work, "tree": tree}


def _text(image: Path, part: int, path: str) -> str:
    return card.read_file(image, part, path).decode()


# ------------------------------------------------------------ the image


def test_partitions_of_a_pi_os_layout(stock: Path) -> None:
    parts = card.partitions(stock)
    assert [(p.number, p.type_id, p.fs) for p in parts] == [(1, 0x0C, "fat"), (2, 0x83, "ext4")]
    assert parts[0].start == BOOT_START * 512 and parts[1].start == ROOT_START * 512


def test_source_unchanged_and_output_complete(stock: Path, written: dict) -> None:
    out: Path = written["out"]
    assert _sha256(stock) == written["before"]
    # the stock image ends with the root: the data partition follows it
    assert out.stat().st_size == IMAGE_SIZE + 20 * MB
    assert not out.with_name(out.name + ".partial").exists()
    # the copy kept the holes: far less on disk than the apparent size
    assert out.stat().st_blocks * 512 < IMAGE_SIZE // 2
    # and the stock partitions are intact, so the card still boots them
    assert card.partitions(out)[:2] == card.partitions(stock)


def test_config_txt_keeps_stock_lines_and_includes_ours_once(written: dict) -> None:
    merged = _text(written["out"], 1, "config.txt")
    assert merged.startswith(STOCK_CONFIG)  # every stock line, in place
    assert merged.splitlines().count("include bodycam.txt") == 1
    assert merged.rstrip().endswith("[all]\ninclude bodycam.txt")
    assert card.merge_config_txt(merged) == merged


def test_bodycam_txt_turns_radios_off(written: dict) -> None:
    text = _text(written["out"], 1, "bodycam.txt")
    lines = {ln.strip() for ln in text.splitlines()}
    assert {
        "dtoverlay=disable-wifi",
        "dtoverlay=disable-bt",
        "enable_uart=1",
        "dtparam=i2c_arm=on",
        "dtoverlay=i2c-rtc,ds3231",
        "dtoverlay=dwc2,dr_mode=peripheral",
    } <= lines
    assert text == (Path(card.__file__).parent / "files/bodycam.txt").read_text()
    # an included file's section filter carries on after it: end in [all]
    assert [ln for ln in text.splitlines() if ln.startswith("[")][-1] == "[all]"


def test_cmdline_edited_in_place(written: dict) -> None:
    text = _text(written["out"], 1, "cmdline.txt")
    assert text.count("\n") == 1 and text.endswith("\n")
    tokens = text.split()
    for kept in (
        "console=tty1",
        "root=PARTUUID=12345678-02",
        "rootfstype=ext4",
        "fsck.repair=yes",
        "rootwait",
        "quiet",
    ):
        assert kept in tokens
    assert not any(t.startswith("console=serial0") for t in tokens)
    # the first-boot resize would grow the root over the data partition
    assert not any(t.startswith("init=") for t in tokens) and "resize" not in tokens
    assert "modules-load=dwc2,g_ether" in tokens
    host, dev = gadget.mac_addresses("BC-QA-000001")
    assert f"g_ether.host_addr={host}" in tokens and f"g_ether.dev_addr={dev}" in tokens
    report = written["report"]
    assert (report.host_mac, report.dev_mac) == (host, dev)


def test_macs_stable_per_serial(stock: Path, written: dict) -> None:
    work: Path = written["work"]
    again = work / "again.img"
    other = work / "other.img"
    for path, serial in ((again, "BC-QA-000001"), (other, "BC-QA-000002")):
        card.write_image(stock, path, root_tree=written["tree"], serial=serial, data_size=DATA_SIZE)
    first = _text(written["out"], 1, "cmdline.txt")
    assert _text(again, 1, "cmdline.txt") == first
    assert _text(other, 1, "cmdline.txt") != first
    again.unlink()
    other.unlink()
    for serial in ("BC-QA-000001", "BC-QA-000002", "x"):
        for mac in gadget.mac_addresses(serial):
            first_octet = int(mac.split(":")[0], 16)
            assert first_octet & 0b10 and not first_octet & 0b01  # local, unicast
    assert gadget.mac_addresses("BC-QA-000001") != gadget.mac_addresses("BC-QA-000002")


def test_the_unit_address_follows_from_the_docks_end_of_the_link() -> None:
    host, dev = gadget.mac_addresses("BC-QA-000001")
    assert dev != host and gadget.unit_mac(host) == dev
    # RFC 4291 appendix A: the U/L bit inverted, ff:fe inserted
    assert gadget.link_local("00:11:22:33:44:55") == "fe80::211:22ff:fe33:4455"
    assert gadget.link_local("02:00:00:00:00:01") == "fe80::ff:fe00:1"
    with pytest.raises(gadget.GadgetError, match="bad MAC"):
        gadget.link_local("02:00:00:00:01")


def test_network_manager_keyfile(written: dict) -> None:
    out: Path = written["out"]
    path = "/etc/NetworkManager/system-connections/bodycam-usb0.nmconnection"
    entry = card.stat_entry(out, 2, path)
    assert entry is not None and entry.kind == "file"
    assert (entry.mode, entry.uid, entry.gid) == (0o600, 0, 0)
    text = _text(out, 2, path)
    assert text == card.usb0_keyfile()
    for line in (
        "interface-name=usb0",
        "method=manual",
        "address1=192.168.7.2/24",
        "method=link-local",
        "addr-gen-mode=eui64",
        "autoconnect=true",
    ):
        assert line in text.splitlines()
    gadget = "/etc/NetworkManager/system-connections/USB Gadget (client).nmconnection"
    assert card.stat_entry(out, 2, gadget) is None
    assert gadget in written["report"].removed


def test_clock_services_and_serial_getty_disabled(written: dict) -> None:
    out: Path = written["out"]
    for unit in (
        "fake-hwclock.service",
        "systemd-timesyncd.service",
        "serial-getty@ttyAMA0.service",
        "serial-getty@ttyS0.service",
        "serial-getty@serial0.service",
        "serial-getty@ttyAMA10.service",  # the Pi 5's debug UART
        "hciuart.service",
        "rpi-usb-gadget-ics.service",  # would bring its usb0 profiles back
        "rpi-usb-gadget-hint@.service",  # a masked template masks every instance
    ):
        masked = card.stat_entry(out, 2, f"/etc/systemd/system/{unit}")
        assert masked is not None and masked.kind == "symlink" and masked.target == "/dev/null"
    for gone in (
        "sysinit.target.wants/fake-hwclock.service",
        "sysinit.target.wants/systemd-timesyncd.service",
        "multi-user.target.wants/hciuart.service",
        "dbus-org.freedesktop.timesync1.service",
    ):
        assert card.stat_entry(out, 2, f"/etc/systemd/system/{gone}") is None
    # the unit files themselves are the OS's: left alone
    assert card.stat_entry(out, 2, "/lib/systemd/system/fake-hwclock.service") is not None


def test_root_tree_installed_with_modes_and_links(written: dict) -> None:
    out: Path = written["out"]
    run = card.stat_entry(out, 2, "/opt/bodycam/bin/bodycam-run")
    assert run is not None and (run.kind, run.mode, run.uid) == ("file", 0o755, 0)
    assert _text(out, 2, "/opt/bodycam/bin/bodycam-run") == "#!/bin/sh\nexec true\n"
    # the unit directory is a mount point on the root: its files are on the
    # data partition, none of them (no secret) on the root
    unit_dir = card.stat_entry(out, 2, "/var/lib/bodycam")
    assert unit_dir is not None and (unit_dir.kind, unit_dir.mode) == ("dir", 0o750)
    assert card.stat_entry(out, 2, "/var/lib/bodycam/keys") is None
    assert card.stat_entry(out, 2, "/var/lib/bodycam/keys/device.key") is None
    link = card.stat_entry(out, 2, "/opt/bodycam/current")
    assert link is not None and (link.kind, link.target) == ("symlink", "src")
    assert card.stat_entry(out, 2, "/opt/bodycam/src/firmware/__init__.py") is not None
    want = card.stat_entry(
        out, 2, "/etc/systemd/system/multi-user.target.wants/bodycam-recorder.service"
    )
    assert want is not None and want.target == "../bodycam-recorder.service"
    assert _text(out, 2, "/etc/hostname") == "bc-qa-000001\n"
    # what the stock image had and we did not touch is still there
    assert card.stat_entry(out, 2, "/etc/machine-id") is not None
    assert "/opt/bodycam/bin/bodycam-run" in written["report"].root_written
    _run("e2fsck", "-f", "-n", f"{out}?offset={ROOT_START * 512}")


# ------------------------------------------------------------ the data partition

DATA_START = IMAGE_SIZE // 512  # sectors: the stock root ends 4 MiB aligned


def _debugfs_stdout(target: str, command: str) -> str:
    r = subprocess.run(
        [_which("debugfs") or "debugfs", "-R", command, target],
        capture_output=True,
        text=True,
        check=True,
    )
    return r.stdout


def test_data_partition_follows_the_root(written: dict) -> None:
    out: Path = written["out"]
    parts = card.partitions(out)
    assert [(p.number, p.type_id, p.fs) for p in parts] == [
        (1, 0x0C, "fat"),
        (2, 0x83, "ext4"),
        (3, 0x83, "ext4"),
    ]
    data = parts[2]
    assert data.start == DATA_START * 512 and data.start % (4 * MB) == 0
    assert data.start >= parts[1].start + parts[1].size
    assert data.size == 20 * MB and data.start + data.size == out.stat().st_size
    # sfdisk reads back the same table: three primaries, the stock disk id
    dump = subprocess.run(
        [_which("sfdisk") or "sfdisk", "-d", str(out)], capture_output=True, text=True, check=True
    ).stdout
    assert "label-id: 0x12345678" in dump
    assert f"start={DATA_START:>12}, size={20 * MB // 512:>12}, type=83" in dump
    target = f"{out}?offset={data.start}"
    stats = _debugfs_stdout(target, "stats")
    assert "Filesystem volume name:   bodycam-data" in stats
    assert "has_journal" in stats and "extent" in stats  # ext4, not ext2
    _run("e2fsck", "-f", "-n", target)
    report = written["report"]
    assert (report.data_partuuid, report.data_size) == ("12345678-03", 20 * MB)


def test_data_partition_holds_the_unit_directory(written: dict) -> None:
    out: Path = written["out"]
    secret = card.stat_entry(out, 3, "/keys/device.key")
    assert secret is not None and (secret.kind, secret.mode, secret.uid) == ("file", 0o600, 0)
    assert card.read_file(out, 3, "/keys/device.key") == b"\x00secret\xff"
    keys = card.stat_entry(out, 3, "/keys")
    assert keys is not None and keys.kind == "dir"
    # the file system's top is the unit directory: its mode (the tree's 0750)
    top = _debugfs_stdout(f"{out}?offset={DATA_START * 512}", "stat /")
    assert "Mode:  0750" in top and "User:     0   Group:     0" in top
    assert written["report"].data_written == ("/keys/device.key",)
    # nothing of the firmware is on the data partition
    assert card.stat_entry(out, 3, "/opt") is None


def test_fstab_mounts_the_data_partition(written: dict) -> None:
    fstab = _text(written["out"], 2, "/etc/fstab")
    assert fstab.startswith(STOCK_FSTAB)  # the stock boot and root lines kept
    entries = [ln.split() for ln in fstab.splitlines() if ln.strip() and not ln.startswith("#")]
    ours = [e for e in entries if e[1] == "/var/lib/bodycam"]
    assert ours == [
        [
            "PARTUUID=12345678-03",
            "/var/lib/bodycam",
            "ext4",
            "defaults,noatime,nodev,nosuid,noexec,commit=1",
            "0",
            "2",
        ]
    ]
    entry = card.stat_entry(written["out"], 2, "/etc/fstab")
    assert entry is not None and (entry.mode, entry.uid) == (0o644, 0)


def test_recorder_requires_the_data_mount() -> None:
    units = flash.render_units(f"/{layout.PREFIX}", f"/{layout.UNIT}")
    lines = units["bodycam-recorder.service"].splitlines()
    unit_section = lines[: lines.index("[Service]")]
    assert "RequiresMountsFor=/var/lib/bodycam" in unit_section


def test_fstab_with_data_replaces_an_earlier_entry() -> None:
    once = card.fstab_with_data(STOCK_FSTAB, "12345678-03", "/var/lib/bodycam")
    assert card.fstab_with_data(once, "12345678-03", "/var/lib/bodycam") == once
    moved = card.fstab_with_data(
        STOCK_FSTAB + "/dev/sda1 /var/lib/bodycam/ ext4 defaults 0 0\n\n",
        "abcdef01-03",
        "/var/lib/bodycam",
    )
    assert moved.count("/var/lib/bodycam") == 1 and "PARTUUID=abcdef01-03" in moved
    assert moved.startswith(STOCK_FSTAB)
    # a commented-out line naming the mount point is the owner's: kept
    commented = STOCK_FSTAB + "#/dev/sda1 /var/lib/bodycam ext4 defaults 0 0\n"
    assert card.fstab_with_data(commented, "12345678-03", "/var/lib/bodycam").startswith(commented)


@pytest.mark.parametrize(
    ("text", "size"),
    [("8G", 8 << 30), ("512M", 512 * MB), ("16MiB", 16 * MB), ("18M", 20 * MB), ("1t", 1 << 40)],
)
def test_parse_size(text: str, size: int) -> None:
    assert card.parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "whole number"),
        ("8X", "whole number"),
        ("1.5G", "whole number"),
        ("-1G", "whole number"),
        ("0", "too small"),
        ("1M", "too small"),
        ("2T", "too large"),
    ],
)
def test_parse_size_refuses(text: str, message: str) -> None:
    with pytest.raises(CardError, match=message):
        card.parse_size(text)


@pytest.mark.parametrize("size", ["8X", "1M"])
def test_flash_image_refuses_a_bad_data_size(stock: Path, tmp_path: Path, size: str) -> None:
    """Exit 2 with one line, before any key is made or anything is written."""
    out = tmp_path / "unit.img"
    r = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve().parent.parent / "tools" / "flash.py"),
            "image",
            str(stock),
            str(out),
            "--serial",
            "BC-QA-000099",
            "--officer",
            "O",
            "--password-file",
            str(tmp_path / "no-such-file"),
            "--agency",
            str(tmp_path / "no-agency"),
            "--without-venv",
            "--data-size",
            size,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "data partition size" in r.stderr
    assert "Traceback" not in r.stderr
    _no_output(out)
    assert list(tmp_path.iterdir()) == []  # no agency, no stage, nothing


def test_an_image_with_a_third_partition_is_refused(written: dict, tmp_path: Path) -> None:
    """A unit's image as the source: refused (its layout is not the stock one)."""
    out = tmp_path / "again.img"
    with pytest.raises(CardError, match="already a unit's image"):
        card.write_image(written["out"], out, root_tree=written["tree"], serial="S1")
    _no_output(out)


# ------------------------------------------------------------ pure functions


def test_merge_config_idempotent_and_moves_our_block_last() -> None:
    once = card.merge_config_txt(STOCK_CONFIG)
    assert card.merge_config_txt(once) == once
    # someone appended a section after ours: our include moves back to the end
    edited = once + "[pi4]\narm_freq=1500\n"
    again = card.merge_config_txt(edited)
    assert again.splitlines().count("include bodycam.txt") == 1
    assert again.endswith("[all]\ninclude bodycam.txt\n") and "[pi4]\narm_freq=1500" in again
    crlf = card.merge_config_txt(STOCK_CONFIG.replace("\n", "\r\n"))
    assert crlf.endswith("include bodycam.txt\r\n") and "\n" not in crlf.replace("\r\n", "")


def test_edit_cmdline_idempotent_and_merges_modules() -> None:
    once = card.edit_cmdline(STOCK_CMDLINE, "S1")
    assert card.edit_cmdline(once, "S1") == once
    text = card.edit_cmdline(
        "root=PARTUUID=1-02 modules-load=i2c-dev rootwait console=ttyAMA0,115200 resize "
        "g_ether.dev_addr=00:11:22:33:44:55 -- single\n",
        "S1",
    )
    tokens = text.split()
    assert tokens[1] == "modules-load=i2c-dev,dwc2,g_ether"  # in place, merged
    assert "console=ttyAMA0,115200" not in tokens and "resize" not in tokens
    assert sum(t.startswith("g_ether.dev_addr=") for t in tokens) == 1
    assert "g_ether.dev_addr=00:11:22:33:44:55" not in tokens
    assert tokens[-2:] == ["--", "single"]  # init's arguments stay last


@pytest.mark.parametrize(
    ("cmdline", "message"),
    [
        ("console=tty1 rootwait\n", "no root="),
        ("root=PARTUUID=1-02 rootwait\nquiet\n", "one line"),
        ("", "one line"),
    ],
)
def test_edit_cmdline_refuses(cmdline: str, message: str) -> None:
    with pytest.raises(CardError, match=message):
        card.edit_cmdline(cmdline, "S1")


# ------------------------------------------------------------ bad inputs


def _no_output(out: Path) -> None:
    assert not out.exists()
    assert not out.with_name(out.name + ".partial").exists()


def test_not_an_image(tmp_path: Path) -> None:
    src = tmp_path / "notes.txt"
    src.write_text("hello\n" * 200)
    out = tmp_path / "unit.img"
    with pytest.raises(CardError, match="not a disk image"):
        card.write_image(src, out, root_tree=tmp_path, serial="S1")
    _no_output(out)


def test_image_without_ext4(tmp_path: Path) -> None:
    src = tmp_path / "fat-only.img"
    with src.open("wb") as f:
        f.truncate(80 * MB)
    _mbr(src, (2048, 72 * 2048, "c"), (74 * 2048, None, "83"))  # p2 never formatted
    _fat(src, 2048, 72 * 2048, {"config.txt": STOCK_CONFIG, "cmdline.txt": STOCK_CMDLINE})
    out = tmp_path / "unit.img"
    with pytest.raises(CardError, match="no ext4 root partition"):
        card.write_image(src, out, root_tree=tmp_path, serial="S1")
    _no_output(out)


def test_cmdline_without_root_leaves_nothing(stock: Path, tmp_path: Path) -> None:
    src = tmp_path / "bad.img"
    subprocess.run(["cp", "--sparse=always", str(stock), str(src)], check=True)
    bad = tmp_path / "cmdline.txt"
    bad.write_text("console=tty1 rootwait quiet\n")
    _run("mcopy", "-o", "-i", f"{src}@@{BOOT_START * 512}", bad, "::cmdline.txt")
    out = tmp_path / "unit.img"
    with pytest.raises(CardError, match="no root="):
        card.write_image(src, out, root_tree=_root_tree(tmp_path), serial="S1")
    _no_output(out)


def test_bad_tree_and_serial(stock: Path, tmp_path: Path) -> None:
    out = tmp_path / "unit.img"
    with pytest.raises(CardError, match="serial"):
        card.write_image(stock, out, root_tree=tmp_path, serial=" ")
    with pytest.raises(CardError, match="not a directory"):
        card.write_image(stock, out, root_tree=tmp_path / "missing", serial="S1")
    _no_output(out)
    # the tree wants a directory where the image has a file: refused mid-write
    tree = tmp_path / "tree"
    (tree / "etc/hostname").mkdir(parents=True)
    (tree / "etc/hostname/x").write_text("x")
    with pytest.raises(CardError, match="etc/hostname"):
        card.write_image(stock, out, root_tree=tree, serial="S1")
    _no_output(out)
