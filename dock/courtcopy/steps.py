"""The examiner's court copy of one recording, made at the dock (issue 13).

    bodycam-dock recordings --dock-dir DIR --serial S
    bodycam-dock export-case --dock-dir DIR --serial S --recording SEQ --examiner NAME \
        --identity F (--agency DIR | --c2pa-cert F --c2pa-key F --ca F) --out DIR

A recording is everything from a `record_start` record to its `record_stop`
(or to the power loss or reboot that cut it), pauses included. Its segments
are taken from the dock's verified copy, decrypted with the agency identity,
checked against the plaintext hashes their chain records carry, and joined
losslessly into one MP4 (dock/courtcopy/media.py) whose pauses are real
gaps and whose chapters mark the chain's events. The MP4 carries a C2PA
manifest signed by the agency's court-copy certificate, naming the unit, the
officer, the chain records that bound the recording and every segment's
hashes, and the result of every check made here. Beside it: a report (HTML
and PDF) and a manifest of hashes an examiner recomputes with standard
tools (`sha256sum`, `ffmpeg -f streamhash`, `ffprobe`, a C2PA validator,
`bodycam verify-media`). Layout and how a court gets the trust anchor:
docs/EXPORT.md, "Court copies".

What S2 art. 12 asks (R20: officer, who made the copy, start and end,
place, make and model, format, length) is in the report, the manifest, the
C2PA assertion and the MP4's own metadata (r20.py). Chapters and report
lines about a resume name its note by the chain's own link
(`sealing.recordings.note_of`), never by matching timestamps. What people
read is in the dock's language and zone (or --language/--timezone); machine
fields stay UTC.

Nothing is written unless everything holds: the case folder is built as
`<out>.partial` and renamed at the end.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import av
from cryptography import x509

from capture import mediacheck
from link.pki import ca_profile
from sealing import layout
from sealing.age import Decrypted, Identity
from sealing.bodies import count
from sealing.cli_verify import dock_lookup
from sealing.decrypting import SLOT_MAX, DecryptFailed, Decrypting
from sealing.files import fsync_dir, hash_file
from sealing.people import NameRefused, person_name
from sealing.recordings import Recording, ResumeNote, note_of, recordings, resume_notes, utc_text
from sealing.records import Record
from sealing.segcheck import SegmentRead, read_segment
from sealing.verify import Report, Unusable, root_recording_key, verify_chain, verify_store

from .. import chain_codes as codes
from ..dock_locale import dock_locale
from ..texts import Msg, Texts, load_texts, msg
from .c2pa import C2paFailure, Validation, room_in, sign, validate
from .inpass import InPass, NotVideo
from .media import Chapter, Holds, IndexOutgrewRoom, Joined, JoinError, Part, join
from .r20 import R20, end_of, mp4_tags, r20_of

VIDEO = ".ts.age"
STILL = ".jpg.age"


class CaseError(Exception):
    """No court copy: `code` 2 for unusable input, 1 for evidence that fails.
    Its message is a Msg (or text from elsewhere, shown as it is)."""

    def __init__(self, message: Msg | str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Signing:
    cert_pem: bytes  # the court-copy signer's certificate (and intermediates), leaf first
    key_pem: bytes
    anchor_pem: bytes  # the agency CA: what a court is given to trust


@dataclass
class Case:
    out: Path
    mp4: Path
    validation: Validation
    joined: Joined
    media: dict[str, Any]
    streamhash: dict[str, str]
    test_certificate: bool
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> wall time


def verified_copy(
    dock: Path,
    serial: str,
    already_read: Mapping[str, SegmentRead] | None = None,
    only: Collection[str] | None = None,
) -> Report:
    """The dock's copy of a unit, verified whole; CaseError naming the first
    problem and the command that lists them all. `already_read`: segments
    read moments before as verify_store reads them (a court copy's join
    reads its own), checked against the chain like the rest. `only`: the
    media files read (the chain, receipts and releases are checked whole);
    the others are "not read"."""
    unit = _unit(dock, serial)
    try:
        report = verify_store(
            unit,
            find_segment=dock_lookup(dock),
            keep=True,
            already_read=already_read,
            only=None if only is None else only.__contains__,
        )
    except Unusable as exc:
        raise CaseError(str(exc)) from None
    return _verified(report, dock, serial)


def verified_chain(dock: Path, serial: str) -> Report:
    """The dock's copy of a unit's chain, verified (its segments not read):
    for a caller that checks each file it uses against its record itself."""
    unit = _unit(dock, serial)
    try:
        report = verify_chain(unit, keep=True)
    except Unusable as exc:
        raise CaseError(str(exc)) from None
    return _verified(report, dock, serial)


def _unit(dock: Path, serial: str) -> Path:
    unit = dock / "units" / serial
    if not (unit / layout.CHAIN).is_file():
        raise CaseError(
            msg("the dock %(dock)s holds no copy of unit %(serial)r", dock=str(dock), serial=serial)
        )
    return unit


def _verified(report: Report, dock: Path, serial: str) -> Report:
    if not report.ok:
        raise _not_verified(dock, serial, str(report.problems[0]))  # where, and what
    return report


def _not_verified(dock: Path, serial: str, problem: str) -> CaseError:
    again = f"bodycam verify {dock / 'units' / serial} --segments-from {dock}"
    return CaseError(
        msg(
            "the dock's copy of %(serial)s does not verify: %(problem)s (%(command)s)",
            serial=serial,
            problem=problem,
            command=again,
        ),
        1,
    )


class _NotAsSealed(Exception):
    """A segment's ciphertext is not the chain's (args[0]: its file)."""


def _joining_refused(exc: Exception, dock: Path, serial: str) -> CaseError:
    """Why decrypting and joining stopped, once the verifier has found the
    dock's copy intact (so the cause is not an altered file)."""
    if isinstance(exc, JoinError):
        return CaseError(msg("the segments could not be joined: %(error)s", error=str(exc)), 1)
    if isinstance(exc, _NotAsSealed):  # yet the verifier found it as sealed: changed back since?
        problem = f"{exc.args[0]}: ciphertext hash or length differs from the chain"
        return _not_verified(dock, serial, problem)
    assert isinstance(exc, CaseError)
    return exc


