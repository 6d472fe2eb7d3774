"""The human report beside a court copy: one Jinja2 template, rendered to
HTML and, through WeasyPrint, to PDF (the same page, for the file), in the
reader's language (Jinja2's i18n extension on the dock's catalog) and set
in the dock's fonts (dock/fonts.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import weasyprint

from .. import chain_codes as codes
from .. import fonts
from ..texts import Texts
from .r20 import R20

TEMPLATES = Path(__file__).resolve().parent / "templates"


def environment(texts: Texts) -> jinja2.Environment:
    """The templates here, in the reader's language, with the filters the
    court report and the disc label use."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # chain text (reasons, notes, names) is data, never markup
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
    )
    i18n: Any = env  # the extension adds install_gettext_translations
    i18n.install_gettext_translations(texts.catalog, newstyle=True)
    env.filters.update(
        say=texts.say,
        time=texts.time,
        cause=lambda c: texts.say(codes.cause(c)),
        ended=lambda c: texts.say(codes.ended_by(c)),
        clock_state=lambda c: texts.say(codes.clock_state(c)),
        clock_source=lambda c: texts.say(codes.clock_source(c)),
    )
    return env


def render(facts: dict[str, Any], mp4: str, test_certificate: bool, r20: R20, texts: Texts) -> str:
    env = environment(texts)
    return env.get_template("court_report.html.j2").render(
        f=facts,
        mp4=mp4,
        test_certificate=test_certificate,
        r20=r20,
        lang=texts.language,
        zone=texts.zone_name,
        font_css=fonts.css_stack(),
    )


def write_report(
    out: Path, facts: dict[str, Any], mp4: str, test_certificate: bool, r20: R20, texts: Texts
) -> None:
    html = render(facts, mp4, test_certificate, r20, texts)
    (out / "report.html").write_text(html, encoding="utf-8")
    weasyprint.HTML(string=html, base_url=str(out)).write_pdf(out / "report.pdf")
