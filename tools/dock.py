"""The reference dock: pull a unit's sealed segments over mutual TLS, verify,
store durably, index, and only then send a signed receipt (R15-R22).

    python tools/dock.py pull --unit HOST:PORT --dock-dir DIR \
        (--agency DIR --name NAME | --cert F --key F --ca F) [--identity F]
    python tools/dock.py report --dock-dir DIR
    python tools/dock.py recordings --dock-dir DIR --serial S
    python tools/dock.py export-case --dock-dir DIR --serial S --recording SEQ \
        --out DIR (--agency DIR | --identity F --c2pa-cert F --c2pa-key F --ca F)

The dock's storage:
    <dock>/dock.sqlite                       the index
    <dock>/units/<serial>/chain.jsonl        the unit's chain as last pulled
    <dock>/units/<serial>/device_ed25519.pub the unit's key, pinned on first pull
    <dock>/units/<serial>/receipts/<id>.json receipts this dock signed
    <dock>/YYYY/MM/DD/<serial>/<segment>     segments, filed by start date (R21)
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import http.client
import json
import os
import ssl
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from dock_index import Index  # noqa: E402

from firmware.pki import client_context  # noqa: E402
from sealing import layout  # noqa: E402
from sealing.age import Identity  # noqa: E402
from sealing.files import fsync_dir, write_durably  # noqa: E402
from sealing.keys import fingerprint  # noqa: E402
from sealing.receipts import (  # noqa: E402
    ReceiptRefused,
    make_receipt,
    media_entries,
    parse_receipt,
)
from sealing.records import Record, parse_line  # noqa: E402
from sealing.verify import human, verify_store  # noqa: E402

BLOCK = 1024 * 1024


class DockError(Exception):
    """A pull that must stop; the message says why. Nothing was released."""


@dataclass
class Client:
    """One keep-alive HTTPS connection to a unit, reopened after a cut."""

    host: str
    port: int
    context: ssl.SSLContext
    token: str | None = None
    _conn: http.client.HTTPSConnection | None = field(default=None, repr=False)

    def _connection(self) -> http.client.HTTPSConnection:
        if self._conn is None:
            self._conn = http.client.HTTPSConnection(
                self.host, self.port, context=self.context, timeout=30
            )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> http.client.HTTPResponse:
        h = dict(headers or {})
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        conn = self._connection()
        try:
            conn.request(method, path, body=body, headers=h)
            return conn.getresponse()
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def json(
        self, method: str, path: str, obj: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        body = json.dumps(obj).encode() if obj is not None else None
        resp = self.request(method, path, body, {"Content-Type": "application/json"})
        data = resp.read()
        try:
            return resp.status, json.loads(data)
        except ValueError:
            return resp.status, {"error": data[:200].decode(errors="replace")}


@dataclass
class PullResult:
    serial: str
    pulled: list[str]
    resumed_bytes: int
    receipt: str | None
    released: list[str]
    bytes_freed: int
    report_ok: bool


def _download(
    client: Client,
    name: str,
    dest: Path,
    want_sha: str,
    want_len: int,
    progress: Callable[[str, int, int], None],
    retries: int = 5,
) -> int:
    """Fetch one segment into dest, resuming a .part file left by a cut link (in
    this pull or an earlier one); return how many bytes were not fetched again.
    The hash is taken as bytes arrive, so the file is read back only to resume."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    resumed = 0
    buf = memoryview(bytearray(BLOCK))
    digest = hashlib.sha256()
    have = 0
    if part.exists():
        with part.open("rb") as f:
            while n := f.readinto(buf):
                digest.update(buf[:n])
                have += n
    for _attempt in range(retries + 1):
        if have >= want_len:
            break
        resumed += have
        try:
            resp = client.request(
                "GET", f"/v1/segments/{name}", headers={"Range": f"bytes={have}-"}
            )
            if resp.status not in (200, 206):
                raise DockError(f"{name}: unit answered {resp.status}: {resp.read()[:200]!r}")
            with part.open("ab") as f:
                try:
                    have = _receive(
                        resp, f, digest, have, want_len, lambda got: progress(name, got, want_len)
                    )
                finally:
                    f.flush()
                    os.fsync(f.fileno())  # what arrived stays, for the resume
            if have < want_len:
                client.close()  # the body ended early: the link was cut
        except (OSError, http.client.HTTPException):
            client.close()  # the link was cut: reconnect and resume from what arrived
            have = part.stat().st_size if part.exists() else 0
            digest = _rehash(part, buf)
    if have != want_len or digest.hexdigest() != want_sha:
        part.unlink(missing_ok=True)
        raise DockError(f"{name}: received {have} bytes whose hash does not match the chain")
    os.replace(part, dest)
    fsync_dir(dest.parent)
    return resumed


