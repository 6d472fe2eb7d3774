"""The dock's index of what it holds (R21, R22), on SQLAlchemy Core.

`Index.open(path)` keeps it in a SQLite file (`<dock>/dock.sqlite`, the
default); `Index.open("postgresql+psycopg://...")` keeps it on PostgreSQL, so
a city server can hold the index of every dock of an agency. Every row
carries the name of the dock it came from, and keys include it: two docks may
hold the same unit and the same segment.

An Index opened with a dock name reads and writes that dock's rows; one opened
with `dock=None` reads every dock's rows (the agency's view, for reports) and
writes nothing. Each write is one transaction, committed (SQLite with
synchronous=FULL, PostgreSQL with its default synchronous_commit) before the
method returns: a pull sends its receipt only after the index says it holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    MetaData,
    Table,
    Text,
    create_engine,
    delete,
    event,
    inspect,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from .texts import Msg, msg

# The name rows get when a dock's own index is opened without one (pull does).
LOCAL_DOCK = "local"
# units/<serial>/verification.json: the pull's safety check, written at each
# pull (tools/dock.py), read by the compliance model, pushed by sync.
VERIFICATION = "verification.json"

# A row as callers get it: column name -> value (row["stored_us"]); a plain
# dict, so nothing outside this module depends on SQLAlchemy's row types.
Row = dict[str, Any]

metadata = MetaData()

units = Table(
    "units",
    metadata,
    Column("dock", Text, primary_key=True),
    Column("serial", Text, primary_key=True),
    Column("device_key", Text, nullable=False),
    Column("officer", Text),
    Column("head_seq", BigInteger),
    Column("last_pull_us", BigInteger),
)

segments = Table(
    "segments",
    metadata,
    Column("dock", Text, primary_key=True),
    Column("file", Text, primary_key=True),
    Column("serial", Text, nullable=False, index=True),
    Column("seq", BigInteger, nullable=False),
    Column("kind", Text),
    Column("ct_sha256", Text, nullable=False),
    Column("pt_sha256", Text),
    Column("ct_len", BigInteger),
    Column("start_wall_us", BigInteger),
    Column("end_wall_us", BigInteger),
    Column("officer", Text),
    Column("retention", Text),
    Column("marks", Text),
    Column("path", Text, nullable=False),
    Column("stored_us", BigInteger, nullable=False),
    Column("receipt", Text),
)

receipts = Table(
    "receipts",
    metadata,
    Column("dock", Text, primary_key=True),
    Column("id", Text, primary_key=True),
    Column("serial", Text, nullable=False, index=True),
    Column("from_seq", BigInteger),
    Column("to_seq", BigInteger),
    Column("head", Text),
    Column("dock_time_us", BigInteger),
    Column("segments", BigInteger),
    Column("accepted", Boolean),
)
# The usage ledger (S0 annex 1): who took which unit when, who approved it,
# when it came back. One row per check-out; `in_us` empty while it is out.
ledger = Table(
    "ledger",
    metadata,
    Column("dock", Text, primary_key=True),
    Column("serial", Text, primary_key=True),
    Column("out_us", BigInteger, primary_key=True),
    Column("officer", Text, nullable=False),
    Column("department", Text, nullable=False),
    Column("approver", Text, nullable=False),
    Column("out_seq", BigInteger),  # the unit's `officer` record that sealed it
    Column("in_us", BigInteger),
)
# Who may sign in to the page, and as what (dock/access.py). Not per dock:
# an agency's index on PostgreSQL holds one list of its people.
people = Table(
    "people",
    metadata,
    Column("name", Text, primary_key=True),  # NFC, checked (sealing.people)
    Column("role", Text, nullable=False),
    Column("department", Text, nullable=False),
    Column("password_hash", Text, nullable=False),  # werkzeug's: scrypt, salted
    Column("changed_us", BigInteger, nullable=False),
)
# Officers' enrolled fingerprints (dock/officer_prints.py; S0 art. 19): the
# reader's template, which reader made it, when. The agency's, like people.
prints = Table(
    "prints",
    metadata,
    Column("name", Text, primary_key=True),
    Column("template", Text, nullable=False),  # base64 of the reader's template
    Column("reader", Text, nullable=False),
    Column("enrolled_us", BigInteger, nullable=False),
)
# A recording's retention class raised or lowered, a hold placed or released
# (dock/retention.py): who, why, approved by whom. The agency's; a
# recording is its unit's serial and its record_start's seq.
retention_changes = Table(
    "retention_changes",
    metadata,
    Column("serial", Text, primary_key=True),
    Column("recording", BigInteger, primary_key=True),
    Column("at_us", BigInteger, primary_key=True),
    Column("change", Text, primary_key=True),  # class | hold | release
    Column("value", Text, nullable=False),  # a class, or a hold's kind
    Column("by", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("approved_by", Text, nullable=False),  # a lowered class's approver; "" otherwise
)
# Recordings whose files the dock removed at the end of their retention
# (dock/disposal.py): the signed statement beside the chain says which files.
disposals = Table(
    "disposals",
    metadata,
    Column("serial", Text, primary_key=True),
    Column("recording", BigInteger, primary_key=True),
    Column("id", Text, nullable=False),
    Column("disposed_us", BigInteger, nullable=False),
    Column("by", Text, nullable=False),
    Column("approver", Text, nullable=False),
    Column("request", Text, nullable=False),
    Column("class", Text, nullable=False),
    Column("kept_until", Text, nullable=False),
    Column("files", BigInteger, nullable=False),
)
# Access requests and their decisions (dock/requests.py; S0 art. 21-22 and
# annex 2): the agency's, like people. A decision is written once.
access_requests = Table(
    "access_requests",
    metadata,
    Column("id", Text, primary_key=True),
    Column("filed_us", BigInteger, nullable=False),
    Column("filed_by", Text, nullable=False),
    Column("requester", Text, nullable=False),
    Column("organisation", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("act", Text, nullable=False),
    Column("serial", Text, nullable=False),
    Column("officer", Text, nullable=False),
    Column("from_us", BigInteger, nullable=False),
    Column("to_us", BigInteger, nullable=False),
    Column("matter", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("approver", Text, nullable=False),
    Column("decided_us", BigInteger),
    Column("note", Text, nullable=False),
)
# Cases (dock/cases.py; S2 art. 10, 12): the agency's. A recording filed in
# a case is a row of case_recordings; the case hold comes with it
# (retention_changes), and is released only as any hold is.
cases = Table(
    "cases",
    metadata,
    Column("number", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("opened_by", Text, nullable=False),
    Column("opened_us", BigInteger, nullable=False),
)
case_recordings = Table(
    "case_recordings",
    metadata,
    Column("number", Text, primary_key=True),
    Column("serial", Text, primary_key=True),
    Column("recording", BigInteger, primary_key=True),
    Column("by", Text, nullable=False),
    Column("at_us", BigInteger, nullable=False),
)
# Spot checks (dock/spot_checks.py; S0 art. 28-29): a draw with its seed
# and the population it was drawn from (JSON lists of [serial, recording]),
# and one judgement per sampled recording, written once.
spot_checks = Table(
    "spot_checks",
    metadata,
    Column("id", Text, primary_key=True),
    Column("drawn_by", Text, nullable=False),
    Column("drawn_us", BigInteger, nullable=False),
    Column("first_day", Text, nullable=False),
    Column("last_day", Text, nullable=False),
    Column("serial", Text, nullable=False),  # "" for every unit
    Column("officer", Text, nullable=False),  # "" for every officer
    Column("size", BigInteger, nullable=False),
    Column("seed", Text, nullable=False),
    Column("population", Text, nullable=False),
    Column("sample", Text, nullable=False),
)
spot_judgements = Table(
    "spot_judgements",
    metadata,
    Column("check_id", Text, primary_key=True),
    Column("serial", Text, primary_key=True),
    Column("recording", BigInteger, primary_key=True),
    Column("by", Text, nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("recorded", Text, nullable=False),  # yes | no | na, one per S0 art. 29 item
    Column("conduct", Text, nullable=False),
    Column("handling", Text, nullable=False),
    Column("care", Text, nullable=False),
    Column("remark", Text, nullable=False),
)


class IndexTargetError(ValueError):
    """The index target is neither a file path nor a usable database URL."""


# What opening or using an index raises when the database is unusable.
INDEX_ERRORS: tuple[type[Exception], ...] = (IndexTargetError, SQLAlchemyError)


def describe_error(exc: BaseException) -> Msg | str:
    """One line for a person: ours (a Msg), or the driver's own message,
    without SQLAlchemy's statement dump and documentation link."""
    if len(exc.args) == 1 and isinstance(exc.args[0], Msg):
        return exc.args[0]
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def target_url(target: str | Path) -> URL:
    """A path (or anything without `://`) is a SQLite file; otherwise a URL,
    sqlite or postgresql only. A bare postgresql:// URL gets psycopg 3, the
    driver the dock extra installs."""
    if isinstance(target, Path) or "://" not in target:
        return URL.create("sqlite", database=str(target))
    try:
        url = make_url(target)
    except ArgumentError:
        raise IndexTargetError(
            msg("index: not a database URL or path: %(target)r", target=target)
        ) from None
    backend = url.get_backend_name()
    if backend == "postgresql" and url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if backend not in ("sqlite", "postgresql"):
        raise IndexTargetError(
            msg("index: %(backend)s is not supported (SQLite or PostgreSQL)", backend=backend)
        )
    return url


