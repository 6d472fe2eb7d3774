"""`bodycam verify PATH`: prove or disprove a sealed store.

Exit 0 when everything holds, 1 when verification fails (the first bad
place is named), 2 when the input is unusable (one-line reason). With
`--json` the records are printed as they are checked, so the report of a
long chain is never held whole.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .age import AgeError, Identity
from .fss import FssError, load_escrow
from .keys import KeyFileError, parse_public
from .receipts import MAX_RECEIPT_BYTES
from .report import JsonRecords
from .safeio import NotRegular, TooLarge, read_regular
from .segsource import DockSegments
from .verify import Unusable, human, verify_store

MAX_KEY_FILE = 64 * 1024  # an identity, escrow or public key file is a few lines


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


def _read(path: Path, limit: int, what: str) -> bytes:
    """A file the examiner named: regular, bounded, never a FIFO to hang on."""
    try:
        return read_regular(path, limit, what)
    except (NotRegular, TooLarge, OSError) as exc:
        raise Unusable(f"{what} {path}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    out = JsonRecords(sys.stdout) if args.json else None  # writes nothing until a record
    try:
        identity = (
            Identity.parse(_read(args.identity, MAX_KEY_FILE, "identity").decode())
            if args.identity
            else None
        )
        escrow = load_escrow(args.escrow) if args.escrow else None
        device_key = (
            parse_public(_read(args.device_key, MAX_KEY_FILE, "device key"), str(args.device_key))
            if args.device_key
            else None
        )
        extra = [_read(p, MAX_RECEIPT_BYTES, "receipt") for p in args.receipt]
        if args.segments_from is not None and not args.segments_from.is_dir():
            raise Unusable(f"{args.segments_from} is not a folder")
        # nothing is printed before here, so an unusable input leaves stdout empty
        report = verify_store(
            args.path,
            identity=identity,
            escrow_key=escrow,
            device_key=device_key,
            extra_receipts=extra,
            find_segment=dock_lookup(args.segments_from) if args.segments_from else None,
            sink=out if out is not None else _counted_only,
        )
    except (Unusable, AgeError, FssError, KeyFileError, OSError, UnicodeDecodeError) as exc:
        print(f"bodycam verify: unusable input: {exc}", file=sys.stderr)
        return 2
    if out is not None:
        out.finish(report)
    else:
        print(human(report))
    return 0 if report.ok else 1


def _counted_only(record: dict[str, object]) -> None:
    """The human report counts records (Report.add_record) and holds none."""


def dock_lookup(root: Path) -> DockSegments:
    """Where a dock keeps a file: under the date its name carries. Also a
    plain `name -> Path | None` for callers that open files themselves."""
    return DockSegments(root)
