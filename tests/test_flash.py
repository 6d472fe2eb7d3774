"""QA flashing and the boot side: flash, check, tamper, re-flash, QA vs
production refusal at the TLS handshake, systemd units."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest

from boot import flash, layout
from link import pki
from sealing.verify import verify_store

ROOT = Path(__file__).resolve().parent.parent


def _flash(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "flash.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def qa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("flash")
    (base / "pw").write_text("qa-password\n")
    assert _flash("agency-init", "--profile", "qa", "--agency", str(base / "qa")).returncode == 0
    return base


def _provision(
    base: Path, target: str, serial: str, profile: str = "qa", *extra: str
) -> subprocess.CompletedProcess:
    return _flash(
        str(base / target),
        "--serial",
        serial,
        "--officer",
        "OFFICER-1",
        "--password-file",
        str(base / "pw"),
        "--profile",
        profile,
        "--agency",
        str(base / profile),
        *extra,
    )


def test_flash_then_check_passes_and_inventory_lists_it(qa: Path) -> None:
    r = _provision(qa, "sd1", "BC-QA-000001")
    assert r.returncode == 0, r.stderr
    assert "BEGIN" not in r.stdout + r.stderr  # keys are never printed
    unit = layout.unit_dir(qa / "sd1")
    for secret in ("keys/device_ed25519.pem", "tls/unit.key", "keys/fss.key"):
        assert (unit / secret).stat().st_mode & 0o777 == 0o600, secret
    # a relative target, as QA types it at the station
    check = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "flash.py"), "check", "sd1", "--agency", "qa"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=qa,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "FAIL" not in check.stdout and "PASS scripted recording" in check.stdout
    # the report is kept per unit, signed by the agency CA
    [report] = (qa / "qa" / "reports" / "BC-QA-000001").glob("*.json")
    data = report.read_bytes()
    ca = flash._load_ca(qa / "qa")
    ca.cert.public_key().verify(
        flash.canonical.unb64(report.with_suffix(".sig").read_text().strip()), data
    )
    body = json.loads(data)
    assert body["passed"] and body["serial"] == "BC-QA-000001"
    assert {c["name"] for c in body["checks"]} >= {"scripted recording", "store verifies"}
    listed = _flash("inventory", "--agency", str(qa / "qa"), "--csv", str(qa / "inv.csv"))
    assert listed.returncode == 0 and "BC-QA-000001" in listed.stdout and "active" in listed.stdout
    inv = (qa / "inv.csv").read_text()
    assert "BC-QA-000001" in inv and "device_key" in inv.splitlines()[0]
    assert (qa / "qa" / "escrow" / "BC-QA-000001.fss").exists()
    escrow = flash.keys.canonical.unb64(
        (qa / "qa" / "escrow" / "BC-QA-000001.fss").read_text().strip()
    )
    assert verify_store(unit, escrow_key=escrow).ok


def _selftest(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "firmware.cli", "selftest", "--unit", str(layout.unit_dir(root))],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_manifest_holds_after_a_first_boot_but_names_our_changed_files(qa: Path) -> None:
    """The OS changes as it boots (machine-id, logs, fake-hwclock, a login's
    history): not in the manifest. Our own files are, firmware and system."""
    assert _provision(qa, "sd10", "BC-QA-000011").returncode == 0
    root = qa / "sd10"
    for rel, text in (
        ("etc/machine-id", "0123456789abcdef\n"),
        ("var/log/syslog", "boot\n"),
        ("etc/fake-hwclock.data", "2026\n"),
        ("root/.bash_history", "ls\n"),
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    first = _selftest(root)
    assert "PASS firmware integrity" in first.stdout, first.stdout
    listed = {e["path"] for e in json.loads((root / layout.MANIFEST).read_text())["files"]}
    assert "etc/sysusers.d/bodycam.conf" in listed
    assert "etc/systemd/system/bodycam-recorder.service" in listed
    assert not [p for p in listed if not layout.covered(p)]
    service = root / "etc" / "systemd" / "system" / "bodycam-recorder.service"
    service.write_text(service.read_text().replace("NoNewPrivileges=yes", ""))
    second = _selftest(root)
    assert "FAIL firmware integrity: changed etc/systemd/system/bodycam-recorder.service" in (
        second.stdout
    ), second.stdout


def test_changed_file_is_named_by_the_selftest(qa: Path) -> None:
    assert _provision(qa, "sd2", "BC-QA-000002").returncode == 0
    victim = qa / "sd2" / layout.PREFIX / "src" / "firmware" / "machine.py"
    victim.write_text(victim.read_text() + "\n# changed\n")
    r = _selftest(qa / "sd2")
    assert r.returncode == 1
    assert "FAIL firmware integrity: changed opt/bodycam/src/firmware/machine.py" in r.stdout
    records = verify_store(layout.unit_dir(qa / "sd2")).records
    assert records[-1]["type"] == "selftest"
    assert "machine.py" in records[-1]["body"]["checks"]["firmware integrity"]


def test_root_only_files_are_said_not_checked_and_others_still_fail(
    qa: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recorder's user cannot read root's 0600 NetworkManager keyfile: a
    flashed unit's self-test passed nothing before (PermissionError)."""
    from boot import card, selftest

    assert _provision(qa, "sd40", "BC-QA-000040").returncode == 0
    root = qa / "sd40"
    keyfile = root / card.USB0_KEYFILE
    real = Path.read_bytes
    refused = {keyfile}

    def as_the_recorder(path: Path) -> bytes:
        if path in refused:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", as_the_recorder)
    passed = selftest.check_firmware(root)
    assert passed.ok and card.USB0_KEYFILE in passed.line(), passed.line()
    # a file readable by all on the card that cannot be read is still a failure
    refused.add(root / "etc/sysusers.d/bodycam.conf")
    failed = selftest.check_firmware(root)
    assert not failed.ok and "PermissionError" in failed.reason, failed.line()


