"""The dock's side of the link: one keep-alive HTTPS connection to a unit."""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass, field
from typing import Any


class DockError(Exception):
    """A pull that must stop; the message says why. Nothing was released."""


@dataclass
class Client:
    """One keep-alive HTTPS connection to a unit, reopened after a cut."""

    host: str
    port: int
    context: ssl.SSLContext
    token: str | None = None
    _conn: http.client.HTTPSConnection | None = field(default=None, repr=False)

    def _connection(self) -> http.client.HTTPSConnection:
        if self._conn is None:
            self._conn = http.client.HTTPSConnection(
                self.host, self.port, context=self.context, timeout=30
            )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> http.client.HTTPResponse:
        h = dict(headers or {})
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        conn = self._connection()
        try:
            conn.request(method, path, body=body, headers=h)
            return conn.getresponse()
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def json(
        self, method: str, path: str, obj: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        body = json.dumps(obj).encode() if obj is not None else None
        resp = self.request(method, path, body, {"Content-Type": "application/json"})
        data = resp.read()
        try:
            return resp.status, json.loads(data)
        except ValueError:
            return resp.status, {"error": data[:200].decode(errors="replace")}
