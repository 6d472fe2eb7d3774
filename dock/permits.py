"""What a command that copies recordings off the dock asks before it decrypts
anything (S0 art. 22, 30; S2 art. 14): an approved request of the dock's
index (dock/requests.py's rules) for that act and those recordings, filed by
the person who runs it. `export-case` (a court copy) and `disc` (court copies
burned to disc) ask here; each logs its own refusal in the audit log."""

from __future__ import annotations

import time
from pathlib import Path

from .index import Index
from .requests import Request, why_not
from .texts import Msg, msg


class PermitRefused(Exception):
    """No approved request lets this be done. `why` names the request and the
    reason; `request` is the id given ("" when none was)."""

    def __init__(self, why: Msg, request: str) -> None:
        super().__init__(why)
        self.why = why
        self.request = request


def approved_request(
    dock_dir: Path,
    request_id: str,
    name: str,
    act: str,
    serial: str,
    officer: str,
    start_us: int,
    end_us: int,
    now_us: int | None = None,
) -> Request:
    """The request `request_id` if it lets `name` do `act` on `officer`'s
    recording on `serial` from `start_us` to `end_us`; PermitRefused
    otherwise. The index's own errors (dock/index.py INDEX_ERRORS) pass."""
    if not request_id:
        raise PermitRefused(
            msg("an approved request is needed (--request ID; file it in the page)"), ""
        )
    index = Index.open(dock_dir / "dock.sqlite", dock=None)
    try:
        rows = index.access_requests()
    finally:
        index.close()
    row = next((r for r in rows if r["id"] == request_id), None)
    if row is None:
        raise PermitRefused(
            msg("no request %(id)s at this dock", id=request_id[:20]), request_id[:20]
        )
    req = Request.from_row(row)
    now = int(time.time() * 1e6) if now_us is None else now_us
    why = why_not(req, name, act, serial, officer, start_us, end_us, now)
    if why is not None:
        raise PermitRefused(why, req.id)
    return req
