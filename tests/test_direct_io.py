"""dock/direct_io.py `Appender`: what the dock writes a segment with. Whole
aligned blocks go past the page cache, everything else the plain way, and
the file holds exactly the bytes written in every mix of the two."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from dock.direct_io import ALIGN, SIZE, AlignedBuffers, Appender


def _has_direct(folder: Path) -> bool:
    probe = folder / "probe"
    probe.touch()
    try:
        os.close(os.open(probe, os.O_RDONLY | os.O_DIRECT))
    except OSError:
        return False
    finally:
        probe.unlink()
    return True


def _resident(path: Path) -> int:
    """Bytes of `path` in the page cache, as util-linux's fincore counts them."""
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.strip())


@pytest.mark.parametrize(
    ("before", "writes"),
    [
        (0, [SIZE, SIZE, 17]),  # a segment: whole buffers, then its tail
        (0, [ALIGN, 1, ALIGN, SIZE]),  # unaligned from the second write on: plain
        (0, [1, ALIGN - 1, SIZE]),  # aligned again: past the cache again
        (0, [SIZE - 1, SIZE]),
        (ALIGN, [SIZE, 5]),  # a resumed .part on a block boundary
        (5000, [SIZE, SIZE]),  # a resumed .part of odd length: all plain
        (0, [0, 3, 0]),
    ],
)
def test_the_file_holds_exactly_what_was_written(
    tmp_path: Path, before: int, writes: list[int]
) -> None:
    path = tmp_path / "seg.part"
    head = os.urandom(before)
    if before:
        path.write_bytes(head)
    want = bytearray(head)
    direct = _has_direct(tmp_path) if before % ALIGN == 0 else False
    with AlignedBuffers(1) as (buf,), Appender(path) as out:
        for n in writes:
            buf[:n] = os.urandom(n)
            assert out.write(buf[:n]) == n
            want += buf[:n]
        out.sync()
        expect_direct = 0
        pos = before
        for n in writes:
            if direct and pos % ALIGN == 0:
                expect_direct += n - n % ALIGN
            pos += n
        assert out.direct_bytes == expect_direct
    assert path.read_bytes() == want


def test_whole_blocks_bypass_the_page_cache(tmp_path: Path) -> None:
    """8 MiB of whole blocks and a 100-byte tail: the page cache holds at
    most the tail's page afterwards, where a plain write would hold it all."""
    if not _has_direct(tmp_path):
        pytest.skip("this file system has no O_DIRECT")
    path = tmp_path / "seg.part"
    with AlignedBuffers(1) as (buf,), Appender(path) as out:
        buf[:] = os.urandom(SIZE)
        for _ in range(8):
            out.write(buf)
        out.write(buf[:100])
        out.sync()
    assert path.stat().st_size == 8 * SIZE + 100
    assert _resident(path) <= ALIGN
    plain = tmp_path / "plain"
    plain.write_bytes(path.read_bytes())
    assert _resident(plain) > 8 * SIZE // 2  # the check can tell the two apart


def test_a_file_system_without_o_direct_gets_the_plain_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def no_direct(path: object, flags: int, *args: int) -> int:
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", no_direct)
    path = tmp_path / "seg.part"
    data = os.urandom(2 * SIZE + 9)
    with AlignedBuffers(1) as (buf,), Appender(path) as out:
        for at in range(0, len(data), SIZE):
            n = min(SIZE, len(data) - at)
            buf[:n] = data[at : at + n]
            out.write(buf[:n])
        out.sync()
        assert out.direct_bytes == 0
    assert path.read_bytes() == data


def test_an_unaligned_buffer_is_refused_by_the_kernel_and_written_plainly(
    tmp_path: Path,
) -> None:
    """A buffer that does not start on a page: O_DIRECT says EINVAL, and
    the write (and every later one) goes the plain way instead."""
    if not _has_direct(tmp_path):
        pytest.skip("this file system has no O_DIRECT")
    path = tmp_path / "seg.part"
    data = os.urandom(3 * SIZE)
    odd = memoryview(bytearray(SIZE + 1))[1:]  # one byte past an allocation's start
    with Appender(path) as out:
        for at in range(0, len(data), SIZE):
            odd[:] = data[at : at + SIZE]
            out.write(odd)
        out.sync()
        assert out.direct_bytes == 0
    assert path.read_bytes() == data


def test_a_missing_folder_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Appender(tmp_path / "no such folder" / "seg.part")
