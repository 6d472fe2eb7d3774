"""Who the dock is (its TLS certificate and receipt key), which units QA
made (the inventory) and how much a unit may send, from the command line."""

from __future__ import annotations

import argparse
import ssl
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from link.inventory import InventoryError, Known, read_known
from link.pki import client_context
from sealing.age import Identity

from .client import DockError
from .evidence_key import KeyRefused, load_identity
from .pull import Limits
from .texts import Texts, msg


def _load_dock(args: argparse.Namespace) -> tuple[ssl.SSLContext, Ed25519PrivateKey]:
    if args.agency:
        cert = args.agency / "docks" / f"{args.name}.crt"
        key = args.agency / "docks" / f"{args.name}.key"
        ca = args.agency / "ca.crt"
    else:
        cert, key, ca = args.cert, args.key, args.ca
    if not (cert and key and ca):
        raise DockError(msg("give --agency DIR --name NAME, or --cert, --key and --ca"))
    try:
        private = serialization.load_pem_private_key(Path(key).read_bytes(), None)
        ctx = client_context(Path(cert), Path(key), Path(ca))
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise DockError(msg("dock credentials: %(error)s", error=str(exc))) from None
    if not isinstance(private, Ed25519PrivateKey):
        raise DockError(msg("the dock key must be Ed25519"))
    return ctx, private


def load_inventory(args: argparse.Namespace) -> Known:
    """The QA inventory every unit is checked against (its serial, TLS
    certificate and device key): --inventory, or the agency folder's."""
    path = args.inventory or (args.agency / "inventory.sqlite" if args.agency else None)
    if path is None:
        raise DockError(
            msg(
                "no QA inventory to check units against: give --inventory FILE (the agency's "
                "inventory.sqlite, or `bodycam-flash inventory --csv` of it) or --agency DIR"
            )
        )
    try:
        return read_known(path)
    except InventoryError as exc:
        raise DockError(str(exc)) from None


def limits(args: argparse.Namespace) -> Limits:
    """--max-chain-mb and --min-rate-mb, checked."""
    if not 0 < args.max_chain_mb <= 64 * 1024 or not 0 < args.min_rate_mb <= 10_000:
        raise DockError(msg("--max-chain-mb must be 1..65536 and --min-rate-mb above 0"))
    return Limits(max_chain_bytes=int(args.max_chain_mb * 1e6), min_rate=args.min_rate_mb * 1e6)


def index_arguments(args: argparse.Namespace) -> dict[str, Any]:
    if not args.index:
        return {}
    return {"index_target": args.index, "dock_name": args.name}


def dock_setup(
    args: argparse.Namespace, texts: Texts
) -> tuple[ssl.SSLContext, Ed25519PrivateKey, Identity | None, Known]:
    ctx, key = _load_dock(args)
    identity = None
    if getattr(args, "identity", None):
        try:
            identity = load_identity(args.identity, args.passphrase_file, texts)
        except KeyRefused as exc:
            raise DockError(exc.args[0]) from None
    return ctx, key, identity, load_inventory(args)
