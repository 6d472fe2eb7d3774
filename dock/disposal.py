"""Disposal at the end of retention (S0 art. 24-25; issue 26):

    bodycam-dock dispose --dock-dir D --serial S --recording SEQ --request ID --by NAME \
        (--agency A --name DOCK | --key F)

A recording is disposed of only when it is due (expired under its class and
not held: dock/retention.py), only on an approved `dispose` request filed by
`--by` (the approver dock.toml's [retention] names; dock/requests.py), and
only from a copy that verifies. The dock writes its signed disposal
statement (sealing/disposals.py) beside the unit's chain first, then
removes exactly the recording's files, then indexes it; `bodycam verify` of
the dock's copy then reports those files as disposed, not missing. The
chain, the receipts and the statement stay.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from link.locale import Locale
from sealing.cli_verify import dock_lookup
from sealing.disposals import DISPOSALS, Disposal, make_disposal
from sealing.files import fsync_dir, write_durably
from sealing.keys import fingerprint
from sealing.recordings import recordings

from .index import Index
from .requests import Request, why_not
from .retention import CLASS_NAMES, HOLD_NAMES, load_policy
from .texts import Msg, msg


class DisposeRefused(Exception):
    """Nothing was removed; the Msg says why."""


@dataclass(frozen=True)
class Disposed:
    statement: Disposal
    removed: tuple[str, ...]


@dataclass(frozen=True)
class Due:
    """A recording checked against the rules: due for disposal on an
    approved `dispose` request of the person disposing, from a dock copy
    that verifies, with a dock key the unit's genesis enrolls."""

    serial: str
    recording: int
    cls: str
    kept_until: date
    by: str
    approver: str
    request: str
    files: tuple[dict[str, Any], ...]  # {seq, file, ct_sha256}: its media files in the chain
    disposed: dict[str, Any] | None  # the dock's own disposal of its copy, if any

    def statement(self, key: Ed25519PrivateKey, now_us: int) -> Disposal:
        return make_disposal(
            key, serial=self.serial, recording=self.recording, files=list(self.files),
            **{"class": self.cls}, kept_until=self.kept_until.isoformat(), disposed_us=now_us,
            by=self.by, approver=self.approver, request=self.request,
        )  # fmt: skip

    def row(self, statement: Disposal, files: int) -> dict[str, Any]:
        """Its row of the index's disposals."""
        return {
            "serial": self.serial, "recording": self.recording, "id": statement.id,
            "disposed_us": statement.body["disposed_us"], "by": self.by,
            "approver": self.approver, "request": self.request, "class": self.cls,
            "kept_until": self.kept_until.isoformat(), "files": files,
        }  # fmt: skip