_WRITE = "bodycam_write"  # execution option: this transaction will write


def _engine(url: URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's own transaction handling leaves DDL outside transactions;
        # take it over (BEGIN below) so a migration is all or nothing
        dbapi_conn.isolation_level = None
        # a commit reaches the disk before it returns: a receipt follows it
        dbapi_conn.execute("PRAGMA synchronous=FULL")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # a writer takes the write lock at BEGIN: pulls run side by side
        # (dock serve), and a read lock upgraded later fails at once instead
        # of waiting its turn
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


class Index:
    def __init__(self, target: str | Path, dock: str | None = LOCAL_DOCK) -> None:
        self.dock = dock
        self.engine = _engine(target_url(target))
        try:
            with self.engine.connect() as conn:
                # only a new or old index is written to here: a report on a
                # copy the user may not write still opens
                fresh = _schema_current(conn)
            if not fresh:
                with self._tx() as conn:
                    if conn.dialect.name == "sqlite":
                        _migrate_v1(conn, dock or LOCAL_DOCK)
                    else:  # docks starting at once must not both create the tables
                        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(2121)")
                    metadata.create_all(conn)
        except BaseException:
            self.engine.dispose()
            raise

    @classmethod
    def open(cls, target: str | Path, dock: str | None = LOCAL_DOCK) -> Index:
        """A path opens (or creates) a SQLite file; a URL opens that database."""
        return cls(target, dock)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """One write transaction, committed when the block ends."""
        with self.engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn

    # -- reads ----------------------------------------------------------------

    def _mine(self, table: Table) -> Any:
        """The WHERE clause for this dock's rows; every dock's when unnamed."""
        return table.c.dock == self.dock if self.dock is not None else true()

    def _fetch(self, stmt: Any) -> list[Row]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]

    # Orders are made here, not by ORDER BY: PostgreSQL sorts text by its
    # database's collation and NULLs last, SQLite by bytes and NULLs first,
    # and the same index must give the same report on both.

    def unit(self, serial: str) -> Row | None:
        """This dock's row for the unit; across docks, the furthest pulled."""
        rows = self._fetch(select(units).where(units.c.serial == serial, self._mine(units)))
        rows.sort(key=lambda r: (-(r["head_seq"] or -1), r["dock"]))
        return rows[0] if rows else None

    def units(self) -> list[Row]:
        return sorted(
            self._fetch(select(units).where(self._mine(units))),
            key=lambda r: (r["serial"], r["dock"]),
        )

    def held(self, serial: str) -> dict[str, Row]:
        """File -> its row. Across docks the first dock to store a file wins,
        so a late export is judged by when the agency first held it."""
        rows = self._fetch(
            select(segments).where(segments.c.serial == serial, self._mine(segments))
        )
        rows.sort(key=lambda r: (r["stored_us"], r["dock"], r["file"]))
        out: dict[str, Row] = {}
        for r in rows:
            out.setdefault(r["file"], r)
        return out

    def receipts(self, serial: str) -> list[Row]:
        rows = self._fetch(
            select(receipts).where(receipts.c.serial == serial, self._mine(receipts))
        )
        return sorted(rows, key=lambda r: (r["dock_time_us"] or 0, r["dock"], r["id"]))

    def serials(self) -> list[str]:
        stmt = select(units.c.serial).where(self._mine(units)).distinct()
        with self.engine.connect() as conn:
            return sorted(conn.execute(stmt).scalars())

    def person(self, name: str) -> Row | None:
        rows = self._fetch(select(people).where(people.c.name == name))
        return rows[0] if rows else None

    def people(self) -> list[Row]:
        return sorted(self._fetch(select(people)), key=lambda r: r["name"])

    def ledger(self, serial: str | None = None) -> list[Row]:
        """Check-outs, oldest first (every dock's when the index is unnamed)."""
        stmt = select(ledger).where(self._mine(ledger))
        if serial is not None:
            stmt = stmt.where(ledger.c.serial == serial)
        return sorted(self._fetch(stmt), key=lambda r: (r["out_us"], r["serial"]))

    def print_of(self, name: str) -> Row | None:
        rows = self._fetch(select(prints).where(prints.c.name == name))
        return rows[0] if rows else None

    def retention_changes(self) -> list[Row]:
        """Every class change, hold and release, oldest first."""
        rows = self._fetch(select(retention_changes))
        return sorted(rows, key=lambda r: (r["at_us"], r["serial"], r["recording"]))

    def disposals(self) -> list[Row]:
        return sorted(self._fetch(select(disposals)), key=lambda r: (r["serial"], r["recording"]))

    def access_requests(self) -> list[Row]:
        """Every access request, oldest first."""
        rows = self._fetch(select(access_requests))
        return sorted(rows, key=lambda r: (r["filed_us"], r["id"]))

    def cases(self) -> list[Row]:
        return sorted(self._fetch(select(cases)), key=lambda r: (r["opened_us"], r["number"]))

    def case_recordings(self) -> list[Row]:
        rows = self._fetch(select(case_recordings))
        return sorted(rows, key=lambda r: (r["number"], r["serial"], r["recording"]))

    def cases_of(self, serial: str, recording: int) -> list[tuple[str, str]]:
        """(number, name) of every case the recording is filed in, by number."""
        stmt = (
            select(cases.c.number, cases.c.name)
            .join(case_recordings, case_recordings.c.number == cases.c.number)
            .where(case_recordings.c.serial == serial, case_recordings.c.recording == recording)
            .order_by(cases.c.number)
        )
        return [(r["number"], r["name"]) for r in self._fetch(stmt)]

    def spot_checks(self) -> list[Row]:
        return sorted(self._fetch(select(spot_checks)), key=lambda r: (r["drawn_us"], r["id"]))

    def spot_judgements(self) -> list[Row]:
        rows = self._fetch(select(spot_judgements))
        return sorted(rows, key=lambda r: (r["check_id"], r["at_us"]))

    # -- writes ---------------------------------------------------------------

    def check_out(self, row: dict[str, Any]) -> None:
        """A check-out; a unit still out is checked in at the same moment
        (handed straight on: the ledger has no period without a holder)."""
        with self._tx() as conn:
            conn.execute(
                update(ledger)
                .where(ledger.c.dock == self._writer(), ledger.c.serial == row["serial"],
                       ledger.c.in_us.is_(None))
                .values(in_us=row["out_us"])
            )  # fmt: skip
            conn.execute(self._insert(ledger, row))

    def check_in(self, serial: str, now_us: int) -> Row | None:
        """The open check-out of `serial` closed at `now_us`; None if it was not out."""
        with self._tx() as conn:
            open_row = conn.execute(
                select(ledger).where(ledger.c.dock == self._writer(),
                                     ledger.c.serial == serial, ledger.c.in_us.is_(None))
            ).mappings().first()  # fmt: skip
            if open_row is None:
                return None
            conn.execute(
                update(ledger)
                .where(ledger.c.dock == self._writer(), ledger.c.serial == serial,
                       ledger.c.out_us == open_row["out_us"])
                .values(in_us=now_us)
            )  # fmt: skip
        return {**dict(open_row), "in_us": now_us}

    def put_person(self, row: dict[str, Any]) -> bool:
        """An account added, or a known one's role, department or password
        replaced; True when it is new. (Any index may write it: people are
        the agency's, not one dock's.)"""
        mod = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        stmt = mod.insert(people).values(row)
        changed = {k: stmt.excluded[k] for k in row if k != "name"}
        with self._tx() as conn:
            new = conn.execute(select(people.c.name).where(people.c.name == row["name"])).first()
            conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_=changed))
        return new is None

    def put_print(self, row: dict[str, Any]) -> None:
        """An officer's print enrolled, or enrolled again (the old one replaced)."""
        mod = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        stmt = mod.insert(prints).values(row)
        changed = {k: stmt.excluded[k] for k in row if k != "name"}
        with self._tx() as conn:
            conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_=changed))

    def add_retention_change(self, row: dict[str, Any]) -> None:
        with self._tx() as conn:
            conn.execute(retention_changes.insert().values(row))

    def add_disposal(self, row: dict[str, Any]) -> None:
        with self._tx() as conn:
            conn.execute(disposals.insert().values(row))

    def add_case(self, row: dict[str, Any]) -> bool:
        """A case opened; False when its number is taken (a case is never renamed)."""
        return self._insert_once(cases, row)

    def file_in_case(self, row: dict[str, Any], hold: dict[str, Any]) -> bool:
        """A recording filed in a case, with the case hold (a retention_changes
        row) in the same transaction; False when it was filed there already."""
        with self._tx() as conn:
            if not self._insert_once(case_recordings, row, conn):
                return False
            conn.execute(retention_changes.insert().values(hold))
        return True

    def add_spot_check(self, row: dict[str, Any]) -> None:
        with self._tx() as conn:
            conn.execute(spot_checks.insert().values(row))

    def add_judgement(self, row: dict[str, Any]) -> bool:
        """A sampled recording judged; False when it was judged already (a
        ledger line is written once)."""
        return self._insert_once(spot_judgements, row)

    def _insert_once(
        self, table: Table, row: dict[str, Any], conn: Connection | None = None
    ) -> bool:
        """INSERT, or nothing when the primary key is there; True when inserted."""
        mod = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        keys = [c.name for c in table.primary_key.columns]
        stmt = mod.insert(table).values(row).on_conflict_do_nothing(index_elements=keys)
        if conn is not None:
            return bool(conn.execute(stmt).rowcount == 1)
        with self._tx() as c:
            return bool(c.execute(stmt).rowcount == 1)

    def add_access_request(self, row: dict[str, Any]) -> None:
        """A request filed (any index may write it: requests are the agency's)."""
        with self._tx() as conn:
            conn.execute(access_requests.insert().values(row))

    def decide_access_request(
        self, rid: str, state: str, approver: str, decided_us: int, note: str
    ) -> bool:
        """A pending request approved or refused; False when it was not pending
        (decided already, or none): a decision is never changed."""
        with self._tx() as conn:
            done = conn.execute(
                update(access_requests)
                .where(access_requests.c.id == rid, access_requests.c.state == "pending")
                .values(state=state, approver=approver, decided_us=decided_us, note=note)
            )
        return bool(done.rowcount == 1)

    def _writer(self) -> str:
        if self.dock is None:
            raise ValueError("an index opened for every dock (dock=None) is read-only")
        return self.dock

    def _insert(self, table: Table, row: dict[str, Any]) -> Any:
        """INSERT of one row as this dock, in the dialect that has ON CONFLICT."""
        values = {**row, "dock": self._writer()}
        mod = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return mod.insert(table).values(values)

    def _upsert(self, table: Table, row: dict[str, Any]) -> None:
        with self._tx() as conn:
            conn.execute(self._upsert_stmt(table, row))

    def _upsert_stmt(self, table: Table, row: dict[str, Any]) -> Any:
        stmt = self._insert(table, row)
        keys = [c.name for c in table.primary_key.columns]
        changed = {k: stmt.excluded[k] for k in row if k not in keys}
        return (
            stmt.on_conflict_do_update(index_elements=keys, set_=changed)
            if changed
            else stmt.on_conflict_do_nothing(index_elements=keys)
        )

    def pin_unit(self, serial: str, device_key: str, officer: str) -> None:
        """First sight of a unit: its key is pinned; later calls change nothing."""
        stmt = self._insert(
            units, {"serial": serial, "device_key": device_key, "officer": officer}
        ).on_conflict_do_nothing(index_elements=["dock", "serial"])
        with self._tx() as conn:
            conn.execute(stmt)

    def update_unit(self, serial: str, head_seq: int, now_us: int) -> None:
        stmt = (
            update(units)
            .where(units.c.dock == self._writer(), units.c.serial == serial)
            .values(head_seq=head_seq, last_pull_us=now_us)
        )
        with self._tx() as conn:
            conn.execute(stmt)

    def put_unit(self, row: dict[str, Any]) -> None:
        """A whole units row (sync): inserted, or its columns replaced."""
        self._upsert(units, _without_dock(row))

    def add_segment(self, **row: Any) -> None:
        self._upsert(segments, _without_dock(row))

    def add_segments(self, rows: Iterable[dict[str, Any]]) -> None:
        """Several segments' rows in one transaction: a pull commits what it
        stored in batches (one synchronous commit each, not one a segment)."""
        with self._tx() as conn:
            for row in rows:
                conn.execute(self._upsert_stmt(segments, _without_dock(row)))

    def forget_segment(self, serial: str, file: str) -> None:
        """This dock no longer holds the file (its copy was set aside as
        altered): the next pull fetches it again. Other docks' rows stay."""
        stmt = delete(segments).where(
            segments.c.dock == self._writer(),
            segments.c.serial == serial,
            segments.c.file == file,
        )
        with self._tx() as conn:
            conn.execute(stmt)

    def put_receipt(self, row: dict[str, Any]) -> None:
        self._upsert(receipts, _without_dock(row))

    def add_receipt(
        self, rid: str, serial: str, body: dict[str, Any], files: Iterable[str], accepted: bool
    ) -> None:
        files = list(files)
        row = {
            "id": rid,
            "serial": serial,
            "from_seq": body["from_seq"],
            "to_seq": body["to_seq"],
            "head": body["head"],
            "dock_time_us": body["dock_time_us"],
            "segments": len(files),
            "accepted": accepted,
        }
        stmt = self._insert(receipts, row)
        stmt = stmt.on_conflict_do_update(
            index_elements=["dock", "id"],
            set_={k: stmt.excluded[k] for k in row if k != "id"},
        )
        with self._tx() as conn:  # the receipt and what it covers: one commit
            conn.execute(stmt)
            if accepted and files:
                conn.execute(
                    update(segments)
                    .where(segments.c.dock == self.dock, segments.c.file.in_(files))
                    .values(receipt=rid)
                )


