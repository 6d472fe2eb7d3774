"""`bodycam verify-media FILE`: check the signatures inside a video's stream.

Works on what examiners are handed: a decrypted segment (MPEG-TS), an MP4
remuxed from it with `ffmpeg -c copy`, or an excerpt cut at keyframes. Each
group of pictures is reported verified, altered, incomplete, unsigned,
foreign (spliced from another recording), out of order, or missing; with
`--chain` the recording key is looked up in a unit's sealed chain, which
roots the proof. Exit 0 when everything holds, 1 when anything fails, 2 when
the input is unusable. The format is docs/FORMAT.md section 5.2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from capture import gopsign
from sealing.canonical import b64
from sealing.recordings import utc_text
from sealing.verify import Unusable, verify_chain


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="MPEG-TS or MP4, whole or an excerpt")
    parser.add_argument(
        "--chain",
        type=Path,
        help="a unit's store or a dock's copy (units/<serial>): root the recording key in it",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable report")


def read_access_units(path: Path) -> list[gopsign.AccessUnit]:
    """Every video packet as its NAL units, Annex B or MP4 length-prefixed."""
    import av  # the media stack only where media is read

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:  # type: ignore[attr-defined]
        raise Unusable(f"{path} is not a media file ffmpeg can open: {exc}") from None
    with container:
        if not container.streams.video:
            raise Unusable(f"{path} has no video stream")
        stream = container.streams.video[0]
        if stream.codec_context.name != "h264":
            raise Unusable(f"{path}: video is {stream.codec_context.name}, not H.264")
        extra = bytes(stream.codec_context.extradata or b"")
        length = (extra[4] & 3) + 1 if extra[:1] == b"\x01" else 0  # avcC, else Annex B
        aus = []
        try:
            for pkt in container.demux(stream):
                data = bytes(pkt)
                if not data:
                    continue
                units = (
                    gopsign.split_lengths(data, length) if length else gopsign.split_annexb(data)
                )
                aus.append(gopsign.AccessUnit(units, bool(pkt.is_keyframe)))
        except av.error.FFmpegError as exc:  # type: ignore[attr-defined]
            raise Unusable(f"{path}: the container is damaged: {exc}") from None
    return aus


def _when(us: int) -> str:
    return utc_text(us, ms=True)


def _root(chain: Path, key: bytes) -> dict[str, Any]:
    report = verify_chain(chain)
    want = b64(key)
    rec = next(
        (
            r
            for r in report.records
            if r["type"] == "recording_key" and r["body"].get("public_key") == want
        ),
        None,
    )
    if rec is None:
        return {"rooted": False, "why": "no recording_key record in this chain names the key"}
    if not report.ok:
        return {
            "rooted": False,
            "why": f"the chain does not verify: {report.problems[0].message}",
            "seq": rec["seq"],
        }
    return {
        "rooted": True,
        "seq": rec["seq"],
        "serial": report.serial,
        "officer": rec["officer"],
        "wall_us": rec["wall_us"],
        "anchors": report.anchors,
    }


def report_of(path: Path, chain: Path | None) -> dict[str, Any]:
    check = gopsign.check_stream(read_access_units(path))
    groups = []
    for g in check.groups:
        groups.append(
            {
                "status": g.status,
                "group": g.index,
                "first_picture": g.first_au,
                "pictures": g.pictures,
                "from": _when(g.utc_us[0]) if g.utc_us else None,
                "to": _when(g.utc_us[1]) if g.utc_us else None,
                "clock": g.clock,
                "detail": g.detail,
            }
        )
    good = [g for g in check.groups if g.status == "verified" and g.utc_us]
    out: dict[str, Any] = {
        "file": str(path),
        "recording_key": check.key.hex() if check.key else None,
        "unit": check.serial,
        "verified_from": _when(good[0].utc_us[0]) if good and good[0].utc_us else None,
        "verified_to": _when(good[-1].utc_us[1]) if good and good[-1].utc_us else None,
        "groups": groups,
        "missing_groups": check.missing,
        "ok": check.ok,
    }
    if chain is not None:
        out["chain"] = (
            _root(chain, check.key) if check.key else {"rooted": False, "why": "no signatures"}
        )
        out["ok"] = out["ok"] and out["chain"]["rooted"]
    return out


def human(r: dict[str, Any]) -> str:
    counts: dict[str, int] = {}
    for g in r["groups"]:
        counts[g["status"]] = counts.get(g["status"], 0) + 1
    lines = [
        f"{'VERIFIED' if r['ok'] else 'NOT VERIFIED'}  {r['file']}",
        f"unit       {r['unit'] or '-'}",
        f"recording  key {r['recording_key'][:16] if r['recording_key'] else '-'}",
        f"time       {r['verified_from'] or '-'} .. {r['verified_to'] or '-'} (verified pictures)",
        "groups     " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
    ]
    if r["missing_groups"]:
        lines.append(f"missing    groups {r['missing_groups']} are not in the file")
    for g in r["groups"]:
        if g["status"] != "verified":
            where = f"group {g['group']}" if g["group"] is not None else "pictures"
            lines.append(
                f"  {g['status'].upper():12} {where} at picture {g['first_picture']} "
                f"({g['from'] or 'no time'}): {g['detail']}"
            )
    if "chain" in r:
        c = r["chain"]
        lines.append(
            f"chain      rooted in record {c['seq']} of unit {c['serial']} (officer {c['officer']})"
            if c["rooted"]
            else f"chain      NOT rooted: {c['why']}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        r = report_of(args.file, args.chain)
    except Unusable as exc:
        print(f"bodycam verify-media: unusable input: {exc}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(r, sys.stdout, indent=1)
        print()
    else:
        print(human(r))
    return 0 if r["ok"] else 1