def export_case(
    dock: Path,
    serial: str,
    start_seq: int,
    identity: Identity,
    signing: Signing,
    out: Path,
    dock_name: str = "",
    *,
    examiner: str = "",
    texts: Texts | None = None,
    permit: Callable[[str, int, int], None] | None = None,
    cases: Sequence[tuple[str, str]] | None = None,
) -> Case:
    """`examiner`: who makes the copy (R20; `bodycam-dock export-case`
    requires one); `texts`: the reader's language and zone (default the
    dock's, dock.toml); `permit`: called with the recording's officer, start
    and end once it is found, before anything is decrypted; it raises
    CaseError when the copy may not be made (export-case: an approved
    request, dock/requests.py); `cases`: (number, name) of the cases the
    recording is filed in (S2 art. 12: evidence names its case), read from
    the dock's index when not given."""
    if examiner:
        try:
            examiner = person_name(examiner, "examiner")
        except NameRefused as exc:
            raise CaseError(str(exc)) from None
    try:
        t = texts or load_texts(dock_locale(dock))
    except ValueError as exc:  # a broken dock.toml (LocaleError)
        raise CaseError(str(exc)) from None
    if out.exists():
        raise CaseError(
            msg("%(folder)s exists: a case folder is never overwritten", folder=str(out))
        )
    if not out.parent.is_dir():
        raise CaseError(msg("%(folder)s is not a folder", folder=str(out.parent)))
    try:
        anchor = x509.load_pem_x509_certificate(signing.anchor_pem)
    except ValueError as exc:
        raise CaseError(
            msg("the agency CA is not a PEM certificate: %(error)s", error=str(exc))
        ) from None
    # the chain first, to find the recording; its segments are read once,
    # as the join decrypts them, and the whole copy verified before it is done
    report = verified_chain(dock, serial)
    rec = recording_of(recordings(report.chain), dock, serial, start_seq)
    if permit is not None:
        permit(rec.start.officer or "", rec.start.stamp.wall_us, end_of(rec))
    if cases is None:
        cases = filed_in(dock, serial, start_seq)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        who = Who(dock_name, examiner, t, tuple(cases))
        case = _build(dock, serial, rec, report, identity, signing, anchor, partial, who)
        os.rename(partial, out)
        fsync_dir(out.parent)
    except BaseException:
        # never a half-made case folder, not even after Ctrl-C
        shutil.rmtree(partial, ignore_errors=True)
        raise
    case.out, case.mp4 = out, out / case.mp4.name
    return case


def recording_of(recs: Sequence[Recording], dock: Path, serial: str, start_seq: int) -> Recording:
    """The recording of `recs` (one unit's) that starts at `start_seq` and
    has pictures; CaseError naming how to list them otherwise."""
    rec = next((r for r in recs if r.start.seq == start_seq), None)
    if rec is None:
        listing = f"bodycam-dock recordings --dock-dir {dock} --serial {serial}"
        raise CaseError(
            msg(
                "no recording of %(serial)s starts at record %(seq)s (%(command)s lists them)",
                serial=serial,
                seq=start_seq,
                command=listing,
            )
        )
    if not rec.media(VIDEO):
        raise CaseError(msg("recording %(seq)s has no video segment on this dock", seq=start_seq))
    return rec


