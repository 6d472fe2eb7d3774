"""`bodycam verify PATH`: prove or disprove a sealed store.

Exit 0 when everything holds, 1 when verification fails (the first bad
place is named), 2 when the input is unusable (one-line reason).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from . import layout
from .age import AgeError, Identity
from .fss import FssError, load_escrow
from .keys import KeyFileError, load_public
from .verify import Unusable, human, verify_store


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="the store, or a unit directory holding store/")
    parser.add_argument(
        "--identity",
        type=Path,
        help="the agency's age identity: decrypt and check every plaintext hash",
    )
    parser.add_argument(
        "--escrow", type=Path, help="the unit's escrowed first MAC key: check forward-secure MACs"
    )
    parser.add_argument(
        "--device-key",
        type=Path,
        help="the unit's enrolled Ed25519 public key (PEM) to anchor signatures",
    )
    parser.add_argument(
        "--receipt",
        type=Path,
        action="append",
        default=[],
        help="a receipt held outside the store (repeatable)",
    )
    parser.add_argument(
        "--segments-from",
        type=Path,
        metavar="DIR",
        help="a dock's folder: look segments up as DIR/YYYY/MM/DD/<serial>/<file> "
        "(docs/FORMAT.md section 8.4) instead of the store's segments/",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable report")


def run(args: argparse.Namespace) -> int:
    try:
        identity = Identity.parse(args.identity.read_text()) if args.identity else None
        escrow = load_escrow(args.escrow) if args.escrow else None
        device_key = load_public(args.device_key) if args.device_key else None
        extra = [p.read_bytes() for p in args.receipt]
        if args.segments_from is not None and not args.segments_from.is_dir():
            raise Unusable(f"{args.segments_from} is not a folder")
        report = verify_store(
            args.path,
            identity=identity,
            escrow_key=escrow,
            device_key=device_key,
            extra_receipts=extra,
            find_segment=dock_lookup(args.segments_from) if args.segments_from else None,
        )
    except (Unusable, AgeError, FssError, KeyFileError, OSError, UnicodeDecodeError) as exc:
        print(f"bodycam verify: unusable input: {exc}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=1)
        print()
    else:
        print(human(report))
    return 0 if report.ok else 1


def dock_lookup(root: Path) -> Callable[[str], Path | None]:
    """Where a dock keeps a file: under the date its name carries."""

    def find(name: str) -> Path | None:
        parsed = layout.parse_name(name)
        if parsed is None:
            return None
        path = root / parsed.day_dir / parsed.serial / name
        return path if path.exists() or path.is_symlink() else None

    return find
