"""A recording played in the page (S0 art. 28 spot checks; art. 21-22
access; art. 23: no private copies, playback traceable to its viewer): from
the dock's verified copy, decrypted on the dock with the evidence key the
page was started with, each segment's plaintext checked against its chain
hash, re-encoded with the viewer's name and the time drawn over the picture
and streamed as a fragmented MP4 (dock/courtcopy/stream.py). Nothing
decrypted is written to disk: the stream is made while it is sent, through
pipes, and made anew for every playback.

Whoever may play it directly (their role's scope) or on an approved request
plays it; each playback (each request for the video) is a line of the audit
log with the request it rests on. A live stream is not sought by ranges: a
Range header is answered 200 with the stream from its start. At most
MAX_STREAMS play or download at once (each is an encoder); one more is
answered 503. A viewer who goes away ends their encoder."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from flask import Blueprint, Response, abort, render_template

from ...access import Act, may
from ...retention import CLASSES, HOLDS
from ...texts import msg
from .. import model
from .cases import cases_to_file_in
from .context import (
    MAX_STREAMS,
    authorise,
    current_person,
    now_us,
    page_context,
    page_texts,
    read_units,
    refuse,
)
from .names import attachment

bp = Blueprint("playback", __name__)


def _recording(serial: str, seq: int, act: str = "play") -> tuple[model.RecordingView, str]:
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
    return rec, authorise(act, serial, rec.officer, rec.start_us, rec.end_us, what)


@bp.get("/unit/<segment:serial>/recording/<int:seq>")
def play_page(serial: str, seq: int) -> str:
    rec, rid = _recording(serial, seq)
    return render_template("play.html.j2", rec=rec, request_id=rid, classes=CLASSES, holds=HOLDS,
                           cases=cases_to_file_in(rec))  # fmt: skip


@bp.get("/unit/<segment:serial>/recording/<int:seq>/video.mp4")
def media(serial: str, seq: int) -> Response:
    # every request is a playback (a new stream): its line in the audit log
    resp = _streamed(serial, seq, "play")
    resp.headers["Content-Disposition"] = "inline"  # played here, never offered as a file
    return resp


@bp.get("/unit/<segment:serial>/recording/<int:seq>/download.mp4")
def download(serial: str, seq: int) -> Response:
    """The recording as a file: a copy leaving the dock, so only on an
    approved request for a download (S0 art. 22, 30), never by role alone.
    Streamed like a playback (not paced), watermarked with who downloaded
    it and when, never made as a file on the dock."""
    resp = _streamed(serial, seq, "download")
    resp.headers["Content-Disposition"] = attachment(f"{serial}_rec{seq}", ".mp4")
    return resp


def _streamed(serial: str, seq: int, act: str) -> Response:
    """The recording's stream for the signed-in viewer, made as it is sent.
    A free stream slot is taken first: a request answered 503 for want of
    one is no playback, and is not recorded as one."""
    ctx = page_context()
    if ctx.identity is None:
        abort(503, description=msg(
            "This page was started without the evidence key (--identity or --agency), "
            "so it cannot play recordings."))  # fmt: skip
    if not ctx.streams.acquire(blocking=False):
        abort(503, description=msg(
            "%(count)s recordings are playing from this dock already; try again when one "
            "has ended.", count=MAX_STREAMS))  # fmt: skip
    release = _once(ctx.streams.release)
    try:
        _recording(serial, seq, act)  # 403 or 404 (recorded), or the act's line
        from ... import courtcopy  # PyAV: only when something is played
        from ...courtcopy import stream

        try:
            s = stream.open_stream(
                ctx.dock_dir, serial, seq, ctx.identity, current_person().name,
                ctx.texts[ctx.locale.language], done=release, paced=act == "play",
                now_us=now_us(), verify=ctx.verified.get,
            )  # fmt: skip
        except courtcopy.CaseError as exc:
            abort(503, description=msg("This recording cannot be played: %(why)s",
                                       why=page_texts().say(exc.args[0])))  # fmt: skip
    except BaseException:
        release()
        raise

    def body() -> Iterator[bytes]:
        yield from s.chunks()  # its end, or the server closing it, ends the encoder

    resp = Response(body(), mimetype="video/mp4", direct_passthrough=True)
    resp.call_on_close(s.close)
    resp.headers["Accept-Ranges"] = "none"  # made as it is sent: no ranges to seek in
    return resp


def _once(release: Callable[[], None]) -> Callable[[], None]:
    lock, done = threading.Lock(), [False]

    def once() -> None:
        with lock:
            if done[0]:
                return
            done[0] = True
        release()

    return once
