"""Plain-file sinks: segments as .ts files (QA's camera-and-microphone check).
Plaintext on disk is fine here: this is the test path, not the evidence path."""

from __future__ import annotations

import os
from pathlib import Path

from .segmenter import SegmentInfo


class FileSink:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._f = path.open("wb")

    def write(self, data: bytes | memoryview) -> None:
        self._f.write(data)

    def close(self, info: SegmentInfo) -> tuple[Path, SegmentInfo]:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        return self.path, info


def file_sinks(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    return lambda index, start_us: FileSink(out / f"segment_{index:04d}.ts")
