"""Regenerate tests/vectors/: a small sealed store made with published TEST keys.

    python tools/make_vectors.py tests/vectors

The keys written there are public test keys: never use them for evidence.
Times come from a fixed clock so records are reproducible; age ciphertext is
not (fresh file keys and nonces each run), so regenerating changes the files.

`unit/` MUST verify (a release, a clock step inside a segment, a power loss
with a torn chain line and a partial segment, a recording key, a Pi still, a
camera recovery), and so MUST `dock/` (the same store as a dock's copy, with
the dock's work files beside the segments); each case under `bad/` MUST fail
on the one rule `bad/CASES.json` names.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sealing import canonical, fss, keys, layout
from sealing.age import Identity
from sealing.keys import fingerprint, raw_public
from sealing.receipts import RECEIPT_DOMAIN, apply_receipt, make_receipt, media_entries
from sealing.records import GENESIS_PREV, MAX_LINE, SIG_DOMAIN, Stamp
from sealing.store import SegmentMeta, Store
from sealing.unit import open_unit, provision_unit

T0 = 1_795_000_000_000_000  # 2026-11-18T11:06:40Z


class FixedClock:
    """Half a second per reading; `step_wall` moves the wall clock the way a
    dock or GPS fix would, while the monotonic clock runs on."""

    def __init__(self) -> None:
        self.n = 0
        self.wall_offset = 0

    def __call__(self) -> Stamp:
        self.n += 1
        tick = self.n * 500_000
        return Stamp(1_000_000 + tick, T0 + tick + self.wall_offset, "synced", "dock")


def _seal(
    store: Store,
    clock: FixedClock,
    ext: str,
    data: bytes,
    step_back_us: int = 0,
    extra: dict[str, Any] | None = None,
) -> None:
    start = clock()
    w = store.open_segment(ext, stamp=start)
    w.write(data)
    if step_back_us:
        # a clock step while the segment records: it ends, by the wall clock,
        # before it started; the monotonic clock still orders it
        before = clock()
        clock.wall_offset -= step_back_us
        after = clock()
        store.append(
            "clock",
            {
                "before_us": before.wall_us,
                "after_us": after.wall_us,
                "source": "dock",
                "state": "synced",
            },
            stamp=after,
        )
    end = clock()
    w.close(
        SegmentMeta(
            start=start,
            end=end,
            duration_us=end.mono_us - start.mono_us,
            codecs=["mjpeg"] if ext == "jpg" else ["h264", "aac"],
            container="jpeg" if ext == "jpg" else "mpegts",
            extra=extra or {},
        )
    )


def main(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    agency = Identity.generate()
    dock = Ed25519PrivateKey.generate()
    clock = FixedClock()
    unit = out / "unit"
    key0 = provision_unit(
        unit,
        serial="BC-VECTOR-01",
        officer="TEST-OFFICER",
        recipient=agency.recipient,
        docks=[dock.public_key()],
        clock=clock,
    )
    with open_unit(unit, clock=clock, boot_body={"firmware": "vectors"}) as store:
        _seal(store, clock, "ts", b"segment one " * 1000)
        store.append("pause", {"reason": "to_be_stated"})
        store.append("resume", {})
        store.append("resume_note", {"given": True, "speech_s": 4})
        store.append("recording_key", _recording_key(Ed25519PrivateKey.generate()))
        still = {"source": "sensor", "width": 4608, "height": 2592}
        _seal(store, clock, "jpg", b"\xff\xd8 still \xff\xd9", extra={"still": still})
        store.append("recovered", _recovered(7_000_000, 7_800_000))
        _seal(store, clock, "ts", b"segment two " * 7000, step_back_us=30_000_000)
        recs = store.records()
        receipt = make_receipt(
            dock,
            serial=store.serial,
            from_seq=0,
            to_seq=recs[-1].seq,
            head=recs[-1].hash,
            segments=media_entries(recs)[:1],
            dock_time_us=T0 + 60_000_000,
        )
        first = store.segments / media_entries(recs)[0]["file"]
        first_bytes = first.read_bytes()  # the bad stores below still hold it
        apply_receipt(store, receipt.to_bytes())
        # the power is cut: a segment half written, a record half appended
        w = store.open_segment("ts", stamp=clock())
        w.write(b"cut short " * 3000)
        w.sync()
        with (store.root / layout.CHAIN).open("ab") as chain:
            chain.write(b'{"mac":"00')
    with open_unit(unit, clock=clock, boot_body={"firmware": "vectors", "cause": "power on"}):
        pass
    (out / "agency-identity.TEST-ONLY.txt").write_text(
        f"# PUBLISHED TEST KEY - decrypts tests/vectors only\n{agency}\n"
    )
    (out / "escrow.TEST-ONLY.txt").write_text(keys.escrow_text(key0))
    (out / "dock.TEST-ONLY.pem").write_bytes(_pem(dock))
    (unit / "store" / "LOCK").unlink()
    (unit / "store" / "reserve").unlink()  # room kept for a full disk, not evidence
    bad_vectors(out / "bad", unit, key0, dock, first_bytes)
    dock_vector(out / "dock", unit, first_bytes)
    media_vector(out / "media")
    bad_media(out / "bad", out / "media" / "signed.ts")


def dock_vector(out: Path, unit: Path, first_bytes: bytes) -> None:
    """The unit's store as a dock holds it (docs/FORMAT.md section 8.4): the
    chain, key and receipts under units/<serial>/, every segment (the released
    one too) under its date, beside two of the dock's own work files, which a
    verifier notes and does not read."""
    store = unit / "store"
    serial = "BC-VECTOR-01"
    copy = out / "units" / serial
    copy.mkdir(parents=True)
    for name in (layout.CHAIN, layout.DEVICE_PUB):
        shutil.copy(store / name, copy / name)
    shutil.copytree(store / layout.RECEIPTS, copy / layout.RECEIPTS)
    files = {p.name: p.read_bytes() for p in (store / layout.SEGMENTS).iterdir()}
    recs = [json.loads(line)["rec"] for line in (store / layout.CHAIN).read_bytes().splitlines()]
    first = next(r for r in recs if r["type"] == "segment")["body"]["file"]
    files[first] = first_bytes
    for name, data in files.items():
        parsed = layout.parse_name(name)
        assert parsed is not None
        folder = out / parsed.day_dir / serial
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    parsed = layout.parse_name(first)
    assert parsed is not None
    folder = out / parsed.day_dir / serial
    (folder / f"{first}.rejected-{T0 + 120_000_000}").write_bytes(first_bytes[:-1] + b"\x00")
    (folder / f"{first}.part").write_bytes(first_bytes[:4096])


def media_vector(out: Path) -> None:
    """A short real recording's first segment, decrypted (so another
    implementation of section 5.2 needs no age), with what its signatures say."""
    import io
    import tempfile

    from capture import gopsign
    from capture.gopcheck import GroupResult
    from firmware.cmd_verify_media import check_file
    from firmware.recording import run_scenario
    from firmware.scenario import parse
    from sealing.age import decrypt

    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        unit = Path(tmp) / "unit"
        agency = Identity.generate()
        provision_unit(
            unit,
            serial="BC-VECTOR-01",
            officer="TEST-OFFICER",
            recipient=agency.recipient,
            docks=[],
        )
        scenario = {
            "seconds": 5,
            "size": "160x96",
            "clock": "synced",
            "segment_seconds": 64,
            "prerecord_seconds": 0,
            "at": [{"t": 1, "press": "record"}, {"t": 4.5, "hold": "record"}],
        }
        run_scenario(unit, parse(scenario, Path(tmp)), log=lambda line: None)
        seg = next((unit / "store" / "segments").glob("*.ts.age"))
        plain = io.BytesIO()
        with seg.open("rb") as f:
            decrypt(f, agency, plain)
        (out / "signed.ts").write_bytes(plain.getvalue())
    seen: list[GroupResult] = []
    check = check_file(out / "signed.ts", seen.append)
    assert check.ok
    groups = []
    for g in seen:
        sig = g.signature
        assert sig is not None and g.status == "verified"
        groups.append(
            {
                "index": sig.index,
                "first_frame": sig.first_frame,
                "frames": sig.frames,
                "hashed_nal_units": len(sig.hashes),
                "first_nal_sha256": sig.hashes[0].hex(),
                "group_hash": sig.group_hash.hex(),
                "prev": sig.prev.hex(),
            }
        )
    facts = {
        "uuid": str(gopsign.UUID),
        "serial": check.serial,
        "recording_key": check.key.hex() if check.key else None,
        "groups": groups,
    }
    (out / "signed.json").write_text(json.dumps(facts, indent=1) + "\n")


def _recording_key(key: Ed25519PrivateKey) -> dict[str, Any]:
    raw = raw_public(key.public_key())
    return {"public_key": canonical.b64(raw), "key": hashlib.sha256(raw).hexdigest()}


def _recovered(gap_from: int, gap_to: int, gap: int | None = None) -> dict[str, Any]:
    return {
        "what": "camera",
        "reason": "video resumed after restart 1 of 3",
        "restarts": 1,
        "gap_from_us": gap_from,
        "gap_to_us": gap_to,
        "gap_us": gap_to - gap_from if gap is None else gap,
    }


def bad_media(out: Path, signed: Path) -> None:
    """Copies of the signed media vector that `bodycam verify-media` MUST NOT
    verify: every signature holds, but one group's pictures would play twice."""
    from fractions import Fraction

    import av

    gops: list[list[bytes]] = []
    with av.open(str(signed)) as src:
        for pkt in src.demux(src.streams.video[0]):
            if pkt.size:
                if pkt.is_keyframe or not gops:
                    gops.append([])
                gops[-1].append(bytes(pkt))
    assert len(gops) >= 5
    cases = json.loads((out / "CASES.json").read_text())
    for name, order, rule in [
        (
            "media_group_repeated",
            [0, 1, 2, 2, 3, 4],
            "a group is in a copy once (right after itself)",
        ),
        ("media_group_played_again", [0, 1, 2, 3, 1, 4], "a group is in a copy once (again later)"),
    ]:
        (out / name).mkdir()
        with av.open(str(signed)) as src, av.open(str(out / name / "copy.ts"), "w") as dst:
            vs = dst.add_stream_from_template(src.streams.video[0])
            n = 0
            for g in order:
                for i, data in enumerate(gops[g]):
                    p = av.Packet(data)
                    p.stream = vs
                    p.time_base = Fraction(1, 30)
                    p.pts = p.dts = n
                    p.is_keyframe = i == 0
                    dst.mux(p)
                    n += 1
        cases[name] = {"rule": rule, "problem": "more than once", "media": "copy.ts", "only": True}
    (out / "CASES.json").write_text(json.dumps(cases, indent=1, sort_keys=True) + "\n")


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# -- stores that MUST fail, one rule each ------------------------------------------