def _receive(
    resp: http.client.HTTPResponse,
    f: BinaryIO,
    digest: Any,
    have: int,
    want_len: int,
    progress: Callable[[int], None],
) -> int:
    """Read the body into two alternating buffers; a worker thread writes and
    hashes one while the next arrives (hashlib and file writes release the
    GIL), so TLS decryption and SHA-256 use both cores. Returns bytes held."""
    bufs = [memoryview(bytearray(BLOCK)), memoryview(bytearray(BLOCK))]
    pending: list[Future | None] = [None, None]

    def keep(view: memoryview) -> None:
        f.write(view)
        digest.update(view)

    with ThreadPoolExecutor(max_workers=1) as worker:
        k = 0
        try:
            while True:
                if pending[k] is not None:
                    pending[k].result()  # type: ignore[union-attr]
                n = resp.readinto(bufs[k])  # short only at the end or at a cut
                if not n:
                    break
                pending[k] = worker.submit(keep, bufs[k][:n])
                have += n
                progress(have)
                k ^= 1
        finally:
            for fut in pending:
                if fut is not None:
                    fut.result()  # everything received is written and hashed, in order
    return have


def _rehash(path: Path, buf: memoryview) -> hashlib._Hash:
    digest = hashlib.sha256()
    if path.exists():
        with path.open("rb") as f:
            while n := f.readinto(buf):
                digest.update(buf[:n])
    return digest


def _progress_bar(name: str, have: int, total: int) -> None:
    if sys.stderr.isatty():
        width = 30
        done = int(width * have / max(total, 1))
        sys.stderr.write(
            f"\r{name[-40:]:>40} [{'#' * done}{'.' * (width - done)}] "
            f"{have * 100 // max(total, 1):3d}%"
        )
        if have >= total:
            sys.stderr.write("\n")


def _records(chain: bytes) -> list[Record]:
    return [parse_line(line)[0] for line in chain.splitlines()]


