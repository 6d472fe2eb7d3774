"""The one build step pyproject.toml cannot say: the dock's gettext catalogs,
compiled from their committed sources (dock/locale/*/LC_MESSAGES/*.po) to
.mo by Babel whenever the package is built, so that `pip install '.[dock]'`
ships them. An editable install (scripts/setup) compiles them beside their
sources, where the dock reads them from; they are not committed."""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CATALOGS = Path("dock") / "locale"


class BuildWithCatalogs(build_py):
    def run(self) -> None:
        super().run()
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        for po in sorted(CATALOGS.rglob("*.po")):
            mo = po.with_suffix(".mo")
            if not self.editable_mode:
                mo = Path(self.build_lib) / mo
            mo.parent.mkdir(parents=True, exist_ok=True)
            with po.open("rb") as f:
                catalog = read_po(f)
            errors = [(m.id, e) for m, errs in catalog.check() for e in errs]
            if errors:  # a translation whose placeholders differ would fail when shown
                raise SystemExit(f"{po}: {errors[0][0]!r}: {errors[0][1]}")
            with mo.open("wb") as f:
                write_mo(f, catalog)


setup(cmdclass={"build_py": BuildWithCatalogs})
