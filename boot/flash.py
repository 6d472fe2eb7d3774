"""QA provisioning: turn a blank unit (the root of a mounted SD card; a folder
in tests) into a provisioned, checked one, and keep an inventory.

    bodycam-flash agency-init --profile qa [--agency DIR] [--dock NAME]
    bodycam-flash TARGET --serial S --officer O --password-file F
                          [--profile qa|production] [--agency DIR] [--force]
    bodycam-flash image PI_OS_LITE.img OUT.img --serial S --officer O
                          --password-file F [--profile P] [--agency DIR] [--force]
    bodycam-flash check TARGET
    bodycam-flash inventory [--profile P] [--agency DIR] [--csv FILE]
    bodycam-flash city-cert [--profile P] [--agency DIR] [--name city]

docs/QA.md is the procedure. Keys are generated on the target (0600) and
never printed; an already provisioned target, or a serial already active in
the inventory (link/inventory.py), is refused without --force; --force
makes new keys (never reuses old ones) and marks the earlier unit revoked.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from boot import card, layout, wheelhouse
from firmware import prompts
from firmware.auth import set_password
from firmware.unitconfig import ConfigError, parse_devices
from hal.gps import SAMPLE_LOG
from hal.media import DeviceFault
from link import locale as link_locale
from link import pki
from link.inventory import REPROVISIONED, Inventory, cert_sha256
from link.locale import DEFAULT_LANGUAGE, DEFAULT_TIMEZONE, LANGUAGES, Locale, LocaleError
from sealing import canonical, keys
from sealing.age import Identity, Recipient
from sealing.files import no_group_write, write_durably
from sealing.layout import check_serial
from sealing.people import NameRefused, person_name
from sealing.unit import provision_unit

# The source tree this command installs from (it builds the unit's wheel
# from it): flashing runs from a checkout, never from an installed wheel.
ROOT = Path(__file__).resolve().parent.parent

PACKAGES = ("firmware", "capture", "sealing", "hal", "boot", "link")
FIRMWARE_VERSION = "0.1.0"
AGENCY_TOML = "agency.toml"  # [locale]: the agency's language and time zone
MAKE = "bodycam (open source)"
MODELS = {"pi": "Raspberry Pi body-worn unit", "sim": "simulated unit"}


class FlashError(Exception):
    pass


def default_agency(profile: str) -> Path:
    return Path.home() / ".bodycam-agency" / profile


def agency_init(agency: Path, profile: str, dock: str, locale: Locale | None = None) -> None:
    """A new agency; `locale` its language and time zone (default Simplified
    Chinese, Asia/Shanghai), carried to every unit it flashes and to its docks."""
    if (agency / "ca.key").exists():
        raise FlashError(f"{agency} already holds an agency CA")
    agency.mkdir(parents=True, exist_ok=True)
    write_durably(
        agency / AGENCY_TOML,
        (
            "# The agency's language and time zone: every unit flashed from here and\n"
            "# every dock it serves start from them (link/locale.py). Sealed records\n"
            "# keep UTC; only what people read is localised.\n"
            + tomli_w.dumps({"locale": (locale or Locale()).as_table()})
        ).encode(),
    )
    ca = pki.make_ca(profile)
    keys.write_secret(agency / "ca.key", pki.pem_key(ca.key))
    (agency / "ca.crt").write_bytes(pki.pem_cert(ca.cert))
    (agency / "profile").write_text(profile + "\n")
    ident = Identity.generate()
    # QA keeps the evidence identity here so `check` can decrypt; a production
    # agency holds it off the flashing station (docs/QA.md).
    keys.write_secret(
        agency / "evidence.key", f"# evidence identity ({profile})\n{ident}\n".encode()
    )
    (agency / "evidence.recipient").write_text(f"{ident.recipient}\n")
    add_dock(agency, dock)
    add_c2pa_signer(agency, "court")
    (agency / "escrow").mkdir(exist_ok=True)


def add_dock(agency: Path, name: str) -> None:
    ca = _load_ca(agency)
    d = agency / "docks"
    d.mkdir(exist_ok=True)
    if (d / f"{name}.key").exists():
        raise FlashError(f"dock {name} exists")
    key = Ed25519PrivateKey.generate()
    keys.write_secret(d / f"{name}.key", pki.pem_key(key))
    (d / f"{name}.crt").write_bytes(
        pki.pem_cert(pki.issue(ca, cn=name, role="dock", public_key=key.public_key()))
    )


def add_city(agency: Path, name: str) -> Path:
    """agency/city/NAME.crt + .key: the city server's client certificate, the
    only one a workstation's `bodycam-dock share` answers (docs/AGENCY.md)."""
    ca = _load_ca(agency)
    d = agency / "city"
    d.mkdir(exist_ok=True)
    if (d / f"{name}.key").exists():
        raise FlashError(f"city certificate {name} exists in {d}")
    key = Ed25519PrivateKey.generate()
    keys.write_secret(d / f"{name}.key", pki.pem_key(key))
    (d / f"{name}.crt").write_bytes(
        pki.pem_cert(pki.issue(ca, cn=name, role="city", public_key=key.public_key()))
    )
    return d / f"{name}.crt"


