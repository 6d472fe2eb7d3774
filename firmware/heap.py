"""How the recorder's process asks glibc to hold its memory.

Frames (16 Mbit/s is ~66 KB a frame, a keyframe several times that) are
allocated on one thread and freed on another, thousands a minute. In glibc's
heaps that leaves the freed space scattered: a live run's RSS climbed ~30 MB
over its first minutes and then wandered by +-5 MB, and the pre-record
ring's 60 MB was not given back when recording began. Buffers of 32 KiB and
more mapped on their own are returned to the kernel the moment they are
freed: measured (tools/bench.py recorder --memory), RSS while recording
fell from 132-143 MB to a flat 114 MB. The cost is a mapping and its page
faults per large buffer: measured unpaced (capture + sealing of 40 s of
1080p30), 2.0 % of a core per media second without this setting and 3.3-3.6 %
with it. So the hot path does not copy what it need not: the sealing writer
reuses one plaintext and one ciphertext chunk, the transport-stream counters
are shifted in the muxer's one copy, the signer hashes NAL units where they
lie (2.4-3.1 % with this setting after that).

The threshold was 32 KiB, which mapped every picture on its own: a page
fault and a zeroed page for each 4 KiB of each frame, twice (the frame and
its stamped copy). At 256 KiB the ~66 KB pictures come from the heap again
and only keyframes and the sealing writer's chunks are mapped alone.
Measured live (the bench's recorder on the 1080p30 16 Mbit/s replay, 30 s
recorded, runs alternating, load 0.1): 4.2-4.6 % of a core per media
second against 4.8-5.1 % at 32 KiB, with the same peak (125 MB) and the
same RSS after 30 s of recording (115 MB); without any setting, 4.3-4.6 %
but RSS stayed at its 125-135 MB peak. Over 10 minutes of recording
(`--memory --minutes 10`) RSS stayed within 113.0-113.7 MB, 1.6 MB/hour.
"""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
MMAP_THRESHOLD = 256 * 1024


def map_large_buffers_alone() -> bool:
    """Set glibc's mmap threshold; False where the C library is not glibc
    (the setting is then the library's own)."""
    try:
        # the process's own symbols: the C library Python runs on (no
        # find_library, which would start a compiler or ldconfig)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
