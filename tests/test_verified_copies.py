"""The page's playback verifies a unit's copy once while its chain is
unchanged (dock/verified_copies.py): a changed chain is verified again,
and a chain that no longer verifies is refused, not served from before."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dock.courtcopy import CaseError
from dock.verified_copies import VerifiedCopies
from sealing import layout

from .conftest import DemoRun

SERIAL = "BC-DEMO-0001"


def test_a_copy_is_verified_again_only_when_its_chain_changes(
    demo_run: DemoRun, tmp_path: Path
) -> None:
    assert demo_run.returncode == 0, demo_run.stderr
    dock = Path(shutil.copytree(demo_run.dir / "dock", tmp_path / "dock"))
    copies = VerifiedCopies(keep=1)
    first = copies.get(dock, SERIAL)
    assert first.ok and copies.get(dock, SERIAL) is first and copies.verified == 1
    chain = dock / "units" / SERIAL / layout.CHAIN
    st = chain.stat()
    os.utime(chain, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a pull touched it
    assert copies.get(dock, SERIAL) is not first and copies.verified == 2
    # an edited chain is verified again, and refused
    lines = chain.read_bytes().splitlines(keepends=True)
    chain.write_bytes(b"".join(lines[:-1]) + lines[-1].replace(b'"seq"', b'"seq" ', 1))
    with pytest.raises(CaseError):
        copies.get(dock, SERIAL)
    assert copies.verified == 2  # nothing kept of a copy that does not verify
