"""The canonical byte encoding of everything that is hashed or signed.

Canonical JSON (docs/FORMAT.md, "Canonical encoding"): UTF-8, object keys
sorted, no insignificant whitespace, ASCII-only keys, and only these value
types: object, array, string, integer, true/false, null. Floats are refused,
because two writers can print the same float two ways; times are integer
microseconds and coordinates integer 1e-7 degrees.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any


class EncodingError(ValueError):
    """A value that has no canonical encoding, or bytes that are not canonical."""


# Integers beyond IEEE-754's exact range would print differently under RFC 8785
# (JCS), which reads every number as a double: keeping within it keeps the two
# encodings byte-identical. Microsecond times stay within it until year 287396.
MAX_INT = 2**53 - 1
# Objects and arrays in one document (a chain line, a receipt). Parsed, each
# costs a reader tens of bytes: 8 MiB of "[{},{},..." would be 2.8 million
# dicts, some 220 MB, while a real record holds a few dozen.
MAX_CONTAINERS = 65_536
_QUOTE = re.compile(rb'(\\*)"')


def _check(value: Any, where: str, count: list[int]) -> None:
    """Refuse what has no canonical encoding, naming where it is (slow: the
    path is built for every value; `_quick` runs first and calls this only
    for what it does not pass at once)."""
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        if not -MAX_INT <= value <= MAX_INT:
            raise EncodingError(f"{where}: integer beyond +-(2^53 - 1)")
        return
    if isinstance(value, float):
        raise EncodingError(f"{where}: floats are not allowed in records (use integers)")
    if isinstance(value, (list, tuple, dict)):
        count[0] += 1
        if count[0] > MAX_CONTAINERS:
            raise EncodingError(f"more than {MAX_CONTAINERS} objects and arrays in one document")
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check(item, f"{where}[{i}]", count)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key.isascii():
                raise EncodingError(f"{where}: keys must be ASCII strings, got {key!r}")
            _check(item, f"{where}.{key}", count)
        return
    raise EncodingError(f"{where}: {type(value).__name__} cannot be encoded")


def _quick(value: Any, count: list[int]) -> bool:
    """Whether `value` certainly has a canonical encoding, checked without
    building paths (a record of millions of values is checked in a second,
    not in a minute). False sends the caller to `_check` for the reason."""
    t = type(value)
    if t is str or t is bool or value is None:
        return True
    if t is int:
        return -MAX_INT <= value <= MAX_INT
    if t is list or t is dict:
        count[0] += 1
        if count[0] > MAX_CONTAINERS:
            return False
        items = value.values() if t is dict else value
        if t is dict and not all(type(k) is str and k.isascii() for k in value):
            return False
        for item in items:
            ti = type(item)
            if ti is str or ti is bool or item is None:
                continue
            if ti is int:
                if not -MAX_INT <= item <= MAX_INT:
                    return False
            elif not _quick(item, count):
                return False
        return True
    return False


def _containers(data: bytes) -> int:
    """How many objects and arrays JSON text opens, counted before it is
    parsed (so the limit holds before anything is built): `{` and `[` outside
    strings. A quote ends or starts a string unless an odd run of backslashes
    escapes it. Linear; the exact count only when the plain one is high."""
    if data.count(b"{") + data.count(b"[") <= MAX_CONTAINERS:
        return 0
    n, inside, at = 0, False, 0
    for m in _QUOTE.finditer(data):
        if len(m[1]) % 2:
            continue  # an escaped quote, inside a string
        if not inside:
            n += data.count(b"{", at, m.start()) + data.count(b"[", at, m.start())
        inside = not inside
        at = m.end()
    if not inside:
        n += data.count(b"{", at) + data.count(b"[", at)
    return n


def encode(value: Any) -> bytes:
    """The one byte string that `value` hashes and signs as."""
    if not _quick(value, [0]):
        _check(value, "$", [0])
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def decode(data: bytes) -> Any:
    """Parse canonical JSON, refusing any byte string that is not canonical.

    Re-encoding and comparing is what makes a changed space, key order or
    escape a detectable change rather than an equivalent rewrite.
    """
    if _containers(data) > MAX_CONTAINERS:
        raise EncodingError(f"more than {MAX_CONTAINERS} objects and arrays in one document")
    try:
        value = json.loads(data.decode("utf-8"), parse_float=_no_float)
        canonical = encode(value) == data
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EncodingError(f"not valid JSON: {exc}") from None
    except UnicodeEncodeError:  # "\ud800": a lone surrogate is no Unicode text
        raise EncodingError("a string holds a lone surrogate escape") from None
    except RecursionError:  # a hostile file or request nesting thousands deep
        raise EncodingError("JSON nested too deeply") from None
    if not canonical:
        raise EncodingError("JSON is valid but not in canonical form")
    return value


def _no_float(text: str) -> float:
    raise EncodingError(f"float {text} is not allowed")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    """Strict base64: the one padded encoding of its bytes (no stray bits)."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError, AttributeError) as exc:
        raise EncodingError(f"bad base64: {exc}") from None
    if b64(data) != text:
        raise EncodingError("base64 is not in canonical form")
    return data
