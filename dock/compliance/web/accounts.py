"""Who may sign in: `<dock>/supervisors.json`, name -> werkzeug password hash,
made by `bodycam-dock supervisor-add` and read again at each request, so a
removed name is signed out at once."""

from __future__ import annotations

import json
import re
from pathlib import Path

from werkzeug.security import generate_password_hash

from .errors import PageError
from .private_files import write_private

SUPERVISORS = "supervisors.json"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD = 12


def check_name(name: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise PageError(
            f"name {name!r}: want 1-64 of letters, digits and . _ @ -, starting with a "
            "letter or digit"
        )


def load_supervisors(dock_dir: Path) -> dict[str, str]:
    """name -> password hash; an absent file is no supervisors."""
    path = dock_dir / SUPERVISORS
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise PageError(f"{path}: unreadable: {exc}") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise PageError(f"{path}: not a JSON object of name -> password hash")
    return data


def add_supervisor(dock_dir: Path, name: str, password: str) -> bool:
    """Add a supervisor, or set a known one's password. True when new."""
    if not dock_dir.is_dir():
        raise PageError(f"{dock_dir} is not a folder")
    check_name(name)
    if len(password) < MIN_PASSWORD:
        raise PageError(f"the password must have at least {MIN_PASSWORD} characters")
    known = load_supervisors(dock_dir)
    new = name not in known
    known[name] = generate_password_hash(password)  # werkzeug's default: scrypt, salted
    # the hashes are salted, but nobody else needs them
    write_private(dock_dir / SUPERVISORS, json.dumps(known, indent=1, sort_keys=True) + "\n")
    return new
