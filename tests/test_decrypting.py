"""sealing.decrypting: sealed files read and decrypted ahead of their
reader by a process of its own, into memory both map. Files are sealed by
Debian's `age`; what the reader gets is compared with `age -d`'s output,
and the ciphertext's hash with the file's own."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
from pathlib import Path

import pytest

from sealing import decrypting
from sealing.age import Identity
from sealing.decrypting import SLOTS, DecryptFailed, Decrypting


def _sealed(tmp_path: Path, identity: Identity, sizes: list[int]) -> list[Path]:
    out = []
    for i, n in enumerate(sizes):
        plain = tmp_path / f"seg{i}.ts"
        plain.write_bytes(os.urandom(n))
        sealed = tmp_path / f"seg{i}.ts.age"
        subprocess.run(
            ["age", "-r", str(identity.recipient), "-o", str(sealed), str(plain)],
            check=True,
            timeout=60,
        )
        out.append(sealed)
    return out


def _age_d(path: Path, identity: Identity, tmp_path: Path) -> bytes:
    key = tmp_path / "key.txt"
    key.write_text(str(identity) + "\n")
    return subprocess.run(
        ["age", "-d", "-i", str(key), str(path)], check=True, capture_output=True, timeout=60
    ).stdout


def test_every_file_comes_out_as_age_decrypts_it_in_order(tmp_path: Path) -> None:
    """More files than slots, of uneven sizes (one a whole number of age's
    64 KiB chunks, one empty of a last chunk's bytes): each view holds what
    `age -d` gives, with its length and SHA-256, and the read the file's
    length and SHA-256, while the next files are being decrypted into the
    other slots. With the lengths given or not."""
    identity = Identity.generate()
    sizes = [300_000, 65536 * 3, 1, 250_000, 70_000, 123_457, 65536]
    files = _sealed(tmp_path, identity, sizes)
    for ct_lens in (None, [f.stat().st_size for f in files]):
        with Decrypting(identity, files, max(sizes), ct_lens) as ahead:
            for i, f in enumerate(files):
                got = ahead.take(i)
                want = _age_d(f, identity, tmp_path)
                assert bytes(got.plaintext) == want
                sealed = f.read_bytes()
                assert got.read.ct_len == len(sealed)
                assert got.read.ct_sha256 == hashlib.sha256(sealed).hexdigest()
                pt = got.read.plaintext
                assert pt is not None and pt.complete and pt.error is None
                assert pt.plaintext_len == len(want) == sizes[i]
                assert pt.plaintext_sha256 == hashlib.sha256(want).hexdigest()
    assert len(files) > SLOTS


def test_what_the_reader_cannot_use_is_said_not_given(tmp_path: Path) -> None:
    identity = Identity.generate()
    files = _sealed(tmp_path, identity, [100_000, 100_000, 200_000])
    cut = tmp_path / "cut.ts.age"
    cut.write_bytes(files[1].read_bytes()[:-5000])
    # a file cut short: what was authentic before the cut, and why it stopped
    lengths = [files[0].stat().st_size, cut.stat().st_size, files[2].stat().st_size]
    with Decrypting(identity, [files[0], cut, files[2]], 100_000, lengths) as ahead:
        first = ahead.take(0).read.plaintext
        assert first is not None and first.complete
        got = ahead.take(1)
        short = got.read.plaintext
        assert short is not None and not short.complete
        assert short.error and "fails authentication" in short.error
        assert short.plaintext_len == 65536  # the one whole chunk before the cut
        assert bytes(got.plaintext) == _age_d(files[1], identity, tmp_path)[:65536]
        assert got.read.ct_sha256 == hashlib.sha256(cut.read_bytes()).hexdigest()
        # more plaintext than the largest record allows: over the slot, never a view of it
        over = ahead.take(2)
        assert over.read.plaintext is not None and len(over.plaintext) == 0
        assert over.read.plaintext.plaintext_len == 100_001
        assert not over.read.plaintext.complete and over.read.ct_sha256 is None
        with pytest.raises(ValueError, match="the next is 3"):
            ahead.take(1)
    # a file whose length is not the one given is not read (it cannot be what was sealed)
    with Decrypting(identity, files[:1], 100_000, [lengths[0] + 1]) as ahead:
        got = ahead.take(0)
        assert got.read.ct_len == lengths[0] and got.read.ct_sha256 is None
        assert got.read.plaintext is None and len(got.plaintext) == 0
    # sealed to another key: hashed all the same, not decrypted, the age format's reason
    with Decrypting(Identity.generate(), files, 200_000) as ahead:
        got = ahead.take(0)
        assert got.read.plaintext is None and len(got.plaintext) == 0
        assert got.read.error and "cannot open the file" in got.read.error
        assert got.read.ct_sha256 == hashlib.sha256(files[0].read_bytes()).hexdigest()
    # a file that is not there: named
    with (
        Decrypting(identity, [tmp_path / "gone.ts.age"], 100) as ahead,
        pytest.raises(DecryptFailed, match="gone.ts.age: No such file"),
    ):
        ahead.take(0)
    with pytest.raises(ValueError, match="a slot of 0 bytes"):
        Decrypting(identity, files, 0)
    with pytest.raises(ValueError, match="2 lengths for 3 files"):
        Decrypting(identity, files, 100, [1, 2])


def test_a_child_that_dies_or_hangs_is_a_failure_not_a_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = Identity.generate()
    files = _sealed(tmp_path, identity, [50_000] * 5)
    with Decrypting(identity, files, 50_000) as ahead:
        ahead.take(0)
        assert ahead._proc is not None
        ahead._proc.kill()
        with pytest.raises(DecryptFailed, match="ended with code -9"):
            for i in range(1, len(files)):
                ahead.take(i)
    with Decrypting(identity, files, 50_000) as ahead:
        ahead.take(0)  # the child's start-up, on a busy machine, under the usual bound
        monkeypatch.setattr(decrypting, "START_TIMEOUT_S", 1.0)
        assert ahead._proc is not None
        os.kill(ahead._proc.pid, signal.SIGSTOP)  # alive, silent
        with pytest.raises(DecryptFailed, match="no answer within 1 s"):
            for i in range(1, len(files)):
                ahead.take(i)
        assert ahead._proc.wait(10) == -signal.SIGKILL
