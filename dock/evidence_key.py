"""The agency's evidence key, as every dock command that decrypts loads it
(`--identity F`, or `--agency DIR`'s evidence.key): the page's playback,
court copies, pull and serve's plaintext checks. docs/ACCESS.md, "The
evidence key".

The file is either an age identity (`AGE-SECRET-KEY-1...`, as age-keygen
writes it) or that identity passphrase-protected: an age file with one
scrypt stanza, as `age -p` or `bodycam-dock key protect` writes it. A
protected file is unlocked in memory with a passphrase typed at the
terminal (no echo) or read from `--passphrase-file` (its owner's alone:
0600 or stricter); the plaintext key is never written anywhere.

    bodycam-dock key protect --identity F --out F.age [--passphrase-file P]
    bodycam-dock key recipient --identity F [--passphrase-file P]
"""

from __future__ import annotations

import argparse
import getpass
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

from sealing.age import (
    AgeError,
    Identity,
    WrongPassphrase,
    decrypt_passphrase,
    encrypt_passphrase,
    is_age,
)

from .texts import Msg, Texts, msg

MAX_KEY_FILE = 64 * 1024  # an identity, or one protected: a few hundred bytes


class KeyRefused(Exception):
    """The key cannot be loaded; its message is one line (a Msg)."""

    def __init__(self, message: Msg | str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


Ask = Callable[[str], str]  # a prompt -> the passphrase typed (getpass.getpass)


def read_passphrase(path: Path) -> bytes:
    """A passphrase file's first line, if only its owner may read it."""
    try:
        st = path.stat()
        data = path.read_bytes()[:4096]
    except OSError as exc:
        raise KeyRefused(
            msg("%(file)s: %(error)s", file=str(path), error=exc.strerror or str(exc)), 2
        ) from None
    if st.st_mode & 0o077 or not stat.S_ISREG(st.st_mode):
        raise KeyRefused(
            msg(
                "%(file)s: a passphrase file must be a file only its owner can read "
                "(mode %(mode)s; chmod 600 it)",
                file=str(path),
                mode=oct(stat.S_IMODE(st.st_mode)),
            ),
            2,
        )
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not line:
        raise KeyRefused(msg("%(file)s: the passphrase is empty", file=str(path)), 2)
    return line


def load_identity(
    path: Path,
    passphrase_file: Path | None,
    texts: Texts,
    ask: Ask = getpass.getpass,
) -> Identity:
    """The identity in `path`, unlocked when it is protected: with the
    passphrase in `passphrase_file`, else asked for with `ask` (on the
    terminal). KeyRefused (one line) when it cannot be."""
    try:
        data = path.read_bytes()[: MAX_KEY_FILE + 1]
    except OSError as exc:
        raise KeyRefused(
            msg("--identity %(file)s: %(error)s", file=str(path), error=exc.strerror or str(exc)),
            2,
        ) from None
    if len(data) > MAX_KEY_FILE:
        raise KeyRefused(msg("--identity %(file)s: too large for a key", file=str(path)), 2)
    if is_age(data):
        if passphrase_file is not None:
            passphrase = read_passphrase(passphrase_file)
        else:
            said = texts.tr("passphrase for the evidence key %(file)s: ", file=str(path))
            try:
                passphrase = ask(said).encode()
            except (EOFError, KeyboardInterrupt):
                raise KeyRefused(msg("no passphrase given")) from None
        try:
            data = decrypt_passphrase(data, passphrase)
        except WrongPassphrase:
            raise KeyRefused(msg("--identity %(file)s: wrong passphrase", file=str(path))) from None
        except AgeError as exc:
            raise KeyRefused(
                msg("--identity %(file)s: %(error)s", file=str(path), error=str(exc))
            ) from None
    try:
        return Identity.parse(data.decode())
    except (AgeError, UnicodeDecodeError) as exc:
        raise KeyRefused(
            msg("--identity %(file)s: %(error)s", file=str(path), error=str(exc)), 2
        ) from None


# -- bodycam-dock key ---------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], t: Texts) -> None:
    from .dock_locale import add_locale_arguments

    k = sub.add_parser("key", help=t.tr("the agency's evidence key: protect it with a passphrase"))
    how = k.add_subparsers(dest="key_cmd", required=True)
    pr = how.add_parser(
        "protect", help=t.tr("write the identity passphrase-protected (age scrypt, as age -p)")
    )
    pr.add_argument("--identity", type=Path, required=True)
    pr.add_argument("--out", type=Path, required=True)
    rc = how.add_parser(
        "recipient", help=t.tr("unlock the identity in memory and print its recipient (age1...)")
    )
    rc.add_argument("--identity", type=Path, required=True)
    for p in (pr, rc):
        passphrase_argument(p, t)
        add_locale_arguments(p, t)


def passphrase_argument(p: argparse.ArgumentParser, t: Texts) -> None:
    p.add_argument(
        "--passphrase-file",
        type=Path,
        help=t.tr(
            "the evidence key's passphrase, first line of a file only its owner can read "
            "(default: asked for on the terminal)"
        ),
    )


def command(args: argparse.Namespace, texts: Texts, ask: Ask = getpass.getpass) -> int:
    """`bodycam-dock key ...`: one line and exit 1 (2 for bad input) on error."""
    try:
        if args.key_cmd == "recipient":
            identity = load_identity(args.identity, args.passphrase_file, texts, ask)
            print(identity.recipient)
            return 0
        return _protect(args, texts, ask)
    except KeyRefused as exc:
        print(f"dock: {texts.say(exc)}", file=sys.stderr)
        return exc.code


def _protect(args: argparse.Namespace, texts: Texts, ask: Ask) -> int:
    identity = load_identity(args.identity, args.passphrase_file, texts, ask)
    if args.out.exists() or args.out.is_symlink():
        raise KeyRefused(msg("%(file)s exists: never overwritten", file=str(args.out)), 2)
    if args.passphrase_file is not None:
        passphrase = read_passphrase(args.passphrase_file)
    else:
        try:
            first = ask(texts.tr("new passphrase for %(file)s: ", file=str(args.out)))
            if ask(texts.tr("again: ")) != first:
                raise KeyRefused(msg("the two passphrases differ"), 2)
        except (EOFError, KeyboardInterrupt):
            raise KeyRefused(msg("no passphrase given")) from None
        passphrase = first.encode()
    if len(passphrase) < 12:
        raise KeyRefused(msg("a passphrase must have at least 12 characters"), 2)
    data = encrypt_passphrase((str(identity) + "\n").encode(), passphrase)
    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise KeyRefused(
            msg("%(file)s: %(error)s", file=str(args.out), error=exc.strerror or str(exc)), 2
        ) from None
    print(
        texts.tr(
            "%(file)s written: the evidence key %(recipient)s, passphrase-protected; "
            "keep the plain key offline or destroy it",
            file=str(args.out),
            recipient=str(identity.recipient),
        )
    )
    return 0
