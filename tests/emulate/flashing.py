"""Flashing the emulated unit's card exactly as QA does: `tools/flash.py image`
on the stock card, with the x86_64 wheelhouse and the emulated unit's own
[devices] tables (devices.toml). Never cached: every run is a new unit."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .image import SRC, StockCard
from .run import EmuError, Log, run

DEVICES = Path(__file__).resolve().parent / "devices.toml"
BOOT_OFFSET = 8192 * 512  # the stock card's bootfs (image.BOOT_START)
SERIAL = "BC-QA-000921"
OFFICER = "P1234"
PASSWORD = "emu-officer-pw-1"
DATA_SIZE = "2G"  # the self-test wants 1 GiB free


@dataclass(frozen=True)
class Flashed:
    image: Path
    cmdline: str  # cmdline.txt as flashing left it
    agency: Path
    password_file: Path
    serial: str
    host_mac: str  # g_ether.host_addr: the dock's side of the link
    dev_mac: str  # g_ether.dev_addr: the unit's usb0


def flash_py(*args: str | Path, log_file: Path | None = None, what: str = "flash.py") -> str:
    """The QA command. One place to change when it moves (issue 22)."""
    return run([sys.executable, SRC / "tools" / "flash.py", *args], log_file=log_file, what=what)


def flash(stock: StockCard, run_dir: Path, log: Log) -> Flashed:
    run_dir.mkdir(parents=True, exist_ok=True)
    logf = run_dir / "flash.log"
    agency = run_dir / "agency"
    if not agency.exists():
        flash_py("agency-init", "--profile", "qa", "--agency", agency, log_file=logf)
    pw = run_dir / "officer-password"
    pw.write_text(PASSWORD + "\n")
    pw.chmod(0o600)
    image = run_dir / "unit.img"
    out = flash_py(
        "image", stock.image, image,
        "--serial", SERIAL, "--officer", OFFICER, "--password-file", pw,
        "--agency", agency, "--wheelhouse", stock.wheels,
        "--devices-file", DEVICES, "--data-size", DATA_SIZE, "--force",
        log_file=logf, what="flash.py image",
    )  # fmt: skip
    macs = re.search(r"usb0 MACs (\S+) (\S+);", out)
    if not macs:
        raise EmuError(f"flash.py image named no usb0 MACs: {out.strip()[-300:]}")
    cmdline = run(["mcopy", "-n", "-i", f"{image}@@{BOOT_OFFSET}", "::cmdline.txt", "-"],
                  what="read cmdline.txt back")  # fmt: skip
    log(f"flashed {SERIAL}: {out.strip().splitlines()[-1][:160]}")
    return Flashed(image, cmdline.strip(), agency, pw, SERIAL, macs.group(1), macs.group(2))
