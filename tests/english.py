"""English, one setting away: tests that read the dock's English choose it
as an operator does, in the dock's own dock.toml [locale] (link/locale.py),
or with `--language en` on a command line (EN_ARGS). Nothing here changes
the default, which stays Simplified Chinese and Asia/Shanghai."""

from __future__ import annotations

from pathlib import Path

from dock.texts import Texts, load_texts
from link.locale import Locale

EN_ARGS = ("--language", "en")


def english_dock(dock_dir: Path, timezone: str = "Asia/Shanghai") -> Path:
    """Write `dock_dir`/dock.toml choosing English (and `timezone`); the dock
    folder is made if need be. Returns dock_dir."""
    dock_dir.mkdir(parents=True, exist_ok=True)
    (dock_dir / "dock.toml").write_text(f'[locale]\nlanguage = "en"\ntimezone = "{timezone}"\n')
    return dock_dir


def english(timezone: str = "Asia/Shanghai") -> Texts:
    """The dock's texts in English, as a library caller chooses them."""
    return load_texts(Locale("en", timezone))
