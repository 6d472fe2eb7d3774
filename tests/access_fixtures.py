"""Access requests written straight into a dock's index, for tests of what
uses them (export-case); the page's own filing and approval are tested in
tests/test_requests.py through a browser and HTTP."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from dock.index import Index
from dock.requests import DAY_US

YEARS_US = 20 * 365 * DAY_US


def approved_request(
    dock: Path,
    filer: str,
    approver: str,
    act: str = "court_copy",
    serial: str = "",
    officer: str = "",
    body: str = "external",
    from_us: int = 0,
    to_us: int | None = None,
) -> str:
    """A request filed by `filer` and approved now by `approver`; its id."""
    now = int(time.time() * 1e6)
    rid = secrets.token_hex(6)
    index = Index.open(dock / "dock.sqlite", dock=None)
    try:
        index.add_access_request({
            "id": rid, "filed_us": now, "filed_by": filer, "requester": filer,
            "organisation": "人民法院", "body": body, "act": act, "serial": serial,
            "officer": officer, "from_us": from_us, "to_us": to_us or now + YEARS_US,
            "matter": "案件审理", "reason": "调取证据", "state": "pending", "approver": "",
            "decided_us": None, "note": "",
        })  # fmt: skip
        assert index.decide_access_request(rid, "approved", approver, now, "")
    finally:
        index.close()
    return rid
