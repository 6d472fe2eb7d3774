"""The one `bodycam` command. Each subcommand lives in its own module, imported
only when that subcommand runs, so a broken or Pi-only import in one cannot
stop the others (and `bodycam verify` works on a dock with no media stack).

A subcommand module provides (its help line is in SUBCOMMANDS below):
    configure(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int   (the exit code)
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from sealing.files import no_group_write

# name -> (module path, one line of help). Ordered as `bodycam --help` shows
# them; the help lives here so that listing them imports none of them.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("firmware.cmd_demo", "run the main job on a simulated unit and print a short report"),
    "run": (
        "firmware.cmd_run",
        "run the recorder (live until SIGTERM; a scripted simulated unit: --sim --scenario FILE)",
    ),
    "status": (
        "firmware.cmd_status",
        "print the unit's state, clock, unexported recordings, free space, battery",
    ),
    "capture": ("capture.cli", "run the capture pipeline alone and write plain MPEG-TS segments"),
    "verify": ("sealing.cli_verify", "verify a sealed store (a unit's or a dock's copy)"),
    "verify-media": (
        "firmware.cmd_verify_media",
        "check the in-stream signatures of a video file (a segment, an MP4 copy, an excerpt)",
    ),
    "release": (
        "sealing.cli_release",
        "apply a dock's signed receipt and free exactly the storage it covers",
    ),
    "export-serve": (
        "firmware.cmd_export",
        "serve the dock link (mutual TLS) for a unit that is not recording",
    ),
    "selftest": (
        "firmware.cmd_selftest",
        "pre-use self-test of a unit (PASS/FAIL per check, recorded in the chain)",
    ),
}


def _chosen(argv: list[str]) -> str | None:
    """The subcommand named on the command line (its first word), if any."""
    return argv[0] if argv and argv[0] in SUBCOMMANDS else None


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """Every subcommand is listed; only the one chosen is imported and told
    to add its options, so `bodycam verify` never loads the media stack."""
    parser = argparse.ArgumentParser(prog="bodycam", description="Body-worn evidence camera")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = _chosen(argv)
    for name, (path, text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=text, description=text)
        if name == chosen:
            module: ModuleType = importlib.import_module(path)
            module.configure(p)
            p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    no_group_write()  # the unit's files, whatever umask the shell had
    args = build_parser(argv).parse_args(argv)
    return int(args._module.run(args))


if __name__ == "__main__":
    sys.exit(main())
