"""The verifier: proves or disproves a sealed store (a unit's, or a dock's copy).

Checks every property of docs/FORMAT.md "What the verifier checks". It never
writes. Problems are listed in the order found, each naming the file, record
and byte offset where known; the first one is "the first bad place".

It streams: the chain is read line by line (sealing/chaincheck.py), each
segment once, hashed and decrypted from the same read (sealing/segcheck.py),
each receipt when it is needed. What is held is a compact index of the chain
(about 100 bytes per record, more per media record) plus one line, one
receipt and one read buffer per reading thread (one a core, at most 4):
never a whole segment, record or report.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from . import canonical, layout
from .age import Decrypted, Identity
from .chaincheck import ChainCheck, ChainIndex, MediaFact
from .disposals import DISPOSALS, MAX_DISPOSAL_BYTES, DisposalRefused, parse_disposal
from .keys import KeyFileError, parse_public, public_pem
from .receipts import MAX_RECEIPT_BYTES, Receipt, ReceiptRefused, parse_receipt
from .report import Problem, RecordSink, Report, human
from .safeio import (
    NotRegular,
    TooLarge,
    entries,
    lstat_kind,
    open_dir,
    open_regular,
    read_regular,
)
from .segcheck import BLOCK, Beside, SegmentRead, read_segment
from .segsource import CallableSource, DockSegments, SegmentSource, StoreSegments

__all__ = ["Problem", "Report", "Unusable", "human", "verify_chain", "verify_store"]

MAX_PUBLIC_PEM = 4096  # an Ed25519 public key's PEM is 113 bytes


class Unusable(Exception):
    """Input the verifier cannot work on at all (exit 2)."""


def find_store(path: Path) -> Path:
    """A store root, or a unit directory holding `store/` (not a link to one)."""
    path = Path(path)
    if lstat_kind(path / layout.CHAIN) is not None:
        return path
    inner = path / "store"
    if lstat_kind(inner) == "a symbolic link":
        raise Unusable(f"{inner} is a symbolic link: name the store itself")
    if lstat_kind(inner / layout.CHAIN) is not None:
        return inner
    raise Unusable(f"{path} is not a sealed store (no {layout.CHAIN} in it or in store/)")


def verify_chain(
    path: Path,
    device_key: Ed25519PublicKey | None = None,
    sink: RecordSink | None = None,
    *,
    keep: bool = False,
) -> Report:
    """The chain alone, no media and no receipts: enough to root a key a
    record names. `sink` receives each record as it is checked; `keep`
    keeps them parsed in `report.parsed`."""
    root = find_store(Path(path))
    report = Report(store=str(root), sink=sink, parsed=[] if keep else None)
    device_key = device_key or _store_key(root, report)
    if device_key is not None:
        _chain_pass(root, ChainCheck(device_key, None, report, None))
    return report


def verify_store(
    path: Path,
    *,
    identity: Identity | None = None,
    escrow_key: bytes | None = None,
    device_key: Ed25519PublicKey | None = None,
    find_segment: Callable[[str], Path | None] | None = None,
    extra_receipts: list[bytes] | None = None,
    sink: RecordSink | None = None,
    keep: bool = False,
    workers: int | None = None,
    already_read: Mapping[str, SegmentRead] | None = None,
    only: Callable[[str], bool] | None = None,
) -> Report:
    """Everything about a store. `find_segment` is where segments are looked
    up instead of `segments/`: a `DockSegments` (a dock's date folders, whose
    other contents are checked too) or any `name -> Path | None`. Records go
    to `sink` as they are checked, else they are kept in `report.records`.
    Segments are read by `workers` threads at once (default: one a core, at
    most 4), and reported in the chain's order whatever finishes first.
    `already_read`: file -> what `read_segment` (with the same `identity`)
    found in the file `find_segment` names, read by the caller moments
    before (a dock re-reads each segment as it lands, beside the next
    download); those are checked against the chain like the rest, not
    read again. `only`: when given, the media files it accepts are the only
    ones read and checked, the others are reported "not read" (one
    recording's court copy need not read a unit's months of others); the
    chain, its receipts and releases are checked whole all the same."""
    root = find_store(Path(path))
    report = Report(store=str(root), sink=sink, parsed=[] if keep else None)
    if device_key is None:
        device_key = _store_key(root, report)
        if device_key is None:
            return report
    else:
        report.anchors["device_key"] = "given"
    store_segments = StoreSegments(root, report)
    source: SegmentSource
    if isinstance(find_segment, DockSegments):
        source = find_segment
    elif find_segment is not None:
        source = CallableSource(find_segment, store_segments)
    else:
        source = store_segments
    try:
        book = ReceiptBook(root, extra_receipts or [], report)
        try:
            check = ChainCheck(device_key, escrow_key, report, book.get)
            index = _chain_pass(root, check)
            if index.last_seq < 0:
                return report
            disposed = _disposals(root, index, check.docks, report)
            done = {} if source.blocked else dict(already_read or {})
            asked = [f for f in index.media if only is None or only(f.file)]
            todo = [f for f in asked if f.file not in done]
            reads = _read_files(todo, source, identity, workers)
            skipped = _Got(skipped=True)
            try:
                for fact in index.media:
                    if only is not None and not only(fact.file):
                        got = skipped
                    elif fact.file in done:
                        got = _Got(read=done[fact.file])
                    else:
                        got = next(reads)
                    report.segments.append(
                        _check_file(fact, index, source, identity, report, disposed, got)
                    )
            finally:
                reads.close()  # the readers stop before the store is closed
            source.survey(report.serial, index.named, report)
            for receipt in book.all():
                _check_receipt(receipt, index, report)
        finally:
            book.close()
    finally:
        store_segments.close()
    return report


def _chain_pass(root: Path, check: ChainCheck) -> ChainIndex:
    try:
        chain = open_regular(root / layout.CHAIN)
    except (NotRegular, OSError) as exc:
        check.report.fail(layout.CHAIN, f"{exc}")
        return check.index
    with chain:
        return check.run(chain)


def _store_key(root: Path, report: Report) -> Ed25519PublicKey | None:
    where = layout.DEVICE_PUB
    try:
        data = read_regular(root / where, MAX_PUBLIC_PEM, "the device key file")
        key = parse_public(data, where)
    except FileNotFoundError:
        report.fail(where, "missing: no device key to check signatures against")
        return None
    except (NotRegular, TooLarge, KeyFileError, OSError) as exc:
        report.fail(where, str(exc))
        return None
    if public_pem(key) != data:
        # PEM parsers forgive stray bytes; an evidence file must not.
        report.fail(where, "not exactly the PEM of the key it holds")
    report.anchors["device_key"] = "from the store (self-asserted: pass --device-key to anchor)"
    return key


# -- receipts --------------------------------------------------------------------------


class ReceiptBook:
    """The store's `receipts/` and the receipts given beside it. Each stored
    receipt is read (at most 4 MiB) when it is needed and dropped again, so
    their number does not raise the verifier's memory."""

    def __init__(self, root: Path, extra: list[bytes], report: Report) -> None:
        self.report = report
        self.stored: dict[str, str] = {}  # id -> its file name in receipts/
        self.given: dict[str, Receipt] = {}
        self.fd: int | None = None
        try:
            self.fd = open_dir(root / layout.RECEIPTS)
        except FileNotFoundError:
            pass
        except NotRegular as exc:
            report.fail(f"{layout.RECEIPTS}/", f"{exc}; no receipt in it is read")
        if self.fd is not None:
            self._scan(self.fd)
        for i, data in enumerate(extra):
            where = f"receipt #{i + 1} given"
            try:
                receipt = parse_receipt(data)
            except ReceiptRefused as exc:
                report.fail(where, str(exc))
                continue
            self.given[receipt.id] = receipt

    def _scan(self, fd: int) -> None:
        names = sorted(e.name for e in entries(fd))
        for name in names:
            where = f"{layout.RECEIPTS}/{name}"
            if name.endswith(".json.tmp"):
                # a keep the power cut short: the dock still holds the receipt, and
                # opening the store removes it (docs/FORMAT.md section 8)
                self.report.note(f"{where}: an interrupted receipt write, not a receipt")
                continue
            receipt = self._read(name, report_errors=True)
            if receipt is None:
                continue
            if name != f"{receipt.id}.json":
                self.report.fail(where, "file name is not the receipt's id")
            self.stored.setdefault(receipt.id, name)

    def _read(self, name: str, report_errors: bool) -> Receipt | None:
        where = f"{layout.RECEIPTS}/{name}"
        try:
            data = read_regular(name, MAX_RECEIPT_BYTES, "a receipt", dir_fd=self.fd)
            return parse_receipt(data)
        except (NotRegular, TooLarge, ReceiptRefused, OSError) as exc:
            if report_errors:
                self.report.fail(where, str(exc))
            else:
                self.report.fail(where, f"changed while it was verified: {exc}")
            return None

    def get(self, rid: str) -> Receipt | None:
        if rid in self.stored:
            receipt = self._read(self.stored[rid], report_errors=False)
            if receipt is not None and receipt.id == rid:
                return receipt
            return None
        return self.given.get(rid)

    def all(self) -> Iterator[Receipt]:
        for rid in self.stored:
            receipt = self.get(rid)
            if receipt is not None:
                yield receipt
        for rid, receipt in self.given.items():
            if rid not in self.stored:
                yield receipt

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _disposals(root: Path, index: ChainIndex, docks: set[str], report: Report) -> dict[str, str]:
    """File -> the id of the statement by which an enrolled dock disposed of
    it (`disposals/` of a dock's copy; sealing/disposals.py). A statement
    that is malformed, signed by a dock genesis does not enroll, or names a
    file otherwise than the chain does, is a problem, and explains nothing."""
    try:
        fd = open_dir(root / DISPOSALS)
    except FileNotFoundError:
        return {}
    except NotRegular as exc:
        report.fail(f"{DISPOSALS}/", f"{exc}; no statement in it is read")
        return {}
    out: dict[str, str] = {}
    try:
        for name in sorted(e.name for e in entries(fd)):
            where = f"{DISPOSALS}/{name}"
            try:
                d = parse_disposal(read_regular(name, MAX_DISPOSAL_BYTES, "a statement",
                                                dir_fd=fd))  # fmt: skip
            except (DisposalRefused, NotRegular, TooLarge, OSError) as exc:
                report.fail(where, str(exc))
                continue
            b = d.body
            if name != f"{d.id}.json":
                report.fail(where, "file name is not the statement's id")
            elif b["serial"] != report.serial:
                report.fail(where, f"is for device {b['serial']!r}")
            elif d.dock not in docks:
                report.fail(where, f"signed by dock {d.dock[:16]}, which genesis does not enroll")
            elif any(
                (f := index.by_seq.get(e["seq"])) is None
                or f.file != e["file"] or f.ct_sha256 != e["ct_sha256"]
                for e in b["files"]
            ):  # fmt: skip
                report.fail(where, "names a file otherwise than the chain does")
            else:
                report.note(
                    f"recording {b['recording']}: {len(b['files'])} files disposed of by dock "
                    f"{d.dock[:16]} after {b['kept_until']} ({b['class']}), by {b['by']}, "
                    f"approved by {b['approver']}"
                )
                for e in b["files"]:
                    out[e["file"]] = d.id
    finally:
        os.close(fd)
    return out


