"""The dock service: several units pulled at once, progress per unit, the
safety check before any receipt, revoked units refused, units found on
USB gadget links by their link-local addresses."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dock import discovery
from dock import pull as dock_pull
from dock import service as dock_service
from dock.client import DockError
from dock.direct_io import DirectReader
from dock.index import Index
from dock.officer_prints import OperatorsWord
from link import gadget, pki
from link.inventory import read_known
from sealing import layout
from sealing.age import Identity
from sealing.safeio import open_regular
from sealing.segcheck import read_segment
from sealing.store import SegmentMeta
from sealing.verify import verify_store

from .conftest import BODYCAM_DOCK, Agency, files_the_verifier_reads, make_unit, write_segment
from .english import EN_ARGS
from .export_fixtures import PASSWORD, Link, start_link, write_inventory

ROOT = Path(__file__).resolve().parent.parent
SERIALS = ("BC-RACK-0001", "BC-RACK-0002", "BC-RACK-0003")


def _agency() -> tuple[Agency, pki.Issued]:
    ids = Agency(Identity.generate(), Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate())
    return ids, pki.make_ca("qa")


@pytest.fixture
def rack(tmp_path: Path) -> Iterator[list[Link]]:
    """Three units of one agency, each serving on its own loopback port."""
    shared = _agency()
    links = [
        start_link(tmp_path / s, segments=4, size=1_500_000, serial=s, agency=shared)
        for s in SERIALS
    ]
    write_inventory(tmp_path / "agency", links)
    yield links
    for link in links:
        link.close()


@pytest.fixture
def link(tmp_path: Path) -> Iterator[Link]:
    lk = start_link(tmp_path)
    yield lk
    lk.close()


def _service(
    links: list[Link], dock_dir: Path, out: Path, **kw: object
) -> dock_service.DockService:
    base = links[0]
    creds = base.dir / "docks" / "dock1"
    ctx = pki.client_context(creds / "dock.crt", creds / "dock.key", base.dir / "ca.crt")
    passwords = dock_dir.parent / "passwords"
    passwords.mkdir(exist_ok=True)
    for s in SERIALS:
        (passwords / s).write_text(PASSWORD + "\n")
    source = discovery.FixedUnits(
        tuple(discovery.UnitAddress(*link.running.address) for link in links)
    )
    import threading

    return dock_service.DockService(
        source,
        dock_dir,
        base.unit.agency.dock,
        ctx,
        dock_service.PreparedLogin(dock_service.password_dir(passwords), OperatorsWord(True)),
        dock_service.Board(out.open("w"), threading.Lock(), every=0.0),
        read_known(write_inventory(dock_dir.parent / "inventory", links)),
        **kw,  # type: ignore[arg-type]
    )


def test_three_units_pulled_at_once_all_verified_and_released(
    rack: list[Link], tmp_path: Path
) -> None:
    dock_dir = tmp_path / "dock"
    before = {link.store.serial: link.files() for link in rack}
    out = tmp_path / "board.txt"
    states = _service(rack, dock_dir, out, workers=3).run_once()
    assert [s.stage for s in states] == ["released"] * 3, [s.detail for s in states]
    # in parallel: every pull started before any finished
    assert max(s.started for s in states) < min(s.finished or 0 for s in states)
    for link, state in zip(rack, states, strict=True):
        serial = link.store.serial
        assert state.serial == serial and link.files() == set()  # all released
        assert state.result is not None
        assert sorted(state.result.released) == sorted(before[serial])
        report = verify_store(
            dock_dir / "units" / serial,
            identity=link.unit.agency.identity,
            find_segment=lambda f, s=serial: next(dock_dir.glob(f"*/*/*/{s}/{f}"), None),
        )
        assert report.ok, report.problems
        ver = json.loads((dock_dir / "units" / serial / "verification.json").read_text())
        assert ver["ok"] and ver["receipt"] == state.result.receipt and ver["missing"] == []
    board = out.read_text()
    for serial in SERIALS:
        lines = [ln for ln in board.splitlines() if ln.startswith(serial)]
        assert any("pulling" in ln and "files" in ln and "/s" in ln for ln in lines), board
        assert any("released" in ln for ln in lines), board


def test_serve_cli_pulls_the_rack_once(rack: list[Link], tmp_path: Path) -> None:
    base = rack[0]
    passwords = tmp_path / "pw"
    passwords.mkdir()
    for s in SERIALS:
        (passwords / s).write_text(PASSWORD)
    creds = base.dir / "docks" / "dock1"
    args = [*BODYCAM_DOCK, "serve", "--once", *EN_ARGS]
    args += ["--dock-dir", str(tmp_path / "dock"), "--password-dir", str(passwords)]
    args += ["--fingerprint", "match"]
    args += ["--cert", str(creds / "dock.crt"), "--key", str(creds / "dock.key")]
    args += ["--ca", str(base.dir / "ca.crt")]
    args += ["--inventory", str(tmp_path / "agency" / "inventory.sqlite")]
    for link in rack:
        args += ["--unit", "{}:{}".format(*link.running.address)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(ln.split()[0] for ln in r.stdout.splitlines()) == list(SERIALS)
    assert all(": released: pulled 4 files" in ln for ln in r.stdout.splitlines()), r.stdout
    assert "Traceback" not in r.stderr and all(link.files() == set() for link in rack)


def test_a_segment_corrupted_on_the_docks_disk_gets_no_receipt(link: Link, tmp_path: Path) -> None:
    before = link.files()
    victim: list[str] = []

    def flip(name: str, path: Path) -> None:
        if not victim:  # the first segment, after it was durably stored
            victim.append(name)
            with path.open("r+b") as f:
                f.seek(1000)
                b = f.read(1)
                f.seek(1000)
                f.write(bytes([b[0] ^ 0x01]))

    dock_dir = tmp_path / "dockstore"
    with pytest.raises(DockError, match="no receipt sent") as err:
        link.pull(dock_dir, on_stored=flip)
    assert victim[0] in str(err.value) and "differs from the chain" in str(err.value)
    assert link.files() == before  # nothing released
    mirror = dock_dir / "units" / link.store.serial
    assert not list((mirror / layout.RECEIPTS).glob("*.json"))
    assert not [r for r in link.store.records() if r.type == "release"]
    ver = json.loads((mirror / "verification.json").read_text())
    assert not ver["ok"] and ver["receipt"] is None
    assert any(victim[0] in p for p in ver["problems"])
    # the next pull fetches the bad copy again and then releases everything
    again = link.pull(dock_dir)
    assert again.pulled == victim and link.files() == set()
    assert sorted(again.released) == sorted(before)


def test_what_was_read_back_is_judged_and_a_file_replaced_since_is_read_again(
    link: Link, tmp_path: Path
) -> None:
    """The check's re-read of a segment pulled now happens as it lands
    (dock/pull.py `_ReadBack`): the check judges what that read found, and
    a file that is no longer the one read is left to the check to read."""
    dock_dir = tmp_path / "dockstore"
    link.pull(dock_dir)
    index = Index.open(dock_dir / "dock.sqlite")
    held = index.held(link.store.serial)
    index.close()
    first, second, *rest = sorted(held)
    identity = link.unit.agency.identity
    with dock_pull._ReadBack(identity) as read_back:
        for f in held:
            read_back.start(f, dock_dir / held[f]["path"], held[f]["ct_len"])
        assert sorted(read_back.results(dock_dir, held)) == sorted(held)
        path = dock_dir / held[second]["path"]
        shutil.copy2(path, path.with_name("copy"))  # the same bytes, another file
        os.replace(path.with_name("copy"), path)
        already = read_back.results(dock_dir, held)
    assert sorted(already) == sorted([first, *rest])
    assert all(r.ct_sha256 == held[f]["ct_sha256"] for f, r in already.items())
    # judged, not taken on trust: a read-back that found other bytes is refused
    already[first] = dataclasses.replace(already[first], ct_sha256="0" * 64)
    report = verify_store(
        dock_dir / "units" / link.store.serial,
        identity=identity,
        find_segment=lambda f: dock_dir / held[f]["path"] if f in held else None,
        already_read=already,
    )
    status = {s["file"]: s["status"] for s in report.segments}
    assert status == {first: "altered", second: "intact", **{f: "intact" for f in rest}}


@pytest.mark.parametrize("cut", [0, 1, 4095, 4096, 4097, (1 << 20) + 17, None])
def test_the_read_back_past_the_cache_answers_as_a_plain_read(
    tmp_path: Path, cut: int | None
) -> None:
    """The read-back reads with O_DIRECT (dock/direct_io.py `DirectReader`): whole
    aligned blocks handed out as asked; its answers are those of a plain
    read, whatever the file's length and whether it is decrypted too."""
    unit = make_unit(tmp_path / "unit")
    with unit.open() as store:
        start = store.clock()
        w = store.open_segment()
        w.write(os.urandom(3 << 20))
        w.close(SegmentMeta(start=start, end=store.clock()))
        (sealed,) = store.segments.iterdir()
    path = tmp_path / "segment"
    path.write_bytes(sealed.read_bytes()[:cut])
    size = path.stat().st_size
    for identity in (unit.agency.identity, None):
        with path.open("rb") as f:
            want = read_segment(f, size, identity)
        with open_regular(path) as f:
            direct = DirectReader.of(f)
            if direct is None:
                pytest.skip("this file system has no O_DIRECT")
            try:
                assert read_segment(direct, size, identity) == want
            finally:
                direct.close()