def _line(rec: dict[str, Any], device: Ed25519PrivateKey, mac_key: bytes) -> bytes:
    # json.dumps as canonical.encode does, but without its refusals: these
    # lines are built to break exactly one rule
    raw = _raw(rec)
    msg = raw.decode()
    sig = canonical.b64(device.sign(SIG_DOMAIN + raw))
    mac = fss.mac(mac_key, raw)
    line = f'{{"mac":"{mac}","rec":{msg},"sig":"{sig}"}}'
    return line.encode() + b"\n"


def _raw(rec: dict[str, Any]) -> bytes:
    msg = json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # a lone surrogate has no UTF-8 form: JSON can only carry it escaped
    return msg.replace("\ud800", "\\ud800").encode()


def _reseal(recs: list[dict[str, Any]], device: Ed25519PrivateKey, key0: bytes) -> bytes:
    """Relink, re-sign and re-MAC every record, as a writer holding all the
    unit's keys would: only the rule the case breaks is broken."""
    out, prev, k = b"", GENESIS_PREV, key0
    for seq, rec in enumerate(recs):
        rec = {**rec, "seq": seq, "prev": prev}
        line = _line(rec, device, k)
        out += line
        prev = hashlib.sha256(_raw(rec)).hexdigest()
        k = fss.evolve(k)
    return out


