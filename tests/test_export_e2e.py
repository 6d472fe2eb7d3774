"""The dock link end to end over loopback mutual TLS: pull, receipt, release,
resume after a cut, a dock killed before its receipt, and refusals."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dock.client import Client, DockError
from dock.report import report
from link import pki, routes
from sealing.verify import verify_store

from .english import english_dock
from .export_fixtures import Link, start_link, write_dock_creds


@pytest.fixture
def link(tmp_path: Path) -> Iterator[Link]:
    lk = start_link(tmp_path)
    yield lk
    lk.close()


def test_pull_receipt_release_and_dock_copy_verifies(link: Link) -> None:
    before = link.files()
    result = link.pull(identity=link.unit.agency.identity)
    assert sorted(result.pulled) == sorted(before)
    assert sorted(result.released) == sorted(before) and result.bytes_freed > 0
    assert link.files() == set()  # exactly the receipted segments freed: all of them here
    assert link.clock_steps, "the unit's clock was not set from the dock"
    # the dock's copy verifies, decrypting with the agency identity
    dd = link.dir / "dockstore"
    held = {p.name: p for p in dd.rglob("*.ts.age")}
    assert set(held) == before
    assert all(len(p.relative_to(dd).parts) == 5 for p in held.values())  # YYYY/MM/DD/serial/f
    report = verify_store(
        dd / "units" / "BC-TEST-0001", identity=link.unit.agency.identity, find_segment=held.get
    )
    assert report.ok, report.problems
    assert all(s["plaintext"] == "decrypted, hash matches" for s in report.segments)
    types = [r.type for r in link.store.records()]
    assert "auth" in types and "export" in types and types[-1] == "release"
    # the unit's own store still verifies, with the segments reported as released
    unit_report = verify_store(link.unit.path)
    assert unit_report.ok and {s["status"] for s in unit_report.segments} == {"released"}
    # a second pull has nothing new and releases nothing more
    again = link.pull()
    assert again.pulled == [] and again.released == []


def test_only_receipted_segments_are_freed(link: Link) -> None:
    dd = link.dir / "dockstore"
    link.pull(dd)
    from .conftest import write_segment

    write_segment(link.store, b"x" * 50_000)  # recorded after the pull
    left = link.files()
    assert len(left) == 1
    assert verify_store(link.unit.path).ok


def test_a_second_dock_pulls_verifies_and_releases(link: Link) -> None:
    """Finding 5: the chain cites the first dock's receipts; the second dock
    fetches them from the unit, so its fresh copy verifies and it may release."""
    from .conftest import write_segment

    first = link.pull(link.dir / "dock-a")
    assert first.released
    write_segment(link.store, b"y" * 80_000)  # recorded after the first dock emptied it
    new = link.files()
    other = link.dir / "dock-b"
    result = link.pull(other, name="dock2", identity=link.unit.agency.identity)
    assert result.pulled == sorted(new) and result.released == sorted(new)
    assert link.files() == set()
    mirror = other / "units" / "BC-TEST-0001"
    assert (mirror / "receipts" / f"{first.receipt}.json").is_file()
    held = {p.name: p for p in other.rglob("*.ts.age")}
    report = verify_store(mirror, identity=link.unit.agency.identity, find_segment=held.get)
    assert report.ok, report.problems
    statuses = {s["file"]: s["status"] for s in report.segments}
    assert {statuses[f] for f in first.released} == {"released"}
    # and as an examiner would check it, with the command line (FORMAT.md 8.4)
    key = link.dir / "agency.key"
    key.write_text(f"{link.unit.agency.identity}\n")
    cli = [sys.executable, "-m", "firmware.cli", "verify", str(mirror), "--identity", str(key)]
    ok = subprocess.run([*cli, "--segments-from", str(other)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "decrypted, hash matches" in ok.stdout or "intact" in ok.stdout
    (next(other.rglob("*.ts.age"))).write_bytes(b"not the segment")
    bad = subprocess.run([*cli, "--segments-from", str(other)], capture_output=True, text=True)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    # the endpoint answers bad and unknown ids clearly
    client = link.raw("dock2")
    client.login()
    assert client.json("GET", "/v1/receipts/../chain.jsonl")[0] == 400
    assert client.json("GET", "/v1/receipts/" + "0" * 64)[0] == 404
    assert client.json("POST", "/v1/receipts/" + "0" * 64)[0] == 405
    client.close()


def test_cut_link_resumes_without_resending(link: Link, monkeypatch: pytest.MonkeyPatch) -> None:
    from .export_fixtures import CuttingProxy

    size = sum((link.unit.path / "store" / "segments" / f).stat().st_size for f in link.files())
    proxy = CuttingProxy(link.running.address, cut_after=150_000)
    ranges: list[str] = []
    real = Client.request

    def spy(self: Client, route: routes.Route, item: str = "", **kw: Any):
        if route is routes.SEGMENT:
            ranges.append((kw.get("headers") or {}).get("Range", ""))
        return real(self, route, item, **kw)

    monkeypatch.setattr(Client, "request", spy)
    monkeypatch.setattr(link.running, "address", proxy.address)
    try:
        result = link.pull(identity=link.unit.agency.identity)
    finally:
        proxy.close()
    assert proxy.cuts == 1 and result.resumed_bytes > 0
    resumed = [r for r in ranges if r != "bytes=0-"]
    assert len(resumed) == 1 and int(resumed[0][6:-1]) == result.resumed_bytes
    # no byte of a segment crossed the link twice (headers and chain aside)
    assert proxy.down_bytes < size + 60_000
    assert sorted(result.released) == sorted(result.pulled)


def test_dock_killed_before_receipt_releases_nothing_then_completes(link: Link) -> None:
    before = link.files()
    with pytest.raises(DockError, match="before sending the receipt"):
        link.pull(stop_before_receipt=True)
    assert link.files() == before
    result = link.pull()
    assert result.pulled == []  # already stored: nothing sent twice
    assert sorted(result.released) == sorted(before) and link.files() == set()


def test_wrong_password_and_lockout(link: Link) -> None:
    before = link.files()
    for i in range(4):
        with pytest.raises(DockError, match="not authorised"):
            link.pull(password=f"wrong{i}")
    with pytest.raises(DockError, match="retry in"):
        link.pull(password="wrong5")
    with pytest.raises(DockError, match="locked"):
        link.pull()  # even the right password, while locked
    with pytest.raises(DockError, match="no_fingerprint"):
        link.service.auth._state_path.unlink()
        link.pull(fingerprint_ok=False)
    assert link.files() == before
    auth = [r.body["result"] for r in link.store.records() if r.type == "auth"]
    assert auth.count("bad_password") == 5 and "locked" in auth and "no_fingerprint" in auth


def test_lockout_survives_a_restart_of_the_service(link: Link) -> None:
    from firmware.auth import Authoriser

    for i in range(5):
        with pytest.raises(DockError):
            link.pull(password=f"bad{i}")
    fresh = Authoriser(link.unit.path)
    v = fresh.attempt("correct horse 7", True)
    assert not v.ok and v.result == "locked"


def test_the_lockout_ignores_the_wall_clock_and_outlives_a_reboot(
    link: Link, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Setting the wall clock a year ahead does not lift a lockout; a reboot
    (another boot id: the monotonic clock restarts) keeps what was left."""
    import time

    from firmware import auth

    for i in range(5):
        with pytest.raises(DockError):
            link.pull(password=f"bad{i}")
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 365 * 86400)
    with pytest.raises(DockError, match="locked"):
        link.pull()
    a = auth.Authoriser(link.unit.path)
    mono = time.monotonic()
    left = a.attempt("correct horse 7", True, mono).retry_after_s
    assert 0 < left <= auth.BASE_LOCK_S * 2
    monkeypatch.setattr(auth, "boot_id", lambda: "another-boot")  # after a power cycle
    again = a.attempt("correct horse 7", True, 5.0)  # the monotonic clock starts near 0
    assert again.result == "locked" and abs(again.retry_after_s - left) < 1
    later = a.attempt("correct horse 7", True, 5.0 + left + 1)  # the lock has run out
    assert later.ok


