"""Project benchmark: `python tools/bench.py {sealing|capture|recorder|export|courtcopy|agency}`.

Each part lives in its own module beside this file (bench_<part>.py, found
because Python puts a script's folder first on its path) with a
`main(argv) -> dict`; the result is printed as JSON. Parts measure the real
code path and report, where a target is a ratio, both sides from the same run.
"""

from __future__ import annotations

import importlib
import json
import sys

PARTS = ("sealing", "capture", "recorder", "export", "courtcopy", "agency")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in PARTS:
        print(f"usage: bench.py {{{'|'.join(PARTS)}}} [options]", file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench_{argv[0]}")
    result = module.main(argv[1:])
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
