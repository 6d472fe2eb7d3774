"""The reference dock: pull a unit's sealed segments over mutual TLS, verify,
store durably, index, and only then send a signed receipt (R15-R22).

    bodycam-dock pull --unit HOST:PORT --dock-dir DIR \
        (--agency DIR --name NAME | --cert F --key F --ca F) [--identity F] \
        [--inventory F] [--index URL]
    bodycam-dock serve --dock-dir DIR (--usb | --unit HOST:PORT ...) [--once] ...
    bodycam-dock report --dock-dir DIR [--index URL]
    bodycam-dock sync --dock-dir DIR --to AGENCY_DIR [--index URL] [--name DOCK]
    bodycam-dock sync --dock-dir DIR --to s3://BUCKET --endpoint URL [--credentials FILE]
        [--ca FILE] --index URL [--name DOCK]
    bodycam-dock user-add --dock-dir DIR --name N --role ROLE [--department D]
    bodycam-dock supervisor-add --dock-dir DIR --name N      (user-add --role legal)
    bodycam-dock audit-verify --dock-dir DIR
    bodycam-dock checkout --unit HOST:PORT --dock-dir DIR --officer N --approver N (credentials)
    bodycam-dock checkin --unit HOST:PORT --dock-dir DIR (credentials)
    bodycam-dock page --dock-dir DIR [--port 8080]
    bodycam-dock recordings --dock-dir DIR --serial S
    bodycam-dock export-case --dock-dir DIR --serial S --recording SEQ --examiner NAME \
        --request ID --out DIR (--agency DIR | --identity F --c2pa-cert F --c2pa-key F --ca F)
    bodycam-dock disc --dock-dir DIR --serial S --recording SEQ --examiner NAME --request ID \
        --out DIR (--agency DIR | ...) [--name UNIT] [--case-number N --case-name NAME] \
        [--media dvd|bd25] [--burn DEVICE]                      (dock/disc.py)

Every command that prints for people takes --language (zh-CN, en) and
--timezone (an IANA zone); without them it speaks the dock's
(`<dock>/dock.toml` [locale], Simplified Chinese and Asia/Shanghai when
absent; `pull` and `serve` with --agency write it from the agency's
agency.toml the first time). Messages come from the dock's gettext
catalog (dock/texts.py); argparse's own words (usage, error) stay English.

The dock's storage:
    <dock>/dock.toml                         the dock's language and time zone
    <dock>/dock.sqlite                       the index
    <dock>/units/<serial>/chain.jsonl        the unit's chain as last pulled
    <dock>/units/<serial>/device_ed25519.pub the unit's key, pinned on first pull
    <dock>/units/<serial>/receipts/<id>.json receipts this dock signed
    <dock>/units/<serial>/verification.json  the last safety check before a receipt
    <dock>/audit.jsonl                       the audit log: sign-ins, views, downloads,
                                             refusals, account changes (0600, dock/audit.py)
    <dock>/audit.key, audit.pub              the key that signs it
    <dock>/signin-locks.json                 sign-in locks that outlive a restart (0600)
    <dock>/YYYY/MM/DD/<serial>/<segment>     segments, filed by start date (R21)
    <dock>/.staging/                         what a unit sent, until it is verified
"""

from __future__ import annotations

import argparse
import contextlib
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from link.locale import LANGUAGES, Locale, LocaleError
from sealing.age import Identity
from sealing.files import no_group_write

from .access import ROLES
from .audit import AUDIT_LOG, AuditError, AuditLog, operator
from .dock_locale import add_locale_arguments, adopt_agency_locale, dock_locale, with_overrides
from .evidence_key import KeyRefused, load_identity, passphrase_argument
from .evidence_key import add_parser as add_key_parser
from .object_store import add_store_arguments
from .texts import CatalogMissing, Msg, Texts, load_texts, msg


