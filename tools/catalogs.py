"""The dock's gettext catalogs, for whoever changes a text (docs/I18N.md):

    python tools/catalogs.py extract   # dock/locale/bodycam_dock.pot from the code and templates
    python tools/catalogs.py update    # merge it into every dock/locale/*/LC_MESSAGES/*.po
    python tools/catalogs.py check     # every msgid of the code (a fresh extract) translated

New and changed msgids arrive in the .po files untranslated (or fuzzy); the
check fails until a translator has done them. The build compiles .po to .mo
(setup.py), never this tool.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
LOCALE = ROOT / "dock" / "locale"
POT = LOCALE / "bodycam_dock.pot"
KEYWORDS = ["-k", "msg", "-k", "msg_n:1,2", "-k", "tr", "-k", "tr_n:1,2"]


def _pybabel(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", *args], check=True, cwd=ROOT)


def extract(out: Path = POT) -> None:
    _pybabel(
        "extract", "-F", "babel.cfg", "--no-location", "--sort-output", "--omit-header",
        *KEYWORDS, "-o", str(out), ".",
    )  # fmt: skip


def update() -> None:
    _pybabel(
        "update", "-i", str(POT.relative_to(ROOT)), "-d", "dock/locale", "-D", "bodycam_dock",
        "--ignore-obsolete", "--no-fuzzy-matching",
    )  # fmt: skip


def problems(po: Path, pot: Path = POT) -> list[str]:
    """What keeps a catalog from being complete: a msgid of the template
    untranslated or fuzzy, or a translation whose placeholders differ."""
    with po.open("rb") as f:
        catalog = read_po(f)
    with pot.open("rb") as f:
        template = read_po(f)
    out = []
    for m in template:
        if not m.id:
            continue
        have = catalog.get(m.id)
        if (
            have is None
            or not have.string
            or (isinstance(have.string, tuple) and not all(have.string))
        ):
            out.append(f"{po.parent.parent.name}: untranslated: {m.id!r}")
        elif have.fuzzy:
            out.append(f"{po.parent.parent.name}: fuzzy: {m.id!r}")
    out += [f"{po.parent.parent.name}: {m.id!r}: {e}" for m, errs in catalog.check() for e in errs]
    return out


def main(argv: list[str]) -> int:
    what = argv[0] if argv else "check"
    if what == "extract":
        extract()
    elif what == "update":
        update()
    elif what == "check":
        # against a fresh extract, not the committed .pot: a text added to the
        # code without `extract` is found untranslated too
        with tempfile.TemporaryDirectory(prefix="catalogs-") as tmp:
            fresh = Path(tmp) / "fresh.pot"
            extract(fresh)
            found = [
                p for po in sorted(LOCALE.glob("*/LC_MESSAGES/*.po")) for p in problems(po, fresh)
            ]
        print("\n".join(found) or "catalogs complete")
        return 1 if found else 0
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
