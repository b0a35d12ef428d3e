"""The relay inside Airflow's api-server, mounted by the plugin under ``/alation-relay``.

The plugin module is imported by every Airflow process (scheduler, workers, each task), so this
module imports nothing beyond the standard library: :class:`RelayMount` is a bare ASGI app that
reads ``ALATION_RELAY_CONFIG`` and builds the FastAPI relay on the first request to it. Unconfigured,
it answers 404 with how to configure it; with an invalid configuration, 503 with the problem.

Airflow runs the lifespan of mounted FastAPI apps only, and this one is built late, so the relay is
started at its first request and stopped when the api-server process exits (``atexit``); every
event it acknowledged is in the outbox by then either way.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

log = logging.getLogger(__name__)

CONFIG_ENV = "ALATION_RELAY_CONFIG"  # as relay.config.CONFIG_ENV (not imported: it pulls pydantic)
URL_PREFIX = "/alation-relay"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

NOT_CONFIGURED = (
    "The Alation relay is not configured in this api-server. Set the environment variable "
    f"{CONFIG_ENV} of the api-server to the path of a relay configuration file (or to its JSON) and "
    "restart it; see the README section 'The relay'."
)


class RelayMount:
    """A lazy ASGI app: nothing is imported or read until a request reaches it."""

    def __init__(self) -> None:
        self._app: Any = None
        self._error: tuple[int, str] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "<RelayMount /alation-relay>"

    def _build(self) -> None:
        with self._lock:
            if self._app is not None or self._error is not None:
                return
            if not os.environ.get(CONFIG_ENV, "").strip():
                self._error = (404, NOT_CONFIGURED)
                return
            try:
                from airflow_provider_alation.relay.app import Relay, build_app
                from airflow_provider_alation.relay.config import RelayConfigError, load_config
            except ImportError as exc:  # fastapi is always there in Airflow 3's api-server
                self._error = (503, f"The Alation relay cannot start: {exc}")
                return
            try:
                relay = Relay(load_config())
            except RelayConfigError as exc:
                log.error("Alation relay: %s", exc)
                # The problem is in the api-server's log; the answer, to anyone, says only where.
                self._error = (503, "The Alation relay is misconfigured: see the api-server's log")
                return
            relay.start()
            atexit.register(relay.stop)
            self._app = build_app(relay, lifespan=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # not sent to mounted apps by Starlette; answered anyway
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            return
        if scope["type"] != "http":
            return
        if self._app is None and self._error is None:
            from starlette.concurrency import run_in_threadpool

            await run_in_threadpool(self._build)
        if self._app is not None:
            await self._app(scope, receive, send)
            return
        status, message = self._error or (503, "The Alation relay is not available")
        body = json.dumps({"status": "refused", "error": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