def add_c2pa_signer(agency: Path, name: str) -> Path:
    """agency/c2pa/NAME.crt + .key: what `dock.py export-case` signs court
    copies with. Made by agency-init; `flash.py c2pa-signer` makes one for an
    agency created before court copies existed, or a second one."""
    ca = _load_ca(agency)
    d = agency / "c2pa"
    d.mkdir(exist_ok=True)
    if (d / f"{name}.key").exists():
        raise FlashError(f"C2PA signer {name} exists in {d}")
    key = Ed25519PrivateKey.generate()
    keys.write_secret(d / f"{name}.key", pki.pem_key(key))
    cert = pki.issue_c2pa_signer(
        ca, cn=f"bodycam court copy signer {name}", public_key=key.public_key()
    )
    (d / f"{name}.crt").write_bytes(pki.pem_cert(cert))
    return d / f"{name}.crt"


def _load_ca(agency: Path) -> pki.Issued:
    try:
        key = serialization.load_pem_private_key((agency / "ca.key").read_bytes(), None)
        cert = x509.load_pem_x509_certificate((agency / "ca.crt").read_bytes())
    except (OSError, ValueError) as exc:
        raise FlashError(f"no usable agency CA in {agency}: {exc}") from None
    assert isinstance(key, Ed25519PrivateKey)
    return pki.Issued(key, cert)


def _docks(agency: Path) -> list[Ed25519PublicKey]:
    out = []
    for crt in sorted((agency / "docks").glob("*.crt")):
        pub = x509.load_pem_x509_certificate(crt.read_bytes()).public_key()
        assert isinstance(pub, Ed25519PublicKey)
        out.append(pub)
    if not out:
        raise FlashError(f"no enrolled docks in {agency}/docks")
    return out


