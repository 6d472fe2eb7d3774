"""The one `bodycam` command. Each subcommand lives in its own module, imported
only when that subcommand runs, so a broken or Pi-only import in one cannot
stop the others (and `bodycam verify` works on a dock with no media stack).

A subcommand module provides:
    HELP: str
    configure(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int   (the exit code)
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

# name -> module path. Ordered as `bodycam --help` shows them.
SUBCOMMANDS: dict[str, str] = {
    "demo": "firmware.cmd_demo",
    "run": "firmware.cmd_run",
    "status": "firmware.cmd_status",
    "capture": "capture.cli",
    "verify": "sealing.cli_verify",
    "verify-media": "firmware.cmd_verify_media",
    "release": "sealing.cli_release",
    "export-serve": "firmware.cmd_export",
    "selftest": "firmware.cmd_selftest",
}


def _available(only: str | None = None) -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for name, path in SUBCOMMANDS.items():
        if only is not None and name != only:
            continue
        try:
            found[name] = importlib.import_module(path)
        except ModuleNotFoundError as exc:
            # Only hide subcommands whose own module is absent (not yet built);
            # a missing dependency inside an existing module is a real error.
            if exc.name != path and not path.startswith(f"{exc.name}."):
                raise
    return found


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser for every subcommand, or for `only` (then no other
    subcommand's module is imported: `bodycam verify` needs no media stack)."""
    parser = argparse.ArgumentParser(prog="bodycam", description="Body-worn evidence camera")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in _available(only).items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    args = build_parser(chosen).parse_args(argv)
    return int(args._module.run(args))


if __name__ == "__main__":
    sys.exit(main())
