"""Access requests and their approval (S0 art. 21-22, S2 art. 14, S3 art. 17):
what the page lets a person do with recordings outside their role's own
scope, and what every act that copies a recording needs. Pure rules, no I/O:
the page (dock/compliance/web/requests.py) and `export-case` ask here.

- Viewing and playing within one's role's scope (dock/access.py: an
  officer their own, a head their department's, leadership and legal all)
  need no request. Outside it, and for every download, court copy or disc
  (a copy leaves the dock: S0 art. 22, 30), an approved request is needed.
- A request names the act, the recordings (a unit, an officer, or both, and
  a time span), the matter (事项), the reason (事由) and for whom: staff or
  an internal department or a superior statistical organ ("internal"), or a
  court, procuratorate, police, discipline body or the party ("external").
- Who approves (S0 art. 21-22): an internal request, the head of the
  recorded officer's department (执法部门负责人) or the leadership; an
  external one, the leadership only (单位负责人; S2 art. 14 局领导, S3
  art. 17 行政执法机关负责人). Nobody approves their own request.
- An approval holds for VALID_DAYS and only for the person who filed the
  request (who handles it: 批准后由管理员统一办理), only for its act and its
  recordings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .access import Act, Person, may
from .texts import Msg, msg

ACTS = ("view", "play", "download", "court_copy", "disc", "dispose")
# what an approved act allows besides itself: a copy is looked at first
IMPLIES: dict[str, frozenset[str]] = {
    "view": frozenset({"view"}),
    "play": frozenset({"view", "play"}),
    "download": frozenset({"view", "play", "download"}),
    "court_copy": frozenset({"view", "play", "court_copy"}),
    "disc": frozenset({"view", "play", "disc"}),
    "dispose": frozenset({"dispose"}),
}
DIRECT = frozenset({"view", "play"})  # within the role's own scope, no request
BODIES = ("internal", "external")
STATES = ("pending", "approved", "refused")
VALID_DAYS = 7
MAX_TEXT = 200  # characters of a matter, reason, organisation or note
MAX_SPAN_DAYS = 366
DAY_US = 86_400_000_000

ACT_NAMES: dict[str, Msg] = {
    "view": msg("view"),
    "play": msg("play back"),
    "download": msg("download"),
    "court_copy": msg("court copy"),
    "disc": msg("burn to disc"),
    "dispose": msg("dispose of (end of retention)"),
}
BODY_NAMES: dict[str, Msg] = {
    "internal": msg("internal (staff, department, superior statistical organ)"),
    "external": msg("external (court, procuratorate, police, discipline body, party)"),
}
STATE_NAMES: dict[str, Msg] = {
    "pending": msg("awaiting approval"),
    "approved": msg("approved"),
    "refused": msg("refused"),
}


class RequestRefused(ValueError):
    """A request that cannot be filed or decided; the Msg says what and why."""


@dataclass(frozen=True)
class Request:
    id: str
    filed_us: int
    filed_by: str  # the account that filed it and may use it
    requester: str  # who asks (the filer, or an outside person the filer registers)
    organisation: str  # the requester's department or outside body
    body: str  # BODIES
    act: str  # ACTS
    serial: str  # "" = any unit of the officer
    officer: str  # "" = any officer of the unit
    from_us: int
    to_us: int
    matter: str
    reason: str
    state: str = "pending"
    approver: str = ""
    decided_us: int | None = None
    note: str = ""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Request:
        """From the index's row (dock/index.py access_requests)."""
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})

    @property
    def expires_us(self) -> int | None:
        if self.state != "approved" or self.decided_us is None:
            return None
        return self.decided_us + VALID_DAYS * DAY_US


def _text(value: str, what: Msg, required: bool = True) -> str:
    value = " ".join(value.split())
    if required and not value:
        raise RequestRefused(msg("the request needs %(what)s", what=what))
    if len(value) > MAX_TEXT:
        raise RequestRefused(msg("%(what)s is longer than %(n)s characters", what=what, n=MAX_TEXT))
    if not value.isprintable():
        raise RequestRefused(msg("%(what)s holds a character that is not printable", what=what))
    return value


