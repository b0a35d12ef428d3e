"""The Test button of Airflow 3's Connections list, made to answer for Alation connections.

Airflow 3.3.2's UI posts ``"port": 0`` to ``POST /api/v2/connections/test`` for a connection saved
without a port; the endpoint compares it with the stored port (NULL), takes it for a different
destination and answers "Bad Request" before any hook runs. This ASGI middleware (installed by
the plugin with ``fastapi_root_middlewares``) drops that ``port: 0`` from Alation connections'
test requests, the fix Airflow made upstream, and is a no-op once the UI sends no 0.

It also records the ``connection_id`` of the request: the endpoint tests a copy of the connection
under a random id, and the verdict names the user's connection instead (:func:`requested_conn_id`).
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

TEST_PATH = "/api/v2/connections/test"
#: Bodies above this are passed on untouched (a connection is a few kilobytes).
MAX_BODY_BYTES = 1024 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_requested: contextvars.ContextVar[str | None] = contextvars.ContextVar("alation_test_conn_id", default=None)


def requested_conn_id() -> str | None:
    """The ``connection_id`` of the test request being served in this context, if any."""
    return _requested.get()


def rewrite_body(body: bytes) -> tuple[bytes, str | None]:
    """The test request body without an Alation connection's ``port: 0``, and its connection id
    (None when the body is not an Alation connection)."""
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return body, None
    if not isinstance(data, dict) or data.get("conn_type") != "alation":
        return body, None
    conn_id = data.get("connection_id")
    if data.get("port") == 0:
        del data["port"]
        body = json.dumps(data).encode("utf-8")
    return body, conn_id if isinstance(conn_id, str) else None


class AlationTestButtonMiddleware:
    """ASGI middleware: see the module docstring. Other requests pass through unread."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope.get("type") != "http"
            or scope.get("method") != "POST"
            or not str(scope.get("path", "")).endswith(TEST_PATH)
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # client gone: let the app see it
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = bool(message.get("more_body", False))
            if size > MAX_BODY_BYTES:
                break
        body = b"".join(chunks)
        conn_id = None
        if not more:
            original = body
            body, conn_id = rewrite_body(body)
            if body is not original:
                headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
                scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        replay = [{"type": "http.request", "body": body, "more_body": more}]
        token = _requested.set(conn_id)
        try:
            await self.app(scope, _replay(replay, receive), send)
        finally:
            _requested.reset(token)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
