"""The dock's language and time zone: `<dock>/dock.toml` [locale]
(link/locale.py; the defaults, Simplified Chinese and Asia/Shanghai, when
there is none). The first `bodycam-dock pull` or `serve` with `--agency A`
writes it from the agency's `A/agency.toml` [locale]; after that the dock
keeps its own (a dock may override the agency). `--language` and
`--timezone` override both for one command."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import tomli_w

from link import locale as link_locale
from link.locale import LANGUAGES, Locale
from sealing.files import fsync_dir

from .texts import Texts

DOCK_TOML = "dock.toml"
AGENCY_TOML = "agency.toml"


def dock_locale(dock_dir: Path) -> Locale:
    """dock.toml's [locale]; LocaleError (naming the file) when it is broken."""
    return link_locale.load(dock_dir / DOCK_TOML)


def with_overrides(base: Locale, language: str | None, timezone: str | None) -> Locale:
    """`base` with a command's --language and --timezone; LocaleError names a bad one."""
    table = base.as_table()
    if language is not None:
        table["language"] = language
    if timezone is not None:
        table["timezone"] = timezone
    return link_locale.parse(table, "--language/--timezone")


def adopt_agency_locale(dock_dir: Path, agency_dir: Path) -> Locale | None:
    """Write dock.toml from the agency's agency.toml when the dock has none
    yet and the agency has one; the locale written, or None when nothing was.
    Two pulls at once: the first to create the file wins, whole."""
    target = dock_dir / DOCK_TOML
    source = agency_dir / AGENCY_TOML
    if target.exists() or not source.is_file():
        return None
    chosen = link_locale.load(source)  # LocaleError when the agency's is broken
    dock_dir.mkdir(parents=True, exist_ok=True)
    text = (
        "# The dock's language and time zone, taken from the agency's agency.toml at the\n"
        "# first pull; edit to override (link/locale.py).\n"
    ) + tomli_w.dumps({"locale": chosen.as_table()})
    tmp = dock_dir / f".{DOCK_TOML}.{os.getpid()}.tmp"
    tmp.write_text(text)
    try:
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.link(tmp, target)  # fails if another pull made it first: theirs stands
    except FileExistsError:
        return None
    finally:
        tmp.unlink()
    fsync_dir(dock_dir)
    return chosen


def add_locale_arguments(p: argparse.ArgumentParser, t: Texts) -> None:
    """--language and --timezone, for a command that prints for people."""
    p.add_argument(
        "--language",
        choices=sorted(LANGUAGES),
        help=t.tr("the language to print in (default: the dock's, dock.toml)"),
    )
    p.add_argument(
        "--timezone",
        metavar="ZONE",
        help=t.tr("the IANA time zone times are shown in (default: the dock's, dock.toml)"),
    )
