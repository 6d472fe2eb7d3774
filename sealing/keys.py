"""The unit's keys on disk, and making them at provisioning.

    <keys>/device_ed25519.pem   signing key (PKCS#8, mode 0600)
    <keys>/fss.key              forward-secure MAC key for the next record (0600)
    <keys>/evidence.recipient   the agency's age X25519 recipient (age1...)
    <keys>/docks/*.pem          Ed25519 public keys of enrolled docks

The escrowed first MAC key is returned by `provision` for the agency and is
never written under <keys>.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import canonical, fss
from .age import AgeError, Recipient
from .files import make_dirs, write_durably, write_synced

SIGNING = "device_ed25519.pem"
FSS = "fss.key"
RECIPIENT = "evidence.recipient"
DOCKS = "docks"


class KeyFileError(ValueError):
    """A key file is missing or unreadable (the message names it)."""


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw public key, hex: how records and receipts name a key."""
    return hashlib.sha256(raw_public(key)).hexdigest()


def load_public(path: Path) -> Ed25519PublicKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"unreadable public key {path}: {exc}") from None
    return parse_public(data, str(path))


def parse_public(data: bytes, where: str) -> Ed25519PublicKey:
    """An Ed25519 public key from its PEM bytes."""
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise KeyFileError(f"unreadable public key {where}: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{where} is not an Ed25519 public key")
    return key


def write_secret(path: Path, data: bytes) -> None:
    """A new secret file, 0600, never over an existing one."""
    write_synced(path, data, exclusive=True)


@dataclass
class UnitKeys:
    directory: Path
    signing: Ed25519PrivateKey
    recipient: Recipient
    docks: dict[str, Ed25519PublicKey] = field(default_factory=dict)

    @property
    def public(self) -> Ed25519PublicKey:
        return self.signing.public_key()

    @property
    def fss_path(self) -> Path:
        return self.directory / FSS

    @classmethod
    def load(cls, directory: Path) -> UnitKeys:
        directory = Path(directory)
        try:
            key = serialization.load_pem_private_key((directory / SIGNING).read_bytes(), None)
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"unreadable signing key {directory / SIGNING}: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{directory / SIGNING} is not an Ed25519 private key")
        try:
            recipient = Recipient.parse((directory / RECIPIENT).read_text())
        except (OSError, AgeError) as exc:
            raise KeyFileError(
                f"unreadable evidence recipient {directory / RECIPIENT}: {exc}"
            ) from None
        docks = {}
        for pem in sorted((directory / DOCKS).glob("*.pem")):
            pub = load_public(pem)
            docks[fingerprint(pub)] = pub
        return cls(directory, key, recipient, docks)


def provision(directory: Path, recipient: Recipient, docks: list[Ed25519PublicKey]) -> bytes:
    """Make a unit's keys in an empty `directory`; return k[0] for escrow."""
    directory = make_dirs(Path(directory), 0o700)
    if (directory / SIGNING).exists():
        raise KeyFileError(f"{directory} already holds a signing key; keys are never reused")
    signing = Ed25519PrivateKey.generate()
    write_secret(
        directory / SIGNING,
        signing.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    key0 = os.urandom(32)
    fss.save(directory / FSS, fss.FssState(0, key0))
    write_durably(directory / RECIPIENT, (str(recipient) + "\n").encode())
    make_dirs(directory / DOCKS)
    for pub in docks:
        write_durably(directory / DOCKS / f"{fingerprint(pub)[:16]}.pem", public_pem(pub))
    return key0


def escrow_text(key0: bytes) -> str:
    return canonical.b64(key0) + "\n"