def filed_in(dock: Path, serial: str, recording: int) -> list[tuple[str, str]]:
    """The cases (number, name) a recording is filed in (dock/cases.py)."""
    from ..index import INDEX_ERRORS, Index, describe_error

    try:
        index = Index.open(dock / "dock.sqlite", dock=None)
        try:
            return index.cases_of(serial, recording)
        finally:
            index.close()
    except INDEX_ERRORS as exc:
        raise CaseError(describe_error(exc)) from None


@dataclass(frozen=True)
class Who:
    """Who makes the copy, where, and for whom it is written."""

    dock_name: str
    examiner: str
    texts: Texts
    cases: tuple[tuple[str, str], ...] = ()  # (number, name) of the cases it is filed in


def _build(
    dock: Path,
    serial: str,
    rec: Recording,
    report: Report,
    identity: Identity,
    signing: Signing,
    anchor: x509.Certificate,
    out: Path,
    who: Who,
) -> Case:
    locate = dock_lookup(dock)
    chain_dir = _copy_chain(dock / "units" / serial, out / "chain")
    clock = _Stages()
    with tempfile.TemporaryDirectory(prefix="court-", dir=out.parent) as tmp:
        work = Path(tmp)
        unsigned = work / "unsigned.mp4"
        videos = rec.media(VIDEO)
        # the files read and checked: the recording's own; a unit's other
        # recordings (months of them on a dock) are the chain's records only
        files = {str(r.body["file"]) for r in rec.media()}
        t = who.texts
        tags = mp4_tags(rec, report.chain, who.examiner, t)
        # the in-stream signatures and the stream hash are taken of the packets
        # as the join writes them: no pass over the MP4 for either
        checks = InPass()
        reads: dict[str, SegmentRead] = {}  # the segments' one read, for the verifier
        try:
            stills = [_decrypt(locate, r, identity, out / "stills") for r in rec.media(STILL)]
            try:
                with _decrypted(locate, videos, identity, reads) as parts:
                    joined = join(
                        parts, unsigned, chapters(rec, t), tags, tap=checks, holds=_holds(rec)
                    )
            except IndexOutgrewRoom:  # records that undercount: the index moved by a rewrite
                checks = InPass()
                with _decrypted(locate, videos, identity, reads) as parts:
                    joined = join(parts, unsigned, chapters(rec, t), tags, tap=checks)
        except (JoinError, _NotAsSealed, CaseError) as exc:
            # an altered copy is refused as that: the cause
            verified_copy(dock, serial, reads, files)
            raise _joining_refused(exc, dock, serial) from None
        clock.lap("decrypt, join")
        # the chain verified whole and the recording's files, the joined
        # segments from the join's own read
        report = verified_copy(dock, serial, reads, files)
        if recording_of(recordings(report.chain), dock, serial, rec.start.seq) != rec:
            raise CaseError(
                msg("the dock's copy of %(serial)s changed while it was copied", serial=serial), 1
            )
        clock.lap("verify the dock's copy")
        media = _in_stream(checks, unsigned.name, chain_dir)
        if not media["ok"]:
            raise CaseError(
                msg(
                    "the joined video's in-stream signatures fail: %(problem)s",
                    problem=_first_bad(media),
                ),
                1,
            )
        clock.lap("in-stream signatures")
        name = f"{serial}_{_stamp(rec.start.stamp.wall_us)}_rec{rec.start.seq}.mp4"
        mp4 = out / name
        test_cert = ca_profile(anchor) == "qa"
        r20 = r20_of(rec, report.chain, joined, who.examiner)
        facts = _facts(rec, report, joined, media, who, test_cert, r20)
        # the copy's packets are hashed (StreamHash, as ffmpeg's streamhash)
        # in the background while it is signed, validated and reported, and
        # SHA256SUMS written; before the case is done, that hash must equal
        # the one of the packets the join wrote and checked. Signed in place,
        # it starts once the signer has laid out the room: the index is then
        # where it stays and only the manifest store's bytes change (a box
        # the demuxer skips); signed into a copy, it reads the copy when done
        hashing: list[StreamHash] = []
        mp4_sum: FileHash | None = None
        assertions = _assertions(rec, report, dock / "units" / serial, facts)
        streamhash = checks.streamhash()
        # the reports are written beside the signing and the validation,
        # saying the one outcome that lets the copy out (Trusted, no
        # failure): any other refuses the copy, its reports and all (the
        # folder is CASE.partial; a refusal waits for the reports' thread)
        shown = copy.deepcopy(facts)
        shown["verification"]["streamhash_sha256"] = streamhash
        shown["stills"] = [p.name for p in stills]
        shown["c2pa"] = {"state": "Trusted", "failures": []}
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="report") as beside:
                reports = beside.submit(_write_reports, out, shown, mp4.name, test_cert, r20, t)
                try:
                    sign(
                        unsigned,
                        mp4,
                        cert_pem=signing.cert_pem,
                        key_pem=signing.key_pem,
                        anchor_pem=signing.anchor_pem,
                        title=name,
                        assertions=assertions,
                        actions=[_repackaged(joined)],
                        generator={"name": "bodycam dock", "version": _version()},
                        spool=work,
                        room=room_in(unsigned),  # the index's room, when the join kept one
                        laid_out=lambda: hashing.append(StreamHash(unsigned, mp4.name)),
                    )
                except C2paFailure as exc:
                    raise CaseError(exc.args[0]) from None
                clock.lap("c2pa sign")
                if not hashing or unsigned.exists():  # signed into a copy: hash the copy
                    hashing.append(StreamHash(mp4))
                after = hashing[-1]
                mp4_sum = FileHash(mp4)  # its SHA256SUMS line, while it is validated
                validation = validate(mp4, signing.anchor_pem)
                clock.lap("c2pa validate")
                reports.result()
            clock.lap("report")
            if not validation.trusted:
                raise CaseError(
                    msg(
                        "the signed copy does not validate as Trusted with the agency CA: "
                        "%(state)s %(failures)s",
                        state=validation.state,
                        failures=", ".join(validation.failures),
                    ),
                    1,
                )
            (out / "agency-ca.pem").write_bytes(signing.anchor_pem)
            case = Case(out, mp4, validation, joined, media, streamhash, test_cert, clock.seconds)
            _seal_folder(out, {mp4: mp4_sum})
            clock.lap("SHA256SUMS")
            if after.result() != streamhash:
                raise CaseError(msg("signing changed the media packets (streamhash differs)"), 1)
            clock.lap("streamhash")
        finally:
            for h in hashing:
                h.cancel()
            if mp4_sum is not None:
                mp4_sum.cancel()
    return case


