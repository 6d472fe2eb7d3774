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
    from . import courtcopy  # verifies the copy (PyAV loads with it)
    from .compliance import model

    index = Index.open(dock_dir / "dock.sqlite", dock=None)
    try:
        view = model.read_dock(dock_dir, index, locale=locale)
        unit = next((u for u in view.units if u.serial == serial), None)
        v = next((r for r in unit.recordings if r.start_seq == recording), None) if unit else None
        if v is None:
            raise DisposeRefused(msg("no recording %(seq)s of %(serial)s on this dock",
                                     seq=recording, serial=serial))  # fmt: skip
        if v.disposed is not None:
            raise DisposeRefused(msg("recording %(seq)s was disposed of already (%(id)s)",
                                     seq=recording, id=str(v.disposed["id"])[:16]))  # fmt: skip
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
            report = courtcopy.verified_copy(dock_dir, serial)
        except courtcopy.CaseError as exc:
            raise DisposeRefused(exc.args[0]) from None
        genesis = report.chain[0].body if report.chain else {}
        if fingerprint(key.public_key()) not in (genesis.get("docks") or []):
            raise DisposeRefused(msg("this dock's key is not one the unit's genesis enrolls"))
        rec = next(r for r in recordings(report.chain) if r.start.seq == recording)
        files = [{"seq": r.seq, "file": r.body["file"], "ct_sha256": r.body["ct_sha256"]}
                 for r in rec.media()]  # fmt: skip
        statement = make_disposal(
            key, serial=serial, recording=recording, files=files, **{"class": v.retention},
            kept_until=v.expires.isoformat(), disposed_us=now_us, by=by, approver=req.approver,
            request=req.id,
        )  # fmt: skip
        if started is not None:
            started()
        folder = dock_dir / "units" / serial / DISPOSALS
        folder.mkdir(mode=0o700, exist_ok=True)
        write_durably(folder / f"{statement.id}.json", statement.to_bytes())
        fsync_dir(folder)
        removed = _remove(dock_dir, [str(f["file"]) for f in files])
        index.add_disposal({
            "serial": serial, "recording": recording, "id": statement.id,
            "disposed_us": now_us, "by": by, "approver": req.approver, "request": req.id,
            "class": v.retention, "kept_until": v.expires.isoformat(), "files": len(removed),
        })  # fmt: skip
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
