"""The continuity counters carried across a unit's files (capture/segmenter.py
`_TsWriter`): the table-driven renumbering gives byte for byte what the
plain per-PID reading of the rule gives (the reference below), on random
streams split into random writes over several files."""

from __future__ import annotations

import random

import pytest

from capture.segmenter import TS, _TsWriter


class _Collect:
    def __init__(self) -> None:
        self.out = bytearray()

    def write(self, data: bytes | memoryview) -> None:
        self.out += data

    def close(self, info: object) -> None:
        pass


def _reference(buf: bytes, last: dict[int, int], offset: dict[int, int]) -> bytes:
    """Each PID's counters continue from the unit's previous file: shift
    them so its first packet here follows `last` (a packet without payload
    repeats the counter), null packets untouched."""
    out = bytearray(buf)
    for k in range(0, len(buf), TS):
        pid = ((buf[k + 1] & 0x1F) << 8) | buf[k + 2]
        if pid == 0x1FFF:
            continue
        cc, payload = buf[k + 3] & 0x0F, (buf[k + 3] >> 4) & 1
        if pid not in offset:
            prev = last.get(pid)
            want = 0 if prev is None else (prev + payload) & 0x0F
            offset[pid] = (want - cc) & 0x0F
        new = (cc + offset[pid]) & 0x0F
        out[k + 3] = (buf[k + 3] & 0xF0) | new
        last[pid] = new
    return bytes(out)


def _file(rng: random.Random, packets: int, run: int = 1) -> bytes:
    """A muxer's file: PAT, PMT, video, audio and null packets, each PID's
    counter starting anywhere and counting its payload packets; runs of up
    to `run` packets of one PID (a picture's, a sound's)."""
    pids = [0, 0x1000, 0x100, 0x101, 0x1FFF]
    cc = {p: rng.randrange(16) for p in pids}
    out = bytearray()
    p = pids[0]
    for _ in range(packets):
        if rng.randrange(run) == 0:
            p = rng.choice(pids)
        payload = rng.random() > 0.1
        scrambling_and_af = rng.choice([0x00, 0x20, 0xC0])  # adaptation field, scrambling bits
        if payload:
            cc[p] = (cc[p] + 1) & 0x0F
        head = bytes([0x47, 0x40 | p >> 8, p & 0xFF,
                      scrambling_and_af | (0x10 if payload else 0) | cc[p]])  # fmt: skip
        out += head + rng.randbytes(TS - 4)
    return bytes(out)


@pytest.mark.parametrize("seed", range(20))
def test_the_table_renumbering_equals_the_rule(seed: int) -> None:
    rng = random.Random(seed)
    last_ours: dict[int, int] = {}
    last_ref: dict[int, int] = {}
    for _ in range(rng.randrange(1, 5)):  # files of one unit, sharing the counters
        data = _file(rng, rng.randrange(1, 400))
        sink = _Collect()
        w = _TsWriter(sink, last_ours)  # type: ignore[arg-type]
        offset: dict[int, int] = {}
        i = 0
        while i < len(data):  # the muxer's writes: any length, not whole packets
            n = rng.randrange(1, 3 * TS)
            w.write(data[i : i + n])
            i += n
        w.flush()
        assert bytes(sink.out) == _reference(data, last_ref, offset)
        assert last_ours == last_ref


def _runs(data: bytes) -> list[bytes]:
    """`data` cut where the PID changes."""
    runs: list[bytes] = []
    for k in range(0, len(data), TS):
        pkt = data[k : k + TS]
        if runs and runs[-1][1:3] == pkt[1:3]:
            runs[-1] += pkt
        else:
            runs.append(pkt)
    return runs


@pytest.mark.parametrize("seed", range(10))
def test_a_muxer_s_writes_of_one_pid_each_are_renumbered_as_the_rule_says(seed: int) -> None:
    """As PyAV's muxer writes, flushed at each packet: a write holds one
    picture's or one sound's packets (one shift for all), now and then two."""
    rng = random.Random(seed)
    last_ours: dict[int, int] = {}
    last_ref: dict[int, int] = {}
    for _ in range(rng.randrange(2, 5)):
        data = _file(rng, rng.randrange(100, 800), run=60)
        runs = _runs(data)
        assert max(len(r) for r in runs) > 20 * TS  # long runs: the one-shift path
        sink = _Collect()
        w = _TsWriter(sink, last_ours)  # type: ignore[arg-type]
        while runs:
            n = rng.choice([1, 1, 1, 2])
            w.write(b"".join(runs[:n]))
            del runs[:n]
        w.flush()
        assert bytes(sink.out) == _reference(data, last_ref, {})
        assert last_ours == last_ref
