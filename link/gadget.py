"""The USB gadget link's addressing, which unit and dock must agree on.

A unit's usb0 (g_ether) has fixed MACs from its serial, so the dock sees the
same interface each time; the unit's end is derived from the dock's end, so
a dock that sees a new gadget interface knows the unit's IPv6 link-local
address on it without knowing the serial (docs/EXPORT.md, "The dock service").
"""

from __future__ import annotations

import hashlib
import ipaddress


class GadgetError(ValueError):
    """A bad serial or MAC; the message names it."""


def mac_addresses(serial: str) -> tuple[str, str]:
    """Stable (host_addr, dev_addr) for the unit's g_ether link.

    g_ether picks random MACs at every boot without them, so the dock would see
    a new interface each time. The dock's end (host_addr) is locally
    administered (bit 1 set), unicast (bit 0 clear), from SHA-256 of the
    serial: the same unit always gets the same MAC, two units almost surely
    different ones. The unit's end is derived from it (`unit_mac`), so a dock
    that sees a new gadget interface knows the unit's address on it without
    knowing the serial (docs/EXPORT.md, "The dock service").
    """
    if not isinstance(serial, str) or not serial.strip() or not serial.isprintable():
        raise GadgetError(f"bad unit serial {serial!r}: need a non-empty printable string")
    serial = serial.strip()
    h = hashlib.sha256(b"bodycam-usb0\0" + serial.encode()).digest()
    host = bytearray(h[0:6])
    host[0] = (host[0] & 0xFC) | 0x02
    return _fmt_mac(bytes(host)), unit_mac(_fmt_mac(bytes(host)))


def unit_mac(host_mac: str) -> str:
    """The unit's usb0 MAC from the dock-side MAC: the last bit flipped."""
    b = bytearray(_parse_mac(host_mac))
    b[5] ^= 0x01
    return _fmt_mac(bytes(b))


def link_local(mac: str) -> str:
    """The IPv6 link-local address the kernel gives an interface with this
    MAC under addr-gen-mode eui64 (RFC 4291 appendix A): fe80:: and the
    MAC with its universal/local bit inverted and ff:fe in the middle."""
    b = bytearray(_parse_mac(mac))
    b[0] ^= 0x02
    iid = bytes(b[:3]) + b"\xff\xfe" + bytes(b[3:])
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + iid))


def _parse_mac(mac: str) -> bytes:
    parts = mac.strip().split(":")
    try:
        if len(parts) != 6 or any(len(p) != 2 for p in parts):
            raise ValueError
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise GadgetError(
            f"bad MAC address {mac!r}: need six hex pairs like 02:00:5e:10:00:01"
        ) from None


def _fmt_mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)
