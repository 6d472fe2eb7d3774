"""The dock against a hostile unit (issue 22): a fake unit server on loopback
with one stolen certificate, or a real unit's keys, says what no honest unit
would. For each: the dock's exit status, one line naming the unit and what
was wrong, no traceback, no receipt, nothing written outside the dock folder,
and the honest unit's next pull works."""

from __future__ import annotations

import dataclasses
import io
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dock import service as dock_service
from dock.discovery import FixedUnits, UnitAddress
from dock.index import Index
from dock.officer_prints import OperatorsWord
from dock.pull import Limits
from link import pki
from link.inventory import read_known
from sealing import canonical, layout
from sealing.keys import public_pem
from sealing.records import Record, parse_line, seal_line

from .conftest import BODYCAM_DOCK
from .english import EN_ARGS, english
from .export_fixtures import PASSWORD, Link, start_link, write_inventory
from .fake_unit import FakeUnit, Script, endless
from .peak import run_measured


@pytest.fixture
def link(tmp_path: Path) -> Iterator[Link]:
    lk = start_link(tmp_path / "unit0")
    yield lk
    lk.close()


@dataclasses.dataclass
class Run:
    code: int
    out: str
    err: str
    new_files: list[Path]
    peak: int  # the dock process's peak RSS, bytes


def _files(base: Path) -> set[Path]:
    return {p for p in base.rglob("*") if p.is_file()}


def _pull(
    link: Link,
    address: tuple[str, int],
    dock_dir: Path,
    *extra: str,
    inventory: Path | None = None,
) -> Run:
    """`bodycam-dock pull` as an operator runs it, against `address`."""
    base = dock_dir.parent  # the dock's side only: the units' own files change too
    base.mkdir(parents=True, exist_ok=True)
    before = _files(base)
    pw = base / "pw.txt"
    pw.write_text(PASSWORD)
    creds = link.dir / "docks" / "dock1"
    args = [*BODYCAM_DOCK, "pull", *EN_ARGS, "--unit", "{}:{}".format(*address)]
    args += ["--dock-dir", str(dock_dir)]
    args += ["--cert", str(creds / "dock.crt"), "--key", str(creds / "dock.key")]
    args += ["--ca", str(link.dir / "ca.crt"), "--password-file", str(pw)]
    args += ["--fingerprint", "match", "--inventory", str(inventory or link.inventory), *extra]
    r = run_measured(args, timeout=300)
    new = sorted(_files(base) - before - {pw})
    return Run(r.code, r.out, r.err, [p for p in new if dock_dir not in p.parents], r.peak)


def _refused(run: Run, says: str) -> None:
    lines = run.err.strip().splitlines()
    assert run.code == 1, run.err
    assert "Traceback" not in run.err, run.err
    assert len(lines) == 1 and lines[0].startswith("dock: unit "), run.err
    assert says in lines[0], run.err
    assert run.new_files == [], run.new_files  # nothing outside the dock folder


def _no_receipt(fake: FakeUnit, dock_dir: Path) -> None:
    assert not fake.saw("POST /v1/receipt"), fake.requests
    assert not list(dock_dir.glob("units/*/receipts/*.json"))


def _pinned(dock_dir: Path) -> list[str]:
    if not (dock_dir / "dock.sqlite").exists():
        return []
    index = Index.open(dock_dir / "dock.sqlite")
    try:
        return [s for s in ("BC-TEST-0001", "BC-VICTIM-0009") if index.unit(s)]
    finally:
        index.close()


def _forged(
    link: Link, edit: Callable[[dict[str, Any]], None], at: int = -1, *, onwards: bool = False
) -> bytes:
    """The unit's chain with one record (or every record from it on) edited
    and everything from it on re-signed with the unit's own device key: a
    unit whose key was stolen."""
    lines = link.store.chain_bytes(0).splitlines()
    at = at % len(lines)
    records = [parse_line(ln)[0] for ln in lines]
    out = [ln + b"\n" for ln in lines[:at]]
    prev = records[at - 1].hash if at else records[0].prev
    for r in records[at:]:
        d = r.to_dict()
        if r.seq == records[at].seq or onwards:
            edit(d)
        rec = Record(
            seq=d["seq"], type=d["type"], body=d["body"], stamp=r.stamp, serial=d["serial"],
            officer=d["officer"], prev=prev, boot=d["boot"],
        )  # fmt: skip
        out.append(seal_line(rec, link.store.keys.signing, b"\0" * 32))
        prev = rec.hash
    return b"".join(out)