def pull(
    client: Client,
    dock_dir: Path,
    dock_key: Ed25519PrivateKey,
    *,
    password: str,
    fingerprint_ok: bool,
    identity: Identity | None = None,
    progress: Callable[[str, int, int], None] = _progress_bar,
    stop_before_receipt: bool = False,
    now: Callable[[], float] = time.time,
) -> PullResult:
    dock_dir.mkdir(parents=True, exist_ok=True)
    index = Index(dock_dir / "dock.sqlite")
    try:
        code, status = client.json("GET", "/v1/status")
        if code != 200:
            raise DockError(f"status: {code} {status.get('error')}")
        serial = status["serial"]
        layout.check_serial(serial)
        code, auth = client.json(
            "POST", "/v1/auth", {"password": password, "fingerprint_ok": fingerprint_ok}
        )
        if code != 200:
            raise DockError(
                f"officer not authorised ({code}): {auth.get('error')}"
                + (f", retry in {auth['retry_after_s']} s" if "retry_after_s" in auth else "")
            )
        client.token = auth["token"]
        code, clock = client.json("POST", "/v1/time", {"dock_time_us": int(now() * 1e6)})
        if code != 200:
            raise DockError(f"time sync refused ({code}): {clock.get('error')}")
        resp = client.request("GET", "/v1/chain?from=0")
        chain = resp.read()
        if resp.status != 200:
            raise DockError(f"chain: {resp.status}")
        records = _records(chain)
        mirror = dock_dir / "units" / serial
        _store_chain(index, mirror, serial, status, records, chain)
        _fetch_cited_receipts(client, mirror, records)
        held = index.held(serial)
        offered = {e["file"] for e in _offered(client)}
        pulled, resumed = [], 0
        by_seq = {r.seq: r for r in records}
        for e in media_entries(records):
            if e["file"] in held or e["file"] not in offered:
                continue
            rec = by_seq[e["seq"]]
            name = layout.parse_name(e["file"])
            assert name is not None
            dest = dock_dir / name.day_dir / serial / e["file"]
            resumed += _download(
                client, e["file"], dest, e["ct_sha256"], rec.body["ct_len"], progress
            )
            index.add_segment(
                file=e["file"],
                serial=serial,
                seq=e["seq"],
                kind=name.kind,
                ct_sha256=e["ct_sha256"],
                pt_sha256=rec.body.get("pt_sha256"),
                ct_len=rec.body["ct_len"],
                start_wall_us=(rec.body.get("start") or {}).get("wall_us"),
                end_wall_us=(rec.body.get("end") or {}).get("wall_us"),
                officer=rec.officer,
                retention=rec.body.get("retention"),
                marks=json.dumps(_marks(records)),
                path=str(dest.relative_to(dock_dir)),
                stored_us=int(now() * 1e6),
            )
            pulled.append(e["file"])
        held = index.held(serial)
        report = verify_store(
            mirror,
            identity=identity,
            find_segment=lambda f: (dock_dir / held[f]["path"]) if f in held else None,
        )
        if not report.ok:
            raise DockError(
                f"verification of the pulled copy failed, no receipt sent:\n{human(report)}"
            )
        index.update_unit(serial, records[-1].seq, int(now() * 1e6))
        if stop_before_receipt:
            raise DockError("stopped before sending the receipt (fault injection)")
        entries = [e for e in media_entries(records) if e["file"] in held and e["file"] in offered]
        receipt = make_receipt(
            dock_key,
            serial=serial,
            from_seq=0,
            to_seq=records[-1].seq,
            head=records[-1].hash,
            segments=entries,
            dock_time_us=int(now() * 1e6),
        )
        (mirror / layout.RECEIPTS).mkdir(exist_ok=True)
        write_durably(mirror / layout.RECEIPTS / f"{receipt.id}.json", receipt.to_bytes())
        code, applied = _post_receipt(client, receipt.to_bytes())
        accepted = code == 200
        index.add_receipt(receipt.id, serial, receipt.body, [e["file"] for e in entries], accepted)
        if not accepted:
            raise DockError(f"unit refused the receipt ({code}): {applied.get('error')}")
        return PullResult(
            serial,
            pulled,
            resumed,
            receipt.id,
            applied["released"],
            applied["bytes_freed"],
            report.ok,
        )
    finally:
        index.close()


def _fetch_cited_receipts(client: Client, mirror: Path, records: list[Record]) -> None:
    """Receipts another dock signed: the chain cites them in `release`
    records, and this dock's copy only verifies with them beside it."""
    folder = mirror / layout.RECEIPTS
    for r in records:
        rid = r.body.get("receipt") if r.type == "release" else None
        if not isinstance(rid, str) or (folder / f"{rid}.json").exists():
            continue
        resp = client.request("GET", f"/v1/receipts/{rid}")
        data = resp.read()
        if resp.status != 200:
            raise DockError(f"receipt {rid[:16]} cited by the chain: unit answered {resp.status}")
        try:
            got = parse_receipt(data).id
        except ReceiptRefused as exc:
            raise DockError(f"receipt {rid[:16]} from the unit is not a receipt: {exc}") from None
        if got != rid:
            raise DockError(f"asked for receipt {rid[:16]}, the unit sent {got[:16]}")
        folder.mkdir(parents=True, exist_ok=True)
        write_durably(folder / f"{rid}.json", data)


def _post_receipt(client: Client, data: bytes) -> tuple[int, dict[str, Any]]:
    resp = client.request("POST", "/v1/receipt", data, {"Content-Type": "application/json"})
    body = resp.read()
    try:
        return resp.status, json.loads(body)
    except ValueError:
        return resp.status, {"error": body[:200].decode(errors="replace")}