class _Stages:
    """Wall time per stage, for the benchmark and the curious."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + now - self._t, 3)
        self._t = now


def chapters(rec: Recording, texts: Texts) -> list[Chapter]:
    """The chain's events in the recording, where they happened; a resume's
    spoken reason is the note the chain links to it (sealing.recordings)."""
    out: list[Chapter] = []
    first = rec.media(VIDEO)[0].body["start"]["mono_us"]
    notes = note_of(rec.records)

    def add(at: int, what: Msg, r: Record) -> None:
        out.append(Chapter(at, texts.say(what), r.seq))

    for r in rec.records:
        t, b, mono = r.type, r.body, r.stamp.mono_us
        if t == "record_start":
            pre = b.get("prerecord_us", 0)
            if pre and first < mono:
                add(
                    first,
                    msg("Pre-record (%(seconds).1f s before the press)", seconds=pre / 1e6),
                    r,
                )
            add(mono, msg("Recording started (%(cause)s)", cause=codes.cause(b.get("cause"))), r)
        elif t == "pause":
            reason = codes.cause(b.get("reason"))
            add(mono, msg("Paused, nothing recorded (reason: %(reason)s)", reason=reason), r)
        elif t == "resume":
            said = note_said(notes.get(r.seq))
            add(
                mono,
                msg("Resumed (%(cause)s); %(note)s", cause=codes.cause(b.get("cause")), note=said),
                r,
            )
        elif t == "mark":
            add(mono, msg("Marked: %(flag)s", flag=codes.flag(b.get("flag"))), r)
        elif t == "still":
            add(mono, msg("Still photo %(file)s", file=str(b.get("file", ""))), r)
        elif t == "clock" and isinstance(b.get("step_us"), int):
            step = b["step_us"] / 1e6
            source = codes.clock_source(b.get("source"))
            add(mono, msg("Clock stepped %(step)+.3f s (%(source)s)", step=step, source=source), r)
        elif t == "fault":
            add(mono, msg("Fault: %(what)s", what=_short(b)), r)
        elif t == "audio_gap":
            add(mono, msg("Gap in the sound: %(what)s", what=_short(b)), r)
        elif t == "stall":  # the picture holds still over it: nothing was recorded there
            start = b.get("from_us")
            span = b.get("span_us")
            add(
                start if isinstance(start, int) else mono,
                msg(
                    "Stall, nothing recorded for %(seconds).1f s",
                    seconds=span / 1e6 if isinstance(span, int) else 0.0,
                ),
                r,
            )
        elif t == "recovered":
            gap = b.get("gap_us", 0)
            seconds = gap / 1e6 if isinstance(gap, int | float) else 0.0
            add(
                mono,
                msg("Video back after %(seconds).1f s: %(what)s", seconds=seconds, what=_short(b)),
                r,
            )
    return out


def note_said(note: ResumeNote | None) -> Msg:
    """What a resume's chapter and report line say about its spoken reason."""
    if note is None:
        return msg("no spoken reason recorded for it")
    if note.given:
        return msg("spoken reason given (%(seconds)s s)", seconds=note.note.body.get("speech_s", 0))
    return msg("spoken reason MISSING")


