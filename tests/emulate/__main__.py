"""`scripts/emulate COMMAND`: the emulated unit (tests/emulate/__init__.py).

    build [--first-boot-venv] [--arch arm64]
                                the stock card, from the cache or made now
    smoke                       the smoke (smoke.py): one result line, exit 0 only if all held
    boot [--watchdog] [--first-boot-venv] [--arch arm64] [--cmdline ARG ...] [--run-dir DIR]
                                flash a unit and boot it; stays up until Ctrl-C
    sh RUN_DIR COMMAND          a command in a booted unit, as root (its test agent)

Progress goes to stderr; the result line of `smoke` to stdout."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from . import cache, image
from .agent import Agent
from .qemu import BootOptions
from .run import EmuError, be_nice
from .smoke import smoke
from .unit import EmulatedUnit


def log(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)


def run_dir(given: Path | None) -> Path:
    path = given or cache.cache_dir() / "runs" / time.strftime("%Y%m%dT%H%M%S")
    path.mkdir(parents=True, exist_ok=True)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/emulate", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="the stock card (cached by its inputs)")
    b.add_argument(
        "--first-boot-venv",
        action="store_true",
        help="no pre-baked venv: bodycam-venv.service makes it at first boot",
    )
    b.add_argument("--arch", choices=image.ARCHES, default="amd64", help="the card's CPU")
    s = sub.add_parser("smoke", help="boot, record, pause, resume, stop, dock: one line")
    s.add_argument("--run-dir", type=Path)
    bt = sub.add_parser("boot", help="flash a unit and boot it until Ctrl-C")
    bt.add_argument("--run-dir", type=Path)
    bt.add_argument(
        "--watchdog",
        action="store_true",
        help="QEMU's i6300esb as the hardware watchdog (needs KVM speed)",
    )
    bt.add_argument("--first-boot-venv", action="store_true")
    bt.add_argument("--arch", choices=image.ARCHES, default="amd64", help="the card's CPU")
    bt.add_argument(
        "--cmdline",
        nargs="*",
        default=[],
        help="more kernel arguments: emu.nogpio=1, emu.micbusy=1 (guest/.../emu-devices)",
    )
    sh = sub.add_parser("sh", help="run a command in a booted unit (root)")
    sh.add_argument("run_dir", type=Path)
    sh.add_argument("command")
    sh.add_argument("--timeout", type=float, default=120.0)
    args = p.parse_args(argv)  # fmt: skip
    be_nice()
    unit: EmulatedUnit | None = None
    try:
        if args.cmd == "build":
            t = time.monotonic()
            card = image.stock_card(
                image.host_kernel(args.arch), log, prebake=not args.first_boot_venv
            )
            print(f"stock card {card.image} ({time.monotonic() - t:.0f} s)")
            return 0
        if args.cmd == "sh":
            r = Agent(args.run_dir / "agent.sock").sh(args.command, timeout=args.timeout)
            sys.stdout.write(r.out)
            return r.rc
        unit = EmulatedUnit(run_dir(args.run_dir), log)
        if args.cmd == "smoke":
            result = smoke(unit, log)
            log(f"run folder: {unit.run_dir}")
            print(result.line(), flush=True)
            return 0 if result.ok else 1
        unit.prebake = not args.first_boot_venv
        unit.arch = args.arch
        unit.prepare()
        options = BootOptions(extra_cmdline=tuple(args.cmdline), watchdog=args.watchdog)
        unit.boot(options, gps=args.arch == "amd64").close()  # QEMU serves one client: `sh`
        log(f"booted; agent: scripts/emulate sh {unit.run_dir} 'COMMAND'; Ctrl-C stops it")
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
        return 0
    except EmuError as exc:
        print(f"emulate {args.cmd}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if unit is not None:
            unit.shutdown()


if __name__ == "__main__":
    sys.exit(main())
