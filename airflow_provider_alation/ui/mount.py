"""The "Alation lineage" page inside Airflow's api-server, mounted by the plugin under
``/alation-lineage`` and listed in Airflow's navigation (an external view the UI shows in a frame).

The plugin module is imported by every Airflow process, so this module imports only the standard
library: :class:`PageMount` builds the FastAPI app of :mod:`airflow_provider_alation.ui.app` at the
first request that reaches it.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

URL_PREFIX = "/alation-lineage"
PAGE_NAME = "Alation lineage"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: The navigation entry (Airflow 3.1+ ``external_views``): an item of the UI's left-hand navigation
#: bar that opens the page in a frame at /plugin/alation-lineage.
EXTERNAL_VIEW = {
    "name": PAGE_NAME,
    "href": f"{URL_PREFIX}/",
    "destination": "nav",
    "url_route": "alation-lineage",
}


class PageMount:
    """A lazy ASGI app: nothing is imported until a request reaches it."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<PageMount {URL_PREFIX}>"

    def _build(self) -> Any:
        with self._lock:
            if self._app is None:
                from airflow_provider_alation.ui.app import build_app

                self._app = build_app()
            return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # not sent to mounted apps by Starlette; answered anyway
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            return
        app = self._app
        if app is None:
            from starlette.concurrency import run_in_threadpool

            app = await run_in_threadpool(self._build)
        await app(scope, receive, send)
