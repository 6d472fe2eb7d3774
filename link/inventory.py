"""The QA station's inventory of units, which QA writes and every dock reads
(a unit's serial, TLS certificate and device key are trusted only as the
inventory lists them): a small SQLite database in the agency folder
(`inventory.sqlite`), one row per provisioning. A serial is active on
one unit only; provisioning it again (a re-flash, or a second card by
mistake) needs --force, and then the earlier unit's row is marked revoked
with when and why, so the dock's operators know which keys no longer speak
for that serial. `export_csv` gives the table to a spreadsheet. An older
agency's `inventory.csv` is imported once, its rows active."""

from __future__ import annotations

import csv
import hashlib
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

COLUMNS = ("serial", "officer", "profile", "device_key", "tls_cert_sha256", "firmware", "date")
SCHEMA = """
CREATE TABLE IF NOT EXISTS units (
    id INTEGER PRIMARY KEY,
    serial TEXT NOT NULL, officer TEXT NOT NULL, profile TEXT NOT NULL,
    device_key TEXT NOT NULL, tls_cert_sha256 TEXT NOT NULL, firmware TEXT NOT NULL,
    date TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    revoked_at TEXT, revoked_reason TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_serial ON units (serial) WHERE status = 'active';
"""


@dataclass(frozen=True)
class Unit:
    serial: str
    device_key: str
    date: str
    status: str


class Inventory:
    def __init__(self, agency: Path) -> None:
        self.path = agency / "inventory.sqlite"
        fresh = not self.path.exists()
        self.db = sqlite3.connect(self.path)
        self.db.executescript(SCHEMA)
        legacy = agency / "inventory.csv"
        if fresh and legacy.exists():
            with legacy.open(newline="") as f, self.db:
                for row in csv.DictReader(f):  # the newest row of a serial stays active
                    self.db.execute(
                        "UPDATE units SET status = 'revoked', revoked_at = ?, "
                        "revoked_reason = 'superseded (imported)' WHERE serial = ? "
                        "AND status = 'active'",
                        (row["date"], row["serial"]),
                    )
                    self._insert(row)

    def close(self) -> None:
        self.db.close()

    def active(self, serial: str) -> Unit | None:
        r = self.db.execute(
            "SELECT serial, device_key, date, status FROM units "
            "WHERE serial = ? AND status = 'active'",
            (serial,),
        ).fetchone()
        return Unit(*r) if r else None

    def add(self, row: dict[str, str], *, revoke_reason: str | None = None) -> None:
        """Record a provisioning; an active unit with the serial is revoked
        (only when the caller says why: a duplicate is otherwise an error)."""
        with self.db:
            if self.active(row["serial"]) is not None:
                if revoke_reason is None:
                    raise ValueError(f"serial {row['serial']} is already active in the inventory")
                self.db.execute(
                    "UPDATE units SET status = 'revoked', revoked_at = ?, revoked_reason = ? "
                    "WHERE serial = ? AND status = 'active'",
                    (row["date"], revoke_reason, row["serial"]),
                )
            self._insert(row)

    def _insert(self, row: dict[str, str]) -> None:
        self.db.execute(
            f"INSERT INTO units ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})",
            [row[c] for c in COLUMNS],
        )

    def rows(self) -> list[dict[str, str | None]]:
        cur = self.db.execute(
            f"SELECT {', '.join(COLUMNS)}, status, revoked_at, revoked_reason "
            "FROM units ORDER BY id"
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def export_csv(self, out: Path) -> int:
        rows = self.rows()
        with out.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=[*COLUMNS, "status", "revoked_at", "revoked_reason"])
            w.writeheader()
            w.writerows(rows)
        return len(rows)


# -- what a dock reads ---------------------------------------------------------


class InventoryError(ValueError):
    """An inventory the dock cannot read; the message names the file."""


@dataclass(frozen=True)
class Entry:
    serial: str
    device_key: str  # fingerprint (sealing.keys.fingerprint)
    tls_cert_sha256: str  # SHA-256 of the unit's TLS certificate (DER)
    status: str  # "active" or "revoked"
    revoked_reason: str = ""  # a code (REPROVISIONED) or QA's own words
    revoked_at: str = ""


# why QA's own tools revoke a unit: a code, worded by whoever reads it
REPROVISIONED = "reprovisioned"


def cert_sha256(der: bytes) -> str:
    """How the inventory names a unit's TLS certificate."""
    return hashlib.sha256(der).hexdigest()


def active_entry(serial: str, device_key: str, cert_der: bytes) -> Entry:
    return Entry(serial, device_key, cert_sha256(cert_der), "active")


@dataclass(frozen=True)
class Known:
    """The inventory as a dock checks units against it."""

    path: Path
    entries: tuple[Entry, ...]

    def active(self, serial: str) -> Entry | None:
        return next((e for e in self.entries if e.serial == serial and e.status == "active"), None)

    def revoked_key(self, device_key: str) -> Entry | None:
        return next(
            (e for e in self.entries if e.device_key == device_key and e.status == "revoked"), None
        )


def read_known(path: Path) -> Known:
    """The agency's inventory.sqlite (opened read-only), or the CSV that
    `bodycam-flash inventory --csv` exports."""
    try:
        if path.suffix == ".csv":
            with path.open(newline="") as f:
                rows: Iterable[dict[str, str | None]] = list(csv.DictReader(f))
        else:
            if not path.is_file():
                raise InventoryError(f"inventory {path}: no such file")
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                db.row_factory = sqlite3.Row
                rows = [dict(r) for r in db.execute("SELECT * FROM units")]
            finally:
                db.close()
        entries = tuple(
            Entry(
                serial=str(r["serial"]),
                device_key=str(r["device_key"]),
                tls_cert_sha256=str(r["tls_cert_sha256"]),
                status=str(r.get("status") or "active"),
                revoked_reason=str(r.get("revoked_reason") or "")[:200],
                revoked_at=str(r.get("revoked_at") or "")[:40],
            )
            for r in rows
        )
    except (OSError, KeyError, sqlite3.Error, csv.Error, UnicodeDecodeError) as exc:
        raise InventoryError(f"inventory {path}: {exc}") from None
    return Known(path, entries)
