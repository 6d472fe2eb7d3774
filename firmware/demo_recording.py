"""The recording part of the demo: what the unit records before docking."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from sealing.store import SegmentMeta, Store


def record_sample(store: Store, work: Path) -> Iterator[tuple[str, str]]:
    """Sample bytes through the sealed store (stands in until the recorder runs)."""
    store.append("record_start", {"cause": "button"})
    for i in range(2):
        start = store.clock()
        w = store.open_segment(stamp=start)
        for _ in range(32):
            w.write(os.urandom(8192))
        end = store.clock()
        rec = w.close(SegmentMeta(start=start, end=end, duration_us=end.mono_us - start.mono_us))
        yield "seal", f"{rec.body['file']} ({rec.body['ct_len']} bytes ciphertext)"
        if i == 0:
            store.append("pause", {"reason": "to_be_stated"})
            store.append("resume", {"after_pause_us": 0})
            yield "pause", "paused, resumed"
    store.append("record_stop", {"cause": "button"})
    yield "stop", "recording stopped"