def _check_receipt(receipt: Receipt, index: ChainIndex, report: Report) -> None:
    b = receipt.body
    where = f"receipt {receipt.id[:16]}"
    report.receipts.append(
        {
            "id": receipt.id,
            "dock": receipt.dock,
            "from_seq": b["from_seq"],
            "to_seq": b["to_seq"],
            "segments": len(b["segments"]),
            "dock_time_us": b["dock_time_us"],
        }
    )
    if b["serial"] != report.serial:
        report.fail(where, f"is for device {b['serial']!r}")
        return
    if b["to_seq"] > index.last_seq:
        report.fail(
            where,
            f"the dock saw the chain up to record {b['to_seq']}, but it ends "
            f"at {index.last_seq}: chain cut short",
        )
        return
    if index.hash_of(b["to_seq"]) != b["head"]:
        report.fail(where, f"head differs from record {b['to_seq']}: chain rewritten")
    for e in b["segments"]:
        fact = index.by_seq.get(e["seq"])
        if fact is None or fact.file != e["file"] or fact.ct_sha256 != e["ct_sha256"]:
            report.fail(where, f"{e['file']} does not match record {e['seq']}")


# -- segment files ---------------------------------------------------------------------


@dataclass
class _Got:
    """What the disk said about one media file, before anything is reported:
    exactly one of these is set (or none, for a file the record gives no
    length to compare)."""

    blocked: bool = False
    skipped: bool = False  # not among the files asked for
    open_error: OSError | None = None  # NotRegular is an OSError too
    absent: bool = False
    read_error: OSError | None = None
    read: SegmentRead | None = None