def checked(req: Request) -> Request:
    """The request as it may be filed, its texts trimmed; RequestRefused
    naming the first thing wrong."""
    if req.act not in ACTS:
        raise RequestRefused(msg("no such act: %(act)r", act=req.act[:20]))
    if req.body not in BODIES:
        raise RequestRefused(msg("no such kind of requester: %(body)r", body=req.body[:20]))
    if not req.serial and not req.officer:
        raise RequestRefused(msg("the request must name a unit or an officer"))
    if not 0 <= req.from_us < req.to_us:
        raise RequestRefused(msg("the time span must end after it begins"))
    if req.to_us - req.from_us > MAX_SPAN_DAYS * DAY_US:
        raise RequestRefused(msg("the time span is longer than %(n)s days", n=MAX_SPAN_DAYS))
    return Request(
        **{
            **req.__dict__,
            "requester": _text(req.requester, msg("the requester's name")),
            "organisation": _text(req.organisation, msg("the requester's organisation")),
            "matter": _text(req.matter, msg("the matter (事项)")),
            "reason": _text(req.reason, msg("the reason (事由)")),
            "serial": _text(req.serial, msg("the unit"), required=False),
            "officer": _text(req.officer, msg("the officer"), required=False),
        }
    )


def approver_roles(req: Request, dispose_approver: str = "leader") -> tuple[str, ...]:
    """`dispose_approver`: the role dock.toml's [retention] names for disposals."""
    if req.act == "dispose":
        return (dispose_approver,)
    return ("leader",) if req.body == "external" else ("head", "leader")


def may_decide(
    who: Person, req: Request, owner_departments: set[str | None], dispose_approver: str = "leader"
) -> bool:
    """May `who` approve or refuse `req`? `owner_departments`: the
    departments of the officers whose recordings it names (None: an officer
    with no account)."""
    if req.state != "pending" or who.name in (req.filed_by, req.requester):
        return False
    if who.role not in approver_roles(req, dispose_approver):
        return False
    if who.role == "leader" or req.act == "dispose":
        return True
    # a head, for the recordings of their own department only
    return bool(owner_departments) and owner_departments == {who.department}


def why_not(
    req: Request, name: str, act: str, serial: str, officer: str, start_us: int, end_us: int,
    now_us: int,
) -> Msg | None:  # fmt: skip
    """Why `req` does not let the person `name` do `act` on the recordings of
    `officer` on `serial` that ran from `start_us` to `end_us`; None when it does."""
    expires = req.expires_us
    if expires is None:
        return msg("request %(id)s is %(state)s", id=req.id, state=STATE_NAMES[req.state])
    if now_us >= expires:
        return msg("request %(id)s expired %(days)s days after its approval", id=req.id,
                   days=VALID_DAYS)  # fmt: skip
    if name != req.filed_by:
        return msg("request %(id)s was filed by %(filer)s: only they may use it", id=req.id,
                   filer=req.filed_by)  # fmt: skip
    if act not in IMPLIES[req.act]:
        return msg("request %(id)s is for %(act)s", id=req.id, act=ACT_NAMES[req.act])
    if (req.serial and req.serial != serial) or (req.officer and req.officer != officer):
        return msg("request %(id)s names other recordings", id=req.id)
    if not (start_us < req.to_us and end_us > req.from_us):
        return msg("request %(id)s does not reach the time of this recording", id=req.id)
    return None


def covers(
    req: Request, who: Person, act: str, serial: str, officer: str, start_us: int, end_us: int,
    now_us: int,
) -> bool:  # fmt: skip
    return why_not(req, who.name, act, serial, officer, start_us, end_us, now_us) is None


def direct(who: Person, act: str, officer: str, department: str | None) -> bool:
    """May `who` do `act` on `officer`'s recordings without a request?"""
    return act in DIRECT and may(who, Act.SEE_RECORDINGS, officer, department)