def test_a_segment_the_unit_lost_is_named_and_the_rest_released(link: Link, tmp_path: Path) -> None:
    lost = sorted(link.files())[1]
    (link.unit.path / "store" / "segments" / lost).unlink()
    result = link.pull(tmp_path / "dockstore")
    assert result.missing == [lost]
    assert link.files() == set() and lost not in result.released
    ver = json.loads(
        (tmp_path / "dockstore" / "units" / link.store.serial / "verification.json").read_text()
    )
    assert ver["ok"] and ver["missing"] == [lost]


def _inventory_csv(path: Path, link: Link, status: str) -> Path:
    """The inventory as `bodycam-flash inventory --csv` exports it."""
    row = link.inventory_row()
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, [*row, "status", "revoked_at", "revoked_reason"])
        w.writeheader()
        w.writerow(
            {**row, "status": status, "revoked_at": "2026-11-20",
             "revoked_reason": "reprovisioned"}
        )  # fmt: skip
    return path


def _pull_cli(link: Link, dock_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    pw = dock_dir.parent / "pw.txt"
    pw.write_text(PASSWORD)
    creds = link.dir / "docks" / "dock1"
    args = [*BODYCAM_DOCK, "pull", *EN_ARGS]
    args += ["--unit", "{}:{}".format(*link.running.address), "--dock-dir", str(dock_dir)]
    args += ["--cert", str(creds / "dock.crt"), "--key", str(creds / "dock.key")]
    args += ["--ca", str(link.dir / "ca.crt"), "--password-file", str(pw)]
    args += ["--fingerprint", "match"]
    if "--inventory" not in extra:
        args += ["--inventory", str(link.inventory)]
    args += extra
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def test_a_revoked_unit_is_refused_before_login(link: Link, tmp_path: Path) -> None:
    before = link.files()
    revoked = _inventory_csv(tmp_path / "inventory.csv", link, "revoked")
    r = _pull_cli(link, tmp_path / "dock", "--inventory", str(revoked))
    assert r.returncode == 1 and "revoked by the agency" in r.stderr, r.stderr
    assert "re-provisioned with --force" in r.stderr and "Traceback" not in r.stderr
    assert link.files() == before
    assert not [x for x in link.store.records() if x.type == "auth"]  # no login asked
    assert not (tmp_path / "dock" / "units").exists()  # its chain was not taken
    active = _inventory_csv(tmp_path / "active.csv", link, "active")
    r = _pull_cli(link, tmp_path / "dock", "--inventory", str(active))
    assert r.returncode == 0 and link.files() == set(), r.stderr


def test_bad_service_arguments_are_refused_clearly(tmp_path: Path) -> None:
    base = [*BODYCAM_DOCK, "serve", "--dock-dir", str(tmp_path), *EN_ARGS]
    for extra, says in (
        ([], "give --usb, or one or more --unit"),
        (["--unit", "nohost"], "HOST:PORT"),
        (["--unit", "127.0.0.1:1", "--workers", "0"], "--workers"),
        (["--unit", "127.0.0.1:1"], "--agency DIR --name NAME, or --cert"),
    ):
        r = subprocess.run(base + extra, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_addresses_parse() -> None:
    p = discovery.parse_address
    assert p("192.168.7.2:8443") == discovery.UnitAddress("192.168.7.2", 8443)
    assert p("[fe80::1%usb0]:8443") == discovery.UnitAddress("fe80::1%usb0", 8443)
    assert str(p("[fe80::1%usb0]:8443")) == "[fe80::1%usb0]:8443"
    for bad in ("fe80::1", "host:", ":8443", "h:99999", "h:x"):
        with pytest.raises(DockError):
            p(bad)


def _fake_sysfs(root: Path, name: str, driver: str, mac: str, state: str = "up") -> None:
    d = root / name
    (d / "device").mkdir(parents=True)
    (root.parent / "drivers" / driver).mkdir(parents=True, exist_ok=True)
    (d / "device" / "driver").symlink_to(root.parent / "drivers" / driver)
    (d / "address").write_text(mac + "\n")
    (d / "operstate").write_text(state + "\n")


def test_gadget_links_are_found_by_driver_and_addressed_by_mac(tmp_path: Path) -> None:
    root = tmp_path / "net"
    host1, dev1 = gadget.mac_addresses("BC-RACK-0001")
    host2, _ = gadget.mac_addresses("BC-RACK-0002")
    _fake_sysfs(root, "enx1", "cdc_ether", host1)
    _fake_sysfs(root, "usb1", "rndis_host", host2, state="unknown")
    _fake_sysfs(root, "eth0", "e1000e", "52:54:00:12:34:56")
    _fake_sysfs(root, "enx9", "cdc_ether", host2, state="down")
    (root / "lo").mkdir()  # no device: skipped
    found = discovery.GadgetLinks(root).scan()
    assert [a.host.split("%")[1] for a in found] == ["enx1", "usb1"]
    assert found[0] == discovery.UnitAddress(f"{gadget.link_local(dev1)}%enx1", 8443)


@pytest.fixture
def veth(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A real link: a veth pair whose ends carry the MACs a unit's gadget
    link would (the dock's end host_addr, the unit's end dev_addr)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to make a veth pair")
    host, dev = gadget.mac_addresses("BC-RACK-0001")
    name = f"bcd{os.getpid() % 10000}"
    peer = f"bcu{os.getpid() % 10000}"
    made = subprocess.run(
        [
            "ip",
            "link",
            "add",
            name,
            "address",
            host,
            "type",
            "veth",
            "peer",
            "name",
            peer,
            "address",
            dev,
        ],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot make a veth pair here: {made.stderr.strip()}")
    try:
        for n in (name, peer):
            subprocess.run(["ip", "link", "set", n, "up"], check=True)
        want = {peer: gadget.link_local(dev), name: gadget.link_local(host)}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # duplicate address detection, on both ends
            shown = {
                n: subprocess.run(
                    ["ip", "-6", "addr", "show", "dev", n], capture_output=True, text=True
                ).stdout
                for n in want
            }
            if all(want[n] in shown[n] and "tentative" not in shown[n] for n in want):
                break
            time.sleep(0.2)
        else:
            pytest.skip(f"the veth pair did not get its link-local addresses {want}")
        yield name, host
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def test_a_unit_on_a_gadget_link_is_pulled_over_its_link_local_address(
    veth: tuple[str, str], tmp_path: Path
) -> None:
    name, host = veth
    link = start_link(tmp_path / "u", serial="BC-RACK-0001", listen="::")
    try:
        root = tmp_path / "net"
        _fake_sysfs(root, name, "cdc_ether", host)  # a veth has no driver link of its own
        svc = _service([link], tmp_path / "dock", tmp_path / "board.txt")
        svc.source = discovery.GadgetLinks(root, port=link.running.address[1])
        [address] = svc.source.scan()
        deadline = time.monotonic() + 10
        while not svc._answers(address) and time.monotonic() < deadline:
            time.sleep(0.2)  # the link may still be settling on a loaded machine
        [state] = svc.run_once()
        assert state.stage == "released", state.detail
        assert state.address.host.startswith("fe80::") and state.address.host.endswith(name)
        assert link.files() == set()
    finally:
        link.close()


def test_wrong_passwords_are_asked_again_without_redocking(link: Link, tmp_path: Path) -> None:
    """At `serve`'s terminal: three wrong passwords, each answered with how
    many tries the unit still allows, then the right one: the unit is pulled
    and released in the same docking (S0 art. 19), and its chain has every
    attempt, which the page shows a supervisor."""
    creds = link.dir / "docks" / "dock1"
    args = [*BODYCAM_DOCK, "serve", "--once", "--fingerprint", "match"]
    args += ["--dock-dir", str(tmp_path / "dock"), "--inventory", str(link.inventory)]
    args += ["--cert", str(creds / "dock.crt"), "--key", str(creds / "dock.key")]
    args += ["--ca", str(link.dir / "ca.crt"), "--unit", "{}:{}".format(*link.running.address)]
    typed = "".join(f"wrong-{i}\n" for i in range(3)) + PASSWORD + "\n"
    for language, says in (
        ("zh-CN", "密码错误，还可尝试 4 次"),
        ("en", "wrong password: 2 tries left"),
    ):
        r = subprocess.run(
            [*args, "--language", language], input=typed, capture_output=True, text=True,
            timeout=180, start_new_session=True,  # no terminal: getpass reads the pipe
        )  # fmt: skip
        assert says in r.stderr, r.stderr
        if language == "zh-CN":
            assert r.returncode == 0 and "已释放" in r.stdout, r.stdout + r.stderr
            assert link.files() == set()  # pulled and released in one docking
    attempts = [x.body["result"] for x in link.store.records() if x.type == "auth"]
    assert attempts[:4] == ["bad_password", "bad_password", "bad_password", "ok"], attempts
    # no reader is wired to the dock: the unit records whose word the fingerprint was
    assert {x.body["reader"] for x in link.store.records() if x.type == "auth"} == {"none"}


def test_a_later_pull_reads_what_it_releases_not_what_was_released_before(
    link: Link, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The safety check re-reads the segments its receipt covers, not the
    dock's older ones the unit released at an earlier pull (a dock holds
    months of them): one of those altered on the dock since is not read
    and does not stop the next receipt; a segment neither side holds is
    still named."""
    dock_dir = tmp_path / "dockstore"
    first = link.pull(dock_dir)
    assert first.released and link.files() == set()
    index = Index.open(dock_dir / "dock.sqlite")
    held = index.held(link.store.serial)
    index.close()
    old = sorted(held)[0]
    path = dock_dir / held[old]["path"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    write_segment(link.store, os.urandom(30_000))
    write_segment(link.store, os.urandom(30_000))
    lost = sorted(link.files())[0]
    (link.unit.path / "store" / "segments" / lost).unlink()
    new = link.files()
    read = files_the_verifier_reads(monkeypatch)
    again = link.pull(dock_dir)
    assert sorted(again.released) == sorted(new) and link.files() == set()
    assert again.missing == [lost]
    assert not set(read) & set(held), read  # the older segments: none read again
    ver = json.loads((dock_dir / "units" / link.store.serial / "verification.json").read_text())
    assert ver["ok"] and ver["missing"] == [lost], ver
    whole = verify_store(
        dock_dir / "units" / link.store.serial,
        find_segment=lambda f: next(dock_dir.glob(f"*/*/*/*/{f}"), None),
    )
    assert not whole.ok and old in str(whole.problems[0])  # the dock's own check finds it
