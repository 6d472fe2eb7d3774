"""Who the dock is (its TLS certificate and receipt key) and what the agency
revoked, from the command line's options."""

from __future__ import annotations

import argparse
import csv
import sqlite3
import ssl
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from link.pki import client_context
from sealing.age import Identity

from .client import DockError


def _load_dock(args: argparse.Namespace) -> tuple[ssl.SSLContext, Ed25519PrivateKey]:
    if args.agency:
        cert = args.agency / "docks" / f"{args.name}.crt"
        key = args.agency / "docks" / f"{args.name}.key"
        ca = args.agency / "ca.crt"
    else:
        cert, key, ca = args.cert, args.key, args.ca
    if not (cert and key and ca):
        raise DockError("give --agency DIR --name NAME, or --cert, --key and --ca")
    try:
        private = serialization.load_pem_private_key(Path(key).read_bytes(), None)
        ctx = client_context(Path(cert), Path(key), Path(ca))
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise DockError(f"dock credentials: {exc}") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise DockError("the dock key must be Ed25519")
    return ctx, private


def load_revoked(args: argparse.Namespace) -> dict[str, str]:
    """Device-key fingerprint -> why it was revoked, from the QA inventory."""
    path = args.revoked or (args.agency / "inventory.sqlite" if args.agency else None)
    if path is None or (args.revoked is None and not path.exists()):
        return {}
    try:
        if path.suffix == ".csv":
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))
        else:
            if not path.is_file():
                raise DockError(f"--revoked {path}: no such file")
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                db.row_factory = sqlite3.Row
                rows = [dict(r) for r in db.execute("SELECT * FROM units")]
            finally:
                db.close()
        return {
            str(r["device_key"]): f"{r.get('revoked_reason') or 'revoked'}, {r.get('revoked_at')}"
            for r in rows
            if r.get("status") == "revoked"
        }
    except (OSError, KeyError, sqlite3.Error, csv.Error, UnicodeDecodeError) as exc:
        raise DockError(f"revocation list {path}: {exc}") from None


def index_arguments(args: argparse.Namespace) -> dict[str, Any]:
    if not args.index:
        return {}
    return {"index_target": args.index, "dock_name": args.name}


def dock_setup(
    args: argparse.Namespace,
) -> tuple[ssl.SSLContext, Ed25519PrivateKey, Identity | None, dict[str, str]]:
    ctx, key = _load_dock(args)
    try:
        identity = Identity.parse(args.identity.read_text()) if args.identity else None
    except (OSError, ValueError) as exc:
        raise DockError(f"--identity: {exc}") from None
    return ctx, key, identity, load_revoked(args)