def _read_file(
    fact: MediaFact,
    source: SegmentSource,
    identity: Identity | None,
    buf: bytearray,
    beside: Beside | None = None,
) -> _Got:
    """Open and read one file; report nothing (the caller does, in order)."""
    if source.blocked:
        return _Got(blocked=True)
    try:
        f = source.open(fact.file)
    except (NotRegular, OSError) as exc:
        return _Got(open_error=exc)
    if f is None:
        return _Got(absent=True)
    with f:
        if fact.ct_len is None:
            return _Got()  # the record's fault, reported with it: nothing to compare
        try:
            return _Got(read=read_segment(f, fact.ct_len, identity, buf, beside))
        except OSError as exc:
            return _Got(read_error=exc)


PARALLEL_FROM = 16 << 20  # below this, threads cost more (start-up) than they save


def _read_files(
    facts: list[MediaFact],
    source: SegmentSource,
    identity: Identity | None,
    workers: int | None,
) -> Generator[_Got, None, None]:
    """`_read_file` of each fact, in order. Hashing and decryption run
    outside the GIL, so with more than one worker the next files are read
    while one is reported: two segments take two cores. When fewer files
    are left than workers, a core would be idle: then each read's
    ciphertext is hashed on a thread of its own beside its decryption
    (segcheck.Beside). Each worker has one read buffer, and at most two
    reads per worker are waiting: memory stays bounded whatever the number
    of segments."""
    if workers is None:
        workers = min(4, len(os.sched_getaffinity(0)))
    if workers <= 1 or sum(f.ct_len or 0 for f in facts) < PARALLEL_FROM:
        buf = bytearray(BLOCK)  # one read buffer for every segment
        for fact in facts:
            yield _read_file(fact, source, identity, buf)
        return
    from concurrent.futures import Future, ThreadPoolExecutor

    local = threading.local()

    def job(fact: MediaFact) -> _Got:
        if not hasattr(local, "buf"):
            local.buf = bytearray(BLOCK)
        beside.started()
        try:
            return _read_file(fact, source, identity, local.buf, beside)
        finally:
            beside.ended()

    with (
        ThreadPoolExecutor(workers, thread_name_prefix="verify-read") as pool,
        ThreadPoolExecutor(workers, thread_name_prefix="verify-hash") as hasher,
    ):
        beside = Beside(hasher, workers)
        ahead: deque[Future[_Got]] = deque()
        todo = iter(facts)
        for fact in itertools.islice(todo, 2 * workers):
            ahead.append(pool.submit(job, fact))
        try:
            while ahead:
                got = ahead.popleft().result()
                for fact in itertools.islice(todo, 1):
                    ahead.append(pool.submit(job, fact))
                yield got
        finally:  # stopped early: what has not started never will
            for waiting in ahead:
                waiting.cancel()


