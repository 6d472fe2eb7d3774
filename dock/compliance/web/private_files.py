"""Files in the dock folder that only the dock's user may read."""

from __future__ import annotations

import os
from pathlib import Path

from sealing.files import fsync_dir


def write_private(path: Path, text: str) -> None:
    """Readable by the dock's user only from the first byte on, replaced atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