def _case_command(args: argparse.Namespace, texts: Texts) -> int:
    from . import courtcopy  # c2pa, weasyprint, PyAV: loaded only for court copies
    from .names import NameNotAccepted, checked_name

    try:
        if args.cmd == "recordings":
            report = courtcopy.verified_copy(args.dock_dir, args.serial)
            for rec in courtcopy.recordings(report.chain):
                print(courtcopy.describe(rec, texts))
            return 0
        try:
            examiner = checked_name(args.examiner, "--examiner")
        except NameNotAccepted as exc:
            raise courtcopy.CaseError(exc.args[0]) from None
        signing, identity = case_credentials(args, texts)
        target = f"{args.serial} recording {args.recording}"
        log = AuditLog(args.dock_dir)
        permit = _court_copy_permit(args, examiner, target, log)
        case = courtcopy.export_case(
            args.dock_dir,
            args.serial,
            args.recording,
            identity,
            signing,
            args.out,
            args.name,
            examiner=examiner,
            texts=texts,
            permit=permit,
        )
    except _Refused as exc:  # its line is in the audit log already
        print(f"dock: {texts.say(exc)}", file=sys.stderr)
        return exc.code
    except courtcopy.CaseError as exc:
        _case_failed(args, str(exc))
        print(f"dock: {texts.say(exc)}", file=sys.stderr)
        return exc.code
    except OSError as exc:
        _case_failed(args, str(exc))
        print(f"dock: {exc}", file=sys.stderr)
        return 2
    try:
        log.append(examiner, "", "court_copy", target, "ok",
                   {"out": str(case.out), "c2pa": case.validation.state,
                    "request": args.request})  # fmt: skip
    except (AuditError, OSError) as exc:
        print(f"dock: {exc}", file=sys.stderr)
        return 2
    j = case.joined
    args_shown = {
        "file": str(case.mp4),
        "seconds": j.duration_us / 1e6,
        "pictures": j.video_packets,
        "missing": len(case.media["missing_groups"]),
        "state": case.validation.state,
        "folder": str(case.out),
    }
    if case.test_certificate:
        print(
            texts.tr(
                "court copy %(file)s: %(seconds).1f s, %(pictures)s pictures, %(missing)s "
                "groups missing; C2PA %(state)s with the agency CA (TEST certificate); "
                "report.html, report.pdf, SHA256SUMS in %(folder)s",
                **args_shown,
            )
        )
    else:
        print(
            texts.tr(
                "court copy %(file)s: %(seconds).1f s, %(pictures)s pictures, %(missing)s "
                "groups missing; C2PA %(state)s with the agency CA; report.html, report.pdf, "
                "SHA256SUMS in %(folder)s",
                **args_shown,
            )
        )
    return 0


class _Refused(Exception):
    """export-case refused for want of an approved request (already logged)."""

    def __init__(self, message: Msg, code: int) -> None:
        super().__init__(message)
        self.code = code


def _court_copy_permit(
    args: argparse.Namespace, examiner: str, target: str, log: AuditLog
) -> Callable[[str, int, int], None]:
    """What export-case asks before it decrypts: an approved request for a
    court copy of this recording, filed by the examiner (S0 art. 22, S2
    art. 14; dock/requests.py). A refusal and a start are each a line of
    the audit log: the register has the copy before it exists."""
    from . import courtcopy
    from .index import INDEX_ERRORS, describe_error
    from .permits import PermitRefused, approved_request

    def refuse(why: Msg, request: str) -> NoReturn:
        with contextlib.suppress(AuditError, OSError):
            log.append(examiner, "", "court_copy", target, "refused",
                       {"why": str(why)[:300], "request": request})  # fmt: skip
        raise _Refused(msg("no court copy: %(why)s", why=why), 1)

    def permit(officer: str, start_us: int, end_us: int) -> None:
        try:
            req = approved_request(args.dock_dir, args.request, examiner, "court_copy",
                                   args.serial, officer, start_us, end_us)  # fmt: skip
        except PermitRefused as exc:
            refuse(exc.why, exc.request)
        except INDEX_ERRORS as exc:
            raise courtcopy.CaseError(describe_error(exc)) from None
        try:
            said: dict[str, str | int] = {"out": str(args.out), "request": req.id,
                                          "approver": req.approver}  # fmt: skip
            log.append(examiner, "", "court_copy", target, "started", said)
        except AuditError as exc:
            raise courtcopy.CaseError(str(exc)) from None

    return permit


def _case_failed(args: argparse.Namespace, why: str) -> None:
    """A court copy that was started and did not finish, in the audit log
    (when it got as far as the log: a refused --examiner did not)."""
    if args.cmd != "export-case" or not (args.dock_dir / AUDIT_LOG).exists():
        return
    with contextlib.suppress(AuditError, OSError):
        AuditLog(args.dock_dir).append(
            args.examiner[:64], "", "court_copy", f"{args.serial} recording {args.recording}",
            "failed", {"why": why[:300]},
        )  # fmt: skip


def case_credential_arguments(p: argparse.ArgumentParser, t: Texts) -> None:
    """What a court copy is made with (export-case, disc): case_credentials reads them."""
    p.add_argument(
        "--agency",
        type=Path,
        help=t.tr("agency folder: c2pa/court.crt+key, ca.crt, evidence.key"),
    )
    p.add_argument("--identity", type=Path, help=t.tr("the agency's evidence identity (age)"))
    passphrase_argument(p, t)
    p.add_argument(
        "--c2pa-cert", type=Path, help=t.tr("court-copy signing certificate, leaf first")
    )
    p.add_argument("--c2pa-key", type=Path)
    p.add_argument("--ca", type=Path, help=t.tr("the agency CA (the C2PA trust anchor)"))


