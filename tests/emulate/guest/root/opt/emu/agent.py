"""EMU test agent (the emulated unit's test layer; never on a unit): runs the
host's commands as root, over the virtio console.

One JSON object a line each way. Request: {"id": N, "sh": "...",
"timeout": S, "stdin": base64}. Reply: {"id": N, "rc": RC, "out": base64}
(stdout and stderr together, at most OUT_MAX bytes; rc 124 on timeout).
A request that is not JSON is answered with id null and rc 2."""

import base64
import json
import os
import subprocess
import sys
import termios
import time
import tty

OUT_MAX = 16 << 20
LINE_MAX = 64 << 20


def answer(fd, msg):
    data = (json.dumps(msg) + "\n").encode()
    while data:  # a tty takes what fits: write the rest until all of it is out
        data = data[os.write(fd, data) :]


def handle(req):
    data = base64.b64decode(req.get("stdin", ""))
    try:
        r = subprocess.run(
            ["/bin/sh", "-c", req["sh"]],
            input=data,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=float(req.get("timeout", 60)),
        )
        rc, out = r.returncode, r.stdout
    except subprocess.TimeoutExpired as exc:
        rc, out = 124, (exc.stdout or b"") + b"\n(agent: timed out)"
    return rc, out[:OUT_MAX]


def main(path):
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)  # bytes as they are: no echo, no CR/LF translation
    attrs = termios.tcgetattr(fd)
    attrs[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    f = os.fdopen(fd, "r+b", buffering=0)
    while True:
        line = f.readline(LINE_MAX)
        if not line:  # the host is not connected (hangup): wait for it
            time.sleep(0.2)
            continue
        try:
            req = json.loads(line)
            rid = req["id"]
        except (ValueError, KeyError, TypeError):
            answer(fd, {"id": None, "rc": 2, "out": ""})
            continue
        rc, out = handle(req)
        answer(fd, {"id": rid, "rc": rc, "out": base64.b64encode(out).decode()})


if __name__ == "__main__":
    main(sys.argv[1])
