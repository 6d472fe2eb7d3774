"""Disposal at the agency (issue 27, by issue 26's rules):

    bodycam-dock dispose --dock-dir D --serial S --recording SEQ --request ID --by NAME
        (--agency A --name DOCK | --key F)
        --to s3://BUCKET --endpoint URL [--credentials FILE] [--ca FILE] --index URL

The rules are the dock's (dock/disposal.py `check_due`), read from the dock
folder where the recording's class, holds, the `dispose` request and its
approval are kept: due (expired, unheld), a request filed by NAME and
approved by the policy's approver, a copy that verifies, a dock key the
unit's genesis enrolls. A refusal there is made before any call to the
store.

Then the store decides, not we: every version of the recording's segment
objects (`units/<serial>/segments/<file>`) is deleted by its version id. We
never check a lock ourselves first: a version still under its COMPLIANCE
retention, or under a legal hold, is refused by the store itself
(AccessDenied), and that refusal is what is shown, in one line naming the
object, the store's code and the lock's end (read after the refusal). The
first refusal stops the disposal: nothing further is deleted, no statement
is written, nothing is recorded as disposed (the versions of one recording
share one lock, so in practice the first delete is the one refused and
nothing at all is removed; a run stopped later is completed by the next).

Once every version is gone: the dock's signed disposal statement
(sealing/disposals.py, the format the dock keeps beside its chain) is stored
as `units/<serial>/disposals/<id>.json`, checksummed, read back, and locked
like the unit's other objects (as the device key's object is: the unit's
lock); then one transaction of the agency index adds the disposal's row and
removes the segment rows of those files (every dock's), so no row is left
without its object. A statement this request already stored (a run cut
after it) is used again rather than a second one written. The audit log
is the dock folder's (the caller's lines: started, refused, ok).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete

from link.locale import Locale
from sealing import layout
from sealing.disposals import DISPOSALS, Disposal, DisposalRefused, parse_disposal
from sealing.keys import fingerprint

from . import index as dock_index
from .disposal import DisposeRefused, Due, check_due
from .index import Index
from .object_store import AgencyBucket, Lock, StoreRefused
from .sync import MIN_LOCK
from .texts import Msg, msg, msg_n


class RefusedByStore(DisposeRefused):
    """The store refused a delete: its Msg names the object, the store's code
    and the lock's end; `removed` versions went before it (normally none)."""

    def __init__(self, what: Msg, code: str, removed: int) -> None:
        super().__init__(what)
        self.code = code
        self.removed = removed


@dataclass(frozen=True)
class AgencyDisposed:
    statement: Disposal
    key: str  # the statement's object
    versions: int  # object versions deleted by this run
    files: int  # the recording's files, none of whose objects is left
    reused: bool  # the statement was stored by an earlier, cut run


def segment_key(serial: str, file: str) -> str:
    return f"units/{serial}/{layout.SEGMENTS}/{file}"


def statement_key(serial: str, sid: str) -> str:
    return f"units/{serial}/{DISPOSALS}/{sid}.json"


def dispose_at_agency(
    dock_dir: Path,
    store: AgencyBucket,
    index_target: str | Path,
    serial: str,
    recording: int,
    request_id: str,
    by: str,
    key: Ed25519PrivateKey,
    now_us: int,
    locale: Locale,
    started: Callable[[], None] | None = None,
) -> AgencyDisposed:
    """`started`: called once the rules allow it, before the first call that
    changes the store (the audit log's line)."""
    local = Index.open(dock_dir / "dock.sqlite", dock=None)
    try:
        due = check_due(dock_dir, local, serial, recording, request_id, by, key, now_us, locale)
    finally:
        local.close()
    agency = Index.open(index_target, dock=None)
    try:
        done = next((r for r in agency.disposals()
                     if r["serial"] == serial and r["recording"] == recording), None)  # fmt: skip
        if done is not None:
            raise DisposeRefused(
                msg(
                    "recording %(seq)s was disposed of at the agency already (%(id)s)",
                    seq=recording,
                    id=str(done["id"])[:16],
                )
            )
        if started is not None:
            started()
        versions = 0
        for f in due.files:
            k = segment_key(serial, str(f["file"]))
            for version, _marker in store.versions_of(k):
                try:
                    store.delete_version(k, version)
                except StoreRefused as exc:
                    raise _refused(store, k, version, exc, versions) from None
                versions += 1
        statement, reused = _statement(store, due, key, now_us)
        files = [str(f["file"]) for f in due.files]
        with agency._tx() as conn:  # the disposal and the rows it ends: one commit
            conn.execute(dock_index.disposals.insert().values(due.row(statement, len(files))))
            conn.execute(
                delete(dock_index.segments).where(
                    dock_index.segments.c.serial == serial, dock_index.segments.c.file.in_(files)
                )
            )
        return AgencyDisposed(statement, statement_key(serial, statement.id), versions,
                              len(files), reused)  # fmt: skip
    finally:
        agency.close()


def _refused(
    store: AgencyBucket, key: str, version: str, exc: StoreRefused, removed: int
) -> RefusedByStore:
    """The store's refusal, with the lock it keeps (read now, after it)."""
    until, held = "?", False
    try:
        head = store.head(key, version)
    except (StoreRefused, OSError):
        head = None
    if head is not None:
        held = head.hold
        if head.until is not None:
            until = head.until.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lock = (msg("locked until %(until)s and under a legal hold", until=until) if held
            else msg("locked until %(until)s", until=until))  # fmt: skip
    if removed == 0:
        what = msg("the store refused to delete %(key)s (version %(version)s): %(code)s, "
                   "%(lock)s; nothing removed, nothing recorded as disposed", key=key,
                   version=version, code=exc.code, lock=lock)  # fmt: skip
    else:
        what = msg_n(
            "the store refused to delete %(key)s (version %(version)s): %(code)s, %(lock)s; "
            "%(n)s version was removed before it, nothing recorded as disposed (run it again "
            "once the lock is over)",
            "the store refused to delete %(key)s (version %(version)s): %(code)s, %(lock)s; "
            "%(n)s versions were removed before it, nothing recorded as disposed (run it again "
            "once the lock is over)",
            removed, key=key, version=version, code=exc.code, lock=lock,
        )  # fmt: skip
    return RefusedByStore(what, exc.code, removed)


def _statement(
    store: AgencyBucket, due: Due, key: Ed25519PrivateKey, now_us: int
) -> tuple[Disposal, bool]:
    """This disposal's signed statement in the store: one that the same
    request already stored there, or a new one, locked as the unit is."""
    mine = fingerprint(key.public_key())
    for k in sorted(store.keys(f"units/{due.serial}/{DISPOSALS}/")):
        data = store.get_bytes(k, limit=1 << 20)
        try:
            old = parse_disposal(data or b"")
        except DisposalRefused:
            continue
        body: dict[str, Any] = old.body
        if (k == statement_key(due.serial, old.id) and old.dock == mine
                and (body["serial"], body["recording"], body["request"], body["by"])
                == (due.serial, due.recording, due.request, due.by)):  # fmt: skip
            return old, True
    statement = due.statement(key, now_us)
    unit = store.head(f"units/{due.serial}/{layout.DEVICE_PUB}")
    now = datetime.now(UTC)
    until = max(unit.until if unit and unit.until else now, now + MIN_LOCK)
    lock = Lock(until, hold=bool(unit and unit.hold))
    data = statement.to_bytes()
    store.put_verified(statement_key(due.serial, statement.id), data,
                       hashlib.sha256(data).hexdigest(), lock)  # fmt: skip
    return statement, False
