"""`<dock>/signins.jsonl`: every sign-in attempt, sign-out and ended
session, one JSON object a line, for the dock's user only (0600). Each line
is on disk (fsync) before the page answers the attempt it records."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SIGNIN_LOG = "signins.jsonl"


@dataclass(frozen=True)
class SigninLog:
    path: Path

    def write(self, entry: dict[str, Any]) -> None:
        """Append one line; OSError when it cannot be made durable."""
        line = json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)  # also when someone made the file wider
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
