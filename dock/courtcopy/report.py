"""The human report beside a court copy: one Jinja2 template, rendered to
HTML and, through WeasyPrint, to PDF (the same page, for the file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import weasyprint

TEMPLATES = Path(__file__).resolve().parent / "templates"


def render(facts: dict[str, Any], mp4: str, test_certificate: bool) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # chain text (reasons, notes) is data, never markup
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("court_report.html.j2").render(
        f=facts, mp4=mp4, test_certificate=test_certificate
    )


def write_report(out: Path, facts: dict[str, Any], mp4: str, test_certificate: bool) -> None:
    html = render(facts, mp4, test_certificate)
    (out / "report.html").write_text(html)
    weasyprint.HTML(string=html, base_url=str(out)).write_pdf(out / "report.pdf")