def _short(body: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(body.items()))[:120]


def _holds(rec: Recording) -> Holds | None:
    """What the recording's video segments hold, as their records say; None
    if they do not say (the index is then moved to the front by a rewrite)."""
    videos = rec.media(VIDEO)
    try:
        frames = sum(int(r.body["video_frames"]) for r in videos)
        recorded = sum(int(r.body["duration_us"]) for r in videos)
        start, end = videos[0].body["start"], videos[-1].body["end"]
        span = int(end["mono_us"]) - int(start["mono_us"])
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    # the unit's monotonic clock restarts at a boot: the recorded time is then the floor
    return Holds(frames, max(span if videos[0].boot == videos[-1].boot else 0, recorded))


def _decrypt(locate: Any, r: Record, identity: Identity, into: Path) -> Path:
    into.mkdir(exist_ok=True)
    dst = into / r.body["file"].removesuffix(".age")
    dst.write_bytes(_plaintext(locate, r, identity))
    return dst


def _plaintext(locate: Any, r: Record, identity: Identity) -> bytes:
    """A sealed file's plaintext, read once: the file's length and SHA-256
    and the plaintext's are the chain record's. Playback verifies the
    chain, not the files, so this is where it refuses an altered file."""
    src = _located(locate, r)
    b = r.body
    ct_len = b.get("ct_len")
    sink = io.BytesIO()
    with src.open("rb") as f:
        got = read_segment(f, ct_len if count(ct_len) else -1, identity, sink=sink)
    if got.ct_sha256 is None or (got.ct_len, got.ct_sha256) != (ct_len, b.get("ct_sha256")):
        raise CaseError(
            msg(
                "%(file)s is not the file chain record %(seq)s sealed: its length or "
                "SHA-256 differs",
                file=str(b["file"]),
                seq=r.seq,
            ),
            1,
        )
    if got.plaintext is None:
        raise _not_for_key(r, got.error or "not decrypted")
    _as_recorded(r, got.plaintext)
    return sink.getvalue()


@contextmanager
def _decrypted(
    locate: Any, records: Sequence[Record], identity: Identity, reads: dict[str, SegmentRead]
) -> Iterator[list[Part]]:
    """The records' files as the join's parts: each segment decrypted in
    memory, and its plaintext checked against its record, before the join
    reads a byte of it (an hour is 7 GB of plaintext that never touches the
    disk). A process of its own reads them ahead of the join
    (sealing.decrypting), on the other core: each file once, its ciphertext
    hashed and decrypted from the same read, which goes into `reads` for
    the verifier. In this process (and not into `reads`) if a record's
    sizes are not plain numbers, its plaintext's up to SLOT_MAX."""
    paths = [_located(locate, r) for r in records]
    sizes = [r.body.get("pt_len") for r in records]
    lengths = [r.body.get("ct_len") for r in records]
    if not all(type(n) is int and 0 < n <= SLOT_MAX for n in sizes) or not all(
        type(n) is int and n >= 0 for n in lengths
    ):
        yield [partial(_plaintext, locate, r, identity) for r in records]
        return
    size = max(int(n) for n in sizes if type(n) is int)
    ct_lens = [int(n) for n in lengths if type(n) is int]
    with Decrypting(identity, paths, size, ct_lens) as ahead:
        yield [partial(_taken, ahead, i, r, reads) for i, r in enumerate(records)]


def _taken(ahead: Decrypting, i: int, r: Record, reads: dict[str, SegmentRead]) -> memoryview:
    b = r.body
    try:
        got = ahead.take(i)
    except DecryptFailed as exc:
        raise CaseError(
            msg("%(file)s cannot be read: %(error)s", file=str(b["file"]), error=str(exc)), 1
        ) from None
    read = got.read
    if read.ct_sha256 is None and read.plaintext is not None:
        _as_recorded(r, read.plaintext)  # over the slot: more than any record says, refused
    if read.ct_sha256 is not None:
        reads[str(b["file"])] = read
    if (read.ct_len, read.ct_sha256) != (b["ct_len"], b.get("ct_sha256")):
        raise _NotAsSealed(str(b["file"]))  # the verifier says how (_build asks it)
    if read.plaintext is None:
        raise _not_for_key(r, read.error or "")
    _as_recorded(r, read.plaintext)
    return got.plaintext


