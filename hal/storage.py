"""Free space of the store's file system: measured (`FsStorage`), or measured
with a scenario's override (`SimStorage`, for a simulated full disk)."""

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
class FsStorage:
    """The Storage port: statvfs of the file system that holds `path`."""

    path: Path
    name: str = "fs"

    def space(self) -> Space:
        return space(self.path)


@dataclass
class SimStorage:
    """The real file system's numbers unless a scenario set the free space."""

    path: Path
    free_override: int | None = None
    name: str = "sim"

    def space(self) -> Space:
        real = space(self.path)
        if self.free_override is None:
            return real
        return Space(min(self.free_override, real.total_bytes), real.total_bytes)
