"""Running host commands for the rig: bounded, logged, one clear error."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

NICENESS = 10  # this 2-core machine is shared: the card's build and QEMU give way


def be_nice() -> None:
    """At least NICENESS for this process and all it starts (mmdebstrap, QEMU)."""
    current = os.nice(0)
    if current < NICENESS:
        os.nice(NICENESS - current)


class EmuError(Exception):
    """What did not happen, named; the rig's one error (no traceback to a user)."""


Log = Callable[[str], None]


def run(
    cmd: Sequence[str | Path],
    *,
    log_file: Path | None = None,
    timeout: float = 3600.0,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    what: str = "",
) -> str:
    """Run `cmd`, its output appended to `log_file` (or returned); fail with
    the command and the tail of its output."""
    args = [str(c) for c in cmd]
    full_env = {**os.environ, **(env or {})}
    start = time.monotonic()
    try:
        r = subprocess.run(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=timeout,
            env=full_env,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise EmuError(f"{what or args[0]}: no result within {timeout:.0f} s") from exc
    except FileNotFoundError as exc:
        raise EmuError(f"{what or args[0]}: {args[0]} is not installed") from exc
    if log_file is not None:
        with log_file.open("a") as f:
            f.write(
                f"$ {' '.join(args)}  # {time.monotonic() - start:.1f} s, exit {r.returncode}\n"
            )
            f.write(r.stdout)
    if r.returncode != 0:
        tail = "\n".join(r.stdout.strip().splitlines()[-15:])
        raise EmuError(f"{what or ' '.join(args[:3])} failed (exit {r.returncode}):\n{tail}")
    return r.stdout


def wait_for(
    condition: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    every: float = 1.0,
    alive: Callable[[], str | None] | None = None,
) -> None:
    """Wait until `condition()` holds, at most `timeout` seconds; `alive`
    names a reason to stop waiting early (QEMU exited). The error names
    what did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if alive is not None:
            dead = alive()
            if dead:
                raise EmuError(f"{what}: not seen, and {dead}")
        if time.monotonic() > deadline:
            raise EmuError(f"{what}: not seen within {timeout:.0f} s")
        time.sleep(every)