def _located(locate: Any, r: Record) -> Path:
    src: Path | None = locate(r.body["file"])
    if src is None:
        raise CaseError(
            msg(
                "%(file)s is not on this dock (released before it was pulled?)",
                file=str(r.body["file"]),
            ),
            1,
        )
    return src


def _not_for_key(r: Record, error: str) -> CaseError:
    return CaseError(
        msg(
            "%(file)s: %(error)s (is --identity the agency's evidence key?)",
            file=str(r.body["file"]),
            error=error,
        )
    )


def _as_recorded(r: Record, got: Decrypted) -> None:
    """Refuse plaintext whose size and SHA-256 are not the chain's."""
    b = r.body
    want = (b.get("pt_len"), b.get("pt_sha256"))
    if (got.plaintext_len, got.plaintext_sha256) != want or not (
        got.complete or r.type == "power_loss"
    ):
        raise CaseError(
            msg(
                "%(file)s: the decrypted bytes do not match the chain's plaintext hash",
                file=str(b["file"]),
            ),
            1,
        )


def _in_stream(checks: InPass, name: str, chain: Path) -> dict[str, Any]:
    """`bodycam verify-media MP4 --chain CHAIN` on the joined copy, from its
    packets as they were written: every group's signature, the key rooted in
    the unit's chain."""
    try:
        check = checks.in_stream()
    except NotVideo as exc:
        raise CaseError(
            msg("the joined video's in-stream signatures fail: %(problem)s", problem=str(exc)), 1
        ) from None
    out = mediacheck.describe(check, name, partial(utc_text, ms=True))
    out["verified_from_us"], out["verified_to_us"] = check.verified_from, check.verified_to
    out["chain"] = (
        root_recording_key(chain, check.key) if check.key else {"rooted": False, "why": "unsigned"}
    )
    out["ok"] = out["ok"] and out["chain"]["rooted"]
    return out


def _first_bad(media: dict[str, Any]) -> str:
    return mediacheck.first_problem(media)


STREAMHASH_TIMEOUT_S = 1800  # an hour's copy is read in about 10 s


class StreamHash:
    """SHA-256 of each stream's packets as the MP4 holds them: the figures
    `ffmpeg -i MP4 -map 0:v -map 0:a? -c copy -f streamhash -hash sha256 -`
    prints (the report tells an examiner to repeat it), taken on a thread
    until `result()`: libavformat's MP4 demuxer (PyAV's) reads the packets,
    OpenSSL's SHA-256 hashes them. ffmpeg's own SHA-256 has no SHA
    instructions: it took 4.1 CPU-s a 1.2 GB file where this takes about 1
    (measured), 25 of an hour's court copy. `name`: the file's name in
    messages (the signed copy's, when it is read before the rename)."""

    def __init__(self, path: Path, name: str = "") -> None:
        self.name = name or path.name
        # the file opened here is read, whatever it is renamed to later
        self._fd = os.open(path, os.O_RDONLY)
        self._stop = threading.Event()
        self._out: dict[str, str] = {}
        self._error: str | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with av.open(f"/dev/fd/{self._fd}", "r", format="mp4") as c:
                # -map 0:v -map 0:a?: every video stream, then every audio one
                streams = list(c.streams.video) + list(c.streams.audio)
                hashes = {s.index: hashlib.sha256() for s in streams}
                for pkt in c.demux(streams):
                    if self._stop.is_set():
                        return
                    if pkt.size:
                        hashes[pkt.stream.index].update(memoryview(pkt))
                for n, s in enumerate(streams):
                    self._out[f"{n},{s.type[0]}"] = hashes[s.index].hexdigest()
        except (av.FFmpegError, OSError) as exc:
            self._error = str(exc)
        finally:
            os.close(self._fd)

    def cancel(self) -> None:
        """Stop reading if the result was not taken (the copy was refused first)."""
        self._stop.set()
        self._thread.join(30)

    def result(self) -> dict[str, str]:
        self._thread.join(STREAMHASH_TIMEOUT_S)
        if self._thread.is_alive():
            self._stop.set()
            self._error = f"no result within {STREAMHASH_TIMEOUT_S} s"
        if self._error is not None or not self._out:
            raise CaseError(
                msg(
                    "ffmpeg could not read %(file)s: %(error)s",
                    file=self.name,
                    error=(self._error or "stopped")[:200],
                ),
                1,
            )
        return self._out


