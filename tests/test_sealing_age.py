"""Our age writer against Debian's real `age`: both directions, every edge size."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from sealing.age import AgeError, Identity, Recipient, StreamWriter, decrypt
from sealing.layout import CHAIN
from sealing.records import parse_line

from .conftest import Unit, write_segment


def _identity_file(tmp: Path, ident: Identity) -> Path:
    p = tmp / "agency.key"
    p.write_text(f"# test identity\n{ident}\n")
    return p


def test_age_decrypts_a_sealed_segment_and_hash_matches_chain(unit: Unit, tmp_path: Path) -> None:
    data = os.urandom(300_001)
    with unit.open() as store:
        write_segment(store, data, step=7_777)
    seg = next((unit.path / "store" / "segments").iterdir())
    out = subprocess.run(
        ["age", "-d", "-i", str(_identity_file(tmp_path, unit.agency.identity)), str(seg)],
        capture_output=True,
        check=True,
    ).stdout
    recs = [parse_line(x)[0] for x in (unit.path / "store" / CHAIN).read_bytes().splitlines()]
    seg_rec = next(r for r in recs if r.type == "segment")
    assert hashlib.sha256(out).hexdigest() == seg_rec.body["pt_sha256"]
    assert out == data


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 131072, 200_000])
def test_edge_sizes_roundtrip_through_age(size: int, tmp_path: Path) -> None:
    ident = Identity.generate()
    data = os.urandom(size)
    path = tmp_path / "x.age"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY)
    w = StreamWriter(fd, ident.recipient)
    for i in range(0, size, 5000):
        w.write(data[i : i + 5000])
        w.checkpoint()
    w.close()
    os.close(fd)
    out = subprocess.run(
        ["age", "-d", "-i", str(_identity_file(tmp_path, ident)), str(path)],
        capture_output=True,
        check=True,
    ).stdout
    assert out == data
    assert w.ct_hash.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()


def test_checkpointed_file_is_a_complete_age_file(tmp_path: Path) -> None:
    """Cut right after a checkpoint, the file decrypts fully with `age`."""
    ident = Identity.generate()
    path = tmp_path / "cut.age"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY)
    w = StreamWriter(fd, ident.recipient)
    data = os.urandom(100_000)
    w.write(data)
    w.checkpoint()
    os.close(fd)  # never closed: as if the power went here
    out = subprocess.run(
        ["age", "-d", "-i", str(_identity_file(tmp_path, ident)), str(path)],
        capture_output=True,
        check=True,
    ).stdout
    assert out == data


def test_we_decrypt_what_age_encrypts_and_keys_interoperate(tmp_path: Path) -> None:
    keyfile = tmp_path / "k.txt"
    subprocess.run(["age-keygen", "-o", str(keyfile)], check=True, capture_output=True)
    ident = Identity.parse(keyfile.read_text())
    public = next(ln.split(": ")[1] for ln in keyfile.read_text().splitlines() if "public" in ln)
    assert str(ident.recipient) == public
    assert str(Recipient.parse(public)) == public
    data = os.urandom(70_000)
    (tmp_path / "p").write_bytes(data)
    subprocess.run(
        ["age", "-r", public, "-o", str(tmp_path / "c"), str(tmp_path / "p")], check=True
    )
    with (tmp_path / "c").open("rb") as f:
        got = decrypt(f, ident)
    assert got.complete and got.plaintext_sha256 == hashlib.sha256(data).hexdigest()


def test_bad_keys_fail_clearly() -> None:
    with pytest.raises(AgeError, match="recipient"):
        Recipient.parse("age1notakey")
    with pytest.raises(AgeError, match="exactly one"):
        Identity.parse("# nothing here\n")
    ok = str(Identity.generate())
    with pytest.raises(AgeError, match="checksum"):
        Identity.parse(ok[:-1] + ("Q" if ok[-1] != "Q" else "P"))
