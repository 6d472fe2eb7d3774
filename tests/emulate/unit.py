"""One emulated unit, from the cached stock card to a booted, flashed unit:
the pieces of image.py, flashing.py, qemu.py, agent.py and devices.py put
together for the smoke and the tests."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import image
from .agent import Agent
from .devices import GpsFeed, Hardware
from .flashing import Flashed, flash
from .qemu import BootOptions, Machine
from .run import EmuError, Log, wait_for

UNIT = "/var/lib/bodycam"
CHAIN = f"{UNIT}/store/chain.jsonl"
SERVICE = "bodycam-recorder.service"
# The recorder's first start: the self-test (~2 min of CPU under TCG) first
RECORDER_TIMEOUT_S = 1800.0
EVENT_TIMEOUT_S = 300.0  # a button press to its chain record, on a loaded TCG guest


@dataclass
class EmulatedUnit:
    run_dir: Path
    log: Log
    prebake: bool = True
    arch: str = "amd64"  # arm64: the soak's aarch64 card under qemu-system-aarch64
    machine: Machine | None = None
    agent: Agent | None = None
    gps: GpsFeed | None = None
    flashed: Flashed | None = None
    timings: dict[str, float] = field(default_factory=dict)
    _chain_at: int = 0  # bytes of the chain read so far (records())
    _records: list[dict[str, Any]] = field(default_factory=list)

    def prepare(self) -> None:
        """Build (or take from the cache) the stock card and flash a new unit."""
        t = time.monotonic()
        kernel = image.host_kernel(self.arch)
        stock = image.stock_card(kernel, self.log, prebake=self.prebake)
        self.timings["card"] = time.monotonic() - t
        t = time.monotonic()
        self.flashed = flash(stock, self.run_dir, self.log)
        self.timings["flash"] = time.monotonic() - t
        self.machine = Machine(self.run_dir, stock, self.flashed, self.log)

    def boot(self, options: BootOptions | None = None, *, gps: bool = True) -> Agent:
        m = self._machine()
        if options is not None:
            m.options = options
        t = time.monotonic()
        self.agent = m.start()
        self.timings.setdefault("boot", time.monotonic() - t)
        if gps:
            self.gps = GpsFeed(m.gps_sock)
            self.gps.start()
        return self.agent

    def _machine(self) -> Machine:
        if self.machine is None:
            raise EmuError("the unit is not prepared (no card flashed)")
        return self.machine

    def hw(self) -> Hardware:
        return Hardware(self._agent())

    def _agent(self) -> Agent:
        if self.agent is None:
            raise EmuError("the unit is not booted")
        return self.agent

    # -- what the guest says ---------------------------------------------------------

    def service(self, *props: str) -> dict[str, str]:
        out = self._agent().check(f"systemctl show {SERVICE} -p {','.join(props)}")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_recorder(self, timeout: float = RECORDER_TIMEOUT_S) -> dict[str, str]:
        """Until systemd has the recorder active (Type=notify: READY=1 sent)."""
        t = time.monotonic()

        def active() -> bool:
            state = self.service("ActiveState", "SubState")
            if state.get("ActiveState") == "failed":
                raise EmuError(f"{SERVICE} failed:\n{self.journal()[-1500:]}")
            return state.get("ActiveState") == "active" and state.get("SubState") == "running"

        wait_for(active, what=f"{SERVICE} active (READY=1)", timeout=timeout,
                 every=5, alive=self._machine().dead)  # fmt: skip
        self.timings.setdefault("recorder", time.monotonic() - t)
        return self.service("MainPID", "NRestarts", "User", "ExecMainStartTimestamp")

    def journal(self, unit: str = SERVICE, boot: str = "0") -> str:
        return self._agent().sh(f"journalctl -b {boot} -u {unit} --no-pager -o cat",
                                timeout=120).out  # fmt: skip

    def records(self) -> list[dict[str, Any]]:
        """The unit's chain records as they are on the card now (each line's
        `rec`: type, seq, body...; docs/FORMAT.md). Only what was appended
        since the last call is read from the guest (the chain only grows; a
        torn last line is left for the next call)."""
        size = int(self._agent().check(f"stat -c %s {CHAIN}").strip() or 0)
        if size < self._chain_at:  # another card, or a chain that recovery cut
            self._chain_at, self._records = 0, []
        if size > self._chain_at:
            new = self._agent().output(f"tail -c +{self._chain_at + 1} {CHAIN} | head -c "
                                       f"{size - self._chain_at}", timeout=300)  # fmt: skip
            whole = new[: new.rfind(b"\n") + 1]
            self._chain_at += len(whole)
            for line in whole.splitlines():
                try:
                    rec = json.loads(line)["rec"]
                except (ValueError, KeyError, TypeError):
                    raise EmuError(f"a chain line that is not a record: {line[:120]!r}") from None
                if isinstance(rec, dict) and "type" in rec and "seq" in rec:
                    self._records.append(rec)
        return list(self._records)

    def wait_record(
        self,
        type_: str,
        *,
        after: int = -1,
        where: Callable[[dict[str, Any]], bool] = bool,
        timeout: float = EVENT_TIMEOUT_S,
    ) -> dict[str, Any]:
        """The first chain record of `type_` with seq > `after` that `where` accepts."""
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            found[:] = [r for r in self.records() if r.get("type") == type_
                        and int(r.get("seq", -1)) > after and where(r.get("body", {}))]  # fmt: skip
            return bool(found)

        wait_for(seen, what=f"a `{type_}` record in the unit's chain", timeout=timeout,
                 every=2, alive=self._machine().dead)  # fmt: skip
        return found[0]

    def last_seq(self) -> int:
        records = self.records()
        return int(records[-1]["seq"]) if records else -1

    def main_pid(self) -> int:
        pid = self.service("MainPID").get("MainPID", "0")
        if not re.fullmatch(r"\d+", pid):
            raise EmuError(f"{SERVICE} MainPID is {pid!r}")
        return int(pid)

    def power_cut(self) -> None:
        """The battery out (QMP quit): the guest's page cache is lost; boot again
        with `boot`."""
        self._machine().power_cut()
        self._host_side_down()

    def _host_side_down(self) -> None:
        if self.gps is not None:
            self.gps.stop()
            self.gps = None
        if self.agent is not None:
            self.agent.close()
            self.agent = None

    def shutdown(self) -> None:
        """Stop everything this unit started on the host (QEMU, the GPS feed)."""
        self._host_side_down()
        if self.machine is not None:
            self.machine.kill()
