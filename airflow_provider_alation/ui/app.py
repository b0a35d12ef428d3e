"""The "Alation lineage" page's FastAPI app, mounted by the plugin in Airflow 3's api-server under
``/alation-lineage`` (built at its first request by :class:`airflow_provider_alation.ui.mount.PageMount`).

Every route resolves the user as Airflow's own routes do (``get_user`` of Airflow's
``core_api.security``: the ``Authorization: Bearer`` JWT, else the ``_token`` cookie the UI holds)
and asks Airflow's auth manager: the page and every read need ``is_authorized_connection(GET)``
(the page shows every connection's namespace), the replay ``is_authorized_connection(PUT)``. A
request without a valid token gets 401, a user without the permission 403, and neither gets data.
The actions (``POST``) also need the ``X-Alation-Lineage: 1`` header, which a cross-site form cannot
send.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from importlib import resources
from typing import Annotated, Any, Literal

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from airflow_provider_alation.ui import status

ACTION_HEADER = "x-alation-lineage"
#: The page's own headers: no framing by other sites, no inline script but its own, no network
#: request but to this app.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'none'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; frame-ancestors 'self'; base-uri 'none'; "
        "form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _allowed(user: BaseUser, method: Literal["GET", "PUT"]) -> bool:
    return bool(get_auth_manager().is_authorized_connection(method=method, user=user))


def reader(user: GetUserDep) -> BaseUser:
    """The user, when allowed to read connections (the page shows every connection's namespace)."""
    if not _allowed(user, "GET"):
        raise HTTPException(403, "Reading connections is required to see the Alation lineage page")
    return user


def _action(request: Request) -> None:
    if request.headers.get(ACTION_HEADER) != "1":
        raise HTTPException(400, f"send the {ACTION_HEADER}: 1 header (the page does)")


def action_reader(request: Request, user: GetUserDep) -> BaseUser:
    _action(request)
    return reader(user)


def editor(request: Request, user: GetUserDep) -> BaseUser:
    """The user, when allowed to edit connections (the replay)."""
    _action(request)
    if not _allowed(user, "PUT"):
        raise HTTPException(403, "Editing connections is required to replay the outbox")
    return user


Reader = Annotated[BaseUser, Depends(reader)]
ActionReader = Annotated[BaseUser, Depends(action_reader)]
Editor = Annotated[BaseUser, Depends(editor)]
Namespace = Annotated[str, Query(min_length=1, max_length=2000)]


@functools.cache
def page() -> tuple[str, dict[str, str]]:
    """The page (static: no value is written into it) and its headers, allowing its one inline script
    by its hash."""
    html = resources.files("airflow_provider_alation.ui").joinpath("page.html").read_text("utf-8")
    script = html.split("<script>", 1)[1].split("</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    headers = dict(SECURITY_HEADERS)
    headers["Content-Security-Policy"] = headers["Content-Security-Policy"].replace(
        "script-src 'none'", f"script-src 'sha256-{digest}'"
    )
    return html, headers


def _json(data: Any) -> JSONResponse:
    return JSONResponse(data, headers={"Cache-Control": "no-store"})


DENIED_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Alation lineage</title>
</head><body style="font-family: sans-serif; margin: 2rem"><h1>Alation lineage</h1>
<p role="alert">{message}</p></body></html>"""


def build_app() -> FastAPI:
    app = FastAPI(title="Alation lineage", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(HTTPException)
    async def _refused(request: Request, exc: HTTPException) -> Any:
        if "/api/" not in request.url.path:
            message = {401: "Log in to Airflow to see this page."}.get(
                exc.status_code,
                "You are not allowed to see this page: it needs permission to read connections.",
            )
            return HTMLResponse(
                DENIED_PAGE.format(message=message), exc.status_code, headers=SECURITY_HEADERS
            )
        return JSONResponse({"detail": exc.detail}, exc.status_code, headers={"Cache-Control": "no-store"})

    @app.get("/", response_class=HTMLResponse)
    async def page_route(user: Reader) -> HTMLResponse:
        html, headers = page()
        return HTMLResponse(html, headers=headers)

    @app.get("/api/status")
    async def api_status(user: Reader) -> JSONResponse:
        data = await run_in_threadpool(status.page_status)
        data["can_replay"] = _allowed(user, "PUT")
        return _json(data)

    @app.post("/api/tenant")
    async def api_tenant(user: ActionReader) -> JSONResponse:
        return _json(await run_in_threadpool(status.tenant_status))

    @app.post("/api/datasources/refresh")
    async def api_refresh(user: ActionReader) -> JSONResponse:
        return _json(await run_in_threadpool(status.refresh_datasources))

    @app.get("/api/resolve")
    async def api_resolve(namespace: Namespace, user: Reader) -> JSONResponse:
        return _json(await run_in_threadpool(status.resolve, namespace))

    @app.post("/api/replay")
    async def api_replay(user: Editor) -> JSONResponse:
        return _json(await run_in_threadpool(status.replay_now))

    return app
