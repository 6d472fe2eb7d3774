"""`bodycam run --unit DIR [--sim --scenario FILE]`: the recorder daemon."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

from hal.media import DeviceFault
from sealing.keys import KeyFileError
from sealing.store import StoreError

from .cmd_export import export_config
from .cmd_export import start as start_export
from .daemon import Recorder
from .recording import run_scenario
from .scenario import ScenarioError, load

HELP = "run the recorder (simulated unit: --sim --scenario FILE)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--unit", type=Path, required=True, help="the unit directory")
    parser.add_argument("--sim", action="store_true", help="simulated devices")
    parser.add_argument("--scenario", type=Path, help="scenario file (with --sim)")
    parser.add_argument("--export", metavar="ADDRESS:PORT", nargs="?", const="",
                        help="also serve the dock link while recording (default address: "
                             "unit.toml [export])")


def run(args: argparse.Namespace) -> int:
    if not args.sim:
        print("bodycam run: the Raspberry Pi device backends are not in this tree yet; "
              "run a simulated unit with --sim --scenario FILE", file=sys.stderr)
        return 2
    if args.scenario is None:
        print("bodycam run: --sim needs --scenario FILE (see docs/SCENARIO.md)", file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="bodycam-scenario-") as tmp:
            scenario = load(args.scenario, Path(tmp))

            services = []

            def on_ready(rec: Recorder) -> None:
                def stop(signum: int, _frame: object) -> None:
                    rec.stop_requested = signal.Signals(signum).name

                signal.signal(signal.SIGTERM, stop)
                signal.signal(signal.SIGINT, stop)
                if args.export is not None:
                    host, port = export_config(args.unit)
                    if args.export:
                        host, _, p = args.export.rpartition(":")
                        port = int(p)
                    running = start_export(args.unit, rec.store, rec.clock, host, port)
                    services.append(running)
                    print(f"export service on {running.address[0]}:{running.address[1]}",
                          flush=True)

            try:
                rec = run_scenario(args.unit, scenario, on_ready=on_ready)
            finally:
                for running in services:
                    running.close()
    except (ScenarioError, DeviceFault, KeyFileError, StoreError, OSError, ValueError) as exc:
        print(f"bodycam run: {exc}", file=sys.stderr)
        return 2
    print(f"done: {len(rec.sealed)} segments sealed, prompts: "
          + ", ".join(p for _, p in rec.speaker.played))
    return 0
