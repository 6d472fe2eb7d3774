"""The H.264 stream of a video file, read in bounded steps.

`bodycam verify-media` is handed whatever an examiner has: a decrypted
segment (MPEG-TS), an MP4 or MOV remuxed from it, an excerpt, or a raw
`.h264` stream. Each is read here with fixed-size reads (an MP4's sample
tables too), and its NAL units go to a sink access unit by access unit, so
memory does not follow the file's length or how it is cut into packets.
A demuxing library would hold whole packets (an MPEG-TS PES may be
unbounded) and sample tables; this reads only what the check needs: the
first H.264 track's bytes, in stream order. No decoding happens here.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .nal import MAX_AU, AccessUnits, AnnexB, LimitExceeded, NalSink, length_prefixed

READ = 1 << 20
_TS = 188
_MP4_TOP = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"styp"}
_MP4_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf"}
_MAX_BOX_DEPTH = 8
_MAX_SMALL_BOX = 1 << 20  # hdlr, stsd: what is read whole of an MP4's metadata
_MAX_BOXES = 10_000  # boxes in one parent (a real file has a handful at each level)


class NotMedia(ValueError):
    """Not a video this reader can take (the message says why)."""


class Damaged(ValueError):
    """The file breaks off or contradicts itself part way (where, and how)."""


def read_video(f: BinaryIO, sink: NalSink) -> str:
    """Send the first H.264 video stream of `f` to `sink`; return the
    container's name. Raises NotMedia before anything is sent, Damaged or
    LimitExceeded part way."""
    head = os.pread(f.fileno(), 8 + 3 * _TS, 0)
    if len(head) >= _TS + 1 and head[0] == 0x47 and head[_TS] == 0x47:
        _read_ts(f, 0, sink)
        return "mpegts"
    if len(head) > _TS + 8 and head[4] == 0x47 and head[_TS + 8] == 0x47:
        _read_ts(f, 4, sink)  # M2TS: a 4-byte time code before each packet
        return "m2ts"
    if len(head) >= 8 and head[4:8] in _MP4_TOP:
        _read_mp4(f.fileno(), sink)
        return "mp4"
    if head.startswith(b"\x00\x00\x01") or head.startswith(b"\x00\x00\x00\x01"):
        units = AccessUnits(sink)
        stream = AnnexB(units)
        while data := f.read(READ):
            stream.feed(data)
        stream.end()
        return "h264"
    raise NotMedia("not MPEG-TS, MP4/MOV or a raw H.264 stream")


# -- MPEG-TS ---------------------------------------------------------------------------


def _read_ts(f: BinaryIO, prefix: int, sink: NalSink) -> None:
    size = _TS + prefix
    units = AccessUnits(sink)
    stream = AnnexB(units)
    pmt: int | None = None
    video: int | None = None
    pending: list[bytes] = []  # elementary stream bytes not yet fed (fed in larger pieces)
    held = 0
    pos = 0
    while block := f.read(size * 4096):
        whole = len(block) - len(block) % size  # a cut-off last packet is dropped
        for off in range(prefix, whole, size):
            pkt = block[off : off + _TS]
            if pkt[0] != 0x47:
                raise Damaged(f"transport stream out of sync at byte {pos + off}")
            pid = ((pkt[1] & 0x1F) << 8) | pkt[2]
            if pid not in (0, pmt, video):
                continue
            afc = (pkt[3] >> 4) & 3
            if not afc & 1:
                continue  # adaptation field only, no payload
            start = 5 + pkt[4] if afc & 2 else 4
            if start > _TS:
                raise Damaged(f"adaptation field longer than its packet at byte {pos + off}")
            unit_start = bool(pkt[1] & 0x40)
            payload = pkt[start:]
            if pid == 0 and unit_start and pmt is None:
                pmt = _pat(payload)
            elif pid == pmt and unit_start and video is None:
                video = _pmt(payload)
            elif pid == video:
                if pkt[3] >> 6:
                    raise NotMedia("the video stream is scrambled")
                if unit_start:
                    payload = _pes_payload(payload, pos + off)
                pending.append(payload)
                held += len(payload)
                if held >= READ:
                    stream.feed(b"".join(pending))
                    pending, held = [], 0
        pos += len(block)
        if whole < len(block):
            break
    if video is None:
        raise NotMedia("no H.264 video stream in this transport stream")
    stream.feed(b"".join(pending))
    stream.end()


def _section(payload: bytes, table: int) -> bytes:
    """A PSI section's bytes (what fits in this packet), after the pointer field."""
    at = 1 + payload[0] if payload else len(payload)
    sec = payload[at:]
    if len(sec) < 3 or sec[0] != table:
        return b""
    length = ((sec[1] & 0x0F) << 8) | sec[2]
    return sec[: 3 + length]


