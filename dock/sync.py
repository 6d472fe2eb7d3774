"""Push a dock's verified copies to the agency's store (R21):

    python tools/dock.py sync --dock-dir D --to AGENCY_DIR [--index URL_OR_PATH] [--name DOCK]

Per unit: the device key, every segment the dock's index holds (copied to the
same relative path, fsynced, read back and SHA-256 checked against the
index's ct_sha256 before its row is written), the receipts, the chain copy if
it extends the agency's and the dock's last verification if it is newer; then
the unit's index rows, under the dock's name, into the agency index
(`AGENCY_DIR/dock.sqlite`, or PostgreSQL).

Safe to repeat: what the agency already holds, byte for byte, is not pushed
again; a copy cut short is left as `<file>.part` and redone from its start.
Nothing on the dock is changed or deleted. A segment whose bytes on the
dock's disk no longer match the index, and a unit whose chain or key differs
from the agency's, are refused by name; everything else still goes.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sealing import layout
from sealing.files import fsync_dir, hash_file, write_durably
from sealing.receipts import ReceiptRefused, parse_receipt

from .dock_locale import add_locale_arguments
from .index import INDEX_ERRORS, VERIFICATION, Index, Row, describe_error
from .texts import ENGLISH, Msg, Texts, msg

BLOCK = 1024 * 1024
DOCK_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class SyncError(Exception):
    """Bad input: there is nothing sensible to push. Its Msg says why."""


class Refused(Exception):
    """One item (a segment, a receipt, a unit) is not pushed; others go on.
    Its Msg says why."""


@dataclass
class SyncResult:
    dock: str
    pushed: list[str] = field(default_factory=list)  # paths written, relative to the agency
    rows: int = 0  # index rows added to or changed in the agency index
    refused: list[Msg] = field(default_factory=list)  # each names what, and why

    @property
    def ok(self) -> bool:
        return not self.refused


@dataclass
class _Sync:
    local: Index  # the dock's own index, read only
    agency: Index  # the agency's, written as this dock
    dock_dir: Path
    agency_dir: Path
    result: SyncResult


def sync(
    dock_dir: Path,
    agency_dir: Path,
    index_target: str | Path | None = None,
    dock_name: str | None = None,
) -> SyncResult:
    name = dock_name or dock_dir.resolve().name
    if not DOCK_NAME_RE.fullmatch(name):
        raise SyncError(
            msg("dock name %(name)r: letters, digits, '.', '_', '-' (at most 64)", name=name)
        )
    if not (dock_dir / "dock.sqlite").is_file():
        raise SyncError(
            msg("%(folder)s is not a dock folder (no dock.sqlite)", folder=str(dock_dir))
        )
    if agency_dir.resolve() == dock_dir.resolve():
        raise SyncError(msg("the agency store must be another folder than the dock's"))
    _make_dirs(agency_dir)
    result = SyncResult(name)
    with _agency_lock(agency_dir):
        local = Index.open(dock_dir / "dock.sqlite", dock=None)
        try:
            agency = Index.open(index_target or agency_dir / "dock.sqlite", dock=name)
            try:
                job = _Sync(local, agency, dock_dir, agency_dir, result)
                for serial in local.serials():
                    try:
                        _sync_unit(job, serial)
                    except Refused as exc:
                        result.refused.append(
                            msg("unit %(serial)s: %(why)s; unit not synced", serial=serial, why=exc)
                        )
            finally:
                agency.close()
        finally:
            local.close()
    return result


@contextmanager
def _agency_lock(agency_dir: Path) -> Iterator[None]:
    """One sync at a time into an agency folder: two docks pushing the same
    unit would otherwise both decide on, and write, its chain copy."""
    fd = os.open(agency_dir / ".sync-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _sync_unit(job: _Sync, serial: str) -> None:
    try:
        layout.check_serial(serial)  # a name from a database becomes a folder name
    except ValueError as exc:
        raise Refused(str(exc)) from None
    src = job.dock_dir / "units" / serial
    dst = job.agency_dir / "units" / serial
    try:
        chain = (src / layout.CHAIN).read_bytes()
        key = (src / layout.DEVICE_PUB).read_bytes()
    except OSError as exc:
        raise Refused(
            msg(
                "the dock's copy is incomplete (%(error)s: %(file)s)",
                error=exc.strerror,
                file=str(exc.filename),
            )
        ) from None
    held_chain = _read(dst / layout.CHAIN)
    held_key = _read(dst / layout.DEVICE_PUB)
    if held_key is not None and held_key != key:
        raise Refused(msg("the agency holds another device key for this serial"))
    if held_chain is not None and not (
        chain.startswith(held_chain) or held_chain.startswith(chain)
    ):
        raise Refused(
            msg(
                "this dock's chain does not extend the agency's copy (history rewritten); "
                "the agency's copy is kept"
            )
        )
    _make_dirs(dst)
    if held_key is None:
        _write(job, dst / layout.DEVICE_PUB, key)
    _sync_segments(job, serial)
    _sync_receipts(job, serial, src, dst)
    # an older chain (another dock pulled the unit later) is already covered
    if held_chain is None or (len(chain) > len(held_chain) and chain.startswith(held_chain)):
        _write(job, dst / layout.CHAIN, chain)
    _sync_verification(job, serial, src, dst)
    # the unit row last: a report lists a unit once everything above is in
    unit = job.local.unit(serial)
    if unit is not None:
        _put_if_changed(job, job.agency.unit(serial), unit, job.agency.put_unit)


def _sync_segments(job: _Sync, serial: str) -> None:
    have = job.agency.held(serial)
    for file, row in sorted(job.local.held(serial).items()):
        try:
            _push_segment(job, row)
        except Refused as exc:
            job.result.refused.append(
                msg("segment %(file)s (%(serial)s): %(why)s", file=file, serial=serial, why=exc)
            )
            continue
        _put_if_changed(job, have.get(file), row, lambda r: job.agency.add_segment(**r))


def _push_segment(job: _Sync, row: Row) -> None:
    rel = Path(row["path"])
    if rel.is_absolute() or ".." in rel.parts:
        raise Refused(msg("the index files it outside the dock folder: %(path)s", path=str(rel)))
    dst = job.agency_dir / rel
    if dst.exists():
        if hash_file(dst)[0] == row["ct_sha256"]:
            return  # already there, verified: nothing to push
        raise Refused(
            msg("the agency already holds other bytes at %(path)s; not overwritten", path=str(rel))
        )
    _make_dirs(dst.parent)
    _copy_verified(job.dock_dir / rel, dst, row["ct_sha256"])
    job.result.pushed.append(str(rel))


def _copy_verified(src: Path, dst: Path, want: str) -> None:
    """Copy through `<dst>.part` (truncated first: what a cut left is redone),
    checking the dock's bytes as they are read; fsync, read the copy back
    from the agency's disk, and only a match is renamed into place."""
    part = dst.with_name(dst.name + ".part")
    buf = memoryview(bytearray(BLOCK))
    digest = hashlib.sha256()
    try:
        with src.open("rb") as fi, part.open("wb") as fo:
            while n := fi.readinto(buf):
                digest.update(buf[:n])
                fo.write(buf[:n])
            fo.flush()
            os.fsync(fo.fileno())
            # drop the now clean pages so the read-back below comes from the disk
            os.posix_fadvise(fo.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    except FileNotFoundError:
        part.unlink(missing_ok=True)
        raise Refused(msg("missing from the dock's disk; not pushed")) from None
    if digest.hexdigest() != want:
        part.unlink()
        raise Refused(
            msg(
                "its bytes on the dock's disk no longer match the index "
                "(sha256 %(got)s, index %(want)s); not pushed",
                got=digest.hexdigest()[:16],
                want=want[:16],
            )
        )
    back, _ = hash_file(part)
    if back != want:
        part.unlink()
        raise Refused(msg("the copy written to the agency read back different; not pushed"))
    os.replace(part, dst)
    fsync_dir(dst.parent)


def _sync_receipts(job: _Sync, serial: str, src: Path, dst: Path) -> None:
    folder = src / layout.RECEIPTS
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        data = path.read_bytes()
        try:
            rid = parse_receipt(data).id
        except ReceiptRefused as exc:
            job.result.refused.append(
                msg(
                    "receipt %(file)s (%(serial)s): %(why)s",
                    file=path.name,
                    serial=serial,
                    why=str(exc),
                )
            )
            continue
        if path.stem != rid:
            job.result.refused.append(
                msg(
                    "receipt %(file)s (%(serial)s): its id is %(id)s",
                    file=path.name,
                    serial=serial,
                    id=rid,
                )
            )
            continue
        target = dst / layout.RECEIPTS / path.name
        held = _read(target)
        if held is None:
            _make_dirs(target.parent)
            _write(job, target, data)
        elif held != data:
            job.result.refused.append(
                msg(
                    "receipt %(file)s (%(serial)s): the agency holds other bytes; not overwritten",
                    file=path.name,
                    serial=serial,
                )
            )
    have = {r["id"]: r for r in job.agency.receipts(serial)}
    for row in job.local.receipts(serial):
        _put_if_changed(job, have.get(row["id"]), row, job.agency.put_receipt)


def _sync_verification(job: _Sync, serial: str, src: Path, dst: Path) -> None:
    data = _read(src / VERIFICATION)
    if data is None:
        return  # a dock from before verification.json
    mine = _checked(data)
    if mine is None:
        job.result.refused.append(
            msg("%(file)s (%(serial)s): unreadable; not pushed", file=VERIFICATION, serial=serial)
        )
        return
    held = _read(dst / VERIFICATION)
    theirs = _checked(held) if held is not None else None
    if theirs is None or mine > theirs:
        _write(job, dst / VERIFICATION, data)


def _checked(data: bytes) -> tuple[int, int] | None:
    """(head_seq, checked_us) of a verification.json: newer is larger."""
    try:
        v = json.loads(data)
        return int(v["head_seq"]), int(v["checked_us"])
    except (ValueError, TypeError, KeyError):
        return None


def _put_if_changed(job: _Sync, old: Row | None, new: Row, put: Callable[[Row], None]) -> None:
    """Write a row only when the agency's differs (the dock column aside), so
    a repeated sync writes nothing and says so."""
    row = {k: v for k, v in new.items() if k != "dock"}
    if old is not None and {k: v for k, v in old.items() if k != "dock"} == row:
        return
    put(row)
    job.result.rows += 1


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _write(job: _Sync, path: Path, data: bytes) -> None:
    write_durably(path, data)
    job.result.pushed.append(str(path.relative_to(job.agency_dir)))


def _make_dirs(path: Path) -> None:
    """mkdir -p, with each new folder's entry fsynced into its parent, so a
    file renamed into it is not lost with the folder at a power cut."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        fsync_dir(d.parent)


# -- command line ---------------------------------------------------------------


def add_parser(sub: Any, t: Texts = ENGLISH) -> None:
    sy = sub.add_parser("sync", help=t.tr("push this dock's verified copies to the agency's store"))
    sy.add_argument("--dock-dir", type=Path, required=True)
    sy.add_argument("--to", type=Path, required=True, metavar="AGENCY_DIR")
    sy.add_argument(
        "--index",
        help=t.tr(
            "the agency index: postgresql+psycopg://... or a SQLite file "
            "(default AGENCY_DIR/dock.sqlite)"
        ),
    )
    sy.add_argument(
        "--name", help=t.tr("this dock's name in the agency index (default: the folder's)")
    )
    add_locale_arguments(sy, t)


def sync_command(args: argparse.Namespace, t: Texts = ENGLISH) -> int:
    try:
        result = sync(args.dock_dir, args.to, args.index, args.name)
    except SyncError as exc:
        print(f"dock: {t.say(exc)}", file=sys.stderr)
        return 2
    except INDEX_ERRORS as exc:
        print(f"dock: index: {t.say(describe_error(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            "dock: " + t.tr("sync stopped, run it again to resume: %(error)s", error=str(exc)),
            file=sys.stderr,
        )
        return 1
    for line in result.refused:
        print("dock: " + t.tr("refused: %(what)s", what=line), file=sys.stderr)
    print(
        t.tr(
            "synced dock %(dock)s to %(to)s: %(pushed)s files pushed, %(rows)s index rows "
            "written, %(refused)s refused",
            dock=result.dock,
            to=str(args.to),
            pushed=len(result.pushed),
            rows=result.rows,
            refused=len(result.refused),
        )
    )
    return 0 if result.ok else 1
