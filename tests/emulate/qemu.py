"""Booting the flashed card under QEMU (x86_64, q35): KVM where it works,
TCG otherwise (the soak's aarch64 card: virt, cortex-a72, always TCG); the
host's handles on the guest are unix sockets in the run folder: the agent
(virtio console), the GPS UART (the guest's ttyS1; none on aarch64) and
QMP; the guest's console goes to console.log.

The card is the disk, unchanged; the kernel and initrd are the card's own,
given to QEMU as a Pi's firmware would load them from bootfs. The kernel
command line is the flashed cmdline.txt plus a serial console, a longer
default start timeout (TCG runs the recorder's ExecStartPre self-test ~20x
slower than a Pi) and, under TCG, emu.tcg=1 (the recorder's WatchdogSec
scaled by the test layer): the only things added to what the card says."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .agent import Agent
from .flashing import Flashed
from .image import StockCard
from .qmp import Qmp
from .run import EmuError, Log, wait_for

BOOT_TIMEOUT_S = 1200.0  # to the agent answering, under TCG on a loaded 2-core host
DOCK_NIC_MAC = "52:54:00:00:0d:0c"  # the dock namespace's way in from the host (dock.py)


def accelerator() -> str:
    """kvm where this host offers hardware virtualisation, else tcg. /dev/kvm
    alone is not enough: nested KVM without vmx/svm hangs the guest's kernel."""
    forced = os.environ.get("BODYCAM_EMU_ACCEL")
    if forced:
        return forced
    flags = Path("/proc/cpuinfo").read_text()
    if os.access("/dev/kvm", os.R_OK | os.W_OK) and (" vmx" in flags or " svm" in flags):
        return "kvm"
    return "tcg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class BootOptions:
    extra_cmdline: tuple[str, ...] = ()  # e.g. emu.nogpio=1 (guest/.../emu-devices)
    watchdog: bool = False  # QEMU's i6300esb: the hardware watchdog (meaningful under KVM)
    memory_mb: int = 2048
    cpus: int = 2