def streamhash(path: Path) -> dict[str, str]:
    return StreamHash(path).result()


def _copy_chain(src: Path, dst: Path) -> Path:
    """The unit's chain, its pinned key and the receipts it cites, byte for byte:
    `bodycam verify-media COPY --chain chain` roots the copy offline."""
    dst.mkdir()
    shutil.copyfile(src / layout.CHAIN, dst / layout.CHAIN)
    shutil.copyfile(src / "device_ed25519.pub", dst / "device_ed25519.pub")
    if (src / "receipts").is_dir():
        shutil.copytree(src / "receipts", dst / "receipts")
    return dst


def _lines(unit: Path, seqs: set[int]) -> list[str]:
    out = []
    with (unit / layout.CHAIN).open("rb") as f:
        for seq, line in enumerate(f):
            if seq in seqs:
                out.append(line.decode().rstrip("\n"))
    return out


def _assertions(
    rec: Recording, report: Report, unit: Path, facts: dict[str, Any]
) -> list[dict[str, Any]]:
    key_seq = facts["verification"]["in_stream"]["recording_key_record"]
    bounding = {0, key_seq} | {r.seq for r in rec.records}
    return [
        {"label": "org.bodycam.recording", "data": facts["recording"]},
        {"label": "org.bodycam.segments", "data": {"segments": facts["segments"]}},
        {
            "label": "org.bodycam.chain",
            "data": {
                "about": "the unit's chain records that bound this recording, byte for "
                "byte (docs/FORMAT.md): genesis, the recording key, and every "
                "record from record_start to its end",
                "lines": _lines(unit, bounding),
                "chain_length": len(report.records),
            },
        },
        {"label": "org.bodycam.verification", "data": facts["verification"]},
    ]