def _check_file(
    fact: MediaFact,
    index: ChainIndex,
    source: SegmentSource,
    identity: Identity | None,
    report: Report,
    disposed: dict[str, str] | None,
    got_file: _Got,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "file": fact.file,
        "seq": fact.seq,
        "kind": fact.kind,
        "ct_sha256": fact.ct_sha256,
        "ct_len": fact.ct_len,
    }
    if got_file.skipped:
        entry["status"] = "not read"
        entry["why"] = "not among the files asked for"
        return entry
    where = source.where(fact.file)
    if got_file.blocked:
        entry["status"] = "not read"  # the folder's problem is reported once
        entry["why"] = source.blocked
        return entry
    if (exc := got_file.open_error) is not None:
        why = str(exc) if isinstance(exc, NotRegular) else f"unreadable: {exc}"
        report.fail(where, why, fact.seq)
        entry["status"] = "altered"
        return entry
    if got_file.absent:
        if disposed and fact.file in disposed:
            entry["status"] = "disposed"  # a dock's signed statement says so
            entry["disposal"] = disposed[fact.file]
        elif fact.file in index.released:
            entry["status"] = "released"
            entry["receipt"] = index.released[fact.file]
        else:
            entry["status"] = "missing"
            report.fail(where, "missing and not released by any receipt", fact.seq)
        return entry
    if got_file.read_error is not None:
        report.fail(where, f"unreadable: {got_file.read_error}", fact.seq)
        entry["status"] = "altered"
        return entry
    got = got_file.read
    if got is None or got.ct_sha256 != fact.ct_sha256 or got.ct_len != fact.ct_len:
        said = f" ({got.ct_len} bytes, the chain says {fact.ct_len})" if got else ""
        report.fail(where, f"ciphertext hash or length differs from the chain{said}", fact.seq)
        entry["status"] = "altered"
        return entry
    entry["status"] = "truncated by power loss" if fact.truncated else "intact"
    if identity is not None:
        _plaintext(fact, got.plaintext, got.error, where, entry, report)
    return entry