def _receipt(key: Ed25519PrivateKey, recs: list[dict[str, Any]], **change: Any) -> bytes:
    """A receipt over the whole chain for the first media record, then changed."""
    media = [r for r in recs if r["type"] in ("segment", "still")][:1]
    head = hashlib.sha256(canonical.encode(recs[-1])).hexdigest()
    body = {
        "v": 1,
        "serial": recs[0]["serial"],
        "dock_key": canonical.b64(raw_public(key.public_key())),
        "from_seq": 0,
        "to_seq": len(recs) - 1,
        "head": head,
        "segments": [
            {"seq": r["seq"], "file": r["body"]["file"], "ct_sha256": r["body"]["ct_sha256"]}
            for r in media
        ],
        "dock_time_us": T0 + 90_000_000,
        "nonce": "5" * 32,
    }
    body.update(change)
    sig = key.sign(RECEIPT_DOMAIN + canonical.encode(body))
    return canonical.encode({"receipt": body, "sig": canonical.b64(sig)})


def bad_vectors(
    out: Path, unit: Path, key0: bytes, dock: Ed25519PrivateKey, seg_bytes: bytes
) -> None:
    device = serialization.load_pem_private_key(
        (unit / "keys" / "device_ed25519.pem").read_bytes(), None
    )
    assert isinstance(device, Ed25519PrivateKey)
    store = unit / "store"
    base = [json.loads(line)["rec"] for line in (store / layout.CHAIN).read_bytes().splitlines()][
        :5
    ]  # genesis, boot, the first segment, pause, resume
    seg = base[2]["body"]["file"]
    stranger = Ed25519PrivateKey.generate()
    cases: dict[str, dict[str, Any]] = {}

    def case(name: str, rule: str, problem: str, recs: list[dict[str, Any]], **kw: Any) -> None:
        d = out / name / "store"
        (d / layout.SEGMENTS).mkdir(parents=True)
        (d / layout.RECEIPTS).mkdir()
        shutil.copy(store / layout.DEVICE_PUB, d / layout.DEVICE_PUB)
        files: dict[str, bytes] = kw.get("files", {seg: seg_bytes})
        for fname, data in files.items():
            (d / layout.SEGMENTS / fname).write_bytes(data)
        for rid, data in kw.get("receipts", {}).items():
            (d / layout.RECEIPTS / f"{rid}.json").write_bytes(data)
        chain = kw.get("chain") or _reseal(recs, device, key0)
        (d / layout.CHAIN).write_bytes(chain)
        cases[name] = {"rule": rule, "problem": problem}
        if kw.get("only"):
            cases[name]["only"] = True
        if "then" in kw:
            cases[name].update(kw["then"](d) or {})

    def released_under(receipt: bytes, recs: list[dict[str, Any]], **change: Any) -> Any:
        r = json.loads(receipt)["receipt"]
        rid = hashlib.sha256(canonical.encode(r)).hexdigest()
        body = {
            "receipt": rid,
            "dock": fingerprint(Ed25519PublicKey.from_public_bytes(canonical.unb64(r["dock_key"]))),
            "from_seq": r["from_seq"],
            "to_seq": r["to_seq"],
            "head": r["head"],
            "files": [e["file"] for e in r["segments"]],
            "bytes_freed": 1,
        }
        body.update(change)
        rel = {**recs[-1], "type": "release", "body": body, "mono_us": recs[-1]["mono_us"] + 1}
        return recs + [rel], {rid: receipt}

    def resealed(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # the seq/prev fields the receipt's head must name are the resealed ones
        return [json.loads(ln)["rec"] for ln in _reseal(recs, device, key0).splitlines()]

    gen2 = {**base[0], "boot": 1, "mono_us": base[-1]["mono_us"] + 1}
    case("second_genesis", "exactly one genesis", "second genesis", base + [gen2], only=True)
    g_boot = [{**r, "boot": r["boot"] + 1} for r in base]
    case("genesis_boot_1", "genesis has boot 0", "genesis has boot count 1", g_boot, only=True)

    recs = resealed(base)
    chain, receipts = released_under(_receipt(stranger, recs), recs)
    case(
        "release_by_unenrolled_dock",
        "a release counts only under a dock enrolled in genesis",
        "which genesis does not enroll",
        chain,
        files={},
        receipts=receipts,
    )
    chain, receipts = released_under(_receipt(dock, recs), recs, to_seq=1)
    case(
        "release_unlike_its_receipt",
        "a release body equals its receipt",
        "its to_seq differs",
        chain,
        files={},
        receipts=receipts,
    )
    chain, receipts = released_under(_receipt(dock, recs, nonce="5" * 8), recs)
    case(
        "receipt_short_nonce", "nonce is 32 hex digits", "nonce", chain, files={}, receipts=receipts
    )
    twice = _receipt(dock, recs)
    body = json.loads(twice)["receipt"]
    twice = _receipt(dock, recs, segments=body["segments"] * 2)
    chain, receipts = released_under(twice, recs)
    case(
        "receipt_lists_a_file_twice",
        "a receipt lists a file once",
        "listed more than once",
        chain,
        files={},
        receipts=receipts,
    )
    good = _receipt(dock, recs)
    chain, receipts = released_under(good, recs)
    case(
        "receipt_with_trailing_newline",
        "a receipt file is exactly its canonical bytes",
        "not in canonical form",
        chain,
        files={},
        receipts={k: v + b"\n" for k, v in receipts.items()},
    )
    lines = _reseal(base, device, key0).splitlines(keepends=True)
    upper = lines[:2] + [
        lines[2].replace(b'"mac":"' + lines[2][8:72], b'"mac":"' + lines[2][8:72].upper())
    ]
    case(
        "mac_in_upper_case",
        "mac is 64 lowercase hex, with or without the escrow key",
        "mac must be",
        [],
        chain=b"".join(upper + lines[3:]),
    )
    big = [*base[:3], {**base[3], "body": {"reason": "privacy", "n": 2**53}}, base[4]]
    case("integer_beyond_2_53", "integers within +-(2^53 - 1)", "beyond", big, only=True)
    lone = [*base[:3], {**base[3], "body": {"reason": "\ud800"}}, base[4]]
    case("lone_surrogate", "strings are Unicode scalar values", "lone surrogate", lone, only=True)
    padded = seg.replace("_000001.", "_0000001.")
    pad = [*base[:2], {**base[2], "body": {**base[2]["body"], "file": padded}}, *base[3:]]
    case(
        "segno_over_padded",
        "a segment number has six digits, more only when it needs them",
        "bad file",
        pad,
        files={padded: seg_bytes},
    )
    zero = seg.replace("_000001.", "_000000.")
    z = [*base[:2], {**base[2], "body": {**base[2]["body"], "file": zero, "segno": 0}}, *base[3:]]
    case(
        "segno_zero",
        "segment numbers start at 1",
        "bad file",
        z,
        files={zero: seg_bytes},
    )
    s = base[2]["body"]
    back = {**s, "start": s["end"], "end": s["start"]}
    case(
        "segment_ends_before_it_starts",
        "start <= end on the monotonic clock",
        "ends before it starts",
        [*base[:2], {**base[2], "body": back}, *base[3:]],
        only=True,
    )
    pl = {**base[3], "type": "power_loss", "body": {"cause": "gremlins"}}
    case(
        "power_loss_unknown_cause",
        "power_loss has one of two shapes",
        "power_loss",
        [*base[:3], pl],
        only=True,
    )

    # -- issue 23: the format decided ---------------------------------------------------

    def padded_to(n: int) -> list[dict[str, Any]]:
        body = {"reason": "privacy", "pad": "a" * n}
        return [*base, {**base[4], "type": "pause", "body": body}]

    last = _reseal(padded_to(0), device, key0).splitlines(keepends=True)[-1]
    long = padded_to(MAX_LINE + 1 - len(last))  # its line, newline included: MAX_LINE + 1
    case(
        "chain_line_over_8_mib",
        "a line, newline included, is at most 8 MiB",
        "a line longer than",
        long,
        only=True,
    )
    many = [*base, {**base[4], "type": "pause", "body": {"reason": "privacy", "x": [{}] * 70_000}}]
    case(
        "record_of_too_many_objects",
        "a document holds at most 65,536 objects and arrays",
        "more than 65536 objects and arrays",
        many,
        only=True,
    )
    key_a, key_b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    rk_a = {**base[4], "type": "recording_key", "body": _recording_key(key_a)}
    rk_b = {**base[4], "type": "recording_key", "body": _recording_key(key_b)}
    stop = {**base[4], "type": "record_stop", "body": {"cause": "button"}}
    wrong = {**rk_a, "body": {**rk_a["body"], "key": rk_b["body"]["key"]}}
    case(
        "recording_key_not_its_fingerprint",
        "recording_key: key is the fingerprint of public_key",
        "key is not the fingerprint",
        [*base, wrong],
        only=True,
    )
    short = os.urandom(31)
    rk31 = {"public_key": canonical.b64(short), "key": hashlib.sha256(short).hexdigest()}
    case(
        "recording_key_31_bytes",
        "recording_key: public_key is 32 bytes",
        "is 31 bytes",
        [*base, {**rk_a, "body": rk31}],
        only=True,
    )
    case(
        "recording_key_announced_twice",
        "recording_key: a key is announced once",
        "announced before",
        [*base, rk_a, stop, rk_a],
        only=True,
    )
    case(
        "two_recording_keys_in_one_recording",
        "recording_key: one per recording (until record_stop or boot)",
        "a second recording key",
        [*base, rk_a, rk_b],
        only=True,
    )
    case(
        "recording_key_extra_field",
        "recording_key has exactly public_key and key",
        "fields must be exactly",
        [*base, {**rk_a, "body": {**rk_a["body"], "algorithm": "ed25519"}}],
        only=True,
    )
    rec_back = {**base[4], "type": "recovered", "body": _recovered(5_000_000, 4_000_000)}
    case(
        "recovered_gap_backwards",
        "recovered: gap_to_us >= gap_from_us",
        "is before gap_from_us",
        [*base, rec_back],
        only=True,
    )
    rec_gap = {**base[4], "type": "recovered", "body": _recovered(4_000_000, 5_000_000, 2)}
    case(
        "recovered_gap_not_the_difference",
        "recovered: gap_us = gap_to_us - gap_from_us",
        "is not gap_to_us - gap_from_us",
        [*base, rec_gap],
        only=True,
    )
    all_recs = [json.loads(ln)["rec"] for ln in (store / layout.CHAIN).read_bytes().splitlines()]
    still = next(r for r in all_recs if r["type"] == "still")
    still_bytes = (store / layout.SEGMENTS / still["body"]["file"]).read_bytes()
    odd = {**still["body"]["still"], "source": "upscaled"}
    case(
        "still_source_unknown",
        "still.source is sensor or video",
        "still.source 'upscaled'",
        [*base, {**still, "body": {**still["body"], "still": odd}}],
        files={seg: seg_bytes, still["body"]["file"]: still_bytes},
        only=True,
    )
    torn = {
        "cause": "torn_chain_line",
        "dropped_bytes": 10,
        "dropped_sha256": hashlib.sha256(b"0123456789").hexdigest(),
        "offset": 4000,
        "note": "an undocumented field",
    }
    case(
        "power_loss_extra_field",
        "power_loss has exactly the fields of its shape",
        "fields beyond its shape",
        [*base, {**base[4], "type": "power_loss", "body": torn}],
        only=True,
    )
    chain, receipts = released_under(_receipt(dock, recs), recs, note="an undocumented field")
    case(
        "release_extra_field",
        "release has exactly the fields it copies from its receipt, and bytes_freed",
        "fields beyond a release's",
        chain,
        receipts=receipts,  # the file is still there: the refused release frees nothing
        only=True,
    )

    def fifo_key(d: Path) -> dict[str, Any]:
        (d / layout.DEVICE_PUB).unlink()  # git cannot hold a FIFO: the user makes it
        return {"mkfifo": [f"store/{layout.DEVICE_PUB}"]}

    case(
        "device_key_is_a_fifo",
        "only regular files in a store are read",
        "a FIFO",
        base,
        then=fifo_key,
        only=True,
    )

    def linked(name: str) -> Callable[[Path], None]:
        def then(d: Path) -> None:
            os.rename(d / name, d.parent / name)  # the real thing, outside the store
            os.symlink(f"../{name}", d / name)

        return then

    case(
        "device_key_is_a_link",
        "only regular files in a store are read (no links)",
        "a symbolic link, not a regular file",
        base,
        then=linked(layout.DEVICE_PUB),
        only=True,
    )
    case(
        "segments_is_a_link",
        "segments/ is a folder, not a link",
        "a symbolic link, not a folder",
        base,
        then=linked(layout.SEGMENTS),
        only=True,
    )
    held = _receipt(dock, recs)
    held_id = hashlib.sha256(canonical.encode(json.loads(held)["receipt"])).hexdigest()
    case(
        "receipts_is_a_link",
        "receipts/ is a folder, not a link",
        "a symbolic link, not a folder",
        recs,
        receipts={held_id: held},
        then=linked(layout.RECEIPTS),
        only=True,
    )
    day = layout.parse_name(seg)
    assert day is not None
    for name, rule, problem, extra in [
        (
            "dock_holds_an_extra_file",
            "a dock's date folder holds only the chain's segments and the dock's work files",
            "nothing else belongs",
            {"notes.txt": b"not evidence\n"},
        ),
        (
            "dock_holds_a_partial_segment",
            "a dock's date folder holds no unit's .partial",
            "partial segment",
            {seg.replace("_000001.", "_000002.") + layout.PARTIAL: seg_bytes[:1000]},
        ),
    ]:
        d = out / name / "dock"
        copy = d / "units" / day.serial
        copy.mkdir(parents=True)
        shutil.copy(store / layout.DEVICE_PUB, copy / layout.DEVICE_PUB)
        (copy / layout.CHAIN).write_bytes(_reseal(base, device, key0))
        folder = d / day.day_dir / day.serial
        folder.mkdir(parents=True)
        for fname, data in {seg: seg_bytes, **extra}.items():
            (folder / fname).write_bytes(data)
        cases[name] = {
            "rule": rule,
            "problem": problem,
            "path": f"dock/units/{day.serial}",
            "segments_from": "dock",
            "only": True,
        }
    (out / "CASES.json").write_text(json.dumps(cases, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
