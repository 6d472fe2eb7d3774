"""Reading what a store holds without trusting it.

A verifier opens only regular files: never through a symbolic link (a store
must not reach outside itself), never a FIFO (opening one for reading blocks
until a writer comes, reading it blocks for ever) or a device (/dev/zero never
ends). Each open is `lstat` (nothing that is not a regular file is even
opened), then `open(O_NOFOLLOW | O_NONBLOCK)` and `fstat` (the name may have
been swapped between the two). Reads are bounded by what the caller expects.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC


class NotRegular(OSError):
    """A name that is not a regular file (or, for folders, not a real folder);
    the message says what it is. It was not read."""


class TooLarge(ValueError):
    """More bytes than the reader allows for this kind of file."""


def kind(mode: int) -> str:
    """What a file-system object is, in words for a report."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "not a regular file"


def lstat_kind(path: Path | str, dir_fd: int | None = None) -> str | None:
    """`kind` of the name itself (links not followed); None when it is absent."""
    try:
        return kind(os.lstat(path, dir_fd=dir_fd).st_mode)
    except FileNotFoundError:
        return None


def open_regular(path: Path | str, dir_fd: int | None = None) -> BinaryIO:
    """Open a regular file for reading, or raise NotRegular (not opened, or
    closed again) / FileNotFoundError / another OSError."""
    what = kind(os.lstat(path, dir_fd=dir_fd).st_mode)
    if what != "a regular file":
        raise NotRegular(f"{what}, not a regular file: not read")
    try:
        fd = os.open(path, _FILE, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # swapped for a link after the lstat
            raise NotRegular("a symbolic link, not a regular file: not read") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegular(f"{kind(mode)}, not a regular file: not read")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def open_dir(path: Path | str, dir_fd: int | None = None) -> int:
    """A descriptor of a real folder (not a link to one), or NotRegular."""
    what = kind(os.lstat(path, dir_fd=dir_fd).st_mode)
    if what != "a folder":
        raise NotRegular(f"{what}, not a folder: not followed")
    try:
        return os.open(path, _DIR, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise NotRegular("not a real folder (swapped while opened): not followed") from None
        raise


def entries(fd: int) -> Iterator[os.DirEntry[str]]:
    """The names in an open folder, read as they come (never all held);
    scandir reads a duplicate of `fd`, which stays open."""
    with os.scandir(fd) as it:
        yield from it


def read_limited(f: BinaryIO, limit: int, what: str) -> bytes:
    """All of `f` if it holds at most `limit` bytes, else TooLarge (having
    read only `limit` + 1 bytes)."""
    data = f.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"{what} is larger than {limit} bytes")
    return data


def read_regular(path: Path | str, limit: int, what: str, dir_fd: int | None = None) -> bytes:
    """The bytes of a small regular file, refusing links, FIFOs, devices and
    anything over `limit` bytes."""
    with open_regular(path, dir_fd=dir_fd) as f:
        return read_limited(f, limit, what)