def test_reflash_refused_without_force_and_makes_new_keys_with_it(qa: Path) -> None:
    assert _provision(qa, "sd3", "BC-QA-000003").returncode == 0
    pem = layout.unit_dir(qa / "sd3") / "keys" / "device_ed25519.pem"
    old = pem.read_bytes()
    again = _provision(qa, "sd3", "BC-QA-000003")
    assert again.returncode == 1 and "already provisioned" in again.stderr
    assert pem.read_bytes() == old
    forced = _provision(qa, "sd3", "BC-QA-000003", "qa", "--force")
    assert forced.returncode == 0 and pem.read_bytes() != old


def test_a_serial_on_a_second_card_is_refused_unless_forced_and_revokes_the_first(
    qa: Path,
) -> None:
    assert _provision(qa, "sd7", "BC-QA-000005").returncode == 0
    dup = _provision(qa, "sd8", "BC-QA-000005")
    assert dup.returncode == 1 and "already active in the inventory" in dup.stderr
    assert "Traceback" not in dup.stderr
    assert not (layout.unit_dir(qa / "sd8") / "unit.toml").exists()  # nothing written
    forced = _provision(qa, "sd8", "BC-QA-000005", "qa", "--force")
    assert forced.returncode == 0, forced.stderr
    listed = _flash("inventory", "--agency", str(qa / "qa")).stdout.splitlines()
    rows = [line.split()[:2] for line in listed if line.startswith("BC-QA-000005")]
    assert rows == [["BC-QA-000005", "revoked"], ["BC-QA-000005", "active"]]


def test_a_careless_umask_leaves_nothing_writable_by_others(qa: Path) -> None:
    import os
    import stat

    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "flash.py"),
            str(qa / "sd15"),
            "--serial",
            "BC-QA-000015",
            "--officer",
            "OFFICER-1",
            "--password-file",
            str(qa / "pw"),
            "--agency",
            str(qa / "qa"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: os.umask(0),
    )
    assert r.returncode == 0, r.stderr
    loose = [
        str(p)
        for top in (qa / "sd15", qa / "qa")
        for p in top.rglob("*")
        if not p.is_symlink() and p.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    ]
    assert not loose, loose[:5]


def test_bad_serial_and_wrong_profile_agency_fail_clearly(qa: Path) -> None:
    r = _provision(qa, "sd4", "bad serial!")
    assert r.returncode == 1 and "serial" in r.stderr
    r = _flash(
        str(qa / "sd5"),
        "--serial",
        "BC-QA-5",
        "--officer",
        "O",
        "--password-file",
        str(qa / "pw"),
        "--profile",
        "production",
        "--agency",
        str(qa / "qa"),
    )
    assert r.returncode == 1 and "not a production agency" in r.stderr


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> bool:
    srv = socket.create_server(("127.0.0.1", 0))
    result = {}

    def serve() -> None:
        conn, _ = srv.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
                result["server"] = True
        except (ssl.SSLError, OSError):
            result["server"] = False

    t = threading.Thread(target=serve)
    t.start()
    ok = True
    try:
        with (
            socket.create_connection(srv.getsockname()[:2], timeout=5) as raw,
            client_ctx.wrap_socket(raw) as tls,
        ):
            tls.sendall(b"x")
            tls.recv(1)
    except (ssl.SSLError, OSError):
        ok = False
    t.join(5)
    srv.close()
    return ok and result.get("server", False)


