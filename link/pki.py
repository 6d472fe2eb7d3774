"""The agency's certificates: a CA per profile (qa, production), unit and dock
certificates under it, and TLS contexts for the dock link (mutual TLS).

Keys are Ed25519 throughout. A dock's certificate key *is* its enrolled
receipt-signing key, so "a certificate whose key is an enrolled dock" is
checked by comparing fingerprints. TLS 1.3 signs with its own context string
and receipts with theirs, so the one key serves both without confusion.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PROFILES = ("qa", "production")
# what a certificate issued by `issue` is for (its subject's organisation
# says "bodycam ROLE"): a unit serves the dock link; a dock is the link's
# client and serves its copies to the city server (`bodycam-dock share`);
# the city server is only ever a client, of the docks' `share`
ROLES = ("unit", "dock", "city")


class PkiError(ValueError):
    pass


@dataclass(frozen=True)
class Issued:
    key: Ed25519PrivateKey
    cert: x509.Certificate


def _name(cn: str, org: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def make_ca(profile: str, org: str = "Agency", years: int = 10) -> Issued:
    if profile not in PROFILES:
        raise PkiError(f"profile must be one of {PROFILES}, not {profile!r}")
    key = Ed25519PrivateKey.generate()
    name = _name(f"bodycam {profile} CA", org)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365 * years))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        # C2PA validators look a signer's issuer up by key identifier
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, None)
    )
    return Issued(key, cert)


def issue_c2pa_signer(
    ca: Issued, *, cn: str, public_key: Ed25519PublicKey, years: int = 5
) -> x509.Certificate:
    """The certificate the dock signs court copies' C2PA manifests with.

    What c2pa-rs demands of a signer (its certificate_profile checks): an
    end-entity certificate with digitalSignature only, an authority key
    identifier, and an extended key usage from its default list;
    emailProtection is the one that needs no trust configuration on the
    examiner's side (docs/EXPORT.md, "Court copies")."""
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(cn, f"{_org(ca.cert)} court copies"))
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365 * years))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, None)
    )


def _org(cert: x509.Certificate) -> str:
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(orgs[0].value) if orgs else "Agency"


def ca_profile(cert: x509.Certificate) -> str | None:
    """The profile ("qa", "production") a CA made by make_ca names, if any."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    words = str(cns[0].value).split() if cns else []
    if len(words) == 3 and words[0] == "bodycam" and words[2] == "CA" and words[1] in PROFILES:
        return words[1]
    return None


def issue(
    ca: Issued,
    *,
    cn: str,
    role: str,
    public_key: Ed25519PublicKey,
    hosts: list[str] | None = None,
    years: int = 5,
) -> x509.Certificate:
    """A unit certificate (TLS server), a dock certificate (TLS client of
    the units, TLS server of `share`) or the city server's (TLS client)."""
    if role not in ROLES:
        raise PkiError("role must be unit, dock or city")
    now = dt.datetime.now(dt.UTC)
    usage = {
        "unit": [ExtendedKeyUsageOID.SERVER_AUTH],
        "dock": [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
        "city": [ExtendedKeyUsageOID.CLIENT_AUTH],
    }[role]
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, f"bodycam {role}"))
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365 * years))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    )
    if hosts:
        alt: list[x509.GeneralName] = []
        for h in hosts:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                alt.append(x509.DNSName(h))
        b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return b.sign(ca.key, None)


def role_of(cert: x509.Certificate) -> str | None:
    """The role `issue` gave a certificate ("unit", "dock", "city"), if any."""
    words = _org(cert).split()
    if len(words) == 2 and words[0] == "bodycam" and words[1] in ROLES:
        return words[1]
    return None


def cert_sha256(der: bytes) -> str:
    """A certificate's SHA-256 fingerprint (of its DER), lower-case hex."""
    return hashlib.sha256(der).hexdigest()


def pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def pem_key(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise PkiError(f"unreadable certificate {path}: {exc}") from None


def server_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """The unit's side: present the device certificate, require a client
    certificate from the agency CA (the handshake fails without one)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """The dock's side: present the dock certificate, trust only the agency CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(ca)
    ctx.check_hostname = False  # units are addressed by IP on the gadget link; the CA pins them
    return ctx
