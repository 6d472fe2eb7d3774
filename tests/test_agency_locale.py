"""The agency's language and time zone, chosen at agency-init and carried
to every unit it flashes; the regulations' own words spoken (issue 24)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from boot import layout
from firmware import unitconfig
from hal.wav import load_wav, read_pcm16, speech_wav
from sealing.verify import verify_store

ROOT = Path(__file__).resolve().parent.parent
# S0 art. 10 and art. 15, as the regulation prints them (not the firmware's table)
OPENING = "您好，为保护您的合法权益，监督我们的执法行为，本次执法将全程录音录像。"
CLOSING = "本次执法结束，感谢您的配合。"


def _flash(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "boot.flash", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def _unit(base: Path, agency: Path, target: str, serial: str, *extra: str) -> Path:
    r = _flash(
        str(base / target),
        "--serial",
        serial,
        "--officer",
        "张三",
        "--password-file",
        str(base / "pw"),
        "--profile",
        "qa",
        "--agency",
        str(agency),
        *extra,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return layout.unit_dir(base / target)


def _selftest(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "firmware.cli", "selftest", "--unit", str(unit)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("locale")
    (base / "pw").write_text("qa-password\n")
    return base


@pytest.mark.slow
def test_an_agency_made_with_defaults_makes_chinese_units_that_say_the_regulations_words(
    base: Path,
) -> None:
    agency = base / "zh"
    r = _flash("agency-init", "--profile", "qa", "--agency", str(agency))
    assert r.returncode == 0, r.stderr
    table = tomllib.loads((agency / "agency.toml").read_text())
    assert table["locale"] == {"language": "zh-CN", "timezone": "Asia/Shanghai"}
    unit = _unit(base, agency, "sd-zh", "BC-QA-000101")
    cfg = unitconfig.load(unit)
    assert (cfg.locale.language, cfg.locale.timezone) == ("zh-CN", "Asia/Shanghai")
    assert cfg.unit.officer == "张三"
    # the rendered prompts are the regulation's text, spoken (espeak-ng is
    # deterministic: a fresh render of the exact phrase is the same sound)
    for name, text in (("start_notice", OPENING), ("end_phrase", CLOSING)):
        fresh = speech_wav(text, base / f"{name}.fresh.wav", voice="cmn")
        shipped = load_wav(unit / "prompts" / f"{name}.zh.wav")
        assert np.array_equal(shipped, load_wav(fresh)), name
    assert (unit / "prompts" / "state_purpose.zh.wav").is_file()
    # shipped as the unit's own format (16 kHz mono PCM): read at each start
    # without a decoder, the same samples as decoding them
    for wav in sorted((unit / "prompts").glob("*.wav")):
        raw = read_pcm16(wav)
        assert raw is not None, wav.name
        assert np.array_equal(np.frombuffer(raw, "<i2"), load_wav(wav)), wav.name
    # make and model are sealed in the chain at flashing
    genesis = verify_store(unit / "store").records[0]
    assert genesis["body"]["device"] == {
        "make": "bodycam (open source)",
        "model": "simulated unit",
    }
    test = _selftest(unit)
    assert test.returncode == 0 and "FAIL" not in test.stdout, test.stdout + test.stderr


@pytest.mark.slow
def test_english_is_one_setting_away_for_an_agency_or_for_one_unit(base: Path) -> None:
    agency = base / "en"
    r = _flash(
        "agency-init", "--profile", "qa", "--agency", str(agency), "--language", "en",
        "--timezone", "Europe/London",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    unit = _unit(base, agency, "sd-en", "BC-QA-000102", "--model", "BC-1 Pi 5")
    cfg = unitconfig.load(unit)
    assert (cfg.locale.language, cfg.locale.timezone) == ("en", "Europe/London")
    assert cfg.unit.model == "BC-1 Pi 5"
    test = _selftest(unit)
    assert test.returncode == 0 and "FAIL" not in test.stdout, test.stdout + test.stderr
    # one unit of that agency in Chinese: its own setting wins
    zh = _unit(base, agency, "sd-en-zh", "BC-QA-000103", "--language", "zh-CN")
    assert unitconfig.load(zh).locale.language == "zh-CN"
    assert unitconfig.load(zh).locale.timezone == "Europe/London"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--language", "fr"], "invalid choice: 'fr'"),
        (["--timezone", "Mars/Olympus"], "is not an IANA zone name"),
        (["--timezone", "../../etc/passwd"], "is not an IANA zone name"),
    ],
)
def test_a_bad_language_or_zone_is_refused_and_nothing_is_made(
    base: Path, args: list[str], said: str
) -> None:
    agency = base / f"bad{abs(hash(tuple(args)))}"
    r = _flash("agency-init", "--profile", "qa", "--agency", str(agency), *args)
    assert r.returncode != 0 and said in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not agency.exists()


def test_a_unit_toml_locale_is_checked(tmp_path: Path) -> None:
    (tmp_path / "unit.toml").write_text('[locale]\nlanguage = "klingon"\n')
    with pytest.raises(unitconfig.ConfigError, match=r"unit.toml \[locale\] language 'klingon'"):
        unitconfig.load(tmp_path)
    (tmp_path / "unit.toml").write_text('[locale]\ntimezone = "Asia/Shanghai"\n')
    assert unitconfig.load(tmp_path).locale.language == "zh-CN"
