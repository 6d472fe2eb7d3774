"""What an examiner learns from a video's own stream: its groups of pictures
checked against the signatures inside it (docs/FORMAT.md section 5.2), as a
report anyone can print or read as JSON.

The file is read once, in bounded steps (mediaread.py, gopcheck.py):
memory does not follow its length or how it is cut into NAL units. Whether
the recording key is rooted in a unit's chain is the caller's to add
(`sealing.verify.root_recording_key`): capture knows nothing of chains.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, BinaryIO

from .gopcheck import GroupResult, StreamChecker, StreamResult
from .mediaread import Damaged, NotMedia, read_video
from .nal import LimitExceeded


class NotVideo(Exception):
    """Input that is no video this can read at all."""


def check_stream(
    f: BinaryIO, on_group: Callable[[GroupResult], None] | None = None
) -> StreamResult:
    """Read `f` once and check every group in it. NotVideo when it is no
    video this can read; a file that breaks off, or exceeds the format's
    limits, part way is a result with `stopped` saying why."""
    checker = StreamChecker(on_group)
    stopped = None
    try:
        read_video(f, checker)
    except NotMedia as exc:
        if checker.aus == 0:
            raise NotVideo(str(exc)) from None
        stopped = str(exc)
    except (Damaged, LimitExceeded) as exc:
        stopped = str(exc)
    except OSError as exc:
        stopped = f"the file could not be read on: {exc.strerror or exc}"
    if stopped is None and checker.aus == 0:
        raise NotVideo("no H.264 pictures in it")
    return checker.finish(stopped)


def describe(check: StreamResult, file: str, when: Callable[[int], str]) -> dict[str, Any]:
    """The report of one checked file (without a chain: `ok` is the stream's);
    `when` writes a signed picture time (the caller's one UTC text)."""
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
                "from": when(g.utc_us[0]) if g.utc_us else None,
                "to": when(g.utc_us[1]) if g.utc_us else None,
                "clock": g.clock,
                "detail": g.detail,
            }
        )
    out: dict[str, Any] = {
        "file": file,
        "recording_key": check.key.hex() if check.key else None,
        "unit": check.serial,
        "verified_from": when(check.verified_from) if check.verified_from is not None else None,
        "verified_to": when(check.verified_to) if check.verified_to is not None else None,
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
