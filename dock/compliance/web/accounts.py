"""Who may sign in, and as what: the `people` table of the dock's index
(`<dock>/dock.sqlite`), made by `bodycam-dock user-add` (`supervisor-add` is
its role `legal`) and read again at each request, so a changed role or
password takes effect at once. A name is a person's name in any script
(李科长, sergeant.ames), checked and NFC-normalised by sealing.people; a
department likewise. Every change is a line of the audit log."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from werkzeug.security import generate_password_hash

from sealing.people import NameRefused, person_name

from ...access import ROLES, Person
from ...audit import AuditLog, operator
from ...index import INDEX_ERRORS, Index, describe_error
from ...names import NameNotAccepted, checked_name
from ...texts import msg
from .errors import PageError

INDEX = "dock.sqlite"
SUPERVISORS = "supervisors.json"  # before the people table: imported as `legal` once
MIN_PASSWORD = 12


def check_name(name: str) -> str:
    """A person's name, NFC; PageError says why it is refused."""
    try:
        return checked_name(name, msg("the person's name"))
    except NameNotAccepted as exc:
        raise PageError(exc.args[0]) from None


def check_department(name: str) -> str:
    try:
        return checked_name(name, msg("the department"))
    except NameNotAccepted as exc:
        raise PageError(exc.args[0]) from None


def name_or_none(name: str) -> str | None:
    """A name typed at sign-in, as stored (NFC), or None if nobody could have it."""
    try:
        return person_name(name, "name")
    except NameRefused:
        return None


def open_index(dock_dir: Path) -> Index:
    if not dock_dir.is_dir():
        raise PageError(msg("%(folder)s is not a folder", folder=str(dock_dir)))
    try:
        return Index.open(dock_dir / INDEX)
    except INDEX_ERRORS as exc:
        raise PageError(
            msg("index %(file)s: %(error)s", file=str(dock_dir / INDEX), error=describe_error(exc))
        ) from None


def person_of(index: Index, name: str) -> tuple[Person, str] | None:
    """The account of `name` and its password hash; None when there is none."""
    try:
        row = index.person(name)
    except INDEX_ERRORS as exc:
        raise PageError(
            msg("the accounts cannot be read: %(error)s", error=describe_error(exc))
        ) from None
    if row is None or row["role"] not in ROLES:
        return None  # a role this dock does not know grants nothing
    return Person(row["name"], row["role"], row["department"]), row["password_hash"]


def has_people(dock_dir: Path) -> bool:
    if not (dock_dir / INDEX).is_file():
        return (dock_dir / SUPERVISORS).is_file()
    index = open_index(dock_dir)
    try:
        import_supervisors(dock_dir, index)
        return bool(index.people())
    finally:
        index.close()


def add_person(
    dock_dir: Path, name: str, role: str, department: str, password: str, by: str = ""
) -> bool:
    """Add an account, or set a known one's role, department and password.
    True when new. Recorded in the audit log before it is made."""
    name = check_name(name)
    if role not in ROLES:
        raise PageError(
            msg("no role %(role)r: one of %(roles)s", role=role[:20], roles=", ".join(ROLES))
        )
    department = check_department(department) if department else ""
    if role == "head" and not department:
        raise PageError(msg("a department head needs --department"))
    if len(password) < MIN_PASSWORD:
        raise PageError(
            msg("the password must have at least %(count)s characters", count=MIN_PASSWORD)
        )
    index = open_index(dock_dir)
    try:
        # the hashes are salted, but nobody else needs them (nor the index)
        os.chmod(dock_dir / INDEX, 0o600)
        import_supervisors(dock_dir, index)
        new = index.person(name) is None
        AuditLog(dock_dir).append(
            by or operator(), "", "account_added" if new else "account_changed", name,
            detail={"role": role, "department": department},
        )  # fmt: skip
        index.put_person(
            {
                "name": name,
                "role": role,
                "department": department,
                "password_hash": generate_password_hash(password),  # scrypt, salted
                "changed_us": time.time_ns() // 1000,
            }
        )
    finally:
        index.close()
    return new


def add_supervisor(dock_dir: Path, name: str, password: str) -> bool:
    """Today's `supervisor-add`: legal and supervision staff see every
    recording, read-only."""
    return add_person(dock_dir, name, "legal", "", password)


def import_supervisors(dock_dir: Path, index: Index) -> None:
    """A dock set up before roles: its supervisors.json (name -> hash)
    becomes `legal` accounts, once; the file is kept as .imported."""
    path = dock_dir / SUPERVISORS
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        raise PageError(
            msg("%(file)s: unreadable: %(error)s", file=str(path), error=str(exc))
        ) from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise PageError(msg("%(file)s: not a JSON object of name -> password hash", file=str(path)))
    for name, hashed in data.items():
        if name_or_none(name) != name or index.person(name) is not None:
            continue
        AuditLog(dock_dir).append(operator(), "", "account_imported", name,
                                  detail={"role": "legal", "from": SUPERVISORS})  # fmt: skip
        row = {"name": name, "role": "legal", "department": "", "password_hash": hashed}
        index.put_person({**row, "changed_us": time.time_ns() // 1000})
    os.replace(path, path.with_name(SUPERVISORS + ".imported"))
