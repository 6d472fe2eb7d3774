"""`bodycam status --unit DIR`: the unit at a glance, read-only (it never takes
the store's lock, so it works while the recorder runs)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from hal.storage import space
from sealing import layout
from sealing.receipts import media_entries
from sealing.recordings import state_after
from sealing.store import StoreError, read_chain


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--unit", type=Path, required=True, help="the unit directory")
    parser.add_argument("--json", action="store_true")


def status(unit: Path, now_us: int | None = None) -> dict:
    store = unit / "store"
    records = [ln.record for ln in read_chain(store / layout.CHAIN).lines]
    last = records[-1]
    mode = state_after(records)
    held = [e for e in media_entries(records) if (store / layout.SEGMENTS / e["file"]).exists()]
    by_seq = {r.seq: r for r in records}
    now_us = now_us or time.time_ns() // 1000
    oldest = min((by_seq[e["seq"]].stamp.wall_us for e in held), default=None)
    battery = next((r.body for r in reversed(records) if r.type == "battery_low"), None)
    free = space(store)
    return {
        "serial": last.serial,
        "officer": last.officer,
        "state": mode,
        "clock": {"state": last.stamp.clock_state, "source": last.stamp.clock_source},
        "unexported": {
            "count": len(held),
            "oldest_age_s": None if oldest is None else max(0, (now_us - oldest) // 1_000_000),
        },
        "free_bytes": free.free_bytes,
        "total_bytes": free.total_bytes,
        "battery": battery or "no low-battery record",
        "chain": {"head_seq": last.seq, "last_type": last.type},
    }


def run(args: argparse.Namespace) -> int:
    try:
        st = status(args.unit)
    except (OSError, StoreError, IndexError) as exc:
        print(f"bodycam status: {args.unit} is not a unit with a store: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(st, indent=1))
        return 0
    u = st["unexported"]
    print(f"unit       {st['serial']} (officer {st['officer']})")
    print(
        f"state      {st['state']} (last record {st['chain']['head_seq']} "
        f"{st['chain']['last_type']})"
    )
    print(f"clock      {st['clock']['state']} ({st['clock']['source']})")
    print(
        f"unexported {u['count']} files"
        + (f", oldest {u['oldest_age_s'] // 3600} h" if u["oldest_age_s"] is not None else "")
    )
    print(f"free       {st['free_bytes'] >> 20} MiB of {st['total_bytes'] >> 20} MiB")
    print(f"battery    {st['battery']}")
    return 0
