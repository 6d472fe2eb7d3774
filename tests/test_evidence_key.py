"""The agency's evidence key held passphrase-protected (age's scrypt
recipient): our writer and reader against Debian's `age -p` both ways
(driven through a pseudo-terminal: age reads a passphrase only from a
tty), `bodycam-dock key protect`, and the refusals a dock command gives in
one line: a wrong passphrase (exit 1), a passphrase file others may read."""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
from pathlib import Path

import pytest

from dock.evidence_key import KeyRefused, load_identity
from dock.texts import load_texts
from link.locale import Locale
from sealing.age import (
    MAX_LOG2N,
    AgeError,
    Identity,
    decrypt_passphrase,
    encrypt_passphrase,
)

from .conftest import BODYCAM_DOCK

EN = load_texts(Locale("en", "Asia/Shanghai"))
PASS = "correct horse battery staple 王五"
AGE = shutil.which("age")


def _on_a_tty(cmd: list[str], answers: list[str]) -> tuple[int, str]:
    """Run `cmd` on a pseudo-terminal, typing each answer when it asks for a
    passphrase; its exit code and what it showed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: age, on the terminal
        os.execvp(cmd[0], cmd)
    shown, pending = b"", list(answers)
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 60)
            assert ready, f"{cmd[0]} said nothing for 60 s: {shown!r}"
            try:
                data = os.read(fd, 1024)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            shown += data
            if pending and b"passphrase" in data.lower():
                os.write(fd, pending.pop(0).encode() + b"\n")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def _secret(tmp: Path, text: str, mode: int = 0o600) -> Path:
    p = tmp / "passphrase"
    p.write_text(text + "\n")
    p.chmod(mode)
    return p


def test_protect_and_unlock_round_trip_in_memory() -> None:
    ident = Identity.generate()
    sealed = encrypt_passphrase(f"{ident}\n".encode(), PASS.encode(), log2n=10)
    assert sealed.startswith(b"age-encryption.org/v1\n-> scrypt ")
    assert str(ident).encode() not in sealed
    assert decrypt_passphrase(sealed, PASS.encode()) == f"{ident}\n".encode()
    with pytest.raises(AgeError, match="wrong passphrase"):
        decrypt_passphrase(sealed, b"not it")
    # a work factor above the bound is refused before any work is done
    greedy = encrypt_passphrase(b"x", PASS.encode(), log2n=10).replace(b" 10\n", b" 23\n", 1)
    with pytest.raises(AgeError, match="above the bound"):
        decrypt_passphrase(greedy, PASS.encode())
    assert MAX_LOG2N == 22
    # an altered header fails its MAC, a cut payload its last chunk
    with pytest.raises(AgeError):
        decrypt_passphrase(sealed[:-1], PASS.encode())


def test_age_p_writes_what_we_unlock_and_unlocks_what_we_write(tmp_path: Path) -> None:
    ident = Identity.generate()
    plain = tmp_path / "evidence.key"  # a test key: plaintext is fine here
    plain.write_text(f"# test\n{ident}\n")
    theirs = tmp_path / "theirs.age"
    assert AGE is not None, "Debian's age is absent: apt-get install age (scripts/setup does)"
    rc, shown = _on_a_tty([AGE, "-p", "-o", str(theirs), str(plain)], [PASS, PASS])
    assert rc == 0, shown
    assert load_identity(theirs, _secret(tmp_path, PASS), EN) == ident
    ours = tmp_path / "ours.age"
    r = subprocess.run(
        [*BODYCAM_DOCK, "key", "protect", "--identity", str(plain), "--out", str(ours),
         "--passphrase-file", str(_secret(tmp_path, PASS)), "--language", "en"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert str(ident.recipient) in r.stdout
    assert ours.stat().st_mode & 0o777 == 0o600
    back = tmp_path / "back.key"
    rc, shown = _on_a_tty([AGE, "-d", "-o", str(back), str(ours)], [PASS])
    assert rc == 0, shown
    assert Identity.parse(back.read_text()) == ident
    # and age uses it as an identity file, asking for its passphrase
    segment = tmp_path / "seg.age"
    subprocess.run([AGE, "-r", str(ident.recipient), "-o", str(segment)],
                   input=b"evidence", check=True, timeout=60)  # fmt: skip
    rc, shown = _on_a_tty([AGE, "-d", "-i", str(ours), str(segment)], [PASS])
    assert rc == 0 and "evidence" in shown, shown


def test_refusals_are_one_line(tmp_path: Path) -> None:
    ident = Identity.generate()
    sealed = tmp_path / "evidence.key.age"
    sealed.write_bytes(encrypt_passphrase(f"{ident}\n".encode(), PASS.encode(), log2n=10))

    def recipient(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*BODYCAM_DOCK, "key", "recipient", "--identity", str(sealed), *extra,
             "--language", "en"],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    good = recipient("--passphrase-file", str(_secret(tmp_path, PASS)))
    assert good.returncode == 0 and good.stdout.strip() == str(ident.recipient), good.stderr
    wrong = recipient("--passphrase-file", str(_secret(tmp_path, "not the passphrase")))
    assert wrong.returncode == 1 and wrong.stdout == ""
    assert wrong.stderr.strip().splitlines() == [f"dock: --identity {sealed}: wrong passphrase"], (
        wrong.stderr
    )
    loose = recipient("--passphrase-file", str(_secret(tmp_path, PASS, 0o644)))
    assert loose.returncode == 2
    (line,) = loose.stderr.strip().splitlines()
    assert "only its owner can read" in line and "0o644" in line, line
    with pytest.raises(KeyRefused):
        load_identity(sealed, None, EN, ask=lambda _prompt: "typed wrong")
    assert load_identity(sealed, None, EN, ask=lambda _prompt: PASS) == ident