def test_qa_unit_and_production_dock_refuse_each_other(qa: Path) -> None:
    assert (
        _flash(
            "agency-init", "--profile", "production", "--agency", str(qa / "production")
        ).returncode
        == 0
    )
    assert _provision(qa, "sdq", "BC-QA-000010").returncode == 0
    assert _provision(qa, "sdp", "BC-PR-000010", "production").returncode == 0

    def unit_ctx(target: str) -> ssl.SSLContext:
        tls = layout.unit_dir(qa / target) / "tls"
        return pki.server_context(tls / "unit.crt", tls / "unit.key", tls / "ca.crt")

    def dock_ctx(profile: str) -> ssl.SSLContext:
        a = qa / profile
        return pki.client_context(
            a / "docks" / "dock1.crt", a / "docks" / "dock1.key", a / "ca.crt"
        )

    assert _handshake(unit_ctx("sdq"), dock_ctx("qa"))  # the control: same CA works
    assert not _handshake(unit_ctx("sdq"), dock_ctx("production"))
    assert not _handshake(unit_ctx("sdp"), dock_ctx("qa"))


def test_systemd_units_verify(tmp_path: Path) -> None:
    prefix = tmp_path / "opt"
    (prefix / "venv" / "bin").mkdir(parents=True)
    exe = prefix / "venv" / "bin" / "bodycam"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    for name, text in flash.render_units(str(prefix), "/var/lib/bodycam").items():
        path = tmp_path / name
        path.write_text(text)
        r = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
        noise = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
        assert r.returncode == 0 and not noise, noise
    # the check can fail: a broken unit is reported
    bad = tmp_path / "broken.service"
    recorder = flash.render_units(str(prefix), "/var/lib/bodycam")["bodycam-recorder.service"]
    bad.write_text(recorder.replace("Type=notify", "Type=notifyy"))
    r = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True, text=True)
    assert "Failed to parse service type" in r.stdout + r.stderr


def test_flashed_root_makes_the_recorder_user_and_gives_it_the_unit(qa: Path) -> None:
    """systemd-sysusers and systemd-tmpfiles, run on the flashed root as at boot:
    the service's user exists with only its device groups and owns the unit."""
    assert _provision(qa, "sd9", "BC-QA-000009").returncode == 0
    root = qa / "sd9"
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc" / "group").write_text(
        "root:x:0:\nvideo:x:44:\naudio:x:29:\ngpio:x:997:\ni2c:x:998:\ndialout:x:20:\n"
    )
    for name in ("shadow", "gshadow"):
        (root / "etc" / name).touch()
    for cmd in (
        ["systemd-sysusers", f"--root={root}"],
        ["systemd-tmpfiles", f"--root={root}", "--create"],
    ):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    user = next(
        ln for ln in (root / "etc" / "passwd").read_text().splitlines() if ln.startswith("bodycam:")
    )
    uid = int(user.split(":")[2])
    assert uid != 0 and user.endswith("/usr/sbin/nologin")
    groups = {
        ln.split(":")[0]
        for ln in (root / "etc" / "group").read_text().splitlines()
        if ln.split(":")[3:] and "bodycam" in ln.split(":")[3].split(",")
    }
    assert groups == {"video", "audio", "gpio", "i2c", "dialout"}
    unit = layout.unit_dir(root)
    assert all(p.stat().st_uid == uid for p in [unit, *unit.rglob("*")])
    service = (root / "etc" / "systemd" / "system" / "bodycam-recorder.service").read_text()
    for line in (
        "User=bodycam",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"ReadWritePaths=/{layout.UNIT}",
        "CapabilityBoundingSet=CAP_SYS_TIME",
    ):
        assert line in service.splitlines(), line
    assert not [ln for ln in service.splitlines() if ln.startswith("After=")]


def test_unverified_clock_fails_the_pre_use_check(qa: Path) -> None:
    """No GPS time (the receiver's log is empty): the clock check FAILs, visibly."""
    assert _provision(qa, "sd6", "BC-QA-000006").returncode == 0
    gps = qa / "sd6" / layout.PREFIX / "sim" / "gps.nmea"
    gps.write_text("$GPGSV,1,1,00*79\r\n")
    r = _selftest(qa / "sd6")
    assert r.returncode == 1
    assert "FAIL clock: unverified" in r.stdout


