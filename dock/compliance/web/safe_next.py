"""Where to go after signing in: only a page of this app, named by a plain
local path. Anything else (another host, a scheme, `//`, a backslash, a
control character, a path no route of the app answers) goes to the overview.
The answer is rebuilt from the route that matched, never the text given."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map

MAX_NEXT = 2000
NEVER_NEXT = ("auth.",)  # signing in again, or out, is nowhere to go back to


def _plain(text: str) -> bool:
    """No backslash (browsers read it as a slash) and no control character
    (browsers drop a tab or a line break inside a URL: `/\\t/evil` is `//evil`)."""
    return "\\" not in text and not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)


def local_next(raw: str | None, url_map: Map) -> str | None:
    """The local path of the page `raw` names, or None."""
    if not raw or len(raw) > MAX_NEXT or not _plain(raw):
        return None
    if not raw.startswith("/") or raw.startswith("//"):
        return None
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc or parts.query or parts.fragment:
        return None
    path = unquote(parts.path)  # as a server hands it to the router
    if not _plain(path):
        return None
    adapter = url_map.bind("localhost")
    try:
        endpoint, args = adapter.match(path, method="GET")
    except HTTPException:  # no such page, not a GET, or a redirect to elsewhere
        return None
    if not isinstance(endpoint, str) or endpoint.startswith(NEVER_NEXT):
        return None
    return adapter.build(endpoint, args)
