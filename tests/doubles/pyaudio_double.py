"""A test double of the pyaudio API used by hal/audio_pi.py: PyAudio() with
get_device_count/open/terminate, streams with read(n, exception_on_overflow=)
/write/stop_stream/close, and paInt16. Input is a given PCM buffer."""

from __future__ import annotations

from typing import Any

paInt16 = 8  # pyaudio's value


class Stream:
    def __init__(self, source: bytearray, sink: bytearray, kw: dict[str, Any]) -> None:
        self.source, self.sink, self.kw = source, sink, kw
        self.closed = False

    def read(self, num_frames: int, exception_on_overflow: bool = True) -> bytes:
        if self.closed:
            raise OSError(-9988, "Stream closed")
        n = num_frames * 2
        data = bytes(self.source[:n]).ljust(n, b"\0")
        del self.source[:n]
        return data

    def write(self, frames: bytes, num_frames: int | None = None,
              exception_on_underflow: bool = False) -> None:
        self.sink += frames

    def stop_stream(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class PyAudio:
    devices = 1
    source = bytearray()
    sink = bytearray()

    def get_device_count(self) -> int:
        return self.devices

    def open(self, rate: int, channels: int, format: int, input: bool = False,  # noqa: A002
             output: bool = False, input_device_index: int | None = None,
             frames_per_buffer: int = 1024, **kw: Any) -> Stream:
        if input_device_index is not None and input_device_index >= self.devices:
            raise AssertionError("the real pyaudio segfaults here; the caller must check")
        if format != paInt16 or channels != 1:
            raise ValueError("the unit uses 16-bit mono")
        return Stream(self.source, self.sink, dict(rate=rate, input=input, output=output))

    def terminate(self) -> None:
        pass
