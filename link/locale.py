"""The agency's language and time zone: chosen at `agency-init`, carried to
every unit at flashing (unit.toml [locale]) and to every dock (dock.toml
[locale]); a unit or a dock may override them. Records keep UTC
microseconds whatever these say: only what people read is localised.

    [locale]
    language = "zh-CN"        # or "en"
    timezone = "Asia/Shanghai"  # an IANA zone

Simplified Chinese and Beijing time are the defaults: the regulations this
recorder serves are Chinese, and so are its officers, supervisors and courts.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

# language tag -> the gettext catalog's locale name
LANGUAGES = {"zh-CN": "zh_CN", "en": "en"}
DEFAULT_LANGUAGE = "zh-CN"
DEFAULT_TIMEZONE = "Asia/Shanghai"
MAX_FILE = 64 * 1024


class LocaleError(ValueError):
    """A language or zone that is not one of ours; the text names it."""


@dataclass(frozen=True)
class Locale:
    language: str = DEFAULT_LANGUAGE
    timezone: str = DEFAULT_TIMEZONE

    @property
    def gettext_locale(self) -> str:
        return LANGUAGES[self.language]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local(self, utc_us: int) -> datetime:
        return datetime.fromtimestamp(utc_us / 1e6, UTC).astimezone(self.zone)

    def local_text(self, utc_us: int) -> str:
        """`2026-12-02 09:40:31 +08:00`: local time with its offset, as the
        watermark, the page and the court report show it."""
        try:
            when = self.local(utc_us)
        except (ValueError, OverflowError, OSError):
            return f"{utc_us} us"
        offset = when.strftime("%z")
        return when.strftime("%Y-%m-%d %H:%M:%S ") + f"{offset[:3]}:{offset[3:]}"

    def as_table(self) -> dict[str, str]:
        return {"language": self.language, "timezone": self.timezone}


def parse(table: Any, where: str = "[locale]") -> Locale:
    """A [locale] table; missing keys take the defaults."""
    if table is None:
        return Locale()
    if not isinstance(table, dict):
        raise LocaleError(f"{where} must be a table")
    unknown = sorted(set(table) - {"language", "timezone"})
    if unknown:
        raise LocaleError(f"{where} has an unknown key {unknown[0]!r}")
    language = table.get("language", DEFAULT_LANGUAGE)
    if language not in LANGUAGES:
        raise LocaleError(f"{where} language {language!r}: one of {', '.join(sorted(LANGUAGES))}")
    timezone = table.get("timezone", DEFAULT_TIMEZONE)
    check_zone(timezone, where)
    return Locale(language, timezone)


def check_zone(name: object, where: str = "timezone") -> str:
    if not isinstance(name, str) or not name or len(name) > 64 or ".." in name:
        raise LocaleError(f"{where} timezone {name!r} is not an IANA zone name")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        if not available_timezones():  # not the name's fault: the machine has no zones
            raise LocaleError(
                f"{where} timezone {name!r}: this system has no time zone database "
                "(install Debian's tzdata)"
            ) from None
        raise LocaleError(f"{where} timezone {name!r} is not an IANA zone name") from None
    return name


def load(path: Path) -> Locale:
    """The [locale] table of a TOML file (agency.toml, dock.toml); defaults
    when the file does not exist."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE + 1)
    except FileNotFoundError:
        return Locale()
    except OSError as exc:
        raise LocaleError(f"{path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE:
        raise LocaleError(f"{path}: larger than {MAX_FILE} bytes")
    try:
        doc = tomllib.loads(data.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise LocaleError(f"{path}: not TOML: {exc}") from None
    return parse(doc.get("locale"), f"{path.name} [locale]")