def _offered(client: Client) -> list[dict[str, Any]]:
    """What the unit still holds and offers: sealed, not yet released."""
    code, got = client.json("GET", "/v1/offered")
    if code != 200 or not isinstance(got.get("segments"), list):
        raise DockError(f"offered list: {code} {got.get('error')}")
    return got["segments"]


def _marks(records: list[Record]) -> list[str]:
    return sorted(
        {str(r.body.get("flag") or r.body.get("retention")) for r in records if r.type == "mark"}
    )


def _store_chain(
    index: Index,
    mirror: Path,
    serial: str,
    status: dict[str, Any],
    records: list[Record],
    chain: bytes,
) -> None:
    """Pin the unit's key on first sight; the new chain must extend the old copy."""
    mirror.mkdir(parents=True, exist_ok=True)
    pem = status["device_key_pem"].encode()
    key = serialization.load_pem_public_key(pem)
    fp = fingerprint(key)  # type: ignore[arg-type]
    known = index.unit(serial)
    if known is not None and known["device_key"] != fp:
        raise DockError(
            f"{serial} presents device key {fp[:16]}, pinned {known['device_key'][:16]}"
        )
    if not records or records[0].body.get("device_key") != fp:
        raise DockError(f"{serial}: chain genesis does not name the unit's device key")
    old = mirror / layout.CHAIN
    if old.exists() and not chain.startswith(old.read_bytes()):
        raise DockError(
            f"{serial}: the unit's chain no longer starts with the copy this dock "
            "holds (history rewritten or cut)"
        )
    write_durably(mirror / layout.DEVICE_PUB, pem)
    write_durably(old, chain)
    index.pin_unit(serial, fp, records[-1].officer)


# -- report (R22) -------------------------------------------------------------


def report(dock_dir: Path, late_after_s: int = 24 * 3600) -> str:
    index = Index(dock_dir / "dock.sqlite")
    out: list[str] = []
    try:
        for serial in index.serials():
            chain = (dock_dir / "units" / serial / layout.CHAIN).read_bytes()
            out += _unit_report(serial, _records(chain), index.held(serial), late_after_s)
    finally:
        index.close()
    return "\n".join(out) if out else "no units pulled yet"


def _unit_report(
    serial: str, records: list[Record], held: dict[str, Any], late_after_s: int
) -> list[str]:
    lines = [f"unit {serial} (officer {records[-1].officer}, chain 0..{records[-1].seq})"]
    media = [r for r in records if r.type in ("segment", "still")]
    segs = [r for r in media if r.type == "segment"]
    total = sum(r.body.get("duration_us", 0) for r in segs) / 1e6
    lines.append(
        f"  recordings   {sum(r.type == 'record_start' for r in records)} started, "
        f"{len(segs)} segments ({total:.0f} s), "
        f"{len(media) - len(segs)} stills"
    )
    gaps, unexplained = [], 0
    for a, b in zip(segs, segs[1:], strict=False):
        if a.boot == b.boot:
            gap = (b.body["start"]["mono_us"] - a.body["end"]["mono_us"]) / 1e6
            if gap > 1.0:
                # a gap is explained by a pause or stop recorded between the two segments
                why = next(
                    (
                        f"{r.type}: {r.body.get('reason') or r.body.get('cause')}"
                        for r in records
                        if a.seq < r.seq < b.seq and r.type in ("pause", "record_stop")
                    ),
                    None,
                )
                unexplained += why is None
                gaps.append(
                    f"{gap:.1f} s before segment {b.body['segno']} ({why or 'UNEXPLAINED'})"
                )
    lines.append(
        f"  gaps         {len(gaps)}, {unexplained} unexplained"
        + (f": {', '.join(gaps[:5])}" if gaps else "")
    )
    pauses = [r for r in records if r.type == "pause"]
    notes = [r for r in records if r.type == "resume_note"]
    missing = [n for n in notes if not n.body.get("given")]
    lines.append(
        f"  pauses       {len(pauses)} ("
        + ", ".join(sorted({str(p.body.get("reason")) for p in pauses}))
        + ")"
    )
    lines.append(
        f"  resume notes {len(notes) - len(missing)} given, {len(missing)} missing"
        + (f" (records {', '.join(str(n.seq) for n in missing)})" if missing else "")
    )
    unverified = [r for r in records if r.stamp.clock_state == "unverified"]
    steps = [r for r in records if r.type == "clock"]
    lines.append(f"  clock        {len(unverified)} records unverified, {len(steps)} steps")
    faults = [r for r in records if r.type in ("fault", "power_loss")]
    lines.append(
        f"  faults       {len(faults)}"
        + (
            ": "
            + ", ".join(f"{f.type}:{f.body.get('what') or f.body.get('cause')}" for f in faults[:6])
            if faults
            else ""
        )
    )
    late = [
        f
        for f, row in held.items()
        if row["end_wall_us"] is not None
        and row["stored_us"] - row["end_wall_us"] > late_after_s * 1_000_000
    ]
    lines.append(
        f"  late export  {len(late)} segments exported more than "
        f"{late_after_s // 3600} h after recording"
    )
    return lines


