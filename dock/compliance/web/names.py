"""Names from a unit's chain (officers, serials) in URLs and file names.

A name is whatever the unit recorded: `/`, `%`, `$`, `<`, `..` included. In a
URL it is one path segment, and it must come back as it went: but the server
decodes a path once before routing (WSGI's PATH_INFO), so a `%2F` would
arrive as a `/` and split the segment. `SegmentConverter` therefore escapes
`%` and `/` once more before the usual percent-encoding, and decodes once
more after routing. A name of only dots gets its dots escaped the same way,
or a browser would take it for `.` or `..` and step out of the path.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from werkzeug.routing import BaseConverter

EMPTY = "%"  # what "" arrives as: to_url never makes a lone % for any other name


class SegmentConverter(BaseConverter):
    """`<segment:name>`: any text as one path segment (registered as "segment")."""

    regex = "[^/]+"
    part_isolating = True

    def to_url(self, value: str) -> str:
        if value == "":
            return quote(EMPTY, safe="")  # a route needs a non-empty segment
        text = value.replace("%", "%25").replace("/", "%2F")
        if text.strip(".") == "":
            text = text.replace(".", "%2E")
        return quote(text, safe="")

    def to_python(self, value: str) -> str:
        return "" if value == EMPTY else unquote(value)


def attachment(stem: str, ext: str) -> str:
    """A Content-Disposition for a download named after chain text: an ASCII
    stand-in for old clients, and the name itself (RFC 6266, RFC 8187)."""
    plain = re.sub(r"[^A-Za-z0-9._-]", "_", stem)[:80].lstrip(".") or "download"  # not hidden
    full = quote(stem[:100], safe="")
    return f"attachment; filename=\"{plain}{ext}\"; filename*=UTF-8''{full}{ext}"