def case_credentials(args: argparse.Namespace, texts: Texts) -> tuple[Any, Identity]:
    from .courtcopy import CaseError, Signing

    a = args.agency
    cert = args.c2pa_cert or (a / "c2pa" / "court.crt" if a else None)
    key = args.c2pa_key or (a / "c2pa" / "court.key" if a else None)
    ca = args.ca or (a / "ca.crt" if a else None)
    ident = args.identity or (a / "evidence.key" if a else None)
    if not (cert and key and ca and ident):
        raise CaseError(msg("give --agency DIR, or --identity, --c2pa-cert, --c2pa-key and --ca"))
    try:
        signing = Signing(cert.read_bytes(), key.read_bytes(), ca.read_bytes())
        identity = load_identity(ident, args.passphrase_file, texts)
    except KeyRefused as exc:
        raise CaseError(exc.args[0], exc.code) from None
    except FileNotFoundError as exc:
        if exc.filename == str(cert):
            raise CaseError(
                msg(
                    "%(file)s: no such file (flash.py c2pa-signer makes one)",
                    file=str(exc.filename),
                )
            ) from None
        raise CaseError(msg("%(file)s: no such file", file=str(exc.filename))) from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CaseError(msg("court-copy credentials: %(error)s", error=str(exc))) from None
    return signing, identity


# -- the language and zone of a command ------------------------------------------


@dataclass(frozen=True)
class EarlyLocale:
    """What the arguments say before they are parsed (the help is already
    in the reader's language), and what was wrong with them."""

    locale: Locale
    error: str | None = None  # LocaleError's text: names the file or the option


