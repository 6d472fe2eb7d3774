"""Who may see and do what at the dock (S0 art. 21-22; docs/ACCESS.md has
the same table for people). The one place the page and the commands ask;
nothing is allowed only because a link is hidden.

Roles:
- officer: their own recordings;
- head (department head): the recordings of officers of their department;
- leader (the unit's leadership), legal (legal and supervision staff): every
  recording, read-only;
- auditor: the registers (the audit log), no recording;
- admin: accounts, no recording and no register.

Filing recordings in a case and spot checks (drawing a sample, judging
it) are for heads (their department's), leadership and legal (S0 art. 28:
the supervision and internal audit staff).

Keeping a recording longer (a raised retention class, a hold) is for heads
(their department's), leadership and legal; keeping it shorter (a lowered
class, a released hold) only for the role dock.toml's [retention] approver
names (dock/retention.py; the leadership by default).

A recording belongs to the officer the unit's chain names; an officer's
department is the one their account has (an officer with no account is in
no department, so only they, leader and legal may see their recordings).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

ROLES = ("officer", "head", "leader", "legal", "auditor", "admin")


class Act(Enum):
    SEE_RECORDINGS = "see_recordings"  # a unit's or an officer's days, their files and reports
    SEE_REGISTERS = "see_registers"  # the audit log and its verification
    SEE_LEDGER = "see_ledger"  # the usage ledger: who had which unit when
    MANAGE_ACCOUNTS = "manage_accounts"
    # raise a recording's retention class, place a hold (dock/retention.py)
    KEEP_LONGER = "keep_longer"
    # open a case and file recordings in it (dock/cases.py; the case hold comes with it)
    FILE_CASES = "file_cases"
    # draw a spot check and judge its recordings (dock/spot_checks.py; S0 art. 28-29)
    SPOT_CHECK = "spot_check"


# role -> act -> scope: "own", "department", "all"; an act not named is refused
TABLE: dict[str, dict[Act, str]] = {
    "officer": {Act.SEE_RECORDINGS: "own", Act.SEE_LEDGER: "own"},
    "head": {
        Act.SEE_RECORDINGS: "department",
        Act.SEE_LEDGER: "department",
        Act.KEEP_LONGER: "department",
        Act.FILE_CASES: "department",
        Act.SPOT_CHECK: "department",
    },
    "leader": {
        Act.SEE_RECORDINGS: "all",
        Act.SEE_REGISTERS: "all",
        Act.SEE_LEDGER: "all",
        Act.KEEP_LONGER: "all",
        Act.FILE_CASES: "all",
        Act.SPOT_CHECK: "all",
    },
    "legal": {
        Act.SEE_RECORDINGS: "all",
        Act.SEE_LEDGER: "all",
        Act.KEEP_LONGER: "all",
        Act.FILE_CASES: "all",
        Act.SPOT_CHECK: "all",
    },
    "auditor": {Act.SEE_REGISTERS: "all", Act.SEE_LEDGER: "all"},
    "admin": {Act.MANAGE_ACCOUNTS: "all"},
}


@dataclass(frozen=True)
class Person:
    name: str
    role: str
    department: str


def may(person: Person, act: Act, owner: str | None = None, department: str | None = None) -> bool:
    """May `person` do `act` on what belongs to `owner` (an officer's name)
    in `department` (the owner's; None when the owner has no account)?"""
    scope = TABLE.get(person.role, {}).get(act)
    if scope == "all":
        return True
    if scope == "own":
        return owner is not None and owner == person.name
    if scope == "department":
        return owner == person.name or (
            department is not None and department != "" and department == person.department
        )
    return False


def scope_of(role: str, act: Act) -> str | None:
    return TABLE.get(role, {}).get(act)