def _pat(payload: bytes) -> int | None:
    """The PID of the first program's map."""
    sec = _section(payload, 0x00)
    for i in range(8, len(sec) - 4 - 3, 4):
        if (sec[i] << 8) | sec[i + 1]:  # program 0 is the network PID
            return ((sec[i + 2] & 0x1F) << 8) | sec[i + 3]
    return None


def _pmt(payload: bytes) -> int | None:
    """The PID of the first H.264 stream (stream type 0x1B)."""
    sec = _section(payload, 0x02)
    if len(sec) < 12:
        return None
    i = 12 + (((sec[10] & 0x0F) << 8) | sec[11])
    while i + 5 <= len(sec) - 4:
        kind, pid = sec[i], ((sec[i + 1] & 0x1F) << 8) | sec[i + 2]
        if kind == 0x1B:
            return pid
        i += 5 + (((sec[i + 3] & 0x0F) << 8) | sec[i + 4])
    return None


def _pes_payload(payload: bytes, at: int) -> bytes:
    if len(payload) < 9 or payload[:3] != b"\x00\x00\x01":
        raise Damaged(f"a video packet at byte {at} does not start a PES packet")
    start = 9 + payload[8]
    if start > len(payload):
        raise Damaged(f"a PES header at byte {at} runs past its packet")
    return payload[start:]


# -- MP4 / MOV -------------------------------------------------------------------------


@dataclass
class Mp4Box:
    type: bytes
    at: int  # where its header begins
    start: int  # of the payload
    end: int


def mp4_boxes(fd: int, start: int, end: int) -> Iterator[Mp4Box]:
    """The boxes between `start` and `end`, read by their headers alone;
    Damaged if one runs past `end`."""
    pos = start
    for _ in range(_MAX_BOXES):
        if pos + 8 > end:
            return
        head = os.pread(fd, 16, pos)
        if len(head) < 8:
            raise Damaged(f"MP4 box header cut off at byte {pos}")
        size, kind = struct.unpack(">I4s", head[:8])
        hdr = 8
        if size == 1:
            if len(head) < 16:
                raise Damaged(f"MP4 box header cut off at byte {pos}")
            (size,) = struct.unpack(">Q", head[8:16])
            hdr = 16
        elif size == 0:
            size = end - pos
        if size < hdr or pos + size > end:
            raise Damaged(f"MP4 box {kind!r} at byte {pos} runs past its parent")
        yield Mp4Box(kind, pos, pos + hdr, pos + size)
        pos += size
    if pos + 8 <= end:
        raise Damaged(f"more than {_MAX_BOXES} MP4 boxes in one place")


@dataclass
class _Track:
    length_size: int = 0
    stsz: Mp4Box | None = None
    stz2: Mp4Box | None = None
    stsc: Mp4Box | None = None
    stco: Mp4Box | None = None
    co64: Mp4Box | None = None
    video: bool = False


def _read_mp4(fd: int, sink: NalSink) -> None:
    end = os.fstat(fd).st_size
    moov = None
    for box in mp4_boxes(fd, 0, end):
        if box.type == b"moof":
            raise NotMedia(
                "a fragmented MP4 is not read: remux it with `ffmpeg -i IN -c copy OUT.mp4` "
                "(or .ts) first"
            )
        if box.type == b"moov" and moov is None:
            moov = box
    if moov is None:
        raise NotMedia("an MP4 without its sample tables (moov)")
    track = next((t for t in _tracks(fd, moov) if t.video and t.length_size), None)
    if track is None:
        raise NotMedia("no H.264 (avc1/avc3) video track in this MP4")
    _samples(fd, track, sink)


def _tracks(fd: int, moov: Mp4Box) -> Iterator[_Track]:
    for box in mp4_boxes(fd, moov.start, moov.end):
        if box.type == b"trak":
            track = _Track()
            _walk(fd, box, track, 0)
            yield track


def _walk(fd: int, parent: Mp4Box, track: _Track, depth: int) -> None:
    if depth > _MAX_BOX_DEPTH:
        raise Damaged("MP4 boxes nested too deeply")
    for box in mp4_boxes(fd, parent.start, parent.end):
        if box.type in _MP4_CONTAINERS:
            _walk(fd, box, track, depth + 1)
        elif box.type == b"hdlr":
            data = _small(fd, box)
            track.video = data[8:12] == b"vide"
        elif box.type == b"stsd":
            track.length_size = _avc_length_size(_small(fd, box))
        elif box.type in (b"stsz", b"stz2", b"stsc", b"stco", b"co64"):
            setattr(track, box.type.decode(), box)


