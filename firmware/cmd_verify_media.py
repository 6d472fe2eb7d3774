"""`bodycam verify-media FILE`: check the signatures inside a video's stream.

Works on what examiners are handed: a decrypted segment (MPEG-TS), an MP4
remuxed from it with `ffmpeg -c copy`, an excerpt cut at keyframes, or a
raw H.264 stream. Groups of pictures are reported as runs: verified,
altered, incomplete, unsigned, foreign (spliced from another recording),
out of order, repeated, and the groups missing; with `--chain` the
recording key is looked up in a unit's sealed chain, which roots the proof.
Exit 0 when everything holds, 1 when anything fails (also when the file
breaks off or exceeds the format's limits part way: what was read before is
reported), 2 when the input is unusable. The file is read once, in bounded
steps (capture/mediaread.py, capture/gopcheck.py): memory does not follow
its length or how it is cut into NAL units. The format is docs/FORMAT.md
section 5.2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from capture.gopcheck import GroupResult, StreamChecker, StreamResult
from capture.mediaread import Damaged, NotMedia, read_video
from capture.nal import LimitExceeded
from sealing.canonical import b64
from sealing.safeio import NotRegular, open_regular
from sealing.verify import Unusable, verify_chain

HELP = "check the in-stream signatures of a video file (a segment, an MP4 copy, an excerpt)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", type=Path, help="MPEG-TS, MP4/MOV or raw H.264, whole or an excerpt"
    )
    parser.add_argument(
        "--chain",
        type=Path,
        help="a unit's store or a dock's copy (units/<serial>): root the recording key in it",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable report")


def check_file(path: Path, on_group: Callable[[GroupResult], None] | None = None) -> StreamResult:
    """Read `path` once and check every group in it. Raises Unusable when it
    is no video this can read; a file that breaks off, or exceeds the
    format's limits, part way is a result with `stopped` saying why."""
    try:
        f = open_regular(path)
    except NotRegular as exc:
        raise Unusable(f"{path}: {exc}") from None
    except OSError as exc:
        raise Unusable(f"{path}: cannot open it: {exc.strerror or exc}") from None
    checker = StreamChecker(on_group)
    stopped = None
    with f:
        try:
            read_video(f, checker)
        except NotMedia as exc:
            if checker.aus == 0:
                raise Unusable(f"{path}: {exc}") from None
            stopped = str(exc)
        except (Damaged, LimitExceeded) as exc:
            stopped = str(exc)
        except OSError as exc:
            stopped = f"the file could not be read on: {exc.strerror or exc}"
    if stopped is None and checker.aus == 0:
        raise Unusable(f"{path}: no H.264 pictures in it")
    return checker.finish(stopped)


def _when(us: int) -> str:
    try:
        return datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):  # a signed time no calendar holds
        return f"{us} us"


def _root(chain: Path, key: bytes) -> dict[str, Any]:
    want = b64(key)
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


def report_of(path: Path, chain: Path | None) -> dict[str, Any]:
    check = check_file(path)
    runs = []
    for g in check.runs:
        runs.append(
            {
                "status": g.status,
                "group": g.first_group,
                "last_group": g.last_group,
                "groups": g.groups,
                "first_picture": g.first_picture,
                "pictures": g.pictures,
                "from": _when(g.utc_us[0]) if g.utc_us else None,
                "to": _when(g.utc_us[1]) if g.utc_us else None,
                "clock": g.clock,
                "detail": g.detail,
            }
        )
    out: dict[str, Any] = {
        "file": str(path),
        "recording_key": check.key.hex() if check.key else None,
        "unit": check.serial,
        "verified_from": _when(check.verified_from) if check.verified_from is not None else None,
        "verified_to": _when(check.verified_to) if check.verified_to is not None else None,
        "pictures": check.pictures,
        "groups": check.groups,
        "group_counts": check.counts,
        "unsigned_pictures": check.unsigned_pictures,
        "runs": runs,
        "unlisted_runs": check.unlisted_runs,
        "missing_groups": [list(r) for r in check.missing],
        "missing_count": check.missing_count,
        "missing_unlisted": check.missing_unlisted,
        "stopped": check.stopped,
        "ok": check.ok,
    }
    if chain is not None:
        out["chain"] = (
            _root(chain, check.key) if check.key else {"rooted": False, "why": "no signatures"}
        )
        out["ok"] = out["ok"] and out["chain"]["rooted"]
    return out


def first_problem(r: dict[str, Any]) -> str:
    """One line: the first thing that keeps a report from verifying."""
    if r["stopped"]:
        return f"reading stopped: {r['stopped']}"
    bad = next((g for g in r["runs"] if g["status"] != "verified"), None)
    if bad:
        where = f"group {bad['group']}" if bad["group"] is not None else "pictures"
        return f"{where} at picture {bad['first_picture']}: {bad['status']} ({bad['detail']})"
    if r["missing_groups"] or r["missing_unlisted"]:
        return f"{r['missing_count']} groups missing, from group {r['missing_groups'][0][0]}"
    if not r["groups"]:
        return "no signed group in the file"
    if "chain" in r and not r["chain"]["rooted"]:
        return f"the key is not rooted: {r['chain']['why']}"
    return "beyond the listed runs"


def human(r: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(r["group_counts"].items())) or "none"
    lines = [
        f"{'VERIFIED' if r['ok'] else 'NOT VERIFIED'}  {r['file']}",
        f"unit       {r['unit'] or '-'}",
        f"recording  key {r['recording_key'][:16] if r['recording_key'] else '-'}",
        f"time       {r['verified_from'] or '-'} .. {r['verified_to'] or '-'} (verified pictures)",
        f"pictures   {r['pictures']}, {r['unsigned_pictures']} of them after the last signature",
        f"groups     {r['groups']} ({counts})",
    ]
    if r["missing_groups"]:
        shown = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in r["missing_groups"][:20])
        more = " and more" if len(r["missing_groups"]) > 20 or r["missing_unlisted"] else ""
        lines.append(f"missing    {r['missing_count']} groups ({shown}{more}) are not in the file")
    shown_runs = [g for g in r["runs"] if g["status"] != "verified"]
    for g in shown_runs[:50]:
        where = f"group {g['group']}" if g["group"] is not None else "pictures"
        lines.append(
            f"  {g['status'].upper():12} {where} at picture {g['first_picture']} "
            f"({g['from'] or 'no time'}): {g['detail']}"
        )
    if len(shown_runs) > 50 or r["unlisted_runs"]:
        more = max(0, len(shown_runs) - 50) + r["unlisted_runs"]
        lines.append(f"  ... and {more} more not listed")
    if r["stopped"]:
        lines.append(f"stopped    {r['stopped']}: what follows was not checked")
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