def provision(
    target: Path,
    *,
    serial: str,
    officer: str,
    password: str,
    profile: str,
    agency: Path,
    force: bool,
    record: bool = True,
    devices: str = "sim",
    wheels: Path | None = None,
    arch: str | None = None,
    devices_toml: str | None = None,
    language: str | None = None,
    timezone: str | None = None,
    make: str = MAKE,
    model: str | None = None,
) -> dict[str, str]:
    """Provision `target` (a root file system, or a staging folder); `record`
    adds the unit to the inventory (an image is recorded once it is written).
    `arch`: the root's architecture, which the wheelhouse must fit (default:
    what the target's own programs are built for, else the Pi's arm64).
    `devices_toml`: this unit's own [devices.*] tables, instead of `devices`'."""
    check_serial(serial)
    try:
        officer = person_name(officer, "--officer")
    except NameRefused as exc:
        raise FlashError(str(exc)) from None
    devices_table = check_devices_toml(devices_toml) if devices_toml is not None else None
    if (agency / "profile").read_text().strip() != profile:
        raise FlashError(f"{agency} is not a {profile} agency")
    locale = unit_locale(agency, language, timezone)
    device = {
        "make": _device_text("--make", make),
        "model": _device_text("--model", model or MODELS[devices]),
    }
    unit = layout.unit_dir(target)
    if (unit / "unit.toml").exists() and not force:
        raise FlashError(
            f"{target} is already provisioned "
            f"({(unit / 'unit.toml').read_text().splitlines()[1]}); "
            "use --force to wipe it and make new keys"
        )
    inventory = Inventory(agency)
    try:
        known = inventory.active(serial)
    finally:
        inventory.close()
    if known is not None and not force:
        raise FlashError(
            f"serial {serial} is already active in the inventory (provisioned {known.date}, "
            f"device key {known.device_key[:16]}); use --force to revoke that unit and "
            "provision this one"
        )
    if (unit / "unit.toml").exists():
        shutil.rmtree(unit)  # new keys, never the old ones
        shutil.rmtree(target / layout.PREFIX, ignore_errors=True)
    if wheels is not None:  # refuse a bad wheelhouse before any key is made
        arch = arch or root_arch(target)
        problems = wheelhouse.check(wheels, arch=arch)
        if problems:
            raise FlashError(f"wheelhouse {wheels} ({arch}): " + "; ".join(problems[:5]))
    ca = _load_ca(agency)
    recipient = Recipient.parse((agency / "evidence.recipient").read_text())
    _install_firmware(target, sample_gps=devices == "sim")
    if wheels is not None:  # the first boot makes the venv from these, offline
        prefix = target / layout.PREFIX
        wheelhouse.install_wheelhouse(wheels, prefix)
        wheelhouse.project_wheel(ROOT, prefix / "wheels", wheels / wheelhouse.BUILD_DIR)
    _install_system(target)
    key0 = provision_unit(
        unit,
        serial=serial,
        officer=officer,
        recipient=recipient,
        docks=_docks(agency),
        device=device,
    )
    tls = unit / "tls"
    tls.mkdir()
    tls_key = Ed25519PrivateKey.generate()
    keys.write_secret(tls / "unit.key", pki.pem_key(tls_key))
    cert = pki.issue(
        ca,
        cn=serial,
        role="unit",
        public_key=tls_key.public_key(),
        hosts=["192.168.7.2", "127.0.0.1", serial.lower()],
    )
    (tls / "unit.crt").write_bytes(pki.pem_cert(cert))
    (tls / "ca.crt").write_bytes(pki.pem_cert(ca.cert))
    set_password(unit, password)
    _install_prompts(unit, agency)
    config: dict[str, Any] = {
        "unit": {
            "serial": serial,
            "officer": officer,
            "profile": profile,
            "firmware_version": FIRMWARE_VERSION,
            **device,
        },
        "locale": locale.as_table(),
        "export": {"address": "::", "port": 8443},
        "clock": {"max_holdover_h": 24},
    }
    config |= devices_table or (PI_DEVICES if devices == "pi" else sim_section())
    # a TOML writer, never string formatting: a name like O"Neil or one with a
    # table header in it stays a name
    write_durably(unit / "unit.toml", tomli_w.dumps(config).encode())
    (agency / "escrow").mkdir(exist_ok=True)
    escrow = agency / "escrow" / f"{serial}.fss"
    if escrow.exists():  # a re-flash: keep the old unit's key beside it, never lose one
        escrow.rename(escrow.with_name(f"{serial}.{int(escrow.stat().st_mtime)}.fss"))
    keys.write_secret(escrow, keys.escrow_text(key0).encode())
    _write_manifest(target, ca)
    unit_keys = keys.UnitKeys.load(unit / "keys")
    row = {
        "serial": serial,
        "officer": officer,
        "profile": profile,
        "device_key": keys.fingerprint(unit_keys.public),
        "tls_cert_sha256": cert_sha256(cert.public_bytes(serialization.Encoding.DER)),
        "firmware": FIRMWARE_VERSION,
        "date": dt.datetime.now(dt.UTC).isoformat(),
    }
    if record:
        add_to_inventory(agency, row)
    return row


def add_to_inventory(agency: Path, row: dict[str, str]) -> None:
    inventory = Inventory(agency)
    try:
        inventory.add(row, revoke_reason=REPROVISIONED)  # on row["date"], the revocation's date
    finally:
        inventory.close()


