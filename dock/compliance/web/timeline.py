"""The timeline picture: one row per recording (or per day), bars for what
was recorded, markers for what happened. Drawn by matplotlib as SVG on the
server and put inline in the page and the PDF; the same facts are in the
tables beside it. Its words are the reader's language, its axis the local
time of day in the dock's zone, its font the page's (dock/fonts.py)."""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup
from matplotlib import rc_context
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

from ... import fonts
from ...texts import Msg, Texts, msg
from .. import model

SPAN_STYLE: dict[str, tuple[Msg, str, str]] = {  # kind -> (legend text, colour, hatch)
    "recording": (msg("recording"), "#2e7d32", ""),
    "prerecord": (msg("pre-record"), "#a5d6a7", ""),
    "paused": (msg("paused (nothing recorded)"), "#bdbdbd", ""),
    "gap": (msg("gap, unexplained"), "#d32f2f", "///"),
}
NOTE_MISSING_LABEL = msg("reason MISSING")  # written above the marker itself


@dataclass(frozen=True)
class MarkerStyle:
    label: Msg
    marker: str
    colour: str
    size: float = 8.0
    hollow: bool = False


MARKERS = {
    "note_given": MarkerStyle(msg("resumed, spoken reason given"), "^", "#1565c0"),
    "note_missing": MarkerStyle(msg("resumed, spoken reason MISSING"), "X", "#d32f2f", 11.0),
    "note_pending": MarkerStyle(msg("resumed, reason not judged yet"), "^", "#1565c0", hollow=True),
    "mark": MarkerStyle(msg("evidence mark"), "*", "#f9a825", 12.0),
    "fault": MarkerStyle(msg("fault or power loss"), "s", "#212121"),
    "clock": MarkerStyle(msg("clock change"), "D", "#6a1b9a", 6.0),
    "stop_unit": MarkerStyle(msg("stopped: battery or storage"), "v", "#ef6c00", 10.0),
    "stop": MarkerStyle(msg("stopped"), "|", "#212121", 16.0),
}


def marker_of(e: model.Event) -> str | None:
    """Which marker an event gets in the picture (None: only in the table)."""
    if e.kind in ("resume", "note"):
        return {"given": "note_given", "MISSING": "note_missing"}.get(e.state, "note_pending")
    if e.kind == "stop":
        return "stop_unit" if e.state in model.STOP_CAUSES_FLAGGED else "stop"
    return e.kind if e.kind in ("mark", "fault", "clock") else None


@dataclass(frozen=True)
class Row:
    label: str
    origin_us: int  # local 00:00 of the row's day (the dock's zone): x is hours since then
    spans: tuple[model.Span, ...]
    events: tuple[model.Event, ...]


_plot_lock = threading.Lock()  # rc_context is process-wide state
_fonts_known = False


def _know_fonts() -> None:
    """Give matplotlib the files fontconfig has for the page's families.
    matplotlib keeps its own font list, cached once per user: one built
    before fonts-noto-cjk was installed lacks Noto Sans CJK SC, and every
    timeline then measures its Chinese in DejaVu (and warns "findfont" on
    each render). Called under _plot_lock."""
    global _fonts_known
    if _fonts_known:
        return
    from matplotlib import font_manager

    known = {f.name for f in font_manager.fontManager.ttflist}
    for family in fonts.FAMILIES:
        if family in known:
            continue
        for path in fonts.files(family):
            # an unreadable file: its text is measured in another family
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                font_manager.fontManager.addfont(str(path))
    _fonts_known = True


def _hours(us: int, origin: int) -> float:
    return (us - origin) / 3.6e9