# -- command line ---------------------------------------------------------------


def _load_dock(args: argparse.Namespace) -> tuple[ssl.SSLContext, Ed25519PrivateKey]:
    if args.agency:
        cert = args.agency / "docks" / f"{args.name}.crt"
        key = args.agency / "docks" / f"{args.name}.key"
        ca = args.agency / "ca.crt"
    else:
        cert, key, ca = args.cert, args.key, args.ca
    if not (cert and key and ca):
        raise DockError("give --agency DIR --name NAME, or --cert, --key and --ca")
    try:
        private = serialization.load_pem_private_key(Path(key).read_bytes(), None)
        ctx = client_context(Path(cert), Path(key), Path(ca))
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise DockError(f"dock credentials: {exc}") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise DockError("the dock key must be Ed25519")
    return ctx, private


def _case_command(args: argparse.Namespace) -> int:
    import courtcopy  # c2pa, weasyprint: loaded only for court copies

    try:
        if args.cmd == "recordings":
            report = courtcopy.verified_copy(args.dock_dir, args.serial)
            for rec in courtcopy.recordings(report.records):
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
    from courtcopy import CaseError, Signing

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
    p = argparse.ArgumentParser(prog="dock.py", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pl = sub.add_parser("pull", help="pull, verify, store, then receipt")
    pl.add_argument("--unit", required=True, help="HOST:PORT of the unit's export service")
    pl.add_argument("--dock-dir", type=Path, required=True)
    pl.add_argument("--agency", type=Path)
    pl.add_argument("--name", default="dock1")
    pl.add_argument("--cert", type=Path)
    pl.add_argument("--key", type=Path)
    pl.add_argument("--ca", type=Path)
    pl.add_argument("--identity", type=Path, help="agency identity: also check plaintext hashes")
    pl.add_argument(
        "--password-file",
        type=Path,
        help="read the officer's password from a file (default: prompt)",
    )
    pl.add_argument(
        "--fingerprint",
        choices=["match", "no-match"],
        default=None,
        help="simulated fingerprint reader verdict (default: ask)",
    )
    pl.add_argument("--stop-before-receipt", action="store_true", help=argparse.SUPPRESS)
    rp = sub.add_parser("report", help="compliance report per unit (R22)")
    rp.add_argument("--dock-dir", type=Path, required=True)
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
    args = p.parse_args(argv)
    if args.cmd == "report":
        print(report(args.dock_dir))
        return 0
    if args.cmd in ("recordings", "export-case"):
        return _case_command(args)
    try:
        host, _, port = args.unit.rpartition(":")
        if not host or not port.isdigit():
            raise DockError(f"--unit must be HOST:PORT, not {args.unit!r}")
        ctx, key = _load_dock(args)
        password = (
            args.password_file.read_text().rstrip("\n")
            if args.password_file
            else getpass.getpass("officer password: ")
        )
        fp = args.fingerprint or (
            "match" if input("fingerprint matched? [y/N] ").lower().startswith("y") else "no-match"
        )
        identity = Identity.parse(args.identity.read_text()) if args.identity else None
        client = Client(host, int(port), ctx)
        try:
            result = pull(
                client,
                args.dock_dir,
                key,
                password=password,
                fingerprint_ok=fp == "match",
                identity=identity,
                stop_before_receipt=args.stop_before_receipt,
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
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
