"""A command's own peak memory, as a test measures it.

Linux counts the memory a process had when it called exec in its peak: a
child forked straight from a (large) test process would report the test
process's size. So a small launcher forks the command and reads its peak
with wait4.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss * 1024))
sys.exit(os.waitstatus_to_exitcode(status))
"""


@dataclass
class Ran:
    code: int
    peak: int  # bytes
    out: str
    err: str


def run_measured(argv: list[str], timeout: float = 600) -> Ran:
    """Run `argv` (argv[0] a path to an executable) and read its peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        peak, out, err = Path(tmp) / "peak", Path(tmp) / "out", Path(tmp) / "err"
        with out.open("wb") as o, err.open("wb") as e:
            code = subprocess.run(
                [sys.executable, "-c", LAUNCHER, str(peak), *argv],
                stdout=o,
                stderr=e,
                timeout=timeout,
            ).returncode
        return Ran(code, int(peak.read_text()), out.read_text(), err.read_text())
