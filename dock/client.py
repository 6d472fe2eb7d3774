"""The dock's side of the link: one keep-alive HTTPS connection to a unit,
with every read bounded in size and the whole conversation in time.

A unit is not trusted: a reply larger than its kind allows is refused, and
a pull has a deadline after which the connection is shut, whatever the unit
is (or is not) sending, so a unit dripping one byte at a time cannot hold
a worker for ever.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from link import messages
from link.routes import Route

from .texts import msg

READ_TIMEOUT_S = 30.0  # one recv: a link that says nothing this long is gone


class DockError(Exception):
    """A pull that must stop; its one argument (a Msg, dock/texts.py) says
    why. Nothing was released."""


class DeadlinePassed(DockError):
    pass


@dataclass
class Client:
    """One keep-alive HTTPS connection to a unit, reopened after a cut."""

    host: str
    port: int
    context: ssl.SSLContext
    token: str | None = None
    _conn: http.client.HTTPSConnection | None = field(default=None, repr=False)
    _deadline: float | None = field(default=None, repr=False)
    _timer: threading.Timer | None = field(default=None, repr=False)
    _expired: bool = field(default=False, repr=False)
    # the socket of the last request: a reply with "Connection: close" takes
    # it from the connection (conn.sock is None then) while its body is read
    _sock: socket.socket | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _connection(self) -> http.client.HTTPSConnection:
        if self._expired:
            raise DeadlinePassed(msg("the pull's deadline passed"))
        if self._conn is None:
            self._conn = http.client.HTTPSConnection(
                self.host, self.port, context=self.context, timeout=READ_TIMEOUT_S
            )
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._sock = None

    # -- the deadline ------------------------------------------------------

    def set_deadline(self, seconds_from_now: float) -> None:
        """From now on, everything must be done within this many seconds;
        after that the socket is shut down under any read in progress."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._deadline = time.monotonic() + seconds_from_now
            self._timer = threading.Timer(seconds_from_now, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            if self._sock is not None:
                # wakes a recv blocked in another thread; close() follows there
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)

    @property
    def expired(self) -> bool:
        return self._expired

    def check_deadline(self) -> None:
        if self._expired:
            raise DeadlinePassed(msg("the pull's deadline passed"))

    # -- requests ----------------------------------------------------------

    def peer_certificate(self) -> bytes:
        """The unit's TLS certificate (DER) on the open connection."""
        conn = self._connection()
        if conn.sock is None:
            conn.connect()
        der = conn.sock.getpeercert(binary_form=True) if conn.sock is not None else None
        if not der:
            raise DockError(msg("the unit presented no TLS certificate"))
        return der

    def request(
        self,
        route: Route,
        item: str = "",
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        query: dict[str, int | str] | None = None,
    ) -> http.client.HTTPResponse:
        h = dict(headers or {})
        if self.token and route.login:
            h["Authorization"] = f"Bearer {self.token}"
        conn = self._connection()
        try:
            conn.request(route.method, route.target(item, **(query or {})), body=body, headers=h)
            with self._lock:
                self._sock = conn.sock
                if self._expired and self._sock is not None:  # the timer fired just before
                    with contextlib.suppress(OSError):
                        self._sock.shutdown(socket.SHUT_RDWR)
            return conn.getresponse()
        except (OSError, http.client.HTTPException):
            self._drop()
            self.check_deadline()
            raise

    def json(
        self,
        route: Route,
        obj: dict[str, Any] | None = None,
        *,
        limit: int = messages.MAX_SMALL_REPLY,
    ) -> tuple[int, Any]:
        """(status, parsed JSON); a body that is not JSON is None (the caller's
        shape check then says so)."""
        body = json.dumps(obj).encode() if obj is not None else None
        resp = self.request(route, body=body, headers={"Content-Type": "application/json"})
        return resp.status, read_json(resp, limit)


def read_bounded(resp: http.client.HTTPResponse, limit: int) -> bytes:
    """The whole body, refused if it is longer than `limit`."""
    length = resp.getheader("Content-Length")
    if length is not None and (not length.isascii() or not length.isdigit()):
        resp.close()
        raise DockError(msg("reply with a malformed Content-Length %(said)r", said=length[:20]))
    if length is not None and int(length) > limit:
        resp.close()
        raise DockError(
            msg(
                "reply of %(count)s bytes, more than the %(limit)s allowed",
                count=int(length),
                limit=limit,
            )
        )
    try:
        data = resp.read(limit + 1)
    except http.client.IncompleteRead as exc:
        raise DockError(
            msg("reply cut short after %(count)s bytes", count=len(exc.partial))
        ) from None
    if len(data) > limit:
        resp.close()
        raise DockError(msg("reply longer than the %(limit)s bytes allowed", limit=limit))
    return data


def read_json(resp: http.client.HTTPResponse, limit: int) -> Any:
    data = read_bounded(resp, limit)
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None