def image(
    source: Path,
    out: Path,
    *,
    serial: str,
    officer: str,
    password: str,
    profile: str,
    agency: Path,
    force: bool,
    devices: str = "pi",
    wheels: Path | None = None,
    data_size: int = card.DEFAULT_DATA_SIZE,
    devices_toml: str | None = None,
    **unit: Any,
) -> tuple[dict[str, str], card.CardReport]:
    """A Raspberry Pi OS Lite image in, one provisioned unit's image out (to be
    written to a card with bmaptool or dd). The unit is staged in a private
    temporary folder (its secrets never stay on the station) and copied into
    the image: the unit directory onto a new data partition of `data_size`
    bytes, the rest onto the root partition; config.txt and cmdline.txt are
    edited in place on the boot partition. Nothing is mounted. `unit`:
    provision's language, timezone, make and model."""
    if out.exists() and not force:
        raise FlashError(f"{out} exists; use --force to replace it")
    card.check_source(source)  # refuse a bad image before any key is made
    try:  # the wheelhouse must fit the card's programs (a Pi's arm64, an emulator's amd64)
        arch = wheelhouse.elf_arch(card.read_file(source, 2, ARCH_PROBE)[:20])
    except card.CardError:
        arch = None
    with tempfile.TemporaryDirectory(prefix="bodycam-stage-") as stage:
        row = provision(
            Path(stage),
            serial=serial,
            officer=officer,
            password=password,
            profile=profile,
            agency=agency,
            force=force,
            record=False,
            devices=devices,
            wheels=wheels,
            arch=arch or wheelhouse.UNIT_ARCH,
            devices_toml=devices_toml,
            **unit,
        )
        report = card.write_image(
            source, out, root_tree=Path(stage), serial=serial, data_size=data_size
        )
    add_to_inventory(agency, row)
    return row, report


# Any program of the root tells its architecture (ELF e_machine)
ARCH_PROBE = "usr/bin/true"


def root_arch(target: Path) -> str:
    """The architecture of a root folder's programs; the Pi's arm64 where it
    has none to tell (a staging folder, a test's folder)."""
    probe = target / ARCH_PROBE
    if not probe.is_file():
        return wheelhouse.UNIT_ARCH
    with probe.open("rb") as f:
        return wheelhouse.elf_arch(f.read(20)) or wheelhouse.UNIT_ARCH