def test_a_stolen_certificate_serving_another_serial_is_refused_before_login(
    link: Link, tmp_path: Path
) -> None:
    script = Script.of(link)
    rogue = Ed25519PrivateKey.generate()
    script.status = {
        **script.status,
        "serial": "BC-VICTIM-0009",
        "device_key_pem": public_pem(rogue.public_key()).decode(),
    }
    fake = FakeUnit(link, script)
    try:
        run = _pull(link, fake.address, tmp_path / "dockside" / "dock")
    finally:
        fake.close()
    _refused(run, "says it is BC-VICTIM-0009, but its TLS certificate was issued to BC-TEST-0001")
    assert not fake.saw("POST /v1/auth") and not fake.saw("GET /v1/chain")
    _no_receipt(fake, tmp_path / "dockside" / "dock")
    assert _pinned(tmp_path / "dockside" / "dock") == []


def test_a_device_key_the_agency_never_issued_is_refused(link: Link, tmp_path: Path) -> None:
    script = Script.of(link)
    rogue = Ed25519PrivateKey.generate()
    script.status = {**script.status, "device_key_pem": public_pem(rogue.public_key()).decode()}
    fake = FakeUnit(link, script)
    try:
        run = _pull(link, fake.address, tmp_path / "dockside" / "dock")
    finally:
        fake.close()
    _refused(run, "is not the key QA issued to BC-TEST-0001")
    assert not fake.saw("POST /v1/auth")
    _no_receipt(fake, tmp_path / "dockside" / "dock")


def _to_victim(d: dict[str, Any]) -> None:
    """A record as if unit BC-VICTIM-0009 had made it: its serial, and the
    names of its files (or the verifier refuses the file names first)."""
    d["serial"] = "BC-VICTIM-0009"
    if isinstance(d["body"].get("file"), str):
        d["body"]["file"] = d["body"]["file"].replace("BC-TEST-0001", "BC-VICTIM-0009")


def test_a_chain_of_another_serial_under_a_stolen_key_is_not_kept(
    link: Link, tmp_path: Path
) -> None:
    script = Script.of(link)
    script.chain = _forged(link, _to_victim, 0, onwards=True)
    fake = FakeUnit(link, script)
    try:
        run = _pull(link, fake.address, tmp_path / "dockside" / "dock")
    finally:
        fake.close()
    _refused(run, "is of unit 'BC-VICTIM-0009', not BC-TEST-0001")
    _no_receipt(fake, tmp_path / "dockside" / "dock")
    assert (
        _pinned(tmp_path / "dockside" / "dock") == []
        and not (tmp_path / "dockside" / "dock" / "units").exists()
    )


def test_a_serial_not_in_the_inventory_is_refused_by_name(link: Link, tmp_path: Path) -> None:
    stray = start_link(
        tmp_path / "stray", serial="BC-STRAY-0002", agency=(link.unit.agency, link.ca)
    )
    try:
        run = _pull(link, stray.running.address, tmp_path / "dockside" / "dock")
        assert not [r for r in stray.store.records() if r.type == "auth"]  # no login asked
        assert stray.files()  # nothing released
    finally:
        stray.close()
    _refused(run, "serial BC-STRAY-0002 is not an active unit in the QA inventory")


def test_broken_signatures_pin_nothing_and_the_honest_unit_then_pulls(
    link: Link, tmp_path: Path
) -> None:
    script = Script.of(link)
    lines = script.chain.splitlines(keepends=True)
    line = canonical.decode(lines[2].rstrip(b"\n"))
    sig = bytearray(canonical.unb64(line["sig"]))
    sig[0] ^= 1
    line["sig"] = canonical.b64(bytes(sig))
    lines[2] = canonical.encode(line) + b"\n"
    script.chain = b"".join(lines)
    dock_dir = tmp_path / "dockside" / "dock"
    fake = FakeUnit(link, script)
    try:
        run = _pull(link, fake.address, dock_dir)
    finally:
        fake.close()
    _refused(run, "chain does not verify")
    _no_receipt(fake, dock_dir)
    assert _pinned(dock_dir) == [] and not (dock_dir / "units").exists()
    assert not list(dock_dir.glob("????/??/??/*/*"))  # no segment taken either
    honest = _pull(link, link.running.address, dock_dir)
    assert honest.code == 0 and "pulled 3 segments" in honest.out, honest
    assert link.files() == set() and _pinned(dock_dir) == ["BC-TEST-0001"]


