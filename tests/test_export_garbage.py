"""Garbage at the export service, driven by hypothesis: every answer is a 4xx
(or the connection is closed for bytes that are not HTTP at all), nothing is
released, and the service still answers a proper request afterwards."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from link import pki, routes
from sealing.verify import verify_store

from .export_fixtures import Link, start_link


@pytest.fixture(scope="module")
def link(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Link]:
    lk = start_link(tmp_path_factory.mktemp("garbage"), segments=1, size=20_000)
    yield lk
    lk.close()


def _send(link: Link, raw: bytes) -> bytes:
    d = link.dir / "docks" / "dock1"
    ctx = pki.client_context(d / "dock.crt", d / "dock.key", link.dir / "ca.crt")
    with socket.create_connection(link.running.address, timeout=5) as s, ctx.wrap_socket(s) as tls:
        tls.sendall(raw)
        out = b""
        try:
            while chunk := tls.recv(65536):
                out += chunk
        except (ssl.SSLError, ConnectionError, TimeoutError):
            pass
        return out


methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "get", "X" * 300, ""])
paths = st.one_of(
    st.sampled_from(
        [
            "/v1/receipt",
            "/v1/auth",
            "/v1/time",
            "/v1/chain?from=x",
            "/v1/segments/../../keys/fss.key",
            "/v1/segments/%00",
            "/" * 5000,
            "/v1/chain?from=99999999999999999999",
        ]
    ),
    st.text(min_size=0, max_size=200).map(lambda t: "/" + t.replace("\r", "").replace("\n", "")),
)
bodies = st.binary(max_size=3000)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=methods,
    path=paths,
    body=bodies,
    raw=st.booleans(),
    length=st.one_of(st.none(), st.integers(-5, 1 << 40)),
)
def test_garbage_gets_4xx_and_changes_nothing(
    link: Link, method: str, path: str, body: bytes, raw: bool, length: int | None
) -> None:
    before = link.files()
    if raw:
        request = body + b"\r\n\r\n"  # ends whatever "request" it is, so the unit answers
    else:
        head = f"{method} {path} HTTP/1.1\r\nHost: unit\r\nConnection: close\r\n"
        if length is not None:
            # a declared length the body really has (or one too big to accept), so the
            # unit is never left waiting for bytes that will not come
            if 0 <= length <= 4 << 20:
                length = len(body)
            head += f"Content-Length: {length}\r\n"
        request = head.encode("utf-8", "replace") + b"\r\n" + body
    answer = _send(link, request)
    if answer:
        status = answer.split(b"\r\n", 1)[0]
        assert status.startswith(b"HTTP/1."), answer[:80]
        code = int(status.split()[1])
        assert 400 <= code < 500, (request[:120], answer[:200])
    assert link.files() == before


def test_service_still_answers_after_garbage(link: Link) -> None:
    client = link.client()
    code, status = client.json(routes.STATUS)
    client.close()
    assert code == 200 and status["serial"] == "BC-TEST-0001"
    assert verify_store(link.unit.path).ok


def test_a_hundred_garbage_connections_in_a_row(link: Link, tmp_path: Path) -> None:
    for i in range(100):
        answer = _send(link, bytes([i]) * (1 + i * 37 % 500) + b"\r\n\r\n")
        assert answer == b"" or answer.split()[1].startswith(b"4"), answer[:80]
    test_service_still_answers_after_garbage(link)


def test_a_body_nested_thousands_deep_gets_an_answer(link: Link) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    raw = (
        b"POST /v1/auth HTTP/1.1\r\nHost: unit\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    out = _send(link, raw)
    assert out.startswith(b"HTTP/1.") and b" 400 " in out.split(b"\r\n")[0], out[:200]
    assert b"nested too deeply" in out
