"""The host's side of the guest's test agent (guest/root/opt/emu/agent.py):
shell commands as root in the guest, over the virtio console's socket.

Each reply is read within a ceiling (the command's own timeout plus the
slowness of an emulated machine); lines that are not the awaited reply
(anything the console held before the agent started) are skipped."""

from __future__ import annotations

import base64
import binascii
import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from .run import EmuError

LINE_MAX = 64 << 20
SLACK_S = 120.0  # an emulated machine under load answers late, not never


@dataclass(frozen=True)
class Result:
    rc: int
    out: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


class Agent:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock: socket.socket | None = None
        self.buf = b""
        self.next_id = 1

    def _connect(self) -> socket.socket:
        if self.sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(self.path))
            self.sock, self.buf = s, b""
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _readline(self, deadline: float) -> bytes | None:
        sock = self._connect()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            sock.settimeout(min(left, 5.0))
            try:
                chunk = sock.recv(1 << 16)
            except TimeoutError:
                continue
            if not chunk:
                self.close()
                raise EmuError("agent: the console socket closed (QEMU exited?)")
            self.buf += chunk
            if len(self.buf) > LINE_MAX:
                raise EmuError("agent: a reply longer than 64 MiB")
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def sh(self, command: str, *, timeout: float = 60.0, stdin: bytes = b"") -> Result:
        """Run `command` with /bin/sh in the guest; its output and exit status."""
        rid = self.next_id
        self.next_id += 1
        req = {"id": rid, "sh": command, "timeout": timeout,
               "stdin": base64.b64encode(stdin).decode()}  # fmt: skip
        self._connect().sendall(json.dumps(req).encode() + b"\n")
        deadline = time.monotonic() + timeout + SLACK_S
        while True:
            line = self._readline(deadline)
            if line is None:
                raise EmuError(
                    f"agent: no answer to {command[:80]!r} within {timeout + SLACK_S:.0f} s"
                )
            try:
                reply = json.loads(line)
            except ValueError:
                continue  # console noise from before the agent ran
            # not ours, or our own request echoed by the console before the agent
            # set it raw (a reply has "rc")
            if not isinstance(reply, dict) or reply.get("id") != rid or "rc" not in reply:
                continue
            try:
                out = base64.b64decode(reply["out"]).decode(errors="replace")
                return Result(int(reply["rc"]), out)
            except (KeyError, TypeError, ValueError, binascii.Error) as exc:
                raise EmuError(f"agent: a malformed reply ({exc})") from None

    def check(self, command: str, *, timeout: float = 60.0, stdin: bytes = b"") -> str:
        """`sh`, and an error naming the command and its output unless it exits 0."""
        r = self.sh(command, timeout=timeout, stdin=stdin)
        if not r.ok:
            raise EmuError(f"guest: `{command[:100]}` exit {r.rc}: {r.out.strip()[-500:]}")
        return r.out

    def ready(self) -> bool:
        """Whether the agent answers now (a short probe, for waiting on boot)."""
        try:
            rid = self.next_id
            self.next_id += 1
            self._connect().sendall(json.dumps({"id": rid, "sh": "true", "timeout": 5}).encode()
                                    + b"\n")  # fmt: skip
            deadline = time.monotonic() + 10
            while (line := self._readline(deadline)) is not None:
                try:
                    reply = json.loads(line)
                    if reply.get("id") == rid and "rc" in reply:
                        return True
                except (ValueError, AttributeError):
                    continue
            return False
        except (OSError, EmuError):
            self.close()
            return False

    def put(self, path: str, data: bytes, mode: str = "0644") -> None:
        self.check(f"cat > {path} && chmod {mode} {path}", stdin=data)

    def get(self, path: str, *, timeout: float = 120.0) -> bytes:
        self.check(f"test -r {path}")  # a missing file is an error, not b""
        return self.output(f"cat {path}", timeout=timeout)

    def output(self, command: str, *, timeout: float = 120.0) -> bytes:
        """A command's standard output as bytes (base64 across the console)."""
        out = self.check(f"( {command} ) | base64 -w0", timeout=timeout)
        try:
            return base64.b64decode(out.strip(), validate=True)
        except binascii.Error:
            raise EmuError(f"guest: `{command[:80]}` gave output that is not base64") from None
