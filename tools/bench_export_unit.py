"""One unit of `tools/bench.py export`, in a process of its own (as a unit is
on the wire): its export service on a provisioned store, and on request the
bare TLS reference sending the same files.

    bench_export_unit.py UNIT_DIR CERT KEY CA

Speaks JSON lines: prints {"port": P} once its service listens, then answers
each line read from stdin:
- {"fill": BYTES, "segment": BYTES} -> sealed segments added; {"bytes": N}
- {"bare": true} -> {"port": P}, a one-shot bare TLS server; after it has
  sent every segment file to the one client: {"sent": N}
- {"quit": true} -> the service stops, the store closes, the process ends.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from firmware.export_service import ExportHooks, ExportService, serve
from link import pki
from sealing.store import SegmentMeta, Store
from sealing.unit import open_unit


def fill(store: Store, total: int, seg: int) -> None:
    block = os.urandom(1 << 20)
    done = 0
    while done < total:
        start = store.clock()
        w = store.open_segment(stamp=start)
        for _ in range(min(seg, total - done) >> 20):
            w.write(block)
        w.close(SegmentMeta(start=start, end=store.clock()))
        done += seg


def bare(store: Store, server_ctx: Any, say: Any) -> None:
    """Accept one client and sendall() every segment file to it."""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        say({"port": srv.getsockname()[1]})
        conn, _ = srv.accept()
        sent = 0
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            for f in sorted(store.segments.iterdir()):
                with f.open("rb") as fh:
                    while chunk := fh.read(256 * 1024):
                        tls.sendall(chunk)
                        sent += len(chunk)
    say({"sent": sent})


def main(argv: list[str]) -> int:
    unit_dir, cert, key, ca = (Path(a) for a in argv)
    server_ctx = pki.server_context(cert, key, ca)
    store = open_unit(unit_dir)
    hooks = ExportHooks(
        clock_status=lambda: {"state": "synced", "source": "dock"},
        on_dock_time=lambda t, d: {},
    )
    running = serve(ExportService(store, unit_dir, hooks), server_ctx, "127.0.0.1", 0)

    def say(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    say({"port": running.address[1]})
    try:
        for line in sys.stdin:
            cmd = json.loads(line)
            if "fill" in cmd:
                fill(store, int(cmd["fill"]), int(cmd["segment"]))
                say({"bytes": sum(f.stat().st_size for f in store.segments.iterdir())})
            elif "bare" in cmd:
                bare(store, server_ctx, say)
            elif "quit" in cmd:
                break
    finally:
        running.close()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