def _handshake(link: Link, ctx: ssl.SSLContext) -> bytes:
    host, port = link.running.address
    with socket.create_connection((host, port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        tls.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        return tls.recv(4096)


def test_missing_or_foreign_client_certificate_fails(link: Link, tmp_path: Path) -> None:
    no_cert = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    no_cert.load_verify_locations(link.dir / "ca.crt")
    no_cert.check_hostname = False
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        data = _handshake(link, no_cert)
        assert not data  # TLS 1.3: the server's alert can arrive on first read
        raise ConnectionError("closed without answer")
    other = pki.make_ca("production")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "ca.crt").write_bytes(pki.pem_cert(other.cert))
    write_dock_creds(tmp_path / "other", other, Ed25519PrivateKey.generate(), "x")
    d = tmp_path / "other" / "docks" / "x"
    foreign = pki.client_context(d / "dock.crt", d / "dock.key", link.dir / "ca.crt")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        data = _handshake(link, foreign)
        assert not data
        raise ConnectionError("closed without answer")


def test_unenrolled_dock_with_agency_cert_is_refused(link: Link) -> None:
    stranger = Ed25519PrivateKey.generate()
    write_dock_creds(link.dir, link.ca, stranger, "dock2")
    client = link.raw("dock2")
    code, body = client.json("GET", "/v1/status")
    client.close()
    assert code == 403 and "not an enrolled dock" in body["error"]


def _whole_chain(link: Link) -> dict:
    """make_receipt's arguments for a receipt of everything the unit holds now."""
    from sealing.receipts import media_entries

    recs = link.store.records()
    return dict(
        serial="BC-TEST-0001",
        from_seq=0,
        to_seq=recs[-1].seq,
        head=recs[-1].hash,
        segments=media_entries(recs),
        dock_time_us=1,
    )


def test_receipt_refusals_through_the_network(link: Link) -> None:
    from sealing.receipts import make_receipt

    before = link.files()
    client = link.raw()
    client.login()
    good = _whole_chain(link)
    cases = {
        "unenrolled": make_receipt(Ed25519PrivateKey.generate(), **good).to_bytes(),
        "foreign device": make_receipt(
            link.unit.agency.dock, **{**good, "serial": "BC-OTHER"}
        ).to_bytes(),
        "mismatch": make_receipt(
            link.unit.agency.dock,
            **{**good, "segments": [{**e, "ct_sha256": "0" * 64} for e in good["segments"]]},
        ).to_bytes(),
        "beyond chain": make_receipt(link.unit.agency.dock, **{**good, "to_seq": 999}).to_bytes(),
        "garbage": b"{not json",
    }
    forged = json.loads(make_receipt(link.unit.agency.dock, **good).to_bytes())
    forged["receipt"]["segments"] = forged["receipt"]["segments"][:1]
    cases["forged"] = json.dumps(forged, separators=(",", ":"), sort_keys=True).encode()
    for name, data in cases.items():
        resp = client.request("POST", "/v1/receipt", data)
        body = json.loads(resp.read())
        assert resp.status == 409, (name, body)
        assert "nothing released" in body["error"], name
    client.close()
    assert link.files() == before
    assert verify_store(link.unit.path).ok


def test_bad_requests_get_4xx_and_the_service_stays_up(link: Link) -> None:
    client = link.raw()
    assert client.json("GET", "/v1/nope")[0] == 404
    assert client.json("DELETE", "/v1/status")[0] == 405
    assert client.json("GET", "/v1/chain")[0] == 401  # not logged in
    resp = client.request("POST", "/v1/auth", b"\xff\xfe")
    assert resp.status == 400
    resp.read()
    resp = client.request("POST", "/v1/auth", b"x" * 10, {"Content-Length": str(10 << 20)})
    assert resp.status == 413  # and the connection is closed: the body is not read
    client.close()
    client = link.raw()
    client.login()
    for path in ("/v1/segments/../../keys/fss.key", "/v1/segments/x.ts.age", "/v1/chain?from=-1"):
        resp = client.request("GET", path)
        assert 400 <= resp.status < 500, path
        resp.read()
    name = sorted(link.files())[0]
    resp = client.request("GET", f"/v1/segments/{name}", headers={"Range": "bytes=999999999-"})
    assert resp.status == 416
    resp.read()
    # the last byte alone: the export record says one byte went, not the file
    size = (link.unit.path / "store" / "segments" / name).stat().st_size
    resp = client.request("GET", f"/v1/segments/{name}", headers={"Range": f"bytes={size - 1}-"})
    assert resp.status == 206 and len(resp.read()) == 1
    export = [r for r in link.store.records() if r.type == "export"][-1].body
    assert (export["from"], export["bytes"], export["size"]) == (size - 1, 1, size)
    # a Content-Length in other digits than ASCII: an answer, not a dropped connection
    resp = client.request("POST", "/v1/auth", b"{}", {"Content-Length": "\u00b2"})
    assert resp.status == 411
    resp.read()
    client.close()
    client = link.raw()  # the unit closed that connection: its body's end was unknown
    assert client.json("GET", "/v1/status")[0] == 200
    client.close()


def test_dock_report_tells_pauses_notes_clock_and_late_exports(link: Link) -> None:
    link.store.append("pause", {"reason": "privacy"})
    link.store.append("resume", {"after_pause_us": 1})
    link.store.append("resume_note", {"given": False, "speech_s": 0})
    link.store.append("fault", {"what": "microphone", "reason": "no frames"})
    link.pull()
    english_dock(link.dir / "dockstore")  # the dock's own setting: English
    text = report(link.dir / "dockstore")
    assert "unit BC-TEST-0001" in text
    assert "pauses: 1 (privacy)" in text
    assert "spoken reasons on resuming: 0 given, 1 missing" in text
    assert "faults: 1: microphone" in text
    assert "late export: 0 segments" in text
    # the same pull seen a day later counts as late
    late = report(link.dir / "dockstore", late_after_s=0)
    assert "late export: 3 segments" in late


def test_segment_being_written_is_not_offered_while_recording(link: Link) -> None:
    """Export while the unit records: the open segment is neither offered nor
    released; once sealed, the next pull takes it."""
    writer = link.store.open_segment()
    writer.write(b"still recording" * 1000)
    writer.sync()
    result = link.pull()
    assert str(writer.name) not in result.pulled
    assert (writer.path).exists() and str(writer.name) not in result.released
    from sealing.store import SegmentMeta

    writer.close(SegmentMeta(start=link.store.clock(), end=link.store.clock()))
    again = link.pull()
    assert again.pulled == [str(writer.name)] and again.released == [str(writer.name)]
    assert verify_store(link.unit.path).ok


def test_the_same_receipt_sent_four_times_at_once_is_applied_once(link: Link) -> None:
    import threading

    from sealing.receipts import make_receipt

    receipt = make_receipt(link.unit.agency.dock, **_whole_chain(link)).to_bytes()
    answers: list[tuple[int, dict]] = []
    clients = []
    for _ in range(4):
        c = link.raw()
        c.login()
        clients.append(c)

    def send(c) -> None:
        resp = c.request("POST", "/v1/receipt", receipt)
        answers.append((resp.status, json.loads(resp.read())))

    threads = [threading.Thread(target=send, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for c in clients:
        c.close()
    assert len(answers) == 4 and all(code == 200 for code, _ in answers), answers
    assert sorted(a["already_applied"] for _, a in answers) == [False, True, True, True]
    assert [r.type for r in link.store.records()].count("release") == 1
    assert verify_store(link.unit.path).ok


def test_every_request_gets_a_status_line(link: Link) -> None:
    """What once closed the connection without an answer (issue 22)."""
    client = link.raw()
    client.login()
    assert client.json("GET", "/v1/chain?from=%C2%B2")[0] == 400  # "²".isdigit() is true
    assert client.json("GET", "/v1/chain?from=" + "9" * 40)[0] == 400
    code, body = client.json("POST", "/v1/time", {"dock_time_us": 10**27})
    assert code == 400 and "dock_time_us" in body["error"]
    code, body = client.json("POST", "/v1/time", {"dock_time_us": True})
    assert code == 400
    code, body = client.json("POST", "/v1/auth", {"password": "x" * 5000, "fingerprint_ok": True})
    assert code == 400 and "password" in body["error"]
    assert client.json("GET", "/v1/status")[0] == 200
    client.close()


def test_an_internal_fault_is_answered_and_recorded(
    link: Link, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> list:
        raise RuntimeError("disk on fire")

    client = link.raw()
    client.login()
    monkeypatch.setattr(link.service, "unexported", broken)
    code, body = client.json("GET", "/v1/offered")
    assert code == 500 and "recorded" in body["error"] and "fire" not in body["error"]
    faults = [r.body for r in link.store.records() if r.type == "fault"]
    assert faults[-1]["what"] == "export" and "disk on fire" in faults[-1]["reason"]
    client.close()


def test_receipts_applied_from_three_threads_in_one_process_apply_once(link: Link) -> None:
    import threading

    from sealing.receipts import apply_receipt, make_receipt

    receipt = make_receipt(link.unit.agency.dock, **_whole_chain(link)).to_bytes()
    got: list[object] = []

    def apply() -> None:
        try:
            got.append(apply_receipt(link.store, receipt))
        except Exception as exc:
            got.append(exc)

    threads = [threading.Thread(target=apply) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(not isinstance(g, Exception) for g in got), got
    assert sorted(g.already_applied for g in got) == [False, True, True]  # type: ignore[attr-defined]
    releases = [r for r in link.store.records() if r.type == "release"]
    assert len(releases) == 1 and link.files() == set()


def test_bench_export_short_runs_and_reports() -> None:
    """`tools/bench.py export --short`: the units in processes of their own,
    the dock's pull of all of them, and the report with both sides of each
    ratio and the load (its timings on a few MiB mean nothing;
    `python tools/bench.py export` measures)."""
    repo = Path(__file__).resolve().parent.parent
    r = subprocess.run(
        [sys.executable, str(repo / "tools" / "bench.py"), "export", "--short"],
        env={**os.environ, "PYTHONPATH": str(repo)},  # this checkout, not an installed one
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["part"] == "export" and out["short"] is True and out["units"] == 4
    assert out["bytes"] >= 8 << 20
    for side in ("bare", "service_only", "export"):
        assert len(out["seconds"][side]) == 1 and out["seconds"][side][0] > 0
    assert out["ratio"] > 0 and out["service_only_ratio"] > 0
    assert len(out["loadavg_start"]) == 3 and len(out["loadavg_end"]) == 3
    assert out["release_segments"] == 20