def test_an_endless_segment_is_read_no_further_than_its_chain_says(
    link: Link, tmp_path: Path
) -> None:
    script = Script.of(link)
    script.override["GET /v1/segments/"] = endless(b"x" * 65536)
    fake = FakeUnit(link, script)
    sizes = {r.body["file"]: r.body["ct_len"] for r in link.store.records() if r.type == "segment"}
    try:
        run = _pull(link, fake.address, tmp_path / "dockside" / "dock")
    finally:
        fake.close()
    first = min(sizes)  # the first the dock asks for (chain order is name order here)
    _refused(run, f"received {sizes[first]} bytes whose hash does not match the chain")
    _no_receipt(fake, tmp_path / "dockside" / "dock")
    assert not list((tmp_path / "dockside" / "dock").rglob("*.age*"))


RSS_LIMIT = 200 << 20  # the dock's own imports take ~80 MB; a 300 MB chain read whole: 1 GB


def test_a_chain_over_the_ceiling_is_refused_with_bounded_memory(
    link: Link, tmp_path: Path
) -> None:
    script = Script.of(link)
    line = script.chain.splitlines(keepends=True)[-1]
    script.override["GET /v1/chain"] = endless(line * (1 << 20 // len(line) + 1))
    fake = FakeUnit(link, script)
    try:
        dock_dir = tmp_path / "dockside" / "dock"
        run = _pull(link, fake.address, dock_dir, "--max-chain-mb", "32")
    finally:
        fake.close()
    print(f"peak RSS of the dock refusing an endless chain at 32 MB: {run.peak >> 20} MiB")
    _refused(run, "chain longer than the 32000000")
    assert run.peak < RSS_LIMIT, run.peak
    _no_receipt(fake, tmp_path / "dockside" / "dock")
    assert _pinned(tmp_path / "dockside" / "dock") == []


# The pull's deadline is 5 s: a read the timer cannot wake hangs, so end the
# process within a minute (a hung pool thread outlives a signal's failure).
@pytest.mark.timeout(60, method="thread")
def test_a_dripping_unit_ends_at_its_deadline_while_another_is_pulled(
    link: Link, tmp_path: Path
) -> None:
    honest = start_link(
        tmp_path / "honest", serial="BC-TEST-0002", agency=(link.unit.agency, link.ca)
    )
    script = Script.of(link)
    script.override["GET /v1/segments/"] = endless(b"x", pause_s=1.0)
    fake = FakeUnit(link, script)
    passwords = tmp_path / "pw"
    passwords.mkdir()
    for s in ("BC-TEST-0001", "BC-TEST-0002"):
        (passwords / s).write_text(PASSWORD)
    creds = link.dir / "docks" / "dock1"
    board = io.StringIO()
    svc = dock_service.DockService(
        FixedUnits((UnitAddress(*fake.address), UnitAddress(*honest.running.address))),
        tmp_path / "dockside" / "dock",
        link.unit.agency.dock,
        pki.client_context(creds / "dock.crt", creds / "dock.key", link.dir / "ca.crt"),
        dock_service.PreparedLogin(dock_service.password_dir(passwords), OperatorsWord(True)),
        dock_service.Board(board, threading.Lock(), every=0.0),
        read_known(write_inventory(tmp_path / "agency", [link, honest])),
        workers=2,
        limits=Limits(base_s=5.0, min_rate=1e6),
    )
    try:
        states = svc.run_once()
    finally:
        fake.close()
        honest.close()
    by = {s.serial: s for s in states}
    assert by["BC-TEST-0002"].stage == "released", by["BC-TEST-0002"].detail
    assert by["BC-TEST-0001"].stage == "failed"
    said = by["BC-TEST-0001"].detail_text(english())
    assert "deadline passed" in said, said
    assert not fake.saw("POST /v1/receipt")


def _with_status(**changes: Any) -> Callable[[Script], None]:
    def edit(s: Script) -> None:
        s.status = {k: v for k, v in {**s.status, **changes}.items() if v is not None}

    return edit


def _drop_status(key: str) -> Callable[[Script], None]:
    def edit(s: Script) -> None:
        s.status = {k: v for k, v in s.status.items() if k != key}

    return edit


def _offered_file(name: str) -> Callable[[Script], None]:
    def edit(s: Script) -> None:
        s.offered = {"segments": [{**s.offered["segments"][0], "file": name}]}

    return edit


MALFORMED: dict[str, tuple[Callable[[Script], None], str]] = {
    "status not JSON": (
        lambda s: s.override.update({"GET /v1/status": (200, b"<html>")}),
        "status: the reply is not a JSON object",
    ),
    "status without serial": (_drop_status("serial"), "`serial` is missing"),
    "status without device key": (_drop_status("device_key_pem"), "`device_key_pem` is missing"),
    "head_seq not a number": (_with_status(head_seq="x"), "`head_seq` is not an integer"),
    "serial with a newline": (_with_status(serial="BC-TEST-0001\n"), "`serial` holds control"),
    "serial as a path": (_with_status(serial="../../etc"), "not a unit serial"),
    "offered traversal": (_offered_file("../../../x.ts.age"), "is not a sealed file's name"),
    "offered list not a list": (
        lambda s: setattr(s, "offered", {"segments": "all"}),
        "`segments` is not a list",
    ),
    "token not hex": (
        lambda s: s.override.update({"POST /v1/auth": (200, {"token": "x\r\nX: 1"})}),
        "`token` holds control characters",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_values_are_one_line_naming_the_field(
    case: str, link: Link, tmp_path: Path
) -> None:
    edit, says = MALFORMED[case]
    script = Script.of(link)
    edit(script)
    fake = FakeUnit(link, script)
    try:
        run = _pull(link, fake.address, tmp_path / "dockside" / "dock")
    finally:
        fake.close()
    _refused(run, says)
    _no_receipt(fake, tmp_path / "dockside" / "dock")
    assert link.files()  # the real unit released nothing


def _last_segment(edit: Callable[[dict[str, Any]], None]) -> Callable[[Link], bytes]:
    def forge(link: Link) -> bytes:
        seq = max(r.seq for r in link.store.records() if r.type == "segment")
        return _forged(link, edit, at=seq)

    return forge


def _release_of(rid: str) -> Callable[[Link], bytes]:
    def forge(link: Link) -> bytes:
        def edit(d: dict[str, Any]) -> None:
            d.update(type="release", body={"receipt": rid, "files": []})

        return _forged(link, edit)

    return forge


SIGNED_BUT_MALFORMED: dict[str, tuple[Callable[[Link], bytes], str]] = {
    "ct_len a string": (
        _last_segment(lambda d: d["body"].update(ct_len="x")),
        "ct_len",  # the verifier refuses it first: "ct_len/ct_sha256 missing"
    ),
    "ct_len negative": (
        _last_segment(lambda d: d["body"].update(ct_len=-5)),
        "ct_len",
    ),
    "receipt id with CR/LF": (_release_of("ab\r\nHost: evil"), "`receipt` is not a receipt id"),
    "receipt id a path": (_release_of("../../keys/fss.key"), "`receipt` is not a receipt id"),
}


@pytest.mark.parametrize("case", sorted(SIGNED_BUT_MALFORMED))
def test_signed_records_with_malformed_values_are_refused(
    case: str, link: Link, tmp_path: Path
) -> None:
    forge, says = SIGNED_BUT_MALFORMED[case]
    script = Script.of(link)
    script.chain = forge(link)
    fake = FakeUnit(link, script)
    try:
        run = _pull(link, fake.address, tmp_path / "dockside" / "dock")
    finally:
        fake.close()
    _refused(run, says)
    _no_receipt(fake, tmp_path / "dockside" / "dock")
    # the honest unit's next pull at the same dock works
    honest = _pull(link, link.running.address, tmp_path / "dockside" / "dock")
    assert honest.code == 0 and link.files() == set(), honest.err


def test_the_segment_names_a_unit_offers_never_leave_the_dock_folder(
    link: Link, tmp_path: Path
) -> None:
    """A layout check too: every path the dock wrote for a pulled unit is under
    the dock folder, in its date folders or under units/<serial>."""
    run = _pull(link, link.running.address, tmp_path / "dockside" / "dock")
    assert run.code == 0 and run.new_files == [], run
    for p in (tmp_path / "dockside" / "dock").rglob("*"):
        rel = p.relative_to(tmp_path / "dockside" / "dock").parts
        assert rel[0] in ("units", "dock.sqlite", ".staging") or rel[0].isdigit(), p
    assert not list((tmp_path / "dockside" / "dock" / ".staging").iterdir())  # staging emptied
    assert layout.parse_name(next((tmp_path / "dockside" / "dock").glob("????/??/??/*/*.age")).name)
