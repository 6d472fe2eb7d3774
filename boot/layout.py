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


# What the signed manifest covers: our firmware, the unit's provisioning and
# our own system files. The OS around them is Debian's (`dpkg --verify`
# checks it) and changes on every boot (machine-id, logs, fake-hwclock.data),
# so it is not in the manifest.
COVERED = (
    f"{PREFIX}/",
    f"{UNIT}/",
    "etc/systemd/system/bodycam-",
    "etc/systemd/system/multi-user.target.wants/bodycam-",
    "etc/systemd/system.conf.d/bodycam-",
    "etc/sysusers.d/bodycam.conf",
    "etc/tmpfiles.d/bodycam.conf",
    "etc/udev/rules.d/60-bodycam-",
    "etc/udev/rules.d/90-bodycam-",
    "etc/NetworkManager/system-connections/bodycam-",
)


# made on the unit at first boot from the (covered) wheels
FIRST_BOOT = (f"{PREFIX}/venv/",)


def covered(rel: str) -> bool:
    """Whether a root-relative path is one the manifest must list."""
    return (
        rel.startswith(COVERED)
        and not rel.startswith(MUTABLE + FIRST_BOOT)
        and "__pycache__" not in rel
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