def test_flash_image_makes_a_unit_card_from_a_pi_os_image(qa: Path, tmp_path: Path) -> None:
    """`flash.py image`: a (synthetic) Pi OS Lite image in, one unit's image
    out, read back without mounting; a bad image makes no unit at all."""
    from boot import card

    from .test_card_image import _build_image

    src = tmp_path / "pi-os-lite.img"
    _build_image(src, tmp_path)
    out = tmp_path / "BC-QA-000012.img"
    pw = qa / "pw.txt"
    pw.write_text("correct horse\n")
    common = [
        "--serial",
        "BC-QA-000012",
        "--officer",
        "OFFICER-Q",
        "--password-file",
        str(pw),
        "--agency",
        str(qa / "qa"),
    ]
    no_wheels = _flash("image", str(src), str(out), *common)
    assert no_wheels.returncode == 1 and "needs --wheelhouse" in no_wheels.stderr
    assert not out.exists()
    common.append("--without-venv")
    r = _flash("image", str(src), str(out), *common)
    assert r.returncode == 0, r.stderr
    assert "BEGIN" not in r.stdout + r.stderr
    unit_toml = card.read_file(out, 3, "/unit.toml").decode()
    assert 'serial = "BC-QA-000012"' in unit_toml
    key = card.stat_entry(out, 3, "/keys/device_ed25519.pem")
    assert key is not None and key.mode & 0o777 == 0o600
    assert '[devices.camera]\nbackend = "picamera2"' in unit_toml and "[sim]" not in unit_toml
    assert card.stat_entry(out, 2, f"/{layout.PREFIX}/sim/gps.nmea") is None  # no sample sky
    service = card.read_file(out, 2, "/etc/systemd/system/bodycam-recorder.service").decode()
    assert "User=bodycam" in service
    assert card.stat_entry(out, 2, "/etc/sysusers.d/bodycam.conf") is not None
    assert "include bodycam.txt" in card.read_file(out, 1, "config.txt").decode()
    assert "g_ether.dev_addr=" in card.read_file(out, 1, "cmdline.txt").decode()
    listed = _flash("inventory", "--agency", str(qa / "qa")).stdout
    assert "BC-QA-000012" in listed
    # the same serial again: refused (inventory), the image left as it is
    again = _flash("image", str(src), str(tmp_path / "again.img"), *common)
    assert again.returncode == 1 and "already active" in again.stderr
    # a file that is not an image: a clear error, no unit made, nothing recorded
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"not a disk image" * 100)
    bad = _flash(
        "image", str(junk), str(tmp_path / "bad.img"), *common[:1], "BC-QA-000013", *common[2:]
    )
    assert bad.returncode == 1 and "flash:" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad.img").exists()
    assert "BC-QA-000013" not in _flash("inventory", "--agency", str(qa / "qa")).stdout


def test_a_bad_wheelhouse_is_refused_before_any_key_is_made(qa: Path, tmp_path: Path) -> None:
    empty = tmp_path / "wheels"
    empty.mkdir()
    r = _provision(qa, "sd14", "BC-QA-000014", "qa", "--wheelhouse", str(empty))
    assert r.returncode == 1 and "wheelhouse" in r.stderr and "Traceback" not in r.stderr
    assert not (layout.unit_dir(qa / "sd14") / "keys").exists()
    units = qa / "sd1" / "etc" / "systemd" / "system"
    assert (units / "bodycam-recorder.service.requires" / "bodycam-venv.service").is_symlink()
    assert (units / "multi-user.target.wants" / "bodycam-venv.service").is_symlink()


def test_a_units_own_devices_file_is_checked_and_flashed(qa: Path, tmp_path: Path) -> None:
    good = tmp_path / "devices.toml"
    good.write_text(
        '[devices.microphone]\nbackend = "pyaudio"\ndevice = "(hw:0,1)"\n'
        '[devices.gps]\nbackend = "serial"\nport = "/dev/ttyS1"\n'
    )
    r = _provision(qa, "sd25", "BC-QA-000025", "qa", "--devices-file", str(good))
    assert r.returncode == 0, r.stderr
    toml = tomllib.loads((layout.unit_dir(qa / "sd25") / "unit.toml").read_text())
    assert toml["devices"] == tomllib.loads(good.read_text())["devices"] and "sim" not in toml
    for text, named in [
        ('[devices.microphone]\nbackend = "usb"\n', "[devices.microphone] backend = 'usb'"),
        ("[policy]\nsegment_s = 5\n", "only [devices.*] tables, not [policy]"),
        ("[devices.gps\n", "not TOML"),
    ]:
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        r = _provision(qa, "sd26", "BC-QA-000026", "qa", "--devices-file", str(bad))
        assert r.returncode == 1 and named in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not (layout.unit_dir(qa / "sd26") / "keys").exists()


