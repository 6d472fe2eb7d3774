"""The reference dock: pull a unit's sealed segments over mutual TLS, verify,
store durably, index, and only then send a signed receipt (R15-R22).

    bodycam-dock pull --unit HOST:PORT --dock-dir DIR \
        (--agency DIR --name NAME | --cert F --key F --ca F) [--identity F] \
        [--inventory F] [--index URL]
    bodycam-dock serve --dock-dir DIR (--usb | --unit HOST:PORT ...) [--once] ...
    bodycam-dock report --dock-dir DIR [--index URL]
    bodycam-dock sync --dock-dir DIR --to AGENCY_DIR [--index URL] [--name DOCK]
    bodycam-dock supervisor-add --dock-dir DIR --name N
    bodycam-dock page --dock-dir DIR [--port 8080]
    bodycam-dock recordings --dock-dir DIR --serial S
    bodycam-dock export-case --dock-dir DIR --serial S --recording SEQ \
        --out DIR (--agency DIR | --identity F --c2pa-cert F --c2pa-key F --ca F)

The dock's storage:
    <dock>/dock.sqlite                       the index
    <dock>/units/<serial>/chain.jsonl        the unit's chain as last pulled
    <dock>/units/<serial>/device_ed25519.pub the unit's key, pinned on first pull
    <dock>/units/<serial>/receipts/<id>.json receipts this dock signed
    <dock>/units/<serial>/verification.json  the last safety check before a receipt
    <dock>/supervisors.json                  who may sign in to the compliance page
    <dock>/signins.jsonl                     every sign-in, failure and sign-out (0600)
    <dock>/signin-locks.json                 sign-in locks that outlive a restart (0600)
    <dock>/YYYY/MM/DD/<serial>/<segment>     segments, filed by start date (R21)
    <dock>/.staging/                         what a unit sent, until it is verified
"""

from __future__ import annotations

import argparse
import getpass
import ssl
import sys
from pathlib import Path
from typing import Any

from sealing.age import Identity
from sealing.files import no_group_write


def _case_command(args: argparse.Namespace) -> int:
    from . import courtcopy  # c2pa, weasyprint, PyAV: loaded only for court copies

    try:
        if args.cmd == "recordings":
            report = courtcopy.verified_copy(args.dock_dir, args.serial)
            for rec in courtcopy.recordings(report.chain):
                print(courtcopy.describe(rec))
            return 0
        signing, identity = _case_credentials(args)
        case = courtcopy.export_case(
            args.dock_dir, args.serial, args.recording, identity, signing, args.out, args.name
        )
    except courtcopy.CaseError as exc:
        print(f"dock: {exc}", file=sys.stderr)
        return exc.code
    except OSError as exc:
        print(f"dock: {exc}", file=sys.stderr)
        return 2
    j = case.joined
    print(
        f"court copy {case.mp4}: {j.duration_us / 1e6:.1f} s, {j.video_packets} pictures, "
        f"{len(case.media['missing_groups'])} groups missing; C2PA {case.validation.state} with "
        f"the agency CA{' (TEST certificate)' if case.test_certificate else ''}; "
        f"report.html, report.pdf, SHA256SUMS in {case.out}"
    )
    return 0


def _case_credentials(args: argparse.Namespace) -> tuple[Any, Identity]:
    from .courtcopy import CaseError, Signing

    a = args.agency
    cert = args.c2pa_cert or (a / "c2pa" / "court.crt" if a else None)
    key = args.c2pa_key or (a / "c2pa" / "court.key" if a else None)
    ca = args.ca or (a / "ca.crt" if a else None)
    ident = args.identity or (a / "evidence.key" if a else None)
    if not (cert and key and ca and ident):
        raise CaseError("give --agency DIR, or --identity, --c2pa-cert, --c2pa-key and --ca")
    try:
        signing = Signing(cert.read_bytes(), key.read_bytes(), ca.read_bytes())
        identity = Identity.parse(ident.read_text())
    except FileNotFoundError as exc:
        hint = " (flash.py c2pa-signer makes one)" if exc.filename == str(cert) else ""
        raise CaseError(f"{exc.filename}: no such file{hint}") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CaseError(f"court-copy credentials: {exc}") from None
    return signing, identity


