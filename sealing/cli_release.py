"""`bodycam release --unit DIR RECEIPT`: apply a dock receipt by hand.

The export service applies receipts as docks send them; this is the same
check for a receipt carried over by other means. Exit 0 when applied (or
already applied), 1 when refused (nothing deleted), 2 for unusable input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .keys import KeyFileError, UnitKeys
from .receipts import MAX_RECEIPT_BYTES, ReceiptRefused, apply_receipt
from .safeio import TooLarge, read_regular
from .store import Store, StoreError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--unit", type=Path, required=True, help="unit directory (holds keys/ and store/)"
    )
    parser.add_argument("receipt", type=Path, help="the receipt file")


def run(args: argparse.Namespace) -> int:
    try:
        # a regular file of receipt size: a FIFO or /dev/zero must not hang the unit
        data = read_regular(args.receipt, MAX_RECEIPT_BYTES, "a receipt")
        keys = UnitKeys.load(args.unit / "keys")
        store = Store.open(args.unit / "store", keys, boot_body={"cause": "release tool"})
    except (OSError, TooLarge, KeyFileError, StoreError) as exc:
        print(f"bodycam release: unusable input: {exc}", file=sys.stderr)
        return 2
    with store:
        try:
            done = apply_receipt(store, data)
        except ReceiptRefused as exc:
            store.append("fault", {"what": "receipt_refused", "reason": str(exc)})
            print(f"bodycam release: refused, nothing deleted: {exc}", file=sys.stderr)
            return 1
    if done.already_applied:
        print(f"receipt {done.receipt[:16]} was already applied; nothing to do")
    else:
        print(
            f"released {len(done.files)} files, {done.bytes_freed} bytes "
            f"(receipt {done.receipt[:16]})"
        )
    return 0
