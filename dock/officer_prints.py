"""Officers' fingerprints at the dock (S0 art. 19: export needs the officer's
password and fingerprint): enrolled once at the workstation, matched at each
export login by the reader (dock/fingerprint.py), the verdict and the
reader's identity sent to the unit, which records both with the login.

    bodycam-dock enroll --dock-dir D --name OFFICER [--reader DRIVER]

`Fingerprint` is what a login asks: officer -> (matched, whose verdict).
`ReaderCheck` asks the reader against the officer's enrolled print;
`OperatorsWord` is the explicit no-reader mode (`--fingerprint match|no-match`):
the verdict is the operator's, recorded by the unit as `reader: none` and
flagged on the page.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from link.messages import NO_READER

from .fingerprint import FingerprintError, Progress, Reader, check_template
from .index import Index
from .texts import msg

# officer -> (matched, whose verdict: a reader's identity or NO_READER)
Fingerprint = Callable[[str], tuple[bool, str]]


@dataclass(frozen=True)
class OperatorsWord:
    """The verdict given on the command line: no reader; the unit records so."""

    matched: bool

    def __call__(self, _officer: str) -> tuple[bool, str]:
        return self.matched, NO_READER


@dataclass
class ReaderCheck:
    """One scan against the officer's enrolled print. A scan that fails
    (timed out, too short) is a print not matched: the unit counts the try
    and allows another within its lockout."""

    index: Index
    reader: Reader
    said: Callable[[FingerprintError], None]  # tells the operator why a scan failed
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, officer: str) -> tuple[bool, str]:
        template = enrolled(self.index, officer)
        with self._lock:  # one scan at a time: one reader, several units
            try:
                return self.reader.verify(template), self.reader.identity
            except FingerprintError as exc:
                self.said(exc)
                return False, self.reader.identity


def enrolled(index: Index, officer: str) -> bytes:
    """The officer's enrolled template; FingerprintError naming the command
    that enrolls one when there is none (or it is damaged)."""
    row = index.print_of(officer)
    if row is None:
        raise FingerprintError(
            msg(
                "officer %(name)s has no enrolled fingerprint at this dock "
                "(bodycam-dock enroll --name %(name)s)",
                name=officer,
            )  # fmt: skip
        )
    try:
        template = base64.b64decode(row["template"], validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise FingerprintError(
            msg("the enrolled print of %(name)s is damaged: enroll it again", name=officer)
        ) from None
    check_template(template)
    return template


def enroll(index: Index, officer: str, reader: Reader, now_us: int,
           progress: Progress | None = None) -> None:  # fmt: skip
    """Scan the officer's finger (as many times as the reader needs) and keep
    the template, replacing an earlier one."""
    template = reader.enroll(progress)
    check_template(template)
    index.put_print({"name": officer, "template": base64.b64encode(template).decode(),
                     "reader": reader.identity, "enrolled_us": now_us})  # fmt: skip
