"""Who may sign in: `<dock>/supervisors.json`, name -> werkzeug password hash,
made by `bodycam-dock supervisor-add` and read again at each request, so a
removed name is signed out at once. A name is a person's name in any script
(李科长, sergeant.ames), checked and NFC-normalised by sealing.people."""

from __future__ import annotations

import json
from pathlib import Path

from werkzeug.security import generate_password_hash

from sealing.people import NameRefused, person_name

from ...names import NameNotAccepted, checked_name
from ...texts import msg
from .errors import PageError
from .private_files import write_private

SUPERVISORS = "supervisors.json"
MIN_PASSWORD = 12


def check_name(name: str) -> str:
    """The supervisor's name, NFC; PageError says why it is refused."""
    try:
        return checked_name(name, msg("the supervisor's name"))
    except NameNotAccepted as exc:
        raise PageError(exc.args[0]) from None


def name_or_none(name: str) -> str | None:
    """A name typed at sign-in, as stored (NFC), or None if no supervisor could have it."""
    try:
        return person_name(name, "name")
    except NameRefused:
        return None


def load_supervisors(dock_dir: Path) -> dict[str, str]:
    """name -> password hash; an absent file is no supervisors."""
    path = dock_dir / SUPERVISORS
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise PageError(
            msg("%(file)s: unreadable: %(error)s", file=str(path), error=str(exc))
        ) from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise PageError(msg("%(file)s: not a JSON object of name -> password hash", file=str(path)))
    return data


def add_supervisor(dock_dir: Path, name: str, password: str) -> bool:
    """Add a supervisor, or set a known one's password. True when new."""
    if not dock_dir.is_dir():
        raise PageError(msg("%(folder)s is not a folder", folder=str(dock_dir)))
    name = check_name(name)
    if len(password) < MIN_PASSWORD:
        raise PageError(
            msg("the password must have at least %(count)s characters", count=MIN_PASSWORD)
        )
    known = load_supervisors(dock_dir)
    new = name not in known
    known[name] = generate_password_hash(password)  # werkzeug's default: scrypt, salted
    # the hashes are salted, but nobody else needs them
    write_private(dock_dir / SUPERVISORS, json.dumps(known, indent=1, sort_keys=True) + "\n")
    return new
