"""Free space of the store's file system (real), or a simulated disk."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Space:
    free_bytes: int
    total_bytes: int


def space(path: Path) -> Space:
    usage = shutil.disk_usage(path)
    return Space(usage.free, usage.total)


@dataclass
class SimStorage:
    total_bytes: int
    used_bytes: int = 0

    def space(self) -> Space:
        return Space(max(0, self.total_bytes - self.used_bytes), self.total_bytes)
