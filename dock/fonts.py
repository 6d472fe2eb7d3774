"""The fonts every text the dock draws is set in: the page (CSS), its PDFs
and the court report (WeasyPrint, through fontconfig) and the timeline
(matplotlib).

Noto Sans CJK SC (Debian's fonts-noto-cjk) first: it holds the Chinese of
the page and of officers' and supervisors' names, the rare characters names
use included (CJK Extension A and the Tongyong Guifan Hanzi characters
beyond it, e.g. 𬌗), and Japanese and Korean. DejaVu Sans (fonts-dejavu-core)
after it, for the Latin, Greek, Cyrillic and Arabic names Noto CJK lacks.
scripts/setup installs both; docs/I18N.md says why these.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from markupsafe import Markup

FAMILIES = ("Noto Sans CJK SC", "DejaVu Sans")
PACKAGES = {"Noto Sans CJK SC": "fonts-noto-cjk", "DejaVu Sans": "fonts-dejavu-core"}


def css_stack() -> Markup:
    """The CSS font-family value (constant names: safe inside <style>)."""
    return Markup(", ".join(f'"{f}"' for f in FAMILIES) + ", sans-serif")


@dataclass(frozen=True)
class FontFile:
    family: str
    path: Path
    index: int  # the face's number in a collection (.ttc)


def find(family: str) -> FontFile | None:
    """Where fontconfig finds `family` (the file WeasyPrint and Chromium
    use); None when it is not installed (fontconfig then substitutes
    another family, which is what `family=` in its answer shows)."""
    out = _fontconfig(
        "fc-match", "--format=%{family}\n%{file}\n%{index}", f"{family}:style=Regular"
    )
    if out is None:
        return None
    lines = out.split("\n")
    if len(lines) != 3 or family not in lines[0].split(","):
        return None
    return FontFile(family, Path(lines[1]), int(lines[2] or 0))


def files(family: str) -> list[Path]:
    """Every file fontconfig holds for `family` (its weights and styles),
    for a renderer with a font list of its own (matplotlib)."""
    out = _fontconfig("fc-list", "--format=%{file}\n", f":family={family}")
    if out is None:
        return []
    return sorted({Path(line) for line in out.splitlines() if line})


def _fontconfig(*cmd: str) -> str | None:
    """A fontconfig tool's output; None when it is absent or fails."""
    try:
        return subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def missing() -> list[str]:
    """The Debian packages to install for the families fontconfig lacks."""
    return [PACKAGES[f] for f in FAMILIES if find(f) is None]
