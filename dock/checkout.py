"""Check-out and check-in at the dock: the usage ledger (S0 art. 6, 26 and
annex 1; S1 art. 4; S4 art. 15).

Checking a docked unit out to an officer, with the approver, sends the unit
an assignment signed with the dock's receipt key over the dock link
(`link.routes.ASSIGN`). The unit verifies it against its enrolled docks'
keys, seals it in its chain as an `officer` record (with the approver and
the signature) and from then on names the new officer in every record and
on the watermark; a unit that is recording refuses. Only then is the
ledger's row written, and the audit log's line. Check-in records the
return in the ledger: the unit keeps its last holder until the next
check-out.

The officer must have an account with the role `officer`; the approver one
with the role `head` (of the officer's department) or `leader`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from link import messages, routes
from link.inventory import Known
from sealing.canonical import b64
from sealing.keys import fingerprint
from sealing.people import NameRefused, person_name

from .audit import AuditLog
from .client import Client, DockError
from .index import Index
from .pull import check_identity, unit_status
from .texts import msg


@dataclass(frozen=True)
class CheckedOut:
    serial: str
    officer: str
    approver: str
    seq: int


def _name(text: str, what: str) -> str:
    try:
        return person_name(text, what)
    except NameRefused as exc:
        raise DockError(msg("%(what)s: %(why)s", what=what, why=str(exc))) from None


def check_out(
    client: Client,
    dock_dir: Path,
    dock_key: Ed25519PrivateKey,
    index: Index,
    inventory: Known,
    officer: str,
    approver: str,
    by: str,
    now: Callable[[], float] = time.time,
) -> CheckedOut:
    officer, approver = _name(officer, "--officer"), _name(approver, "--approver")
    holder, boss = index.person(officer), index.person(approver)
    if holder is None or holder["role"] != "officer":
        raise DockError(msg("%(name)s has no officer's account at this dock (user-add --role "
                            "officer)", name=officer))  # fmt: skip
    if boss is None or not (
        boss["role"] == "leader"
        or (boss["role"] == "head" and boss["department"] == holder["department"])
    ):
        raise DockError(msg("%(name)s may not approve this: the approver is the head of "
                            "%(department)s or the unit's leadership",
                            name=approver, department=holder["department"] or "-"))  # fmt: skip
    status = unit_status(client)
    check_identity(client, status, inventory)  # the unit QA made, before anything is sent
    at_us = int(now() * 1e6)
    a = messages.Assignment(status.serial, officer, approver,
                            fingerprint(dock_key.public_key()), at_us, "")  # fmt: skip
    body = {**a.signed_fields(), "signature": b64(dock_key.sign(a.signed_bytes()))}
    code, answer = client.json(routes.ASSIGN, body)
    if code != 200:
        raise DockError(msg("the unit refused the check-out (%(code)s): %(why)s",
                            code=code, why=messages.error_text(answer)))  # fmt: skip
    seq = messages.integer(answer, "seq")
    index.check_out({"serial": status.serial, "out_us": at_us, "officer": officer,
                     "department": holder["department"], "approver": approver,
                     "out_seq": seq, "in_us": None})  # fmt: skip
    AuditLog(dock_dir).append(by, "", "checkout", status.serial, "ok",
                              {"officer": officer, "approver": approver, "seq": seq})  # fmt: skip
    return CheckedOut(status.serial, officer, approver, seq)


def check_in(
    client: Client, dock_dir: Path, index: Index, inventory: Known, by: str,
    now: Callable[[], float] = time.time,
) -> dict[str, object]:  # fmt: skip
    status = unit_status(client)
    check_identity(client, status, inventory)
    row = index.check_in(status.serial, int(now() * 1e6))
    if row is None:
        raise DockError(msg("%(serial)s is not checked out in this dock's ledger",
                            serial=status.serial))  # fmt: skip
    AuditLog(dock_dir).append(by, "", "checkin", status.serial, "ok",
                              {"officer": str(row["officer"])})  # fmt: skip
    return row