def _option(argv: list[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a[len(name) + 1 :]
    return None


def early_locale(argv: list[str]) -> EarlyLocale:
    dock_dir = _option(argv, "--dock-dir")
    try:
        base = dock_locale(Path(dock_dir)) if dock_dir else Locale()
    except LocaleError as exc:
        return EarlyLocale(Locale(), str(exc))
    language = _option(argv, "--language")
    try:
        chosen = with_overrides(
            base, language if language in LANGUAGES else None, _option(argv, "--timezone")
        )
    except LocaleError as exc:
        return EarlyLocale(base, str(exc))
    return EarlyLocale(chosen)


def _command_locale(args: argparse.Namespace, early: EarlyLocale) -> Locale:
    """After parsing: pull and serve with --agency first give a dock without
    a dock.toml the agency's language and zone."""
    agency = getattr(args, "agency", None)
    if args.cmd in ("pull", "serve") and agency is not None:
        adopted = adopt_agency_locale(args.dock_dir, agency)
        if adopted is not None:
            return with_overrides(adopted, args.language, args.timezone)
    return early.locale


# -- the parser ------------------------------------------------------------------


def build_parser(t: Texts) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bodycam-dock",
        description=t.tr(
            "The reference dock: pull a unit's sealed segments over mutual TLS, verify, "
            "store durably, index, and only then send a signed receipt (R15-R22)."
        ),
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    pl = sub.add_parser("pull", help=t.tr("pull one unit, verify, store, then receipt"))
    pl.add_argument(
        "--unit",
        required=True,
        # argparse reads % in a help text as a format: the unit's IPv6 zone is %%if there
        help=t.tr("HOST:PORT or [IPv6%%if]:PORT of the unit").replace("%", "%%"),
    )
    _dock_arguments(pl, t)
    pl.add_argument(
        "--password-file",
        type=Path,
        help=t.tr("read the officer's password from a file (default: prompt)"),
    )
    pl.add_argument("--stop-before-receipt", action="store_true", help=argparse.SUPPRESS)
    sv = sub.add_parser(
        "serve", help=t.tr("watch for units, pull several at once (docs/EXPORT.md)")
    )
    _dock_arguments(sv, t)
    sv.add_argument(
        "--usb", action="store_true", help=t.tr("units on USB gadget links (IPv6 link-local)")
    )
    sv.add_argument("--usb-port", type=int, default=8443, help=t.tr("the units' export port"))
    sv.add_argument(
        "--unit", action="append", default=[], help=t.tr("a fixed HOST:PORT (repeatable)")
    )
    sv.add_argument(
        "--once", action="store_true", help=t.tr("pull the units present now, then exit")
    )
    sv.add_argument("--workers", type=int, default=4, help=t.tr("units pulled at the same time"))
    sv.add_argument(
        "--password-dir",
        type=Path,
        help=t.tr("officers' passwords as DIR/<serial> (default: prompt)"),
    )
    rp = sub.add_parser("report", help=t.tr("compliance report per unit (R22)"))
    rp.add_argument("--dock-dir", type=Path, required=True)
    rp.add_argument(
        "--index",
        help=t.tr(
            "the index: a SQLite file or postgresql+psycopg://... URL "
            "(default DOCK_DIR/dock.sqlite)"
        ),
    )
    add_locale_arguments(rp, t)
    from .sync import add_parser as add_sync_parser

    add_sync_parser(sub, t)
    from .city import add_parser as add_city_parser
    from .share import add_parser as add_share_parser

    add_share_parser(sub, t)
    add_city_parser(sub, t)
    rl = sub.add_parser("recordings", help=t.tr("the recordings a unit's verified copy holds"))
    rl.add_argument("--dock-dir", type=Path, required=True)
    rl.add_argument("--serial", required=True)
    add_locale_arguments(rl, t)
    ec = sub.add_parser(
        "export-case", help=t.tr("the court copy of one recording (docs/EXPORT.md)")
    )
    ec.add_argument("--dock-dir", type=Path, required=True)
    ec.add_argument("--serial", required=True)
    ec.add_argument(
        "--recording",
        type=int,
        required=True,
        metavar="SEQ",
        help=t.tr("the record_start record's number (see `recordings`)"),
    )
    ec.add_argument(
        "--examiner",
        required=True,
        metavar="NAME",
        help=t.tr("who makes this copy: named in the report, the manifest and the video (R20)"),
    )
    ec.add_argument("--out", type=Path, required=True, help=t.tr("the case folder to create"))
    ec.add_argument(
        "--request",
        default="",
        metavar="ID",
        help=t.tr(
            "the approved access request for this court copy, filed by the examiner "
            "(the page's Requests)"
        ),
    )
    case_credential_arguments(ec, t)
    ec.add_argument("--name", default="", help=t.tr("this dock's name, for the report"))
    add_locale_arguments(ec, t)
    from .disc import add_parser as add_disc_parser  # imports nothing heavy until it runs

    add_disc_parser(sub, t)
    sa = sub.add_parser(
        "supervisor-add", help=t.tr("let a supervisor sign in to the compliance page")
    )
    sa.add_argument("--dock-dir", type=Path, required=True)
    sa.add_argument("--name", required=True)
    sa.add_argument("--password-file", type=Path, help=t.tr("read the password (default: prompt)"))
    add_locale_arguments(sa, t)
    ua = sub.add_parser(
        "user-add", help=t.tr("add a person who signs in to the page, with their role")
    )
    ua.add_argument("--dock-dir", type=Path, required=True)
    ua.add_argument("--name", required=True)
    ua.add_argument("--role", required=True, choices=ROLES)
    ua.add_argument("--department", default="", help=t.tr("the person's department"))
    ua.add_argument("--password-file", type=Path, help=t.tr("read the password (default: prompt)"))
    add_locale_arguments(ua, t)
    co = sub.add_parser(
        "checkout", help=t.tr("hand a docked unit to an officer, with the approver (the ledger)")
    )
    co.add_argument("--unit", required=True)
    _dock_arguments(co, t)
    co.add_argument("--officer", required=True)
    co.add_argument("--approver", required=True)
    ci = sub.add_parser("checkin", help=t.tr("record a docked unit's return (the ledger)"))
    ci.add_argument("--unit", required=True)
    _dock_arguments(ci, t)
    rt = sub.add_parser(
        "retention", help=t.tr("the recordings due for disposal on a day (S0 art. 24-25)")
    )
    rt.add_argument("--dock-dir", type=Path, required=True)
    rt.add_argument(
        "--as-of", default="", metavar="YYYY-MM-DD", help=t.tr("the day (default: today)")
    )
    add_locale_arguments(rt, t)
    dp = sub.add_parser(
        "dispose",
        help=t.tr("remove a recording due for disposal, on an approved request (S0 art. 25)"),
    )
    dp.add_argument("--dock-dir", type=Path, required=True)
    dp.add_argument("--serial", required=True)
    dp.add_argument("--recording", type=int, required=True, metavar="SEQ")
    dp.add_argument("--request", required=True, metavar="ID",
                    help=t.tr("the approved dispose request (the page's Requests)"))  # fmt: skip
    dp.add_argument("--by", required=True, metavar="NAME",
                    help=t.tr("who disposes: the request's filer"))  # fmt: skip
    dp.add_argument("--agency", type=Path, help=t.tr("agency folder: docks/NAME.key"))
    dp.add_argument("--name", default="dock1")
    dp.add_argument("--key", type=Path, help=t.tr("this dock's key (the receipts' key)"))
    dp.add_argument("--to", metavar="s3://BUCKET",
                    help=t.tr("dispose of the agency store's copy instead of this dock's "
                              "(docs/AGENCY.md)"))  # fmt: skip
    add_store_arguments(dp, t)
    dp.add_argument("--index", metavar="URL",
                    help=t.tr("the agency index: postgresql+psycopg://..."))  # fmt: skip
    add_locale_arguments(dp, t)
    en = sub.add_parser(
        "enroll", help=t.tr("enroll an officer's fingerprint at this dock's reader (S0 art. 19)")
    )
    en.add_argument("--dock-dir", type=Path, required=True)
    en.add_argument("--name", required=True, help=t.tr("the officer (an account at this dock)"))
    _reader_argument(en, t)
    add_locale_arguments(en, t)
    av = sub.add_parser(
        "audit-verify", help=t.tr("check the audit log: exit 0 intact, 1 at its first break")
    )
    av.add_argument("--dock-dir", type=Path, required=True)
    add_locale_arguments(av, t)
    pg = sub.add_parser(
        "page", help=t.tr("serve the supervisors' compliance page, on loopback only")
    )
    pg.add_argument("--dock-dir", type=Path, required=True)
    pg.add_argument("--port", type=int, default=8080)
    pg.add_argument(
        "--host", default="127.0.0.1", help=t.tr("a loopback address (default 127.0.0.1)")
    )
    pg.add_argument(
        "--identity",
        type=Path,
        help=t.tr("the agency's evidence key, for playback in the page (default: none)"),
    )
    pg.add_argument("--agency", type=Path, help=t.tr("the agency folder (its evidence key)"))
    passphrase_argument(pg, t)
    add_locale_arguments(pg, t)
    add_key_parser(sub, t)
    return p


def main(argv: list[str] | None = None) -> int:
    no_group_write()  # the dock's copies, whatever umask the shell had
    argv = list(sys.argv[1:] if argv is None else argv)
    early = early_locale(argv)
    try:
        texts = load_texts(early.locale)
    except CatalogMissing as exc:  # the one line that cannot be translated
        print(f"dock: {exc}", file=sys.stderr)
        return 2
    args = build_parser(texts).parse_args(argv)
    try:
        if early.error is not None:
            raise LocaleError(early.error)
        texts = load_texts(_command_locale(args, early))
    except (LocaleError, CatalogMissing) as exc:
        print(f"dock: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"dock: dock.toml: {exc}", file=sys.stderr)
        return 2
    return _run(args, texts)


def _ledger_command(args: argparse.Namespace, texts: Texts) -> int:
    from link.messages import LinkError

    from .checkout import check_in, check_out
    from .client import Client, DockError
    from .credentials import dock_setup
    from .discovery import parse_address
    from .index import INDEX_ERRORS, Index, describe_error

    by = operator()
    try:
        address = parse_address(args.unit)
        ctx, key, _identity, inventory = dock_setup(args, texts)
        args.dock_dir.mkdir(parents=True, exist_ok=True)
        # as pull names its rows: the dock's own SQLite as LOCAL_DOCK, another index by --name
        index = (
            Index.open(args.index, dock=args.name)
            if args.index
            else Index.open(args.dock_dir / "dock.sqlite")
        )
    except (DockError, OSError, ssl.SSLError) as exc:
        print(f"dock: {texts.say(exc)}", file=sys.stderr)
        return 1
    except INDEX_ERRORS as exc:
        print(f"dock: {texts.say(describe_error(exc))}", file=sys.stderr)
        return 1
    client = Client(address.host, address.port, ctx)
    try:
        if args.cmd == "checkout":
            done = check_out(client, args.dock_dir, key, index, inventory, args.officer,
                             args.approver, by)  # fmt: skip
            print(texts.tr("%(serial)s checked out to %(officer)s, approved by %(approver)s "
                           "(the unit's record %(seq)s)", serial=done.serial,
                           officer=done.officer, approver=done.approver, seq=done.seq))  # fmt: skip
        else:
            row = check_in(client, args.dock_dir, index, inventory, by)
            print(texts.tr("%(serial)s checked in from %(officer)s",
                           serial=str(row["serial"]), officer=str(row["officer"])))  # fmt: skip
    except (DockError, OSError, ssl.SSLError, LinkError, AuditError) as exc:
        print(f"dock: {texts.say(exc)}", file=sys.stderr)
        return 1
    except INDEX_ERRORS as exc:
        print(f"dock: {texts.say(describe_error(exc))}", file=sys.stderr)
        return 1
    finally:
        client.close()
        index.close()
    return 0


def _audit_verify(args: argparse.Namespace, texts: Texts) -> int:
    from .audit import AuditError, key_fingerprint, read

    if not args.dock_dir.is_dir():
        said = texts.tr("%(folder)s is not a dock folder", folder=str(args.dock_dir))
        print(f"dock: {said}", file=sys.stderr)
        return 2
    entries, broken = read(args.dock_dir)
    if broken is not None:
        print(texts.tr("audit log broken at line %(line)s (after %(count)s intact): %(why)s",
                       line=broken.line, count=len(entries), why=broken.why))  # fmt: skip
        return 1
    try:
        key = key_fingerprint(args.dock_dir)
    except AuditError:
        key = "-"
    print(texts.tr("audit log intact: %(count)s entries, key %(fingerprint)s",
                   count=len(entries), fingerprint=key))  # fmt: skip
    return 0


def _enroll(args: argparse.Namespace, texts: Texts) -> int:
    """`bodycam-dock enroll`: the officer's finger scanned as often as the
    reader asks, the template kept in the index; an audit line."""
    from .fingerprint import FingerprintError, LibfprintReader
    from .index import INDEX_ERRORS, Index, describe_error
    from .officer_prints import enroll

    if not _has_index(args, texts):
        return 2

    def progress(done: int, needed: int, retry: str | None) -> None:
        if retry:
            print("  " + texts.tr("scan not usable (%(why)s): again", why=retry), flush=True)
        else:
            print("  " + texts.tr("scan %(done)s of %(needed)s", done=done, needed=needed),
                  flush=True)  # fmt: skip

    try:
        index = Index.open(args.dock_dir / "dock.sqlite", dock=None)
        try:
            person = index.person(args.name)
            if person is None:
                said = texts.tr("no account %(name)s at this dock (user-add first)",
                                name=args.name)  # fmt: skip
                print(f"dock: {said}", file=sys.stderr)
                return 2
            finger = texts.tr("put the finger on the reader")
            with LibfprintReader(args.reader, prompt=lambda: print(finger, flush=True)) as reader:
                print(texts.tr("enrolling %(name)s with %(reader)s", name=args.name,
                               reader=reader.identity), flush=True)  # fmt: skip
                enroll(index, args.name, reader, int(time.time() * 1e6), progress)
                said = reader.identity
        finally:
            index.close()
        AuditLog(args.dock_dir).append(operator(), "", "enroll", args.name, "ok",
                                       {"reader": said})  # fmt: skip
    except FingerprintError as exc:
        print(f"dock: {texts.say(exc.args[0])}", file=sys.stderr)
        return 1
    except INDEX_ERRORS as exc:
        print(f"dock: {texts.say(describe_error(exc))}", file=sys.stderr)
        return 2
    except (AuditError, OSError) as exc:
        print(f"dock: {exc}", file=sys.stderr)
        return 2
    print(texts.tr("%(name)s's fingerprint enrolled with %(reader)s", name=args.name,
                   reader=said))  # fmt: skip
    return 0


def _has_index(args: argparse.Namespace, texts: Texts) -> bool:
    """--dock-dir holds a dock's index; else one line says it is not a dock."""
    if (args.dock_dir / "dock.sqlite").is_file():
        return True
    said = texts.tr("%(folder)s is not a dock folder", folder=str(args.dock_dir))
    print(f"dock: {said}", file=sys.stderr)
    return False


def _retention(args: argparse.Namespace, texts: Texts) -> int:
    """`bodycam-dock retention`: the recordings due for disposal on a day
    (expired under their class, and not held), one line each."""
    from datetime import date

    from .compliance import model
    from .index import INDEX_ERRORS, Index, describe_error
    from .retention import CLASS_NAMES, PolicyError

    if not _has_index(args, texts):
        return 2
    try:
        as_of = date.fromisoformat(args.as_of) if args.as_of else model.day_of(
            int(time.time() * 1e6), texts.locale)  # fmt: skip
    except ValueError:
        said = texts.tr("--as-of %(text)r is not a day: give YYYY-MM-DD", text=args.as_of[:40])
        print(f"dock: {said}", file=sys.stderr)
        return 2
    try:
        index = Index.open(args.dock_dir / "dock.sqlite", dock=None)
        try:
            view = model.read_dock(args.dock_dir, index, locale=texts.locale)
        finally:
            index.close()
    except INDEX_ERRORS as exc:
        print(f"dock: {texts.say(describe_error(exc))}", file=sys.stderr)
        return 2
    except PolicyError as exc:
        print(f"dock: {exc}", file=sys.stderr)
        return 2
    due = [
        (u.serial, v)
        for u in view.units
        for v in u.recordings
        if v.disposed is None and not v.holds and v.expires is not None and as_of > v.expires
    ]
    for serial, v in due:
        print(texts.tr("%(serial)s recording %(seq)s: %(cls)s, kept until %(expires)s",
                       serial=serial, seq=v.start_seq, cls=CLASS_NAMES[v.retention],
                       expires=v.expires.isoformat() if v.expires else "-"))  # fmt: skip
    print(texts.tr("%(count)s recordings due for disposal on %(day)s (%(zone)s)",
                   count=len(due), day=as_of.isoformat(), zone=texts.locale.timezone),
          file=sys.stderr)  # fmt: skip
    return 0


def _dispose(args: argparse.Namespace, texts: Texts) -> int:
    """`bodycam-dock dispose`: one line; the refusal and the disposal are
    each a line of the audit log."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from .disposal import DisposeRefused, dispose
    from .index import INDEX_ERRORS, describe_error
    from .retention import PolicyError

    target = f"{args.serial} recording {args.recording}"
    if not _has_index(args, texts):
        return 2
    path = args.key or (args.agency / "docks" / f"{args.name}.key" if args.agency else None)
    try:
        if path is None:
            raise ValueError(texts.tr("give --agency DIR --name NAME, or --key F"))
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(texts.tr("the dock key must be Ed25519"))
    except (OSError, ValueError) as exc:
        print(f"dock: {exc}", file=sys.stderr)
        return 2
    log = AuditLog(args.dock_dir)
    who = args.by[:64]
    if args.to is not None:
        return _dispose_at_agency(args, texts, key, log)
    if args.endpoint or args.credentials or args.ca or args.index:
        said = texts.tr("--endpoint, --credentials, --ca and --index are for --to s3://BUCKET")
        print(f"dock: {said}", file=sys.stderr)
        return 2

    def started() -> None:
        log.append(who, "", "dispose", target, "started", {"request": args.request[:20]})

    try:
        done = dispose(args.dock_dir, args.serial, args.recording, args.request, args.by, key,
                       int(time.time() * 1e6), texts.locale, started)  # fmt: skip
    except DisposeRefused as exc:
        with contextlib.suppress(AuditError, OSError):
            log.append(who, "", "dispose", target, "refused", {"why": str(exc.args[0])[:300]})
        print(f"dock: {texts.say(exc.args[0])}", file=sys.stderr)
        return 1
    except INDEX_ERRORS as exc:
        print(f"dock: {texts.say(describe_error(exc))}", file=sys.stderr)
        return 2
    except (PolicyError, AuditError, OSError) as exc:
        print(f"dock: {exc}", file=sys.stderr)
        return 2
    log.append(who, "", "dispose", target, "ok",
               {"statement": done.statement.id, "files": len(done.removed),
                "request": args.request[:20]})  # fmt: skip
    print(texts.tr("%(target)s disposed of: %(count)s files removed; statement %(id)s",
                   target=target, count=len(done.removed), id=done.statement.id[:16]))  # fmt: skip
    return 0


def _dispose_at_agency(args: argparse.Namespace, texts: Texts, key: Any, log: AuditLog) -> int:
    """`bodycam-dock dispose --to s3://BUCKET`: the agency's copy, by the
    dock's rules (dock/agency_disposal.py). The audit log is the dock
    folder's, where the request was filed and approved: started, refused
    (by the rules, or by the store itself), ok."""
    from .agency_disposal import RefusedByStore, dispose_at_agency
    from .disposal import DisposeRefused
    from .index import INDEX_ERRORS, describe_error
    from .object_store import (
        AgencyBucket,
        StoreConfig,
        StoreConfigError,
        StoreRefused,
        is_bucket_target,
    )
    from .retention import PolicyError

    target = f"{args.serial} recording {args.recording} at {args.to}"
    who = args.by[:64]
    try:
        if not is_bucket_target(args.to):
            raise StoreConfigError(msg("--to: want s3://BUCKET (the agency store)"))
        if not args.index:
            raise StoreConfigError(
                msg("an s3:// store needs --index (the agency index: PostgreSQL)")
            )
        config = StoreConfig.load(args.to, args.endpoint, args.credentials, args.ca)
        store = AgencyBucket.connect(config)
    except StoreConfigError as exc:
        print(f"dock: {texts.say(exc.args[0])}", file=sys.stderr)
        return 2

    def started() -> None:
        log.append(who, "", "agency-dispose", target, "started",
                   {"request": args.request[:20]})  # fmt: skip

    try:
        done = dispose_at_agency(args.dock_dir, store, args.index, args.serial, args.recording,
                                 args.request, args.by, key, int(time.time() * 1e6),
                                 texts.locale, started)  # fmt: skip
    except DisposeRefused as exc:
        detail: dict[str, str | int] = {"why": str(exc.args[0])[:300]}
        if isinstance(exc, RefusedByStore):
            detail.update(store=exc.code, removed=exc.removed)
        with contextlib.suppress(AuditError, OSError):
            log.append(who, "", "agency-dispose", target, "refused", detail)
        print(f"dock: {texts.say(exc.args[0])}", file=sys.stderr)
        return 1
    except StoreRefused as exc:  # a listing or the statement's PUT: nothing recorded
        with contextlib.suppress(AuditError, OSError):
            log.append(who, "", "agency-dispose", target, "refused",
                       {"why": str(exc.args[0])[:300], "store": exc.code})  # fmt: skip
        print(f"dock: {texts.say(exc.args[0])}", file=sys.stderr)
        return 1
    except INDEX_ERRORS as exc:
        print(f"dock: {texts.say(describe_error(exc))}", file=sys.stderr)
        return 2
    except (PolicyError, AuditError, OSError) as exc:
        print(f"dock: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, OSError) else 2
    log.append(who, "", "agency-dispose", target, "ok",
               {"statement": done.statement.id, "versions": done.versions, "files": done.files,
                "request": args.request[:20], "bucket": store.bucket})  # fmt: skip
    print(texts.tr("%(target)s disposed of: %(versions)s object versions deleted for %(count)s "
                   "files; statement %(key)s", target=target, versions=done.versions,
                   count=done.files, key=done.key))  # fmt: skip
    return 0


def _run(args: argparse.Namespace, texts: Texts) -> int:
    if args.cmd == "audit-verify":
        return _audit_verify(args, texts)
    if args.cmd == "key":
        from .evidence_key import command as key_command

        return key_command(args, texts)
    if args.cmd == "enroll":
        return _enroll(args, texts)
    if args.cmd in ("checkout", "checkin"):
        return _ledger_command(args, texts)
    if args.cmd in ("supervisor-add", "user-add", "page"):
        from .compliance.web import serve  # flask, waitress, matplotlib: only for the page

        return serve.command(args, texts)
    if args.cmd == "retention":
        return _retention(args, texts)
    if args.cmd == "dispose":
        return _dispose(args, texts)
    if args.cmd == "report":
        from .index import INDEX_ERRORS, describe_error
        from .report import report
        from .retention import PolicyError

        if not args.index and not args.dock_dir.is_dir():
            said = texts.tr("%(folder)s is not a dock folder", folder=str(args.dock_dir))
            print(f"dock: {said}", file=sys.stderr)
            return 2
        try:
            print(report(args.dock_dir, texts, index=args.index))
        except INDEX_ERRORS + (OSError, PolicyError) as exc:
            print(f"dock: {texts.say(describe_error(exc))}", file=sys.stderr)
            return 2
        return 0
    if args.cmd == "sync":
        from .sync import sync_command

        return sync_command(args, texts)
    if args.cmd == "share":
        from .share import share_command

        return share_command(args, texts)
    if args.cmd == "city-pull":
        from .city import city_pull_command

        return city_pull_command(args, texts)
    if args.cmd in ("recordings", "export-case"):
        return _case_command(args, texts)
    if args.cmd == "disc":
        from .disc import disc_command

        return disc_command(args, texts)
    if args.cmd == "serve":
        from . import service

        return service.main(args, texts)
    return _pull_command(args, texts)


def _dock_arguments(p: argparse.ArgumentParser, t: Texts) -> None:
    """What pull and serve share: where the dock keeps its copies, who it is."""
    p.add_argument("--dock-dir", type=Path, required=True)
    p.add_argument(
        "--agency",
        type=Path,
        help=t.tr(
            "agency folder: docks/NAME.crt+key, ca.crt; its agency.toml gives a new dock "
            "its language and time zone"
        ),
    )
    p.add_argument("--name", default="dock1")
    p.add_argument("--cert", type=Path)
    p.add_argument("--key", type=Path)
    p.add_argument("--ca", type=Path)
    p.add_argument(
        "--identity", type=Path, help=t.tr("agency identity: also check plaintext hashes")
    )
    passphrase_argument(p, t)
    p.add_argument(
        "--index",
        help=t.tr(
            "the index: a SQLite path or a postgresql+psycopg:// URL, whose rows then carry "
            "--name (default: DOCK_DIR/dock.sqlite)"
        ),
    )
    p.add_argument(
        "--inventory",
        "--revoked",  # its name before it also listed the active units
        dest="inventory",
        type=Path,
        help=t.tr(
            "the QA inventory every unit is checked against (serial, TLS certificate, device "
            "key, revocations): the agency's inventory.sqlite or `bodycam-flash inventory "
            "--csv` (default: the agency folder's)"
        ),
    )
    p.add_argument(
        "--max-chain-mb",
        type=float,
        default=256.0,
        help=t.tr("the longest chain taken from a unit, in MB (default 256)"),
    )
    p.add_argument(
        "--min-rate-mb",
        type=float,
        default=1.0,
        help=t.tr(
            "the slowest a unit may send, in MB/s: a pull's deadline is 120 s plus its "
            "bytes at this rate (default 1)"
        ),
    )
    p.add_argument(
        "--fingerprint",
        choices=["match", "no-match"],
        default=None,
        help=t.tr(
            "no reader: the operator's verdict, recorded by the unit as such and flagged "
            "on the page (default: the fingerprint reader)"
        ),
    )
    _reader_argument(p, t)
    add_locale_arguments(p, t)


def _reader_argument(p: argparse.ArgumentParser, t: Texts) -> None:
    p.add_argument(
        "--reader",
        default=None,
        metavar="DRIVER",
        help=t.tr("the libfprint reader's driver, or DRIVER/DEVICE-ID (default: the first)"),
    )


def _pull_command(args: argparse.Namespace, texts: Texts) -> int:
    from .client import Client, DockError
    from .credentials import dock_setup, index_arguments, limits
    from .discovery import parse_address
    from .pull import Login, pull
    from .service import PreparedLogin, TerminalLogin, fingerprint_of

    try:
        address = parse_address(args.unit)
        ctx, key, identity, inventory = dock_setup(args, texts)
        pull_limits = limits(args)

        def tell(what: object) -> None:
            print(texts.say(what), file=sys.stderr, flush=True)

        fingerprint = fingerprint_of(args, tell)
        login: Login
        if args.password_file:
            given = args.password_file.read_text().rstrip("\n")
            login = PreparedLogin(lambda _serial, _officer: given, fingerprint, tell)
        else:  # typed at the terminal, and again after a wrong try
            login = TerminalLogin(threading.Lock(), fingerprint, texts)
        client = Client(address.host, address.port, ctx)
        try:
            result = pull(
                client,
                args.dock_dir,
                key,
                login=login,
                identity=identity,
                inventory=inventory,
                limits=pull_limits,
                stop_before_receipt=args.stop_before_receipt,
                **index_arguments(args),
            )
        finally:
            client.close()
    except (DockError, OSError, ssl.SSLError) as exc:
        print(f"dock: {texts.say(exc)}", file=sys.stderr)
        return 1
    line = texts.tr(
        "pulled %(count)s segments from %(serial)s; receipt %(receipt)s; unit released "
        "%(released)s files (%(bytes)s bytes)",
        count=len(result.pulled),
        serial=result.serial,
        receipt=result.receipt[:16] if result.receipt else "-",
        released=len(result.released),
        bytes=result.bytes_freed,
    )
    if result.missing:
        line += texts.tr(
            "; MISSING (named by the chain, held by no one): %(files)s",
            files=", ".join(result.missing),
        )
    print(line)
    return 0
