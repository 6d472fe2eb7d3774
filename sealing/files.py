"""Small durable-file helpers shared by the store, receipts and verifier."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def hash_file(path: Path, stop: threading.Event | None = None) -> tuple[str, int]:
    """SHA-256 hex and length of a file, read in bounded steps; of only what
    was read before `stop` was set, if it was (the caller drops that)."""
    h = hashlib.sha256()
    n = 0
    with path.open("rb") as f:
        while not (stop and stop.is_set()) and (chunk := f.read(1 << 20)):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def write_synced(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Create (or, unless `exclusive`, replace the contents of) a 0600 file and
    fsync it; the caller renames or fsyncs the directory as it needs."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        view = memoryview(data)
        while view:  # a short write is not success: go on, or fail with the error
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write via a temporary name, fsync, rename, fsync the directory. The
    file is made with `mode` (under the umask), never writable by others."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode & ~0o022)
    try:
        view = memoryview(data)
        while view:  # a short write is not success: go on, or fail with the error
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def make_dirs(path: Path, mode: int = 0o755) -> Path:
    """`path` and any missing parents, each made with `mode` (under the
    umask), never writable by group or others whatever the umask is."""
    missing = []
    p = Path(path)
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(mode & ~0o022, exist_ok=True)
    return Path(path)


def no_group_write() -> None:
    """Whatever umask the shell gave this process, what it creates is at most
    readable by others, never writable: the commands call this first."""
    old = os.umask(0o022)
    os.umask(old | 0o022)
