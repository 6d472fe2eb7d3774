"""The dock across the unit's USB gadget link.

The guest's kernel has both ends of the link: g_ether's usb0 (the unit)
and, through dummy_hcd, its host-side peer enx<host_mac> (cdc_ether),
which is what a dock's USB port would show. That peer goes into a network
namespace of its own ("dock") with a NIC from QEMU's user network (closed:
restrict=on), and a relay (socat) there carries the host's connections to
the unit's IPv6 link-local address on the peer. So every byte the dock
sends crosses the gadget link, as from a docked unit.

The dock runs on the host, not in the guest: its Python stack (the dock's
extra, PostgreSQL drivers, C2PA) has no place on the card, and under TCG
it would add minutes; the relay is the only thing in the dock namespace.
`dock_command` is the one place that names the dock's command."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from link.gadget import link_local

from .agent import Agent
from .flashing import Flashed
from .image import SRC
from .qemu import DOCK_NIC_MAC
from .run import EmuError, Log, run, wait_for

NETNS = "dock"
EXPORT_PORT = 8443  # unit.toml [export], as flash.py writes it
RELAY_ADDR = "10.0.2.15"  # QEMU user network's guest address, inside the namespace only


def dock_command(*args: str | Path) -> list[str]:
    """The dock, as an operator runs it (docs/EXPORT.md)."""
    return [str(Path(sys.executable).with_name("bodycam-dock")), *map(str, args)]


@dataclass(frozen=True)
class Link:
    peer: str  # enx<host_mac>, in the dock namespace
    unit_addr: str  # fe80::... of the unit's usb0
    host_port: int  # the relay, from the host


PEER = "dock0"  # the link's dock end, renamed as it moves into the namespace


def _find(mac: str) -> str:
    """Shell: the name of the interface with this MAC (empty if none)."""
    return (f"grep -il '^{mac}$' /sys/class/net/*/address 2>/dev/null "
            "| head -1 | xargs -r dirname | xargs -r basename")  # fmt: skip


def link_up(agent: Agent, flashed: Flashed, host_port: int, log: Log) -> Link:
    """The dock's end of the gadget link (cdc_ether, with the flashed
    host_addr) in its namespace, and the relay; returns once the unit's
    export service answers across the link."""
    unit_addr = link_local(flashed.dev_mac)
    in_ns = f"ip netns exec {NETNS} test -e /sys/class/net/{PEER}"
    wait_for(lambda: agent.sh(f"{in_ns} 2>/dev/null || [ -n \"$({_find(flashed.host_mac)})\" ]").ok,
             what=f"the gadget link's dock end (MAC {flashed.host_mac})", timeout=600,
             every=3)  # fmt: skip
    agent.check(f"""set -e
ip netns add {NETNS} 2>/dev/null || true
peer=$({_find(flashed.host_mac)})
if [ -n "$peer" ]; then ip link set "$peer" netns {NETNS} name {PEER}; fi
nic=$({_find(DOCK_NIC_MAC)})
if [ -n "$nic" ]; then ip link set "$nic" netns {NETNS} name relay0; fi
ip netns exec {NETNS} ip link set lo up
ip netns exec {NETNS} ip link set {PEER} up
ip netns exec {NETNS} ip link set relay0 up
ip netns exec {NETNS} ip addr replace {RELAY_ADDR}/24 dev relay0
systemctl stop emu-relay 2>/dev/null || true
systemctl reset-failed emu-relay 2>/dev/null || true
systemd-run --unit=emu-relay -p NetworkNamespacePath=/run/netns/{NETNS} \\
    socat TCP-LISTEN:{EXPORT_PORT},bind={RELAY_ADDR},fork,reuseaddr \\
    'TCP6:[{unit_addr}%{PEER}]:{EXPORT_PORT}'
""")  # fmt: skip
    probe = (f"ip netns exec {NETNS} socat -u OPEN:/dev/null "
             f"'TCP6:[{unit_addr}%{PEER}]:{EXPORT_PORT},connect-timeout=5'")  # fmt: skip
    try:
        wait_for(lambda: agent.sh(probe, timeout=30).ok,
                 what=f"the unit's export service at [{unit_addr}%{PEER}]:{EXPORT_PORT} "
                 "across the gadget link", timeout=900, every=5)  # fmt: skip
    except EmuError:
        # for whoever reads the failure (2026-12-03: the service listened on
        # :::8443 and dock0 was up, yet 900 s of probes found nothing)
        both = agent.sh(f"ip -br -6 addr; ip -6 neigh; ss -ltn; ip netns exec {NETNS} "
                        "sh -c 'ip -br -6 addr; ip -6 neigh'", timeout=60).out  # fmt: skip
        log("link state: " + " | ".join(line for line in both.splitlines() if line.strip()))
        raise
    log(f"dock link: {PEER} in namespace {NETNS}, unit at {unit_addr}, relay on :{host_port}")
    return Link(PEER, unit_addr, host_port)


PULL_TRIES = 5  # a unit too busy to take the dock's time says "try again"


def pull(link: Link, flashed: Flashed, dock_dir: Path, log_file: Path) -> str:
    """The dock's pull: login, clock, chain, segments, verify, receipt, release.
    A unit that answers "try again" (its loop too busy to take the dock's
    time within 5 s, as under TCG) is pulled again, as an operator would."""
    agency = flashed.agency
    cmd = dock_command(
        "pull", "--unit", f"127.0.0.1:{link.host_port}", "--dock-dir", dock_dir,
        "--agency", agency, "--identity", agency / "evidence.key",
        "--password-file", flashed.password_file, "--fingerprint", "match",
    )  # fmt: skip
    for attempt in range(1, PULL_TRIES + 1):
        try:
            return run(cmd, log_file=log_file, timeout=1800,
                       what="the dock's pull across the gadget link")  # fmt: skip
        except EmuError as exc:
            if "try again" not in str(exc) or attempt == PULL_TRIES:
                raise
    raise EmuError("unreachable: the loop returns or raises")


@dataclass(frozen=True)
class DockCopy:
    records: list[dict[str, object]]
    segments: list[Path]


def verify_copy(flashed: Flashed, dock_dir: Path, log_file: Path) -> DockCopy:
    """`bodycam verify` on the dock's copy, with the agency's identity and the
    unit's escrowed MAC key: every signature, MAC and plaintext hash."""
    copy = dock_dir / "units" / flashed.serial
    out = run(
        [sys.executable, "-m", "firmware.cli", "verify", copy, "--segments-from", dock_dir,
         "--identity", flashed.agency / "evidence.key",
         "--escrow", flashed.agency / "escrow" / f"{flashed.serial}.fss", "--json"],
        log_file=log_file, cwd=SRC, what="bodycam verify of the dock's copy",
    )  # fmt: skip
    try:
        report = json.loads(out)
    except ValueError:
        raise EmuError(f"bodycam verify --json gave no JSON: {out[-300:]}") from None
    if not report.get("ok"):
        raise EmuError(f"the dock's copy does not verify: {report.get('problems')}")
    segments = sorted(dock_dir.glob(f"*/*/*/{flashed.serial}/*.age"))
    return DockCopy(report.get("records", []), segments)