def _install_firmware(target: Path, *, sample_gps: bool) -> None:
    """The packages of this tree, as source (signed by the manifest; the unit
    runs the wheel built from the same tree, installed from opt/bodycam/wheels
    at first boot)."""
    src = target / layout.PREFIX / "src"
    for pkg in PACKAGES:
        shutil.copytree(
            ROOT / pkg,
            src / pkg,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    shutil.copy2(ROOT / "pyproject.toml", src / "pyproject.toml")
    shutil.copytree(ROOT / "docs", src / "docs", dirs_exist_ok=True)
    if sample_gps:  # a simulated unit's sky; a Pi unit listens to its receiver
        sim = target / layout.PREFIX / "sim"
        sim.mkdir(parents=True, exist_ok=True)
        shutil.copy2(SAMPLE_LOG, sim / "gps.nmea")
    _no_write_for_others(target / layout.PREFIX)


def _no_write_for_others(tree: Path) -> None:
    """Copies keep their source's mode, and a checkout made under umask 002
    is group-writable: what a unit runs is writable by its owner alone."""
    for p in [tree, *tree.rglob("*")]:
        if not p.is_symlink():
            mode = p.stat().st_mode
            if mode & 0o022:
                p.chmod(mode & 0o7755)


def sim_section() -> dict[str, Any]:
    """unit.toml for a simulated unit (QA in a folder, the tests, the demo)."""
    return {"sim": {"gps_log": f"{layout.PREFIX}/sim/gps.nmea", "battery": 100}}


# unit.toml for a Raspberry Pi unit (docs/HARDWARE.md). Only run against the
# library doubles: check each device on the first Pi (docs/HARDWARE.md).
PI_DEVICES: dict[str, Any] = {
    "devices": {
        "camera": {
            "backend": "picamera2",
            "size": "1920x1080",
            "fps": 30,
            "bitrate": 8000000,
            "autofocus": True,
        },
        "microphone": {"backend": "pyaudio", "device": "USB Audio"},
        "speaker": {"backend": "pyaudio"},
        "gpio": {"backend": "pi"},
        "gps": {"backend": "serial", "port": "/dev/ttyAMA0", "baud": 9600},
        "battery": {"backend": "max17048", "bus": 1},
        "storage": {"backend": "fs"},
        "rtc": {"backend": "linux"},
    }
}


def _install_prompts(unit: Path, agency: Path) -> None:
    """The spoken phrases, rendered here with espeak-ng (a unit never runs it)
    into unit/prompts: without them a unit's real speaker plays a stand-in
    tone for every phrase. Rendered once per agency folder and phrase text."""
    # the format is part of the key: a folder rendered before the prompts
    # shipped as 16 kHz PCM is rendered again
    text = json.dumps([prompts.PHRASES, prompts.LANGS, "pcm16@16000"], sort_keys=True,
                      ensure_ascii=False)  # fmt: skip
    rendered = agency / "prompts" / hashlib.sha256(text.encode()).hexdigest()[:16]
    if not rendered.is_dir():
        partial = rendered.with_name(rendered.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        try:
            prompts.build_all(partial)
        except (DeviceFault, subprocess.CalledProcessError) as exc:
            raise FlashError(f"rendering the spoken prompts: {exc}") from None
        partial.rename(rendered)
    shutil.copytree(rendered, unit / "prompts")
    _no_write_for_others(unit / "prompts")


def check_devices_toml(text: str) -> dict[str, Any]:
    """A `--devices-file`: only [devices.*] tables, each key as unit.toml
    allows it (firmware/unitconfig.py), or FlashError naming what is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FlashError(f"--devices-file: not TOML: {exc}") from None
    other = sorted(set(data) - {"devices"})
    if other:
        raise FlashError(f"--devices-file: only [devices.*] tables, not [{other[0]}]")
    try:
        parse_devices(data.get("devices"))
    except ConfigError as exc:
        raise FlashError(f"--devices-file: {exc}") from None
    return data


# boot/files -> where on the root: the recorder's user and its device groups,
# the unit directory's owner, the RTC's group, the hardware watchdog
SYSTEM_FILES = {
    "bodycam.sysusers": "etc/sysusers.d/bodycam.conf",
    "bodycam.tmpfiles": "etc/tmpfiles.d/bodycam.conf",
    "bodycam-rtc.rules": "etc/udev/rules.d/60-bodycam-rtc.rules",
    # after NetworkManager's 85-nm-unmanaged.rules, which it overrides
    "bodycam-usb0.rules": "etc/udev/rules.d/90-bodycam-usb0.rules",
    "watchdog.conf": "etc/systemd/system.conf.d/bodycam-watchdog.conf",
}


def render_units(prefix: str, unit: str) -> dict[str, str]:
    files = ROOT / "boot" / "files"
    return {
        name: (files / name).read_text().replace("@PREFIX@", prefix).replace("@UNIT@", unit)
        for name in ("bodycam-recorder.service", "bodycam-venv.service")
    }


def _install_system(target: Path) -> None:
    """Our files on the root file system. The boot partition's config.txt and
    cmdline.txt are edited in place by `flash.py image` (boot/card.py)."""
    files = ROOT / "boot" / "files"
    sysd = target / "etc" / "systemd" / "system"
    sysd.mkdir(parents=True, exist_ok=True)
    for name, text in render_units(f"/{layout.PREFIX}", f"/{layout.UNIT}").items():
        (sysd / name).write_text(text)
    # enabled as `systemctl enable` would: the recorder, and the venv maker
    # that it requires (first boot only: it stops once venv/bin/bodycam exists)
    for wants, name in (
        ("multi-user.target.wants", "bodycam-recorder.service"),
        ("multi-user.target.wants", "bodycam-venv.service"),
        ("bodycam-recorder.service.requires", "bodycam-venv.service"),
    ):
        (sysd / wants).mkdir(exist_ok=True)
        link = sysd / wants / name
        if not link.is_symlink():
            link.symlink_to(f"../{name}")
    nm = target / card.USB0_KEYFILE
    nm.parent.mkdir(parents=True, exist_ok=True)
    nm.unlink(missing_ok=True)  # a re-flash writes it anew
    keys.write_secret(nm, card.usb0_keyfile().encode())  # NetworkManager wants 0600
    for src, dest in SYSTEM_FILES.items():
        path = target / dest
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(files / src, path)
        path.chmod(0o644)


def _write_manifest(target: Path, ca: pki.Issued) -> None:
    entries = []
    for p in sorted(target.rglob("*")):
        rel = str(p.relative_to(target))
        if not p.is_file() or p.is_symlink() or not layout.covered(rel):
            continue
        entries.append(
            {
                "path": rel,
                "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                "size": p.stat().st_size,
                "mode": oct(p.stat().st_mode & 0o777),
            }
        )
    data = json.dumps({"firmware": FIRMWARE_VERSION, "files": entries}, indent=1).encode()
    (target / layout.MANIFEST).write_bytes(data)
    (target / layout.MANIFEST_SIG).write_text(canonical.b64(ca.key.sign(data)) + "\n")


# Long enough for one rollover (segments end where the AAC grid meets a keyframe: 8 s)
CHECK_SCENARIO = """seconds = 12
size = "320x180"
clock = "synced"
segment_seconds = 8
prerecord_seconds = 1
[[at]]
t = 0.5
press = "record"
[[at]]
t = 10
hold = "record"
"""


def check(target: Path) -> list[tuple[str, bool, str]]:
    """Boot the unit in simulation from that root, running the firmware
    installed there (not this tree): self-test, a short scripted recording,
    then verification of the store."""
    from sealing.verify import verify_store

    target = target.resolve()  # the checks run from inside the target's tree
    unit = layout.unit_dir(target)
    src = target / layout.PREFIX / "src"
    env = {**os.environ, "PYTHONPATH": str(src)}
    out: list[tuple[str, bool, str]] = []
    st = subprocess.run(
        [sys.executable, "-m", "firmware.cli", "selftest", "--unit", str(unit)],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    for line in st.stdout.splitlines():
        if line.startswith(("PASS ", "FAIL ")):
            name, _, reason = line[5:].partition(": ")
            out.append((name, line.startswith("PASS"), reason))
    if not out:
        out.append(("selftest", False, (st.stderr or st.stdout).strip()[-300:]))
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Path(tmp) / "check.toml"
        scenario.write_text(CHECK_SCENARIO)
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "firmware.cli",
                "run",
                "--unit",
                str(unit),
                "--sim",
                "--scenario",
                str(scenario),
            ],
            cwd=src,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    sealed = sum(1 for line in run.stdout.splitlines() if line.startswith("sealed "))
    out.append(
        (
            "scripted recording",
            run.returncode == 0 and sealed >= 2,
            f"exit {run.returncode}, {sealed} segments sealed {run.stderr.strip()[-200:]}",
        )
    )
    report = verify_store(unit)
    out.append(("store verifies", report.ok, "" if report.ok else str(report.problems[0])))
    return out


def keep_report(agency: Path, unit: Path, results: list[tuple[str, bool, str]]) -> Path:
    """The acceptance check's result, signed by the station's agency CA and
    kept per unit (`reports/<serial>/<UTC time>.json` + `.sig`): what QA
    found, on which unit (its device key), by which station, when."""
    cfg = tomllib.loads((unit / "unit.toml").read_text())["unit"]
    pub = keys.UnitKeys.load(unit / "keys").public
    now = dt.datetime.now(dt.UTC)
    report = {
        "serial": cfg["serial"],
        "device_key": keys.fingerprint(pub),
        "firmware": cfg.get("firmware_version", ""),
        "station": socket.gethostname(),
        "date": now.isoformat(),
        "passed": all(ok for _, ok, _ in results),
        "checks": [{"name": n, "ok": ok, "reason": r} for n, ok, r in results],
    }
    data = canonical.encode(report)
    ca = _load_ca(agency)
    folder = agency / "reports" / str(cfg["serial"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{now.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_bytes(data)
    path.with_suffix(".sig").write_text(canonical.b64(ca.key.sign(data)) + "\n")
    return path


def unit_locale(agency: Path, language: str | None, timezone: str | None) -> Locale:
    """The agency's agency.toml [locale] (defaults without one), with this
    unit's --language and --timezone over it."""
    try:
        table = link_locale.load(agency / AGENCY_TOML).as_table()
        if language is not None:
            table["language"] = language
        if timezone is not None:
            table["timezone"] = timezone
        return link_locale.parse(table, "--language/--timezone")
    except LocaleError as exc:
        raise FlashError(str(exc)) from None


def _device_text(flag: str, value: str) -> str:
    if not value or len(value) > 64 or not value.isprintable() or value != value.strip():
        raise FlashError(f"{flag} {value!r}: 1 to 64 printable characters, no edge spaces")
    return value


def _locale_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--language",
        choices=sorted(LANGUAGES),
        help="what its people read and hear (default: the agency's, agency.toml; "
        f"a new agency: {DEFAULT_LANGUAGE})",
    )
    p.add_argument(
        "--timezone",
        metavar="ZONE",
        help=f"the IANA time zone shown (default: the agency's; a new one: {DEFAULT_TIMEZONE})",
    )


def _unit_options(p: argparse.ArgumentParser) -> None:
    _locale_options(p)
    p.add_argument("--make", default=MAKE, help=f"the device's make, sealed (default {MAKE!r})")
    p.add_argument(
        "--model",
        help="the device's model, sealed (default: "
        + ", ".join(f"{k}: {v!r}" for k, v in MODELS.items())
        + ")",
    )
    p.add_argument("--serial", required=True)
    p.add_argument("--officer", required=True)
    p.add_argument(
        "--password-file",
        type=Path,
        required=True,
        help="the officer's export password (first line)",
    )
    p.add_argument("--profile", choices=pki.PROFILES, default="qa")
    p.add_argument("--agency", type=Path)
    p.add_argument("--force", action="store_true")
    p.add_argument(
        "--wheelhouse",
        type=Path,
        help="the aarch64 wheelhouse (`python -m boot.wheelhouse build DIR --project .`): "
        "the unit makes its venv from it at first boot, offline",
    )
    p.add_argument(
        "--devices",
        choices=("sim", "pi"),
        help="the unit.toml [devices]: simulated (default for a folder) or the Pi's "
        "(default for an image)",
    )
    p.add_argument(
        "--devices-file",
        type=Path,
        help="this unit's own unit.toml [devices.*] tables (another microphone, a GPS "
        "on another port...), checked, instead of --devices' (docs/HARDWARE.md)",
    )


def _unit_args(a: argparse.Namespace, *, devices: str) -> dict[str, Any]:
    """The keyword arguments of `provision` and `image` from `_unit_options`."""
    return {
        "serial": a.serial,
        "officer": a.officer,
        "password": _password(a.password_file),
        "profile": a.profile,
        "agency": a.agency or default_agency(a.profile),
        "force": a.force,
        "devices": a.devices or devices,
        "wheels": a.wheelhouse,
        "devices_toml": _devices_file(a.devices_file),
        "language": a.language,
        "timezone": a.timezone,
        "make": a.make,
        "model": a.model,
    }


def _devices_file(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise FlashError(f"--devices-file {path}: unreadable: {exc}") from None


def _password(path: Path) -> str:
    password = path.read_text().splitlines()[0] if path.exists() else ""
    if not password:
        raise FlashError(f"no password in {path}")
    return password


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # whatever umask the station's shell has (000 leaves keys and the CA
    # world-writable), what we write is readable by others at most; secrets
    # are 0600 regardless (keys.write_secret)
    no_group_write()
    try:
        if argv[:1] == ["agency-init"]:
            p = argparse.ArgumentParser(prog="flash.py agency-init")
            p.add_argument("--profile", choices=pki.PROFILES, required=True)
            p.add_argument("--agency", type=Path)
            p.add_argument("--dock", default="dock1")
            _locale_options(p)
            a = p.parse_args(argv[1:])
            agency = a.agency or default_agency(a.profile)
            try:
                locale = link_locale.parse(
                    {
                        k: v
                        for k, v in (("language", a.language), ("timezone", a.timezone))
                        if v is not None
                    },
                    "--language/--timezone",
                )
            except LocaleError as exc:
                raise FlashError(str(exc)) from None
            agency_init(agency, a.profile, a.dock, locale)
            print(f"agency ({a.profile}) created in {agency}")
            return 0
        if argv[:1] == ["c2pa-signer"]:
            p = argparse.ArgumentParser(
                prog="flash.py c2pa-signer",
                description="issue a certificate for signing court copies (C2PA)",
            )
            p.add_argument("--profile", choices=pki.PROFILES, default="qa")
            p.add_argument("--agency", type=Path)
            p.add_argument("--name", default="court")
            a = p.parse_args(argv[1:])
            crt = add_c2pa_signer(a.agency or default_agency(a.profile), a.name)
            print(f"C2PA signer certificate {crt} (key beside it, mode 0600)")
            return 0
        if argv[:1] == ["city-cert"]:
            p = argparse.ArgumentParser(
                prog="flash.py city-cert",
                description="issue the city server's certificate (bodycam-dock city-pull)",
            )
            p.add_argument("--profile", choices=pki.PROFILES, default="qa")
            p.add_argument("--agency", type=Path)
            p.add_argument("--name", default="city")
            a = p.parse_args(argv[1:])
            crt = add_city(a.agency or default_agency(a.profile), a.name)
            print(f"city server certificate {crt} (key beside it, mode 0600)")
            return 0
        if argv[:1] == ["inventory"]:
            p = argparse.ArgumentParser(prog="flash.py inventory")
            p.add_argument("--profile", choices=pki.PROFILES, default="qa")
            p.add_argument("--agency", type=Path)
            p.add_argument("--csv", type=Path, help="write the table to this CSV file")
            a = p.parse_args(argv[1:])
            inv = Inventory(a.agency or default_agency(a.profile))
            try:
                if a.csv:
                    print(f"{inv.export_csv(a.csv)} units written to {a.csv}")
                for r in inv.rows():
                    print(
                        f"{r['serial']:16} {r['status']:8} {str(r['date'])[:19]} "
                        f"key {str(r['device_key'])[:16]} officer {r['officer']}"
                    )
            finally:
                inv.close()
            return 0
        if argv[:1] == ["image"]:
            p = argparse.ArgumentParser(
                prog="flash.py image",
                description="a Raspberry Pi OS Lite image in, a provisioned unit's image out",
            )
            p.add_argument("source", type=Path, help="the Raspberry Pi OS Lite image (.img)")
            p.add_argument("out", type=Path, help="the unit's image to write")
            _unit_options(p)
            p.add_argument(
                "--without-venv",
                action="store_true",
                help="no wheelhouse: the card will not run until a venv is made (tests)",
            )
            p.add_argument(
                "--data-size",
                default="8G",
                help="the evidence store's partition after the root, e.g. 8G or 512M "
                "(binary units, rounded up to 4M; default 8G): fixed, it does not grow "
                "with the card (docs/BOOT.md)",
            )
            a = p.parse_args(argv[1:])
            try:  # a usage error: refused before anything is made
                data_size = card.parse_size(a.data_size)
            except card.CardError as exc:
                print(f"flash image: {exc}", file=sys.stderr)
                return 2
            if a.wheelhouse is None and not a.without_venv:
                raise FlashError(
                    "a unit image needs --wheelhouse DIR (its venv is made from it at first "
                    "boot, offline); --without-venv makes a card that cannot record yet"
                )
            row, report = image(a.source, a.out, **_unit_args(a, devices="pi"), data_size=data_size)
            print(
                f"image {a.out}: {row['serial']} ({a.profile}) device key "
                f"{row['device_key'][:16]}; usb0 MACs {report.host_mac} {report.dev_mac}; "
                f"data partition PARTUUID={report.data_partuuid} "
                f"({report.data_size // card.MIB}M) at /{layout.UNIT}; "
                f"masked {', '.join(report.masked)}"
            )
            return 0
        if argv[:1] == ["check"]:
            p = argparse.ArgumentParser(prog="flash.py check")
            p.add_argument("target", type=Path)
            p.add_argument("--agency", type=Path, help="default: the unit's profile's agency")
            a = p.parse_args(argv[1:])
            toml_path = layout.unit_dir(a.target) / "unit.toml"
            if not toml_path.exists():
                raise FlashError(f"{a.target} is not a provisioned unit")
            results = check(a.target)
            for name, ok, reason in results:
                print(f"PASS {name}" if ok else f"FAIL {name}: {reason}")
            unit_cfg = tomllib.loads(toml_path.read_text())["unit"]
            agency = a.agency or default_agency(str(unit_cfg["profile"]))
            kept = keep_report(agency, layout.unit_dir(a.target), results)
            print(f"report {kept} (signed by the agency CA)")
            return 0 if all(ok for _, ok, _ in results) else 1
        p = argparse.ArgumentParser(prog="flash.py", description=__doc__.split("\n")[0])
        p.add_argument("target", type=Path)
        _unit_options(p)
        a = p.parse_args(argv)
        row = provision(a.target, **_unit_args(a, devices="sim"))
        print(f"provisioned {row['serial']} ({a.profile}) device key {row['device_key'][:16]}")
        return 0
    except (FlashError, ValueError, OSError) as exc:
        print(f"flash: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