def _small(fd: int, box: Mp4Box) -> bytes:
    if box.end - box.start > _MAX_SMALL_BOX:
        raise Damaged(f"MP4 box {box.type!r} is larger than {_MAX_SMALL_BOX} bytes")
    return os.pread(fd, box.end - box.start, box.start)


def _avc_length_size(stsd: bytes) -> int:
    """The NAL length size of the first avc1/avc3 sample entry, else 0."""
    if len(stsd) < 16 or stsd[12:16] not in (b"avc1", b"avc3"):
        return 0
    entry_end = 8 + int.from_bytes(stsd[8:12], "big")
    i = 8 + 8 + 78  # sample entry header, then the visual sample entry's fields
    while i + 8 <= min(entry_end, len(stsd)):
        size = int.from_bytes(stsd[i : i + 4], "big")
        if stsd[i + 4 : i + 8] == b"avcC" and i + 13 <= len(stsd):
            return (stsd[i + 12] & 3) + 1
        if size < 8:
            return 0
        i += size
    return 0


def _entries(fd: int, box: Mp4Box, skip: int, size: int, count: int) -> Iterator[bytes]:
    """`count` fixed-size table entries after `skip` bytes of a box, read a
    block at a time (never the whole table)."""
    if box.start + skip + count * size > box.end:
        raise Damaged(f"MP4 table {box.type!r} claims more entries than it holds")
    pos = box.start + skip
    left = count
    while left:
        n = min(left, READ // size)
        block = os.pread(fd, n * size, pos)
        if len(block) < n * size:
            raise Damaged(f"MP4 table {box.type!r} cut off")
        for k in range(n):
            yield block[k * size : (k + 1) * size]
        pos += n * size
        left -= n


def _count(fd: int, box: Mp4Box, at: int) -> int:
    data = os.pread(fd, 4, box.start + at)
    if len(data) < 4:
        raise Damaged(f"MP4 table {box.type!r} cut off")
    return int.from_bytes(data, "big")


def _sizes(fd: int, track: _Track) -> Iterator[int]:
    if track.stsz is not None:
        fixed = _count(fd, track.stsz, 4)
        n = _count(fd, track.stsz, 8)
        if fixed:
            for _ in range(n):
                yield fixed
        else:
            for e in _entries(fd, track.stsz, 12, 4, n):
                yield int.from_bytes(e, "big")
    elif track.stz2 is not None:
        bits = os.pread(fd, 1, track.stz2.start + 7)[:1]
        n = _count(fd, track.stz2, 8)
        if bits != b"\x10":
            raise NotMedia("compact sample sizes (stz2) other than 16 bits are not read")
        for e in _entries(fd, track.stz2, 12, 2, n):
            yield int.from_bytes(e, "big")
    else:
        raise NotMedia("an MP4 video track without sample sizes")


def _chunks(fd: int, track: _Track) -> Iterator[tuple[int, int]]:
    """(offset, samples) of each chunk, from stco/co64 and stsc."""
    if track.stsc is None or (track.stco is None and track.co64 is None):
        raise NotMedia("an MP4 video track without its chunk tables")
    box, width = (track.stco, 4) if track.stco is not None else (track.co64, 8)
    assert box is not None
    offsets = _entries(fd, box, 8, width, _count(fd, box, 4))
    runs = _entries(fd, track.stsc, 8, 12, _count(fd, track.stsc, 4))
    current = next(runs, None)
    following = next(runs, None)
    for n, raw in enumerate(offsets, start=1):
        while following is not None and int.from_bytes(following[:4], "big") <= n:
            current, following = following, next(runs, None)
        if current is None:
            raise Damaged("an MP4 chunk table without samples per chunk")
        yield int.from_bytes(raw, "big"), int.from_bytes(current[4:8], "big")


def _samples(fd: int, track: _Track, sink: NalSink) -> None:
    sizes = _sizes(fd, track)
    for offset, count in _chunks(fd, track):
        pos = offset
        for _ in range(count):
            size = next(sizes, None)
            if size is None:
                return
            if size > MAX_AU:
                raise LimitExceeded(
                    f"an MP4 sample of {size} bytes at byte {pos} is larger than {MAX_AU}, "
                    "the format's limit for an access unit"
                )
            data = os.pread(fd, size, pos)
            if len(data) < size:
                raise Damaged(f"an MP4 sample at byte {pos} is cut off")
            length_prefixed(data, track.length_size, sink)
            pos += size