def check_due(
    dock_dir: Path,
    index: Index,
    serial: str,
    recording: int,
    request_id: str,
    by: str,
    key: Ed25519PrivateKey,
    now_us: int,
    locale: Locale,
) -> Due:
    """The lifecycle's rules (issue 26), from the dock folder where the
    recording's class, holds, the request and its approval are kept; the
    same for the dock's copy and the agency's (dock/agency_disposal.py).
    DisposeRefused says why not; nothing is read from any store but the
    dock's."""
    from . import courtcopy  # verifies the copy (PyAV loads with it)
    from .compliance import model

    view = model.read_dock(dock_dir, index, locale=locale)
    unit = next((u for u in view.units if u.serial == serial), None)
    v = next((r for r in unit.recordings if r.start_seq == recording), None) if unit else None
    if v is None:
        raise DisposeRefused(msg("no recording %(seq)s of %(serial)s on this dock",
                                 seq=recording, serial=serial))  # fmt: skip
    as_of = model.day_of(now_us, locale)
    if v.holds:
        raise DisposeRefused(msg("recording %(seq)s is held (%(hold)s): not due",
                                 seq=recording, hold=HOLD_NAMES[v.holds[0]]))  # fmt: skip
    if v.expires is None or as_of <= v.expires:
        raise DisposeRefused(_kept(recording, v.retention, v.expires))
    row = next((r for r in index.access_requests() if r["id"] == request_id), None)
    if row is None:
        raise DisposeRefused(msg("no request %(id)s at this dock", id=request_id[:20]))
    req = Request.from_row(row)
    why = why_not(req, by, "dispose", serial, v.officer, v.start_us, v.end_us, now_us)
    if why is not None:
        raise DisposeRefused(why)
    approver = index.person(req.approver)
    wanted = load_policy(dock_dir).approver
    if approver is None or approver["role"] != wanted:
        raise DisposeRefused(msg("request %(id)s was approved by %(name)s, who is not of "
                                 "the role that approves disposals (%(role)s)", id=req.id,
                                 name=req.approver, role=wanted))  # fmt: skip
    try:
        report = courtcopy.verified_chain(dock_dir, serial)
        rec = next((r for r in recordings(report.chain) if r.start.seq == recording), None)
        if rec is None:
            raise DisposeRefused(msg("no recording %(seq)s of %(serial)s on this dock",
                                     seq=recording, serial=serial))  # fmt: skip
        # the files to be removed verified first (an altered one is found,
        # not destroyed unseen); the unit's other recordings are not read
        courtcopy.verified_copy(dock_dir, serial, only={str(r.body["file"]) for r in rec.media()})
    except courtcopy.CaseError as exc:
        raise DisposeRefused(exc.args[0]) from None
    genesis = report.chain[0].body if report.chain else {}
    if fingerprint(key.public_key()) not in (genesis.get("docks") or []):
        raise DisposeRefused(msg("this dock's key is not one the unit's genesis enrolls"))
    files = tuple({"seq": r.seq, "file": r.body["file"], "ct_sha256": r.body["ct_sha256"]}
                  for r in rec.media())  # fmt: skip
    return Due(serial, recording, v.retention, v.expires, by, req.approver, req.id, files,
               v.disposed)  # fmt: skip


def dispose(
    dock_dir: Path,
    serial: str,
    recording: int,
    request_id: str,
    by: str,
    key: Ed25519PrivateKey,
    now_us: int,
    locale: Locale,
    started: Callable[[], None] | None = None,
) -> Disposed:
    """`started`: called (no arguments) once everything is checked, before
    anything is written or removed: the audit log's line."""
    index = Index.open(dock_dir / "dock.sqlite", dock=None)
    try:
        due = check_due(dock_dir, index, serial, recording, request_id, by, key, now_us, locale)
        if due.disposed is not None:
            raise DisposeRefused(msg("recording %(seq)s was disposed of already (%(id)s)",
                                     seq=recording, id=str(due.disposed["id"])[:16]))  # fmt: skip
        statement = due.statement(key, now_us)
        if started is not None:
            started()
        folder = dock_dir / "units" / serial / DISPOSALS
        folder.mkdir(mode=0o700, exist_ok=True)
        write_durably(folder / f"{statement.id}.json", statement.to_bytes())
        fsync_dir(folder)
        removed = _remove(dock_dir, [str(f["file"]) for f in due.files])
        index.add_disposal(due.row(statement, len(removed)))
        return Disposed(statement, tuple(removed))
    finally:
        index.close()


def _kept(recording: int, cls: str, until: date | None) -> Msg:
    if until is None:
        return msg("recording %(seq)s is kept without end (%(cls)s)", seq=recording,
                   cls=CLASS_NAMES[cls])  # fmt: skip
    return msg("recording %(seq)s is kept until %(day)s (%(cls)s): not due", seq=recording,
               day=until.isoformat(), cls=CLASS_NAMES[cls])  # fmt: skip


def _remove(dock_dir: Path, files: list[str]) -> list[str]:
    """The files the dock holds, removed (each folder synced): their names."""
    locate = dock_lookup(dock_dir)
    removed, folders = [], set()
    for name in files:
        path = locate(name)
        if path is None:
            continue  # never pulled, or removed by an earlier, cut disposal
        os.unlink(path)
        folders.add(path.parent)
        removed.append(name)
    for folder in folders:
        fsync_dir(folder)
    return removed
