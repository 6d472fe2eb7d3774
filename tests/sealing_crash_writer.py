"""Child process for the crash test: records steadily into a unit until killed.

Prints one line per write, flushed: "W <segno> <plaintext bytes so far> <mono_s>".
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from sealing.store import SegmentMeta
from sealing.unit import open_unit

BLOCK = 4096
PERIOD = 0.008  # ~500 KB/s, a 4 Mbit/s stream


def main(unit: str, blocks_per_segment: int) -> None:
    store = open_unit(Path(unit), boot_body={"cause": "crash test child"})
    while True:
        start = store.clock()
        w = store.open_segment()
        total = 0
        for _ in range(blocks_per_segment):
            w.write(os.urandom(BLOCK))
            total += BLOCK
            print(f"W {w.name.segno} {total} {time.monotonic():.6f}", flush=True)
            time.sleep(PERIOD)
        w.close(SegmentMeta(start=start, end=store.clock(), duration_us=0))
        store.append("mark", {"flag": "tick"})


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
