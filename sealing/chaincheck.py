"""One pass over a chain: every line, record and body rule, in order.

What later checks need of a record is kept in a compact index (its hash,
and for media records the file's facts); the record itself goes to the
report's sink and is dropped, so memory grows by tens of bytes per record,
never with a record's size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from . import bodies, fss, layout
from .keys import fingerprint
from .receipts import Receipt
from .recordings import is_media
from .records import (
    GENESIS_PREV,
    KNOWN_TYPES,
    MAX_LINE,
    Record,
    RecordError,
    parse_line,
    rec_bytes,
    signed_by,
)
from .report import Report

WHERE = layout.CHAIN


@dataclass(slots=True)
class MediaFact:
    """What the file check needs of one media record."""

    seq: int
    file: str
    kind: str  # segment | still
    truncated: bool  # a power_loss record: sealed as it lay after a crash
    ct_len: int | None
    ct_sha256: str | None
    pt_len: int | None
    pt_sha256: str | None


@dataclass
class ChainIndex:
    serial: str = ""
    last_seq: int = -1
    hashes: bytearray = field(default_factory=bytearray)  # 32 bytes per record, by seq
    media: list[MediaFact] = field(default_factory=list)
    by_seq: dict[int, MediaFact] = field(default_factory=dict)
    named: set[str] = field(default_factory=set)
    released: dict[str, str] = field(default_factory=dict)  # file -> receipt id

    def hash_of(self, seq: int) -> str:
        return self.hashes[32 * seq : 32 * seq + 32].hex()


def lines(chain: BinaryIO, report: Report) -> Iterator[tuple[int, bytes]]:
    """(offset, line without its newline) for each complete line. A line with
    its newline is at most MAX_LINE bytes, so no more than that is ever read
    for one line."""
    pos = 0
    n = 0
    while True:
        try:
            line = chain.readline(MAX_LINE)
        except OSError as exc:
            report.fail(WHERE, f"unreadable: {exc}", n, pos)
            return
        if not line:
            return
        if not line.endswith(b"\n"):
            msg = (
                f"a line longer than {MAX_LINE} bytes with its newline (not a record)"
                if len(line) == MAX_LINE
                else "chain ends in an incomplete line (power loss not yet recovered, or a cut)"
            )
            report.fail(WHERE, msg, n, pos)
            return
        yield pos, line[:-1]
        pos += len(line)
        n += 1


class ChainCheck:
    """Checks records one by one; `receipt` looks up a stored receipt by id
    (None: releases are not checked, as when only the chain is asked for)."""

    def __init__(
        self,
        device_key: Ed25519PublicKey,
        escrow_key: bytes | None,
        report: Report,
        receipt: Callable[[str], Receipt | None] | None,
    ) -> None:
        self.device_key = device_key
        self.mac_key = escrow_key
        self.escrow_given = escrow_key is not None
        self.report = report
        self.receipt = receipt
        self.index = ChainIndex()
        self.prev: Record | None = None
        self.prev_hash = ""
        self.docks: set[str] = set()
        self.segnos: set[int] = set()
        self.last_end = -1
        self.keys_announced: set[str] = set()
        self.key_live = False  # a recording key announced and not yet ended

    def run(self, chain: BinaryIO) -> ChainIndex:
        for pos, line in lines(chain, self.report):
            if not self.line(pos, line):
                break
        if self.prev is None and self.report.ok:
            self.report.fail(WHERE, "chain is empty: no genesis record", 0, 0)
        if not self.escrow_given:
            self.report.anchors["forward_secure_mac"] = "not checked (no escrow key given)"
        return self.index

    def line(self, pos: int, line: bytes) -> bool:
        """Check one line; False when the chain cannot be followed past it."""
        report = self.report
        n = self.index.last_seq + 1
        try:
            rec, sig, mac = parse_line(line)
        except RecordError as exc:
            report.fail(WHERE, f"malformed record: {exc}", n, pos)
            return False
        if rec.seq != n:
            report.fail(
                WHERE,
                f"sequence {rec.seq} where {n} was expected "
                "(record deleted, inserted, duplicated or reordered)",
                rec.seq,
                pos,
            )
            return False
        msg = rec_bytes(line)  # hashed, signed and MACed: canonical(rec), not re-encoded
        digest = hashlib.sha256(msg).digest()
        if self.prev is None:
            if not self._genesis(rec, pos):
                return False
        else:
            self._link(rec, self.prev, pos)
        if not signed_by(msg, sig, self.device_key):
            report.fail(WHERE, "bad signature (altered, or signed by another device)", rec.seq, pos)
        if self.mac_key is not None:
            if fss.mac(self.mac_key, msg) != mac:
                report.fail(
                    WHERE,
                    "forward-secure MAC does not match (record rewritten with a key taken later)",
                    rec.seq,
                    pos,
                )
            self.mac_key = fss.evolve(self.mac_key)
        self._body(rec)
        report.add_record(
            {
                "seq": rec.seq,
                "type": rec.type,
                "officer": rec.officer,
                "boot": rec.boot,
                "mono_us": rec.stamp.mono_us,
                "wall_us": rec.stamp.wall_us,
                "clock": {"state": rec.stamp.clock_state, "source": rec.stamp.clock_source},
                "body": rec.body,
            }
        )
        if report.parsed is not None:
            report.parsed.append(rec)
        self.index.hashes += digest
        self.index.last_seq = rec.seq
        self.prev = rec
        self.prev_hash = digest.hex()
        return True

    def _genesis(self, rec: Record, pos: int) -> bool:
        report = self.report
        if rec.type != "genesis" or rec.prev != GENESIS_PREV:
            report.fail(WHERE, "first record is not a genesis record", 0, pos)
            return False
        report.serial = self.index.serial = rec.serial
        docks = rec.body.get("docks")
        self.docks = {d for d in docks if isinstance(d, str)} if isinstance(docks, list) else set()
        if rec.boot != 0:
            report.fail(WHERE, f"genesis has boot count {rec.boot}, not 0", 0, pos)
        if rec.body.get("device_key") != fingerprint(self.device_key):
            report.fail(
                WHERE, "genesis names another device key than the one checked against", 0, pos
            )
        if self.mac_key is not None:
            if fss.commitment(self.mac_key) != rec.body.get("fss_commitment"):
                report.fail(WHERE, "escrow key does not belong to this unit", 0, pos)
                self.mac_key = None
            else:
                report.anchors["forward_secure_mac"] = "checked with the escrow key"
        return True

    def _link(self, rec: Record, prev: Record, pos: int) -> None:
        report = self.report
        if rec.type == "genesis":
            report.fail(WHERE, "a second genesis record (there is exactly one)", rec.seq, pos)
        if rec.prev != self.prev_hash:
            report.fail(WHERE, "previous-hash link broken", rec.seq, pos)
        if rec.serial != report.serial:
            report.fail(WHERE, f"serial {rec.serial!r} differs from the chain's", rec.seq, pos)
        want_boot = prev.boot + (1 if rec.type == "boot" else 0)
        if rec.boot != want_boot:
            report.fail(WHERE, f"boot count {rec.boot}, expected {want_boot}", rec.seq, pos)
        elif rec.type != "boot" and rec.stamp.mono_us < prev.stamp.mono_us:
            report.fail(WHERE, "monotonic time runs backwards within one boot", rec.seq, pos)

    # -- bodies -------------------------------------------------------------------------

    def _body(self, rec: Record) -> None:
        b, t = rec.body, rec.type
        if t not in KNOWN_TYPES:
            self.report.note(
                f"record {rec.seq}: type {t!r} is newer than this "
                "verifier; checked as a record, body not interpreted"
            )
            return
        bad = None
        if t == "power_loss":
            bad = bodies.power_loss_problem(b)
        elif t == "recovered":
            bad = bodies.recovered_problem(b)
        elif t == "stall":
            bad = bodies.stall_problem(b)
        elif t == "still":
            bad = bodies.still_problem(b)
        elif t == "recording_key":
            bad = self._recording_key(b)
        elif t in ("record_stop", "boot"):
            self.key_live = False  # the key dies with its recording, or with the power
        elif t == "release" and self.receipt is not None:
            self._release(rec)
        if bad:
            self.report.fail(WHERE, f"{t} record: {bad}", rec.seq)
        if is_media(t, b):
            self._media(rec)

    def _recording_key(self, b: dict[str, object]) -> str | None:
        bad = bodies.recording_key_problem(b)
        if bad:
            return bad
        key = str(b["key"])
        if key in self.keys_announced:
            return f"key {key[:16]} was announced before (one recording, one key)"
        self.keys_announced.add(key)
        if self.key_live:
            return "a second recording key before the recording ended (no record_stop or boot)"
        self.key_live = True
        return None

    def _release(self, r: Record) -> None:
        rid = str(r.body.get("receipt"))
        assert self.receipt is not None
        receipt = self.receipt(rid)
        if receipt is None:
            self.report.fail(
                WHERE, f"release cites receipt {rid[:16]} which is not in the store", r.seq
            )
            return
        # only a dock the unit was provisioned with can free its storage: a key
        # taken from a seized unit must not be able to sign away what it recorded
        if receipt.dock not in self.docks:
            self.report.fail(
                WHERE,
                f"release under receipt {rid[:16]} signed by dock {receipt.dock[:16]}, "
                "which genesis does not enroll",
                r.seq,
            )
            return
        want = {
            "receipt": receipt.id,
            "dock": receipt.dock,
            "from_seq": receipt.body["from_seq"],
            "to_seq": receipt.body["to_seq"],
            "head": receipt.body["head"],
            "files": [e["file"] for e in receipt.body["segments"]],
        }
        bad = bodies.release_problem(r.body, want)
        if bad:
            self.report.fail(WHERE, f"release under receipt {rid[:16]}: {bad}", r.seq)
            return
        for f in want["files"]:
            self.index.released[f] = rid

    def _media(self, r: Record) -> None:
        b, report, index = r.body, self.report, self.index
        file = b.get("file")
        parsed = layout.parse_name(file) if isinstance(file, str) else None
        if parsed is None or parsed.serial != report.serial or parsed.segno != b.get("segno"):
            report.fail(WHERE, f"media record names a bad file {file!r}", r.seq)
            return
        assert isinstance(file, str)
        if file in index.named:
            report.fail(WHERE, f"{file} is named by two records", r.seq)
        index.named.add(file)
        # numbers are taken when a file opens and recorded when it closes, so a
        # still can close before the segment it was taken in: unique, not ordered
        if parsed.segno in self.segnos:
            report.fail(WHERE, f"segment number {parsed.segno} used twice", r.seq)
        self.segnos.add(parsed.segno)
        truncated = r.type == "power_loss"
        bad = bodies.media_body_problem(b, truncated)
        if bad:
            report.fail(WHERE, f"{file}: {bad}", r.seq)
        elif not truncated and parsed.kind == "segment":
            same_boot = self.prev is not None and self.prev.boot == r.boot
            if b["start"]["mono_us"] < self.last_end - 1000 and same_boot:
                report.note(f"{file}: starts before the previous segment ended (overlapping)")
            else:
                self.last_end = b["end"]["mono_us"]
        fact = MediaFact(
            seq=r.seq,
            file=file,
            kind=parsed.kind,
            truncated=truncated,
            ct_len=_int(b.get("ct_len")),
            ct_sha256=_str(b.get("ct_sha256")),
            pt_len=_int(b.get("pt_len")),
            pt_sha256=_str(b.get("pt_sha256")),
        )
        index.media.append(fact)
        index.by_seq[r.seq] = fact


def _int(v: object) -> int | None:
    return v if bodies.count(v) else None  # type: ignore[return-value]


def _str(v: object) -> str | None:
    return v if isinstance(v, str) else None
