"""QEMU's machine protocol (QMP) on a unix socket: power, reset, status."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from .run import EmuError

READ_MAX = 1 << 20


class Qmp:
    def __init__(self, path: Path, timeout: float = 60.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")
        greeting = self._read()
        if "QMP" not in greeting:
            raise EmuError(f"QMP: no greeting on {path}")
        self.command("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        line = self.file.readline(READ_MAX)
        if not line:
            raise EmuError("QMP: QEMU closed the socket")
        msg: dict[str, Any] = json.loads(line)
        return msg

    def command(self, name: str, **arguments: Any) -> Any:
        msg: dict[str, Any] = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise EmuError(f"QMP {name}: {reply['error'].get('desc', reply['error'])}")
            # an asynchronous event (RESET, SHUTDOWN...): not the reply

    def close(self) -> None:
        self.file.close()
        self.sock.close()
