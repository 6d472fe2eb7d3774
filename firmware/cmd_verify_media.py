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
from functools import partial
from pathlib import Path
from typing import Any

from capture.gopcheck import GroupResult, StreamResult
from capture.mediacheck import NotVideo, check_stream, describe, first_problem, human
from sealing.recordings import utc_text
from sealing.safeio import NotRegular, open_regular
from sealing.verify import Unusable, root_recording_key

__all__ = ["check_file", "first_problem", "report_of"]


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
    """Read `path` once and check every group in it; Unusable when it is not
    a regular file or no video this can read."""
    try:
        f = open_regular(path)
    except NotRegular as exc:
        raise Unusable(f"{path}: {exc}") from None
    except OSError as exc:
        raise Unusable(f"{path}: cannot open it: {exc.strerror or exc}") from None
    with f:
        try:
            return check_stream(f, on_group)
        except NotVideo as exc:
            raise Unusable(f"{path}: {exc}") from None


def report_of(path: Path, chain: Path | None) -> dict[str, Any]:
    """The file's report; with `chain`, whether its key is rooted there."""
    check = check_file(path)
    out = describe(check, str(path), partial(utc_text, ms=True))
    if chain is not None:
        out["chain"] = (
            root_recording_key(chain, check.key)
            if check.key
            else {"rooted": False, "why": "no signatures"}
        )
        out["ok"] = out["ok"] and out["chain"]["rooted"]
    return out


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
