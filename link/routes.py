"""The dock link's routes: the one table the unit's export service dispatches
on and the dock's client builds its requests from (docs/EXPORT.md,
"Endpoints"). No `/v1/...` text appears anywhere else."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

PREFIX = "/v1"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    login: bool = True  # needs an officer session (a bearer token from AUTH)
    item: bool = False  # a collection: the path is followed by /<name>

    def target(self, item: str = "", **query: int | str) -> str:
        """The request target; an item is percent-encoded, so a name is never a path."""
        if self.item != bool(item):
            raise ValueError(f"{self.path}: an item is {'required' if self.item else 'not taken'}")
        out = f"{self.path}/{quote(item, safe='')}" if self.item else self.path
        return f"{out}?{urlencode(query)}" if query else out


STATUS = Route("GET", f"{PREFIX}/status", login=False)
AUTH = Route("POST", f"{PREFIX}/auth", login=False)
TIME = Route("POST", f"{PREFIX}/time")
OFFERED = Route("GET", f"{PREFIX}/offered")
CHAIN = Route("GET", f"{PREFIX}/chain")
SEGMENT = Route("GET", f"{PREFIX}/segments", item=True)
RECEIPT = Route("GET", f"{PREFIX}/receipts", item=True)  # a receipt the unit holds
RELEASE = Route("POST", f"{PREFIX}/receipt")  # a receipt the dock sends
# check-out: the dock's signed assignment of the unit to an officer. The dock's
# certificate and its signature authorise it, not the outgoing officer's login
ASSIGN = Route("POST", f"{PREFIX}/assign", login=False)
ROUTES = (STATUS, AUTH, TIME, OFFERED, CHAIN, SEGMENT, RECEIPT, RELEASE, ASSIGN)


@dataclass(frozen=True)
class Match:
    route: Route | None
    item: str = ""
    query: str = ""
    status: int = 200  # 404 no such path, 405 a known path with another method


def match(method: str, target: str) -> Match:
    """Which route a request target names. The item is returned as sent
    (still percent-encoded): the handler checks it against its own rule."""
    url = urlsplit(target)
    path = url.path
    known = False
    for r in ROUTES:
        if r.item:
            if not path.startswith(r.path + "/"):
                continue
            item = path[len(r.path) + 1 :]
        elif path == r.path:
            item = ""
        else:
            continue
        known = True
        if r.method == method:
            return Match(r, item, url.query)
    return Match(None, status=405 if known else 404)
