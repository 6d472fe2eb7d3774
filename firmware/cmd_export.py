"""`bodycam export-serve --unit DIR`: the export service on its own, for a unit
that is docked and not recording (the recorder runs the same service inside
its own process, since only one writer may hold the store)."""

from __future__ import annotations

import argparse
import ipaddress
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from link import pki
from link.messages import Assignment
from sealing.keys import KeyFileError
from sealing.store import StoreError
from sealing.unit import open_unit

from . import unitconfig
from .export_service import ExportHooks, ExportService, serve
from .unitclock import UnitClock, as_offered, outside_window


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--unit", type=Path, required=True, help="the unit directory")
    parser.add_argument(
        "--address", type=ip_address, help="listen address (default: unit.toml [export])"
    )
    parser.add_argument(
        "--port", type=port_number, help="listen port (default: unit.toml [export])"
    )


def export_config(unit: Path) -> tuple[str, int]:
    """unit.toml `[export]` address and port (checked with the rest of the file)."""
    exp = unitconfig.load(unit).export
    return exp.address, exp.port


def ip_address(text: str) -> str:
    """argparse type for a listen address: an IP address, as in unit.toml [export]."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None
    return text


def address_port(text: str) -> tuple[str | None, int]:
    """argparse type for ADDRESS:PORT or :PORT (the address then from unit.toml)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not ADDRESS:PORT")
    return (ip_address(host.strip("[]")) if host else None), port_number(port)


def port_number(text: str) -> int:
    """argparse type for a TCP port: a bad one is a usage error (exit 2), not a traceback."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port from 1 to 65535")
    return port


def start(
    unit: Path,
    store,
    clock: UnitClock,
    address: str,
    port: int,
    on_dock_time: Callable[[int, str], dict[str, Any]] | None = None,
    on_assign: Callable[[Assignment, str], tuple[int, dict[str, Any]]] | None = None,
):
    """Start the service for an open store; the caller closes what it returns.
    With a recorder running, `on_dock_time` and `on_assign` are its own (the
    loop thread owns the clock and the watermark); alone, both are done here."""
    tls = unit / "tls"
    ctx = pki.server_context(tls / "unit.crt", tls / "unit.key", tls / "ca.crt")

    def set_here(t_us: int, dock: str) -> dict[str, Any]:
        reason = outside_window("dock", t_us)
        if reason is not None:
            store.append(
                "clock",
                {
                    "event": "refused",
                    "source": "dock",
                    "offered_us": as_offered(t_us),
                    "state": clock.state,
                    "reason": reason,
                    "dock": dock,
                },
            )
            return {"error": reason, "state": clock.state}
        body = clock.set_from(t_us, "dock")
        store.append("clock", {**body, "dock": dock})
        return body

    on_dock_time = on_dock_time or set_here
    hooks = ExportHooks(
        clock_status=lambda: {"state": clock.state, "source": clock.source},
        on_dock_time=on_dock_time,
        on_assign=on_assign,
    )
    return serve(ExportService(store, unit, hooks), ctx, address, port)


def run(args: argparse.Namespace) -> int:
    try:
        address, port = export_config(args.unit)
        clock = UnitClock()
        store = open_unit(args.unit, clock=clock.stamp, boot_body={"cause": "export-serve"})
    except (OSError, ValueError, KeyFileError, StoreError) as exc:
        print(f"bodycam export-serve: {exc}", file=sys.stderr)
        return 2
    try:
        running = start(args.unit, store, clock, args.address or address, args.port or port)
    except (OSError, ValueError) as exc:
        store.close()
        print(f"bodycam export-serve: cannot serve: {exc}", file=sys.stderr)
        return 2
    print(f"export service on {running.address[0]}:{running.address[1]}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    running.close()
    store.close()
    return 0