def _repackaged(joined: Joined) -> dict[str, Any]:
    return {
        "action": "c2pa.repackaged",
        "softwareAgent": {"name": "bodycam dock", "version": _version()},
        "parameters": {
            "description": "decrypted sealed MPEG-TS segments joined into MP4 without "
            "re-encoding; pauses kept as gaps; encoded silence in the audio of each pause",
            "silence_added_ms": [[f.from_us // 1000, f.to_us // 1000] for f in joined.filled],
        },
    }


def _facts(
    rec: Recording,
    report: Report,
    joined: Joined,
    media: dict[str, Any],
    who: Who,
    test_cert: bool,
    r20: R20,
) -> dict[str, Any]:
    """manifest.json: machine fields (UTC, codes, record numbers), with the
    words people read in the report's language beside them."""
    start, end = rec.start, rec.end
    t = who.texts
    genesis = report.chain[0].body
    segments = []
    for r in rec.media(VIDEO) + rec.media(STILL):
        b = r.body
        segments.append(
            {
                "record": r.seq,
                "file": b["file"],
                "cut_by_power_loss": r.type == "power_loss",
                **{k: b.get(k) for k in ("ct_sha256", "ct_len", "pt_sha256", "pt_len")},
                "from": utc_text(b["start"]["wall_us"], ms=True) if b.get("start") else None,
                "to": utc_text(b["end"]["wall_us"], ms=True) if b.get("end") else None,
            }
        )
    origin = joined.origin_us
    pauses = []
    for i, r in enumerate(rec.records):
        if r.type == "pause":
            resume = next((x for x in rec.records[i:] if x.type == "resume"), None)
            pauses.append(
                {
                    "reason": r.body.get("reason"),
                    "from_s": round((r.stamp.mono_us - origin) / 1e6, 3),
                    "to_s": round((resume.stamp.mono_us - origin) / 1e6, 3) if resume else None,
                }
            )
    return {
        "recording": {
            "unit": report.serial,
            "officer": start.officer,
            "device_key": genesis.get("device_key"),
            "start_record": start.seq,
            "end_record": end.seq if end else None,
            "ended_by": end.type if end else None,  # None: still recording when pulled
            "started": utc_text(start.stamp.wall_us, ms=True),
            "clock_at_start": {
                "state": start.stamp.clock_state,
                "source": start.stamp.clock_source,
            },
            "duration_s": round(joined.duration_us / 1e6, 3),
            **r20.facts(t),
            "pauses": pauses,
            "silence_added_s": [
                [round(f.from_us / 1e6, 3), round(f.to_us / 1e6, 3)] for f in joined.filled
            ],
            "chapters": [
                {
                    "at_s": round(max(0, c.at_us - origin) / 1e6, 3),
                    "title": c.title,
                    "record": c.record,
                }
                for c in chapters(rec, t)
            ],
            "resume_notes": [
                {
                    "resume": n.resume.seq if n.resume is not None else None,
                    "note": n.note.seq,
                    "given": n.given,
                }
                for n in resume_notes(rec.records)
            ],
            "language": t.language,
            "cases": [{"number": n, "name": name} for n, name in who.cases],
        },
        "segments": segments,
        "verification": {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "at_local": t.time(int(time.time() * 1e6)),
            "dock": who.dock_name,
            "tool": f"bodycam {_version()}",
            "chain": {
                "verified": report.ok,
                "records": len(report.records),
                "anchors": report.anchors,
                "checks": "signatures, hash chain, receipts, releases; this recording's "
                "segment ciphertext hashes",
                # a unit's other recordings: their records are in the chain
                # checked, their files are not read for this copy
                "files_read": sum(1 for s in report.segments if s["status"] != "not read"),
                "other_files_not_read": sum(
                    1 for s in report.segments if s["status"] == "not read"
                ),
            },
            "plaintext": "every segment decrypted with the agency identity; size and SHA-256 "
            "equal the chain record's pt_len and pt_sha256",
            "in_stream": {
                "verified": media["ok"],
                "groups": media["groups"],
                "missing_groups": media["missing_groups"],
                "recording_key": media["recording_key"],
                "recording_key_record": media["chain"]["seq"],
                "pictures_from": media["verified_from"],
                "pictures_to": media["verified_to"],
                "pictures_from_local": _local(t, media["verified_from_us"]),
                "pictures_to_local": _local(t, media["verified_to_us"]),
            },
            "test_certificate": test_cert,
        },
    }


def _write_reports(
    out: Path, facts: dict[str, Any], mp4_name: str, test_cert: bool, r20: R20, texts: Texts
) -> None:
    from .report import write_report  # weasyprint loads slowly: only when used

    text = json.dumps(facts, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    (out / "manifest.json").write_text(text, encoding="utf-8")
    write_report(out, facts, mp4_name, test_cert, r20, texts)


class FileHash:
    """A file's SHA-256, read on a thread of its own until `result()`:
    hashlib and the reads let go of the GIL, so it runs beside the work that
    follows (the court copy's validation and reports)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stop = threading.Event()
        self._digest = ""
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._digest = hash_file(self.path, self._stop)[0]
        except OSError as exc:
            self._error = exc

    def cancel(self) -> None:
        """Stop reading if the result was not taken (the copy was refused first)."""
        self._stop.set()
        self._thread.join()

    def result(self) -> str:
        self._thread.join()
        if self._stop.is_set():
            raise RuntimeError("a cancelled hash has no result")
        if self._error is not None:
            raise self._error
        return self._digest


def _seal_folder(out: Path, hashing: Mapping[Path, FileHash]) -> None:
    """SHA256SUMS over every file (`sha256sum -c SHA256SUMS` in the folder);
    `hashing`: files whose hash is already being taken."""
    lines = []
    for p in sorted(x for x in out.rglob("*") if x.is_file()):
        digest = hashing[p].result() if p in hashing else hash_file(p)[0]
        lines.append(f"{digest}  {p.relative_to(out).as_posix()}\n")
        with p.open("rb") as f:
            os.fsync(f.fileno())
    (out / "SHA256SUMS").write_text("".join(lines))
    for d in [out, *(x for x in out.rglob("*") if x.is_dir())]:
        fsync_dir(d)


def _local(t: Texts, us: int | None) -> str | None:
    return t.time(us) if us is not None else None


def _stamp(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y%m%dT%H%M%SZ")


def _version() -> str:
    try:
        return metadata.version("bodycam")
    except metadata.PackageNotFoundError:
        return "source"


def describe(rec: Recording, texts: Texts) -> str:
    """One line for `bodycam-dock recordings`: when in local time with its zone."""
    videos = rec.media(VIDEO)
    notes = resume_notes(rec.records)
    pauses = sum(1 for r in rec.records if r.type == "pause")
    end = rec.end
    span = ""
    if videos:
        s = videos[0].body["start"]["mono_us"]
        e = videos[-1].body.get("end", {}).get("mono_us", s)
        span = f"{(e - s) / 1e6:7.1f} s"
    ended = texts.say(codes.ended_by(end.type)) if end else "-"
    return texts.tr(
        "record %(seq)6d  %(start)s  %(span)s  %(segments)s segments, %(pauses)s pauses, "
        "spoken reasons %(given)s given %(missing)s missing, ended by %(ended)s",
        seq=rec.start.seq,
        start=texts.time(rec.start.stamp.wall_us),
        span=span,
        segments=len(videos),
        pauses=pauses,
        given=sum(n.given for n in notes),
        missing=sum(not n.given for n in notes),
        ended=ended,
    )
