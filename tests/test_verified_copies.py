"""The page's playback verifies a unit's chain once while it is unchanged
(dock/verified_copies.py): a changed chain is verified again, and a chain
that no longer verifies is refused, not served from before. The segment
files are not read for it: each segment is checked as it is played."""

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


def test_the_chain_is_verified_without_the_files_and_playback_checks_each(
    demo_run: DemoRun, tmp_path: Path
) -> None:
    """A segment altered on the dock leaves the chain's verification as it
    was (no file is read for it) and refuses its playback before anything
    is sent."""
    from dock.courtcopy import recordings
    from dock.courtcopy import stream as courtcopy_stream
    from dock.courtcopy.steps import VIDEO
    from dock.texts import ENGLISH
    from sealing.age import Identity

    assert demo_run.returncode == 0, demo_run.stderr
    dock = Path(shutil.copytree(demo_run.dir / "dock", tmp_path / "dock"))
    identity = Identity.parse((demo_run.dir / "agency" / "evidence.key").read_text())
    rec = next(r for r in recordings(VerifiedCopies().get(dock, SERIAL).chain) if r.media(VIDEO))
    (seg,) = dock.rglob(str(rec.media(VIDEO)[0].body["file"]))
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0x40
    seg.write_bytes(bytes(data))
    copies = VerifiedCopies()
    assert copies.get(dock, SERIAL).ok and copies.verified == 1
    ended: list[bool] = []
    with pytest.raises(CaseError) as refused:
        courtcopy_stream.open_stream(
            dock, SERIAL, rec.start.seq, identity, "viewer", ENGLISH,
            done=lambda: ended.append(True), verify=copies.get,
        )  # fmt: skip
    assert ended == [True]  # the viewer's slot given back
    said = str(refused.value)
    assert seg.name in said and "is not the file chain record" in said, said