def _plaintext(
    fact: MediaFact,
    got: Decrypted | None,
    error: str | None,
    where: str,
    entry: dict[str, Any],
    report: Report,
) -> None:
    if got is None:
        if fact.truncated:
            entry["plaintext"] = f"nothing recoverable: {error}"
        else:
            report.fail(where, f"does not decrypt: {error}", fact.seq)
        return
    entry["pt_len"] = got.plaintext_len
    entry["pt_sha256"] = got.plaintext_sha256
    if fact.truncated:
        entry["plaintext"] = (
            "complete"
            if got.complete
            else f"authentic up to {got.plaintext_len} bytes ({got.error})"
        )
        return
    if not got.complete:
        report.fail(where, f"ciphertext incomplete: {got.error}", fact.seq)
    elif got.plaintext_sha256 != fact.pt_sha256 or got.plaintext_len != fact.pt_len:
        report.fail(where, "plaintext hash or length differs from the chain", fact.seq)
    else:
        entry["plaintext"] = "decrypted, hash matches"


def root_recording_key(chain: Path, key: bytes) -> dict[str, Any]:
    """Whether a unit's chain (a store, or a dock's copy) announces this
    recording key in a `recording_key` record, and verifies: what roots the
    signatures inside a video in the unit's sealed chain."""
    want = canonical.b64(key)
    found: list[dict[str, Any]] = []

    def keep(rec: dict[str, Any]) -> None:
        if not found and rec["type"] == "recording_key" and rec["body"].get("public_key") == want:
            found.append(rec)

    report = verify_chain(chain, sink=keep)
    if not found:
        return {"rooted": False, "why": "no recording_key record in this chain names the key"}
    rec = found[0]
    if not report.ok:
        first = report.problems[0].message if report.problems else "too many problems"
        return {"rooted": False, "why": f"the chain does not verify: {first}", "seq": rec["seq"]}
    return {
        "rooted": True,
        "seq": rec["seq"],
        "serial": report.serial,
        "officer": rec["officer"],
        "wall_us": rec["wall_us"],
        "anchors": report.anchors,
    }
