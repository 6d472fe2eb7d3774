"""`bodycam run --unit DIR [--sim --scenario FILE [--realtime]] [--export [ADDR:PORT]]`:
the recorder. Without `--sim` it runs live on the devices unit.toml
`[devices]` names (all simulated when it names none) until SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hal.media import DeviceFault
from sealing.keys import KeyFileError
from sealing.store import StoreError

from . import unitconfig
from .cmd_export import address_port
from .cmd_export import start as start_export
from .recording import run_live, run_scenario
from .runtime import Recorder
from .unitconfig import ConfigError, UnitConfig

if TYPE_CHECKING:
    from .scenario import Scenario

FROM_UNIT_TOML: tuple[()] = ()  # `--export` without ADDRESS:PORT


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--unit", type=Path, required=True, help="the unit directory")
    parser.add_argument(
        "--sim", action="store_true", help="play a scenario on simulated devices (needs --scenario)"
    )
    parser.add_argument("--scenario", type=Path, help="scenario file (with --sim)")
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="play the scenario on the wall clock through the live runtime",
    )
    parser.add_argument(
        "--media-log",
        metavar="FILE",
        type=Path,
        help="append a line for every frame taken in and every packet written "
        "(power-cut tests measure the loss with it; live runs only)",
    )
    parser.add_argument(
        "--export",
        metavar="ADDRESS:PORT",
        type=address_port,
        nargs="?",
        # A bare --export (as the shipped service runs it) means unit.toml's
        # [export]. Not a string: argparse would pass a string const to `type`.
        const=FROM_UNIT_TOML,
        help="also serve the dock link while recording (default address: unit.toml [export])",
    )


def run(args: argparse.Namespace) -> int:
    if args.sim != (args.scenario is not None):
        print(
            "bodycam run: --sim and --scenario FILE go together (docs/SCENARIO.md); "
            "without them the unit runs live on its configured devices",
            file=sys.stderr,
        )
        return 2
    if args.realtime and not args.sim:
        print("bodycam run: --realtime plays a scenario (--sim --scenario FILE)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bodycam-scenario-") as tmp:
        # Everything configurable is read and checked before the store is opened:
        # a bad value is one line and exit 2, and the chain is left as it was.
        try:
            config = unitconfig.load(args.unit)
        except ConfigError as exc:
            print(f"bodycam run: {exc}", file=sys.stderr)
            return 2
        scenario = None
        if args.sim:  # the simulators load only for a scenario
            from .scenario import ScenarioError, load

            try:
                scenario = load(args.scenario, Path(tmp))
            except ScenarioError as exc:
                print(f"bodycam run: {exc}", file=sys.stderr)
                return 2
        host, port = config.export.address, config.export.port
        if args.export and args.export != FROM_UNIT_TOML:  # ADDRESS:PORT or :PORT given
            host, port = args.export[0] or host, args.export[1]
        return _run(args, config, scenario, host, port)


def _run(
    args: argparse.Namespace,
    config: UnitConfig,
    scenario: Scenario | None,
    host: str,
    port: int,
) -> int:
    """Record (the store opens here); the temporary folder holding the
    scenario's speech stays until this returns."""
    services: list[Any] = []

    def on_ready(rec: Recorder) -> None:
        def stop(signum: int, _frame: object) -> None:
            rec.request_stop(signal.Signals(signum).name)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if args.export is not None:
            running = start_export(
                args.unit,
                rec.store,
                rec.unitclock,
                host,
                port,
                on_dock_time=rec.dock_time,
                on_assign=rec.assign,
            )
            services.append(running)
            print(f"export service on {running.address[0]}:{running.address[1]}", flush=True)

    def log(line: str) -> None:
        print(line, flush=True)

    media_log = None
    if args.media_log is not None:
        # one write(2) per line on an O_APPEND file: nothing is held in this
        # process, so a SIGKILL loses no line that was written
        fd = os.open(args.media_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

        def media_log(line: str) -> None:
            os.write(fd, line.encode() + b"\n")

    try:
        try:
            if scenario is not None:
                rec = run_scenario(
                    args.unit,
                    scenario,
                    realtime=args.realtime,
                    log=log,
                    on_ready=on_ready,
                    config=config,
                )
            else:
                rec = run_live(
                    args.unit, log=log, on_ready=on_ready, config=config, media_log=media_log
                )
        finally:
            for running in services:
                running.close()
    except (
        DeviceFault,
        KeyFileError,
        StoreError,
        OSError,
        ValueError,
    ) as exc:
        print(f"bodycam run: {exc}", file=sys.stderr)
        return 2
    print(f"done: {rec.totals.segments} segments sealed, prompts: " + ", ".join(rec.prompts_played))
    return 0