@dataclass
class Machine:
    run_dir: Path
    stock: StockCard
    flashed: Flashed
    log: Log
    options: BootOptions = field(default_factory=BootOptions)
    proc: subprocess.Popen[bytes] | None = None
    dock_port: int = 0
    boots: int = 0

    @property
    def qemu(self) -> str:
        return "qemu-system-aarch64" if self.stock.arch == "arm64" else "qemu-system-x86_64"

    @property
    def agent_sock(self) -> Path:
        return self.run_dir / "agent.sock"

    @property
    def gps_sock(self) -> Path:
        return self.run_dir / "gps.sock"

    @property
    def qmp_sock(self) -> Path:
        return self.run_dir / "qmp.sock"

    @property
    def console(self) -> Path:
        return self.run_dir / "console.log"

    def command(self) -> list[str]:
        arm = self.stock.arch == "arm64"
        accel = "tcg" if arm else accelerator()  # an aarch64 guest is emulated on x86
        cmdline = " ".join(
            [self.flashed.cmdline, "console=ttyAMA0,115200" if arm else "console=ttyS0,115200",
             "systemd.default_timeout_start_sec=900", *self.options.extra_cmdline]
            # TCG: the recorder's watchdog scaled (guest/.../system-generators/emu-tcg)
            + (["emu.tcg=1"] if accel == "tcg" else [])
        )  # fmt: skip
        self.dock_port = self.dock_port or free_port()
        # aarch64 (the soak's card): QEMU's virt board, whose one PL011 UART
        # is the console, so the GPS port is absent there (a gps fault)
        board = (["-M", "virt", "-cpu", "cortex-a72"] if arm
                 else ["-M", "q35", "-cpu", "max", "-vga", "none"])  # fmt: skip
        cmd = [
            self.qemu,
            "-accel", "tcg,thread=multi" if accel == "tcg" else accel,
            *board, "-smp", str(self.options.cpus), "-m", str(self.options.memory_mb),
            "-display", "none", "-monitor", "none",
            "-kernel", str(self.stock.kernel), "-initrd", str(self.stock.initrd),
            "-append", cmdline,
            # cache=unsafe: the guest's flushes are not forced to the host's disk,
            # but every write it made reaches the file before QEMU is killed, so
            # a kill is the guest's power cut (its page cache is lost)
            "-drive", f"file={self.flashed.image},format=raw,if=virtio,cache=unsafe",
            "-rtc", "base=utc",
            "-serial", f"file:{self.console}",
            *([] if arm else [
                "-chardev", f"socket,id=gps,path={self.gps_sock},server=on,wait=off",
                "-serial", "chardev:gps"]),
            "-device", "virtio-serial-pci",
            "-chardev", f"socket,id=agent,path={self.agent_sock},server=on,wait=off",
            "-device", "virtconsole,chardev=agent",
            # the dock's relay (dock.py): a NIC the guest moves into its dock
            # namespace; restrict=on: no packet of the guest leaves QEMU
            "-netdev", f"user,id=dock,restrict=on,"
            f"hostfwd=tcp:127.0.0.1:{self.dock_port}-10.0.2.15:8443",
            "-device", f"virtio-net-pci,netdev=dock,mac={DOCK_NIC_MAC}",
            "-qmp", f"unix:{self.qmp_sock},server=on,wait=off",
        ]  # fmt: skip
        if self.options.watchdog:
            cmd += ["-device", "i6300esb", "-action", "watchdog=reset"]
        return cmd

    def start(self) -> Agent:
        """Boot the card; returns once the guest's agent answers."""
        if shutil.which(self.qemu) is None:
            raise EmuError(f"{self.qemu} is not installed (scripts/setup --emulate)")
        for sock in (self.agent_sock, self.gps_sock, self.qmp_sock):
            sock.unlink(missing_ok=True)
        self.boots += 1
        with (self.run_dir / "qemu.log").open("ab") as out:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=out,
                                         stdin=subprocess.DEVNULL)  # fmt: skip
        accel = "tcg" if self.stock.arch == "arm64" else accelerator()
        self.log(f"boot {self.boots}: {self.qemu} ({accel}) pid {self.proc.pid}")
        wait_for(self.agent_sock.exists, what="QEMU's agent socket", timeout=60,
                 alive=self.dead)  # fmt: skip
        agent = Agent(self.agent_sock)
        started = time.monotonic()
        wait_for(agent.ready, what="the guest's test agent (the card booting)",
                 timeout=BOOT_TIMEOUT_S, every=2.0, alive=self.dead)  # fmt: skip
        self.log(f"boot {self.boots}: agent answers after {time.monotonic() - started:.0f} s")
        return agent

    def dead(self) -> str | None:
        """Why QEMU is no longer running, or None."""
        if self.proc is None:
            return "QEMU was not started"
        rc = self.proc.poll()
        if rc is None:
            return None
        tail = (self.run_dir / "qemu.log").read_text(errors="replace").strip()[-300:]
        return f"QEMU exited ({rc}): {tail}"

    def qmp(self) -> Qmp:
        return Qmp(self.qmp_sock)

    def power_cut(self) -> None:
        """The battery pulled: QEMU quits at once, the guest's page cache lost."""
        try:
            q = self.qmp()
            try:
                q.command("quit")
            finally:
                q.close()
        except (OSError, EmuError) as exc:
            self.log(f"QMP quit failed ({exc}): killing QEMU")
            self.kill()
        self._reap(60)

    def powerdown(self, timeout: float = 600.0) -> None:
        """The power button: an orderly shutdown (the recorder seals and stops)."""
        q = self.qmp()
        try:
            q.command("system_powerdown")
        finally:
            q.close()
        self._reap(timeout)

    def _reap(self, timeout: float) -> None:
        assert self.proc is not None
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise EmuError(f"QEMU did not exit within {timeout:.0f} s (killed)") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=60)
