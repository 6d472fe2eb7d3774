"""A recording played in the page (S0 art. 28 spot checks; art. 21-22
access): from the dock's verified copy, decrypted on the dock with the
evidence key the page was started with, joined into one MP4 and streamed
with range requests so a browser seeks. Whoever may play it directly (their
role's scope) or on an approved request plays it; each playback is a line of
the audit log with the request it rests on.

The MP4 is kept for an hour in `<dock>/.playback/` (0700; plaintext the dock
already holds the key to), one per recording and viewer: its metadata
comment names the viewer, so a file that leaks says whose playback it was."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from flask import Blueprint, Response, abort, render_template, request, send_file

from ...access import Act, may
from ...retention import CLASSES, HOLDS
from ...texts import msg
from .. import model
from .context import (
    authorise,
    current_person,
    page_context,
    page_texts,
    read_units,
    refuse,
)
from .names import attachment

bp = Blueprint("playback", __name__)

FOLDER = ".playback"
KEEP_S = 3600


def _recording(
    serial: str, seq: int, record: bool = True, act: str = "play"
) -> tuple[model.RecordingView, str]:
    """The recording and the request that lets the signed-in person `act`
    on it ("" when their role does); 403 (recorded) or 404."""
    unit = next((u for u in read_units().units if u.serial == serial), None)
    rec = next((v for v in unit.recordings if v.start_seq == seq), None) if unit else None
    what = f"recording {seq} of unit {serial}"
    if rec is None:
        if not may(current_person(), Act.SEE_RECORDINGS):
            refuse(what)  # what does not exist is not told to who may not look
        abort(404, description=msg("No recording %(seq)s of unit %(serial)s on this dock.",
                                   seq=seq, serial=serial))  # fmt: skip
    return rec, authorise(act, serial, rec.officer, rec.start_us, rec.end_us, what, record)


@bp.get("/unit/<segment:serial>/recording/<int:seq>")
def play_page(serial: str, seq: int) -> str:
    rec, rid = _recording(serial, seq)
    return render_template("play.html.j2", rec=rec, request_id=rid, classes=CLASSES, holds=HOLDS)


@bp.get("/unit/<segment:serial>/recording/<int:seq>/video.mp4")
def media(serial: str, seq: int) -> Response:
    # a browser fetches a video in ranges: the first fetch is the playback's line
    first = request.headers.get("Range", "bytes=0-").startswith("bytes=0-")
    _recording(serial, seq, record=first)
    resp = send_file(_joined(serial, seq), mimetype="video/mp4", conditional=True, max_age=0)
    resp.headers["Content-Disposition"] = "inline"  # played here, never offered as a file
    return resp


@bp.get("/unit/<segment:serial>/recording/<int:seq>/download.mp4")
def download(serial: str, seq: int) -> Response:
    """The recording as a file: a copy leaving the dock, so only on an
    approved request for a download (S0 art. 22, 30), never by role alone."""
    _recording(serial, seq, act="download")
    resp = send_file(_joined(serial, seq), mimetype="video/mp4", max_age=0)
    resp.headers["Content-Disposition"] = attachment(f"{serial}_rec{seq}", ".mp4")
    return resp


def _joined(serial: str, seq: int) -> Path:
    """The recording's MP4 for the signed-in viewer, made now or an hour ago."""
    ctx = page_context()
    if ctx.identity is None:
        abort(503, description=msg(
            "This page was started without the evidence key (--identity or --agency), "
            "so it cannot play recordings."))  # fmt: skip
    from ... import courtcopy  # PyAV: only when something is played

    folder = ctx.dock_dir / FOLDER
    viewer = current_person().name
    tag = hashlib.sha256(viewer.encode()).hexdigest()[:12]
    out = folder / f"{serial}_{seq}_{tag}.mp4"
    with ctx.joining:
        folder.mkdir(mode=0o700, exist_ok=True)
        _sweep(folder)
        if not out.exists():
            try:
                courtcopy.playback_copy(ctx.dock_dir, serial, seq, ctx.identity, out, viewer,
                                        page_texts())  # fmt: skip
            except courtcopy.CaseError as exc:
                abort(503, description=msg("This recording cannot be played: %(why)s",
                                           why=page_texts().say(exc.args[0])))  # fmt: skip
    return out


def _sweep(folder: Path) -> None:
    cutoff = time.time() - KEEP_S
    for p in folder.glob("*.mp4"):
        try:
            if p.stat().st_mtime < cutoff:
                p.unlink()
        except OSError:
            pass  # another request swept it
