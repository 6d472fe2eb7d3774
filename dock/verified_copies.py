"""A unit's copy verified once while its chain is unchanged, for the page's
playback (dock/courtcopy/stream.py).

Verifying a copy reads every segment the dock holds of the unit: for each
playback that grows with the copy, not with the recording played. The
chain copy only changes when a pull extends it, so the report is kept,
keyed by the chain file's size, modification time and inode, and made again
when any of them changes. What this leaves to the playback itself: every
segment it plays is decrypted and its plaintext checked against the chain's
hash before any of it is sent, so a segment altered on disk after the
verification is still refused."""

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
        self.verified = 0  # how many times a copy was verified (for tests and logs)

    def get(self, dock: Path, serial: str) -> Report:
        """verified_copy(dock, serial), or its report from before when the
        chain copy is the same file, unchanged. CaseError as verified_copy."""
        from .courtcopy.steps import verified_copy  # PyAV: only when something is played

        try:
            st = (dock / "units" / serial / layout.CHAIN).stat()
            key = (st.st_size, st.st_mtime_ns, st.st_ino)
        except OSError:
            return verified_copy(dock, serial)  # it says what is missing
        with self._lock:
            hit = self._seen.get(serial)
            if hit is not None and hit[0] == key:
                self._seen.move_to_end(serial)
                return hit[1]
        report = verified_copy(dock, serial)
        with self._lock:
            self.verified += 1
            self._seen[serial] = (key, report)
            self._seen.move_to_end(serial)
            while len(self._seen) > self._keep:
                self._seen.popitem(last=False)
        return report
