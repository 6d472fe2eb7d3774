"""What people read at the dock, in the dock's language and time zone.

Every text the dock shows people is an English msgid of the gettext catalog
`bodycam_dock` (dock/locale/<lang>/LC_MESSAGES/bodycam_dock.po; the package
build compiles it to .mo, setup.py). English needs no catalog: it is the
msgids themselves. Msgids are %-style (`%(name)s`), like Jinja2's i18n
extension, so Babel checks every translation's placeholders; a literal
percent sign is `%%`.

Two ways to say something:
- `texts.tr("...")` where the reader's language is known (a command's
  output, a page being rendered);
- `msg("...")` where it is not yet (an error raised deep in a pull, a
  finding of the compliance model): a `Msg` keeps the msgid and its
  arguments and is translated when shown, in the language of whoever reads
  it (one supervisor's page in English, the dock's terminal in Chinese).

Times people read are local with their offset and zone:
`2026-12-02 09:40:31 +08:00 (Asia/Shanghai)`; machine fields stay UTC.
"""

from __future__ import annotations

import gettext
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from link.locale import Locale

DOMAIN = "bodycam_dock"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"


class CatalogMissing(Exception):
    """A language's compiled catalog is not installed; the text says how to fix it."""


@dataclass(frozen=True)
class Msg:
    """A text not yet translated: its msgid (and plural), its arguments.
    `str()` gives the English, for logs and for code that compares."""

    msgid: str
    args: tuple[tuple[str, Any], ...] = ()
    plural: str | None = None
    n: int = 1

    def __str__(self) -> str:
        return ENGLISH.say(self)


def msg(msgid: str, **args: Any) -> Msg:
    """A text to translate when shown (Babel extracts the keyword `msg`)."""
    return Msg(msgid, tuple(sorted(args.items())))


def msg_n(singular: str, plural: str, n: int, **args: Any) -> Msg:
    """The same with a count: `n` is also an argument (%(n)d)."""
    return Msg(singular, tuple(sorted({**args, "n": n}.items())), plural, n)


@dataclass(frozen=True)
class Texts:
    """One reader's language and zone: translations and local times."""

    locale: Locale
    catalog: gettext.NullTranslations = field(compare=False)

    @property
    def language(self) -> str:
        return self.locale.language

    @property
    def zone_name(self) -> str:
        return self.locale.timezone

    # -- words -------------------------------------------------------------

    def tr(self, msgid: str, **args: Any) -> str:
        return self._format(self.catalog.gettext(msgid), args)

    def tr_n(self, singular: str, plural: str, n: int, **args: Any) -> str:
        return self._format(self.catalog.ngettext(singular, plural, n), {**args, "n": n})

    def say(self, what: object) -> str:
        """A Msg translated; an exception by its Msg if it carries one
        (else its own text); anything else as it is (chain text, names)."""
        if what is None:
            return ""
        if isinstance(what, Msg):
            args = dict(what.args)
            if what.plural is not None:
                args.pop("n", None)  # msg_n keeps the count among the arguments too
                return self.tr_n(what.msgid, what.plural, what.n, **args)
            return self.tr(what.msgid, **args)
        if isinstance(what, BaseException) and len(what.args) == 1:
            return self.say(what.args[0])
        return str(what)

    def _format(self, text: str, args: Mapping[str, Any]) -> str:
        shown = {k: self._shown(v) for k, v in args.items()}
        return text % shown

    def _shown(self, v: Any) -> Any:
        if isinstance(v, Msg | BaseException):
            return self.say(v)
        return v

    # -- times -------------------------------------------------------------

    def time(self, us: int) -> str:
        """`2026-12-02 09:40:31 +08:00 (Asia/Shanghai)`."""
        return f"{self.locale.local_text(us)} ({self.zone_name})"

    def time_no_zone(self, us: int) -> str:
        """`2026-12-02 09:40:31 +08:00`: where the zone is named nearby (a header)."""
        return self.locale.local_text(us)

    def clock(self, us: int) -> str:
        """`09:40:31`, local: in tables whose header names the zone."""
        try:
            return self.locale.local(us).strftime("%H:%M:%S")
        except (ValueError, OverflowError, OSError):
            return f"{us} us"

    def offset(self, us: int) -> str:
        """`+08:00`: the zone's offset at that instant."""
        try:
            o = self.locale.local(us).strftime("%z")
        except (ValueError, OverflowError, OSError):
            return ""
        return f"{o[:3]}:{o[3:]}"


def zone_day(us: int, locale: Locale) -> date:
    """The local date of a wall-clock stamp in `locale`'s zone."""
    try:
        return locale.local(us).date()
    except (ValueError, OverflowError, OSError):
        return datetime.fromtimestamp(0, UTC).date()


def zone_day_bounds(d: date, locale: Locale) -> tuple[int, int]:
    """[00:00, 24:00) of a local day, in microseconds since the epoch (a day
    with a daylight-saving change is 23 or 25 hours long)."""
    start = datetime.combine(d, time(0), locale.zone)
    end = datetime.combine(d + timedelta(days=1), time(0), locale.zone)
    return int(start.timestamp()) * 1_000_000, int(end.timestamp()) * 1_000_000


def load_texts(locale: Locale, locale_dir: Path = LOCALE_DIR) -> Texts:
    """The texts of a language; CatalogMissing when its catalog is not
    installed (never a quiet fall back to English)."""
    if locale.language == "en":
        return Texts(locale, gettext.NullTranslations())
    path = locale_dir / locale.gettext_locale / "LC_MESSAGES" / f"{DOMAIN}.mo"
    try:
        with path.open("rb") as f:
            catalog = gettext.GNUTranslations(f)
    except FileNotFoundError:
        raise CatalogMissing(
            f"the dock's {locale.gettext_locale} catalog is not installed ({path}): "
            "reinstall the dock (pip install '.[dock]' compiles it; scripts/setup does)"
        ) from None
    except (OSError, struct.error, UnicodeDecodeError) as exc:  # what a broken .mo raises
        raise CatalogMissing(f"the dock's catalog {path} is unreadable: {exc}") from None
    return Texts(locale, catalog)


ENGLISH = Texts(Locale("en", "UTC"), gettext.NullTranslations())