def _clock_label(hours: float, _pos: Any = None) -> str:
    s = int(round(hours * 3600))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def timeline_svg(rows: Sequence[Row], title: str, texts: Texts) -> Markup | None:
    """The picture: one row per recording (or per day), bars for what was
    recorded, markers for what happened; None when there is nothing to draw."""
    if not rows:
        return None
    xs = [_hours(t, r.origin_us) for r in rows for s in r.spans for t in (s.start_us, s.end_us)]
    xs += [_hours(e.at_us, r.origin_us) for r in rows for e in r.events if marker_of(e)]
    if not xs:
        return None
    lo, hi = min(xs), max(xs)
    pad = max((hi - lo) * 0.04, 30 / 3600)
    # Titles hold names from the chain: text, never TeX (mathtext would read
    # "$...$" as a formula, and fail with a 500 on "$^$")
    with _plot_lock:
        _know_fonts()
    with (
        _plot_lock,
        rc_context(
            {
                "svg.fonttype": "none",
                "svg.hashsalt": "bodycam",
                "text.parse_math": False,
                "text.usetex": False,
                # the page's fonts, in its order: the SVG names them, the browser draws
                "font.family": list(fonts.FAMILIES),
            }
        ),
    ):
        fig = Figure(figsize=(10, 1.6 + 0.45 * len(rows)), layout="constrained")
        FigureCanvasSVG(fig)
        ax = fig.add_subplot()
        for y, row in enumerate(rows):
            _draw_row(ax, y, row, texts)
        ax.set_yticks(range(len(rows)), [r.label for r in rows], fontsize=8)
        ax.set_ylim(len(rows) - 0.5, -0.5)  # first row on top
        ax.set_xlim(lo - pad, hi + pad)
        ax.xaxis.set_major_locator(MaxNLocator(8))
        ax.xaxis.set_major_formatter(FuncFormatter(_clock_label))
        ax.set_xlabel(texts.tr("time of day (%(zone)s)", zone=texts.zone_name), fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", color="#eeeeee")
        ax.set_axisbelow(True)  # the grid behind the bars, not across them
        ax.set_title(title, fontsize=10)
        fig.legend(
            handles=_legend(texts), loc="outside lower center", ncol=4, fontsize=7, frameon=False
        )
        out = io.StringIO()
        fig.savefig(out, format="svg", metadata={"Date": None})
    svg = out.getvalue()
    return Markup(svg[svg.index("<svg") :])  # matplotlib escaped every text it holds


def _draw_row(ax: Any, y: int, row: Row, texts: Texts) -> None:
    for s in row.spans:
        label, colour, hatch = SPAN_STYLE[s.kind]
        x0, x1 = _hours(s.start_us, row.origin_us), _hours(s.end_us, row.origin_us)
        height = 0.5 if s.kind == "prerecord" else 0.6
        ax.barh(
            y,
            max(x1 - x0, 1 / 3600),
            left=x0,
            height=height,
            color=colour,
            hatch=hatch,
            edgecolor="#7f0000" if hatch else colour,
            linewidth=0.5,
        )
    for e in row.events:
        key = marker_of(e)
        if key is None:
            continue
        m = MARKERS[key]
        x = _hours(e.at_us, row.origin_us)
        ax.plot(
            [x],
            [y],
            marker=m.marker,
            markersize=m.size,
            color=m.colour,
            markerfacecolor="white" if m.hollow else m.colour,
            linestyle="none",
            zorder=3,
        )
        if key == "note_missing":
            ax.annotate(
                texts.say(NOTE_MISSING_LABEL),
                (x, y),
                xytext=(0, 12),
                textcoords="offset points",
                ha="center",
                fontsize=8,
                color=m.colour,
                fontweight="bold",
            )


def _legend(texts: Texts) -> list[Any]:
    handles: list[Any] = [
        Patch(
            facecolor=colour,
            edgecolor="#7f0000" if hatch else colour,
            hatch=hatch,
            label=texts.say(label),
        )
        for label, colour, hatch in SPAN_STYLE.values()
    ]
    handles += [
        Line2D(
            [],
            [],
            marker=m.marker,
            color=m.colour,
            linestyle="none",
            markersize=7,
            markerfacecolor="white" if m.hollow else m.colour,
            label=texts.say(m.label),
        )
        for m in MARKERS.values()
    ]
    return handles


def unit_day_rows(day: model.Day, texts: Texts) -> list[Row]:
    """One row per recording of the day, and one for what happened while the
    unit was not recording (clock changes, faults)."""
    origin = model.day_bounds(day.day, texts.locale)[0]
    rows = [
        Row(
            texts.tr("recording %(seq)s (%(time)s)", seq=v.start_seq, time=texts.clock(v.start_us)),
            origin,
            tuple(s for s in day.spans if s.recording == v.start_seq),
            tuple(e for e in day.events if e.recording == v.start_seq),
        )
        for v in day.recordings
    ]
    idle = tuple(e for e in day.events if e.recording is None and marker_of(e))
    if idle:
        rows.append(Row(texts.tr("not recording"), origin, (), idle))
    return rows


def officer_rows(days: Iterable[model.Day], texts: Texts) -> list[Row]:
    """One bar per day, every unit the officer used."""
    return [
        Row(d.day.isoformat(), model.day_bounds(d.day, texts.locale)[0], d.spans, d.events)
        for d in days
        if d.spans or any(marker_of(e) for e in d.events)
    ]