def _without_dock(row: dict[str, Any]) -> dict[str, Any]:
    """A row copied from another index is written under this index's dock."""
    return {k: v for k, v in row.items() if k != "dock"}


def _schema_current(conn: Connection) -> bool:
    insp = inspect(conn)
    if not {t.name for t in metadata.sorted_tables} <= set(insp.get_table_names()):
        return False
    return "dock" in {c["name"] for c in insp.get_columns("segments")}


def _migrate_v1(conn: Connection, dock: str) -> None:
    """An index made before rows carried their dock (SQLite only): its rows
    move into the new tables under `dock`, in the caller's transaction."""
    names = set(inspect(conn).get_table_names())
    if "segments" not in names:
        return
    if "dock" in {c["name"] for c in inspect(conn).get_columns("segments")}:
        return
    old = [t for t in metadata.sorted_tables if t.name in names]
    for t in old:
        conn.exec_driver_sql(f"ALTER TABLE {t.name} RENAME TO {t.name}_v1")
    metadata.create_all(conn)
    for t in old:
        cols = ", ".join(c.name for c in t.columns if c.name != "dock")
        conn.exec_driver_sql(
            f"INSERT INTO {t.name} (dock, {cols}) SELECT ?, {cols} FROM {t.name}_v1", (dock,)
        )
        conn.exec_driver_sql(f"DROP TABLE {t.name}_v1")
