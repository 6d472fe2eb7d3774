"""A unit's chain verified once while it is unchanged, for the page's
playback (dock/courtcopy/stream.py).

The chain copy only changes when a pull extends it, so the report is kept,
keyed by the chain file's size, modification time and inode, and made again
when any of them changes. The segment files are not read here: a dock
holds a unit's recordings for months, and verifying them all (7.3 GB an
hour at 16 Mbit/s) before the first playback after each pull kept a
viewer waiting on every other recording. The playback checks what it
plays: every segment is decrypted and its plaintext's size and SHA-256
checked against its chain record before any of it is sent, so a segment
altered on disk is refused."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from sealing import layout

if TYPE_CHECKING:
    from sealing.verify import Report

KEEP = 32  # units remembered; the least recently played is forgotten first


class VerifiedCopies:
    def __init__(self, keep: int = KEEP) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, tuple[tuple[int, int, int], Report]] = OrderedDict()
        self.verified = 0  # how many times a chain was verified (for tests and logs)

    def get(self, dock: Path, serial: str) -> Report:
        """verified_chain(dock, serial), or its report from before when the
        chain copy is the same file, unchanged. CaseError as verified_chain."""
        from .courtcopy.steps import verified_chain  # PyAV: only when something is played

        try:
            st = (dock / "units" / serial / layout.CHAIN).stat()
            key = (st.st_size, st.st_mtime_ns, st.st_ino)
        except OSError:
            return verified_chain(dock, serial)  # it says what is missing
        with self._lock:
            hit = self._seen.get(serial)
            if hit is not None and hit[0] == key:
                self._seen.move_to_end(serial)
                return hit[1]
        report = verified_chain(dock, serial)
        with self._lock:
            self.verified += 1
            self._seen[serial] = (key, report)
            self._seen.move_to_end(serial)
            while len(self._seen) > self._keep:
                self._seen.popitem(last=False)
        return report
