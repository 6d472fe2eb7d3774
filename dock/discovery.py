"""Where units are found: USB gadget links (IPv6 link-local) or fixed
addresses (docs/EXPORT.md, "The dock service").

- `--usb`: every network interface of the dock made by a USB gadget driver
  (cdc_ether, rndis_host, cdc_ncm, cdc_eem) is one unit's link. Its MAC is
  the unit's g_ether host_addr, so the unit's own MAC, and from it the
  unit's IPv6 link-local address, follow (link/gadget.py): the dock connects
  to `[fe80::...%<interface>]:8443`. Many units share one address plan with
  no collisions, because link-local addresses are scoped to their link.
- `--unit HOST:PORT`: fixed addresses (a single unit on 192.168.7.2, tests on
  loopback).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from link import gadget

from .client import DockError
from .texts import msg

GADGET_DRIVERS = frozenset({"cdc_ether", "rndis_host", "cdc_ncm", "cdc_eem"})
UNIT_PORT = 8443


@dataclass(frozen=True)
class UnitAddress:
    host: str  # an IP literal; link-local ones carry their %interface
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class UnitSource(Protocol):
    """Where units may be found now; asked again at every poll."""

    def scan(self) -> list[UnitAddress]: ...


@dataclass(frozen=True)
class FixedUnits:
    addresses: tuple[UnitAddress, ...]

    def scan(self) -> list[UnitAddress]:
        return list(self.addresses)


@dataclass(frozen=True)
class GadgetLinks:
    """Units on USB gadget links, found in sysfs (`root` is a parameter so
    tests can name a veth pair's driver or a tree of their own)."""

    root: Path = Path("/sys/class/net")
    drivers: frozenset[str] = GADGET_DRIVERS
    port: int = UNIT_PORT

    def scan(self) -> list[UnitAddress]:
        found = []
        for iface in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            try:
                driver = (iface / "device" / "driver").resolve(strict=True).name
                state = (iface / "operstate").read_text().strip()
                mac = (iface / "address").read_text().strip()
            except OSError:
                continue  # not a device with a driver, or gone while we looked
            if driver not in self.drivers or state == "down":
                continue
            try:
                unit = gadget.link_local(gadget.unit_mac(mac))
            except gadget.GadgetError:
                continue
            found.append(UnitAddress(f"{unit}%{iface.name}", self.port))
        return found


@dataclass(frozen=True)
class Union:
    sources: tuple[UnitSource, ...]

    def scan(self) -> list[UnitAddress]:
        return [a for s in self.sources for a in s.scan()]


def parse_address(text: str) -> UnitAddress:
    """HOST:PORT, [IPv6]:PORT or [fe80::1%usb0]:PORT."""
    host, sep, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    if (
        not sep
        or not host
        or (":" in host and not bracketed)  # fe80::1:8443 - which part is the port?
        or not port.isdigit()
        or not 0 < int(port) < 65536
    ):
        raise DockError(
            msg("a unit address must be HOST:PORT or [IPv6]:PORT, not %(text)r", text=text)
        )
    return UnitAddress(host, int(port))
