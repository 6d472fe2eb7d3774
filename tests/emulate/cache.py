"""The rig's cache folder and the keys of what it holds.

`${BODYCAM_EMU_CACHE:-$HOME/.cache/bodycam-emulate}`. Each built thing sits
in a folder named by a hash of its inputs, made under `<name>.partial` and
renamed when whole, so a killed build is never taken for a finished one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path


def cache_dir() -> Path:
    base = os.environ.get("BODYCAM_EMU_CACHE") or str(Path.home() / ".cache" / "bodycam-emulate")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def key(*parts: str | bytes | Path) -> str:
    """A short hash of the inputs: strings, bytes, and files or folders by content."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            files = sorted(p for p in part.rglob("*") if p.is_file()) if part.is_dir() else [part]
            for f in files:
                if "__pycache__" in f.parts:
                    continue
                h.update(str(f.relative_to(part.parent)).encode() + b"\0")
                h.update(f.read_bytes())
        else:
            h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\1")
    return h.hexdigest()[:16]


def fresh(path: Path) -> Path:
    """An empty `<path>.partial` to build into (whatever a killed build left is removed)."""
    partial = path.with_name(path.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial


def done(partial: Path) -> Path:
    final = partial.with_name(partial.name.removesuffix(".partial"))
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)
    return final


def prune(prefix: str, keep: Path) -> None:
    """Remove the cache's other `prefix*` entries (older builds of the same
    thing): a card is gigabytes, and only the one its inputs name is used."""
    for old in cache_dir().glob(f"{prefix}*"):
        if old != keep and old.is_dir() and not old.name.endswith(".partial"):
            remove(old)


def remove(path: Path) -> None:
    # rm is much faster than shutil.rmtree on a 1.3 GB root of small files
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)
