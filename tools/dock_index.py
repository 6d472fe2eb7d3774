"""The reference dock's SQLite index of what it holds (R21, R22)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS units (
    serial TEXT PRIMARY KEY, device_key TEXT NOT NULL, officer TEXT,
    head_seq INTEGER, last_pull_us INTEGER);
CREATE TABLE IF NOT EXISTS segments (
    file TEXT PRIMARY KEY, serial TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT,
    ct_sha256 TEXT NOT NULL, pt_sha256 TEXT, ct_len INTEGER, start_wall_us INTEGER,
    end_wall_us INTEGER, officer TEXT, retention TEXT, marks TEXT, path TEXT NOT NULL,
    stored_us INTEGER NOT NULL, receipt TEXT);
CREATE TABLE IF NOT EXISTS receipts (
    id TEXT PRIMARY KEY, serial TEXT NOT NULL, from_seq INTEGER, to_seq INTEGER,
    head TEXT, dock_time_us INTEGER, segments INTEGER, accepted INTEGER);
"""


class Index:
    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.db.row_factory = sqlite3.Row
        self.db.executescript(SCHEMA)
        self.db.execute("PRAGMA synchronous=FULL")

    def close(self) -> None:
        self.db.close()

    def unit(self, serial: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM units WHERE serial=?", (serial,)).fetchone()

    def pin_unit(self, serial: str, device_key: str, officer: str) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR IGNORE INTO units(serial, device_key, officer) VALUES (?,?,?)",
                (serial, device_key, officer),
            )

    def update_unit(self, serial: str, head_seq: int, now_us: int) -> None:
        with self.db:
            self.db.execute(
                "UPDATE units SET head_seq=?, last_pull_us=? WHERE serial=?",
                (head_seq, now_us, serial),
            )

    def held(self, serial: str) -> dict[str, sqlite3.Row]:
        rows = self.db.execute("SELECT * FROM segments WHERE serial=?", (serial,))
        return {r["file"]: r for r in rows}

    def add_segment(self, **row: Any) -> None:
        cols = ",".join(row)
        with self.db:
            self.db.execute(
                f"INSERT OR REPLACE INTO segments({cols}) VALUES ({','.join('?' * len(row))})",
                tuple(row.values()),
            )

    def add_receipt(
        self, rid: str, serial: str, body: dict[str, Any], files: list[str], accepted: bool
    ) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO receipts VALUES (?,?,?,?,?,?,?,?)",
                (
                    rid,
                    serial,
                    body["from_seq"],
                    body["to_seq"],
                    body["head"],
                    body["dock_time_us"],
                    len(files),
                    int(accepted),
                ),
            )
            if accepted:
                self.db.executemany(
                    "UPDATE segments SET receipt=? WHERE file=?", [(rid, f) for f in files]
                )

    def serials(self) -> list[str]:
        return [r["serial"] for r in self.db.execute("SELECT serial FROM units ORDER BY serial")]
