"""Making a unit's sealed side in one step: keys plus an empty store.

Used by tools/flash.py, the demo and the tests. Layout of a unit directory:
    <unit>/keys/    see sealing.keys
    <unit>/store/   see sealing.layout
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from . import fss, keys
from .age import Recipient
from .records import Stamp
from .store import SYNC_INTERVAL_S, Clock, Store, system_clock


def provision_unit(
    unit: Path,
    *,
    serial: str,
    officer: str,
    recipient: Recipient,
    docks: list[Ed25519PublicKey],
    clock: Clock = system_clock,
    device: dict[str, str] | None = None,
) -> bytes:
    """Create keys and store under `unit`; return the escrow key k[0]."""
    unit = Path(unit)
    key0 = keys.provision(unit / "keys", recipient, docks)
    unit_keys = keys.UnitKeys.load(unit / "keys")
    Store.create(
        unit / "store",
        unit_keys,
        serial=serial,
        officer=officer,
        escrow_commitment=fss.commitment(key0),
        clock=clock,
        device=device,
    )
    return key0


def open_unit(
    unit: Path,
    *,
    clock: Clock = system_clock,
    boot_body: dict | None = None,
    sync_interval: float = SYNC_INTERVAL_S,
) -> Store:
    unit = Path(unit)
    return Store.open(
        unit / "store",
        keys.UnitKeys.load(unit / "keys"),
        clock=clock,
        boot_body=boot_body,
        sync_interval=sync_interval,
    )


__all__ = ["Stamp", "open_unit", "provision_unit"]