def main(argv: list[str] | None = None) -> int:
    no_group_write()  # the dock's copies, whatever umask the shell had
    p = argparse.ArgumentParser(prog="bodycam-dock", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pl = sub.add_parser("pull", help="pull one unit, verify, store, then receipt")
    pl.add_argument("--unit", required=True, help="HOST:PORT or [IPv6%%if]:PORT of the unit")
    _dock_arguments(pl)
    pl.add_argument(
        "--password-file",
        type=Path,
        help="read the officer's password from a file (default: prompt)",
    )
    pl.add_argument("--stop-before-receipt", action="store_true", help=argparse.SUPPRESS)
    sv = sub.add_parser("serve", help="watch for units, pull several at once (docs/EXPORT.md)")
    _dock_arguments(sv)
    sv.add_argument(
        "--usb", action="store_true", help="units on USB gadget links (IPv6 link-local)"
    )
    sv.add_argument("--usb-port", type=int, default=8443, help="the units' export port")
    sv.add_argument("--unit", action="append", default=[], help="a fixed HOST:PORT (repeatable)")
    sv.add_argument("--once", action="store_true", help="pull the units present now, then exit")
    sv.add_argument("--workers", type=int, default=4, help="units pulled at the same time")
    sv.add_argument(
        "--password-dir", type=Path, help="officers' passwords as DIR/<serial> (default: prompt)"
    )
    rp = sub.add_parser("report", help="compliance report per unit (R22)")
    rp.add_argument("--dock-dir", type=Path, required=True)
    rp.add_argument(
        "--index",
        help="the index: a SQLite file or postgresql+psycopg://... URL "
        "(default DOCK_DIR/dock.sqlite)",
    )
    from .sync import add_parser as add_sync_parser

    add_sync_parser(sub)
    rl = sub.add_parser("recordings", help="the recordings a unit's verified copy holds")
    rl.add_argument("--dock-dir", type=Path, required=True)
    rl.add_argument("--serial", required=True)
    ec = sub.add_parser("export-case", help="the court copy of one recording (docs/EXPORT.md)")
    ec.add_argument("--dock-dir", type=Path, required=True)
    ec.add_argument("--serial", required=True)
    ec.add_argument(
        "--recording",
        type=int,
        required=True,
        metavar="SEQ",
        help="the record_start record's number (see `recordings`)",
    )
    ec.add_argument("--out", type=Path, required=True, help="the case folder to create")
    ec.add_argument(
        "--agency", type=Path, help="agency folder: c2pa/court.crt+key, ca.crt, evidence.key"
    )
    ec.add_argument("--identity", type=Path, help="the agency's evidence identity (age)")
    ec.add_argument("--c2pa-cert", type=Path, help="court-copy signing certificate, leaf first")
    ec.add_argument("--c2pa-key", type=Path)
    ec.add_argument("--ca", type=Path, help="the agency CA (the C2PA trust anchor)")
    ec.add_argument("--name", default="", help="this dock's name, for the report")
    sa = sub.add_parser("supervisor-add", help="let a supervisor sign in to the compliance page")
    sa.add_argument("--dock-dir", type=Path, required=True)
    sa.add_argument("--name", required=True)
    sa.add_argument("--password-file", type=Path, help="read the password (default: prompt)")
    pg = sub.add_parser("page", help="serve the supervisors' compliance page, on loopback only")
    pg.add_argument("--dock-dir", type=Path, required=True)
    pg.add_argument("--port", type=int, default=8080)
    pg.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    args = p.parse_args(argv)
    if args.cmd in ("supervisor-add", "page"):
        from .compliance.web import serve  # flask, waitress, matplotlib: only for the page

        return serve.command(args)
    if args.cmd == "report":
        from .index import INDEX_ERRORS, describe_error
        from .report import report

        if not args.index and not args.dock_dir.is_dir():
            print(f"dock: {args.dock_dir} is not a dock folder", file=sys.stderr)
            return 2
        try:
            print(report(args.dock_dir, index=args.index))
        except INDEX_ERRORS + (OSError,) as exc:
            print(f"dock: {describe_error(exc)}", file=sys.stderr)
            return 2
        return 0
    if args.cmd == "sync":
        from .sync import sync_command

        return sync_command(args)
    if args.cmd in ("recordings", "export-case"):
        return _case_command(args)
    if args.cmd == "serve":
        from . import service

        return service.main(args)
    return _pull_command(args)


def _dock_arguments(p: argparse.ArgumentParser) -> None:
    """What pull and serve share: where the dock keeps its copies, who it is."""
    p.add_argument("--dock-dir", type=Path, required=True)
    p.add_argument("--agency", type=Path, help="agency folder: docks/NAME.crt+key, ca.crt")
    p.add_argument("--name", default="dock1")
    p.add_argument("--cert", type=Path)
    p.add_argument("--key", type=Path)
    p.add_argument("--ca", type=Path)
    p.add_argument("--identity", type=Path, help="agency identity: also check plaintext hashes")
    p.add_argument(
        "--index",
        help="the index: a SQLite path or a postgresql+psycopg:// URL, whose rows then carry "
        "--name (default: DOCK_DIR/dock.sqlite)",
    )
    p.add_argument(
        "--inventory",
        "--revoked",  # its name before it also listed the active units
        dest="inventory",
        type=Path,
        help="the QA inventory every unit is checked against (serial, TLS certificate, device "
        "key, revocations): the agency's inventory.sqlite or `bodycam-flash inventory --csv` "
        "(default: the agency folder's)",
    )
    p.add_argument(
        "--max-chain-mb",
        type=float,
        default=256.0,
        help="the longest chain taken from a unit, in MB (default 256)",
    )
    p.add_argument(
        "--min-rate-mb",
        type=float,
        default=1.0,
        help="the slowest a unit may send, in MB/s: a pull's deadline is 120 s plus its "
        "bytes at this rate (default 1)",
    )
    p.add_argument(
        "--fingerprint",
        choices=["match", "no-match"],
        default=None,
        help="simulated fingerprint reader verdict (default: ask)",
    )


def _pull_command(args: argparse.Namespace) -> int:
    from .client import Client, DockError
    from .credentials import dock_setup, index_arguments, limits
    from .discovery import parse_address
    from .pull import pull

    try:
        address = parse_address(args.unit)
        ctx, key, identity, inventory = dock_setup(args)
        pull_limits = limits(args)
        password = (
            args.password_file.read_text().rstrip("\n")
            if args.password_file
            else getpass.getpass("officer password: ")
        )
        fp = args.fingerprint or (
            "match" if input("fingerprint matched? [y/N] ").lower().startswith("y") else "no-match"
        )
        client = Client(address.host, address.port, ctx)
        try:
            result = pull(
                client,
                args.dock_dir,
                key,
                password=password,
                fingerprint_ok=fp == "match",
                identity=identity,
                inventory=inventory,
                limits=pull_limits,
                stop_before_receipt=args.stop_before_receipt,
                **index_arguments(args),
            )
        finally:
            client.close()
    except (DockError, OSError, ssl.SSLError) as exc:
        print(f"dock: {exc}", file=sys.stderr)
        return 1
    print(
        f"pulled {len(result.pulled)} segments from {result.serial}; receipt "
        f"{result.receipt[:16] if result.receipt else '-'}; unit released "
        f"{len(result.released)} files ({result.bytes_freed} bytes)"
        + (
            f"; MISSING (named by the chain, held by no one): {', '.join(result.missing)}"
            if result.missing
            else ""
        )
    )
    return 0
