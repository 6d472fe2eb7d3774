"""Where things are on a flashed unit (an SD card's root, or a folder in tests)."""

from __future__ import annotations

from pathlib import Path

PREFIX = "opt/bodycam"
UNIT = "var/lib/bodycam"
MANIFEST = f"{PREFIX}/MANIFEST.json"
MANIFEST_SIG = f"{PREFIX}/MANIFEST.sig"
# what changes while the unit runs, or is secret: not in the manifest
MUTABLE = (
    f"{UNIT}/store/",
    f"{UNIT}/keys/",
    f"{UNIT}/auth_state.json",
    f"{UNIT}/tls/unit.key",
    MANIFEST,
    MANIFEST_SIG,
)


def unit_dir(root: Path) -> Path:
    return Path(root) / UNIT


def root_of(unit: Path) -> Path | None:
    """The flashed root a unit directory sits in, if it is one."""
    unit = Path(unit).resolve()
    root = unit.parents[2] if len(unit.parents) > 2 else None
    if root is not None and (root / MANIFEST).exists():
        return root
    return None
