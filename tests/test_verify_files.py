"""Nothing a verifier is handed blocks it or leads it outside: a FIFO or link
anywhere in a store or a dock's copy is reported, never read; a path the
examiner names that is not a regular file is refused with the reason."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

V = Path(__file__).parent / "vectors"


def _bodycam(*args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-m", "firmware.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,  # a generous guard: only a hang on a FIFO would come near it
    )
    assert "Traceback" not in out.stdout + out.stderr, out.stderr
    return out


def test_a_fifo_as_the_chain_is_reported_not_read(tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(V / "unit" / "store", store)
    (store / "chain.jsonl").unlink()
    os.mkfifo(store / "chain.jsonl")
    out = _bodycam("verify", str(store))
    assert out.returncode == 1
    assert "FAILED at chain.jsonl: a FIFO, not a regular file: not read" in out.stdout


def test_a_unit_whose_store_is_a_link_is_refused(tmp_path: Path) -> None:
    unit = tmp_path / "unit"
    unit.mkdir()
    os.symlink(V / "unit" / "store", unit / "store")
    out = _bodycam("verify", str(unit))
    assert out.returncode == 2 and "is a symbolic link: name the store itself" in out.stderr


def test_a_fifo_or_link_in_a_docks_date_folder_is_reported(tmp_path: Path) -> None:
    dock = tmp_path / "dock"
    shutil.copytree(V / "dock", dock)
    folder = next(dock.glob("2*/*/*/BC-VECTOR-01"))
    seg = next(folder.glob("*_000003.ts.age"))
    seg.unlink()
    os.mkfifo(seg)
    still = next(folder.glob("*.jpg.age"))
    elsewhere = tmp_path / still.name
    still.rename(elsewhere)
    os.symlink(elsewhere, still)
    out = _bodycam("verify", str(dock / "units" / "BC-VECTOR-01"), "--segments-from", str(dock))
    assert out.returncode == 1
    assert f"{seg.name} record" in out.stdout and "a FIFO, not a regular file" in out.stdout
    assert "a symbolic link, not a regular file" in out.stdout


def test_a_link_among_a_docks_date_folders_is_not_followed(tmp_path: Path) -> None:
    dock = tmp_path / "dock"
    shutil.copytree(V / "dock", dock)
    year = next(dock.glob("2[0-9][0-9][0-9]"))
    year.rename(tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", year)
    out = _bodycam("verify", str(dock / "units" / "BC-VECTOR-01"), "--segments-from", str(dock))
    assert out.returncode == 1
    assert f"{year.name}/: a symbolic link, not a folder" in out.stdout


def test_paths_the_examiner_names_must_be_regular_files(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for args in (
        ["verify-media", str(fifo)],
        ["verify", str(V / "unit"), "--identity", str(fifo)],
        ["verify", str(V / "unit"), "--escrow", str(fifo)],
        ["verify", str(V / "unit"), "--receipt", str(fifo)],
        ["verify", str(V / "unit"), "--device-key", str(fifo)],
    ):
        out = _bodycam(*args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert "a FIFO, not a regular file" in out.stderr, (args, out.stderr)


def test_both_verifiers_run_without_the_media_stack() -> None:
    """An examiner's machine may have neither PyAV nor numpy: `bodycam verify`
    and `bodycam verify-media` import neither (other subcommands are not
    imported at all when one is named)."""
    blocked = "import sys; sys.modules['av'] = None; sys.modules['numpy'] = None; "
    for args in (
        ["verify", str(V / "unit")],
        ["verify-media", str(V / "media" / "signed.ts")],
    ):
        code = blocked + f"from firmware.cli import main; sys.exit(main({args!r}))"
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, (args, out.stdout, out.stderr)
        assert "VERIFIED" in out.stdout
