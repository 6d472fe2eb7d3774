"""The agency's language and time zone (link/locale.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from link.locale import Locale, LocaleError, load, parse

NOON_UTC = int(datetime(2026, 12, 2, 1, 40, 31, tzinfo=UTC).timestamp() * 1e6)


def test_the_defaults_are_simplified_chinese_and_beijing_time() -> None:
    loc = parse(None)
    assert (loc.language, loc.timezone, loc.gettext_locale) == ("zh-CN", "Asia/Shanghai", "zh_CN")
    assert loc.local_text(NOON_UTC) == "2026-12-02 09:40:31 +08:00"


def test_english_and_another_zone_are_one_setting_away(tmp_path: Path) -> None:
    (tmp_path / "agency.toml").write_text('[locale]\nlanguage = "en"\ntimezone = "UTC"\n')
    loc = load(tmp_path / "agency.toml")
    assert loc == Locale("en", "UTC") and loc.local_text(NOON_UTC) == "2026-12-02 01:40:31 +00:00"
    assert load(tmp_path / "absent.toml") == Locale()


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ({"language": "fr"}, "language 'fr'"),
        ({"timezone": "Mars/Olympus"}, "not an IANA zone"),
        ({"timezone": "../../etc/passwd"}, "not an IANA zone"),
        ({"timezone": 8}, "not an IANA zone"),
        ({"lang": "en"}, "unknown key 'lang'"),
        ("zh", "must be a table"),
    ],
)
def test_bad_settings_are_refused_by_name(table: object, says: str) -> None:
    with pytest.raises(LocaleError, match=says.replace("(", r"\(")):
        parse(table)


def test_a_machine_without_a_zone_database_is_told_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the emulated unit: a card without Debian's tzdata refused its
    own unit.toml as if 'Asia/Shanghai' were no zone. The refusal names the
    missing database instead (boot/unit-debian-packages.txt lists tzdata)."""
    import zoneinfo

    from link import locale

    def no_zone(name: str) -> zoneinfo.ZoneInfo:
        raise zoneinfo.ZoneInfoNotFoundError(name)

    monkeypatch.setattr(locale, "ZoneInfo", no_zone)
    monkeypatch.setattr(locale, "available_timezones", set)
    with pytest.raises(LocaleError, match="no time zone database .*tzdata"):
        parse({"language": "zh-CN", "timezone": "Asia/Shanghai"})
    packages = (
        Path(__file__).resolve().parent.parent / "boot/unit-debian-packages.txt"
    ).read_text()
    assert "\ntzdata\n" in packages