def test_the_spoken_prompts_ship_with_the_unit(qa: Path) -> None:
    # a unit never runs espeak-ng: without these its speaker plays a stand-in tone
    from firmware.prompts import LANGS, PHRASES, PromptBank

    assert _provision(qa, "sd27", "BC-QA-000027").returncode == 0
    unit = layout.unit_dir(qa / "sd27")
    for lang in LANGS:
        bank = PromptBank(unit / "prompts", lang, render=False)
        for name in PHRASES:
            assert len(bank.pcm(name)) > 16_000, (name, lang)  # speech, not a short tone
        assert not bank.missing
    manifest = json.loads((qa / "sd27" / layout.MANIFEST).read_text())
    listed = {e["path"] for e in manifest["files"]}
    assert f"{layout.UNIT}/prompts/start_notice.zh.wav" in listed  # signed like the rest


def test_usb0_is_left_to_network_manager(qa: Path) -> None:
    # NetworkManager's 85-nm-unmanaged.rules unmanages USB gadgets; ours must
    # come after it (udev reads /etc and /usr/lib rules in one name order)
    assert _provision(qa, "sd28", "BC-QA-000028").returncode == 0
    rules = qa / "sd28" / "etc" / "udev" / "rules.d"
    ours = [p.name for p in rules.glob("*bodycam-usb0*")]
    assert ours == ["90-bodycam-usb0.rules"] and ours[0] > "85-nm-unmanaged.rules"
    text = (rules / ours[0]).read_text()
    rule = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert rule == [
        'SUBSYSTEM=="net", ACTION!="remove", KERNEL=="usb0", ENV{DEVTYPE}=="gadget", '
        'ENV{NM_UNMANAGED}="0"'
    ]
    manifest = json.loads((qa / "sd28" / layout.MANIFEST).read_text())
    assert "etc/udev/rules.d/90-bodycam-usb0.rules" in {e["path"] for e in manifest["files"]}


@pytest.mark.parametrize(
    "officer",
    ['O"Neil', "Smith\\Jones", "张三", "[devices.camera]", "x = 1", "Ñúñez-Αλέξης"],
)
def test_officer_names_in_any_script_round_trip(qa: Path, tmp_path: Path, officer: str) -> None:
    """unit.toml is written by a TOML writer: what looks like TOML in a name
    stays a name, in the file, in the chain and at the self-test's load."""
    from firmware import unitconfig
    from sealing.verify import verify_store

    target = tmp_path / "sd"
    r = _flash(str(target), "--serial", "BC-QA-000031", "--officer", officer, "--force",
               "--password-file", str(qa / "pw"), "--agency", str(qa / "qa"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    unit = layout.unit_dir(target)
    assert unitconfig.load(unit).unit.officer == officer
    assert unitconfig.load(unit).devices.all_simulated  # no table injected
    report = verify_store(unit / "store", keep=True)
    assert report.ok and report.chain[0].officer == officer


@pytest.mark.parametrize(
    ("officer", "says"),
    [
        ('x"\n[devices.camera]\nbackend = "none', "a control character"),
        ("张三\n", "a control character"),
        ("abc\u202edcba", "an invisible formatting character"),
        ("", "is empty"),
        ("x" * 65, "at most 64"),
    ],
)
def test_a_refused_name_says_why_and_leaves_nothing_behind(
    qa: Path, tmp_path: Path, officer: str, says: str
) -> None:
    target = tmp_path / "sd"
    before = _flash("inventory", "--agency", str(qa / "qa")).stdout
    r = _flash(str(target), "--serial", "BC-QA-000032", "--officer", officer,
               "--password-file", str(qa / "pw"), "--agency", str(qa / "qa"))  # fmt: skip
    assert r.returncode != 0 and says in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not target.exists() or not any(target.iterdir())
    assert _flash("inventory", "--agency", str(qa / "qa")).stdout == before
