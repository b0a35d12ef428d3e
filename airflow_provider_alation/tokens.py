"""The token Alation's OpenLineage endpoint takes as ``Authorization: Bearer``.

``api_token``: the connection's password as is. ``refresh_token``: exchanged, with the user id,
for an API access token at ``/integration/v1/createAPIAccessToken/``, cached until shortly before
it expires. Alation can answer that call HTTP 200 with ``"status": "failed"``, so the body decides.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any

import requests

from airflow_provider_alation.settings import AlationSettings

CREATE_ACCESS_TOKEN_PATH = "integration/v1/createAPIAccessToken/"
REFRESH_MARGIN_SECONDS = 300.0
DEFAULT_ACCESS_TOKEN_LIFETIME = 24 * 3600.0


class TokenError(RuntimeError):
    """The token could not be obtained; the message never contains a token."""


def _expiry(body: dict[str, Any]) -> float:
    text = body.get("token_expires_at")
    if isinstance(text, str) and text:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            return moment.timestamp()
    return time.time() + DEFAULT_ACCESS_TOKEN_LIFETIME


class BearerToken:
    """Callable returning the bearer token for the settings' ``token_type``."""

    def __init__(self, settings: AlationSettings, session: requests.Session | None = None) -> None:
        self._settings = settings
        self._session = session
        self._lock = threading.Lock()
        self._access: str | None = None
        self._expires_at = 0.0

    def __repr__(self) -> str:
        return f"BearerToken(token_type={self._settings.token_type!r})"

    def __call__(self) -> str:
        settings = self._settings
        if settings.token_type == "api_token":
            return settings.token.get_secret_value()
        with self._lock:
            if self._access is None or time.time() > self._expires_at - REFRESH_MARGIN_SECONDS:
                self._access, self._expires_at = self._mint()
            return self._access

    def _mint(self) -> tuple[str, float]:
        settings = self._settings
        session = self._session or requests
        try:
            response = session.post(
                f"{settings.url}/{CREATE_ACCESS_TOKEN_PATH}",
                json={"refresh_token": settings.token.get_secret_value(), "user_id": settings.user_id},
                timeout=settings.timeout,
                verify=settings.verify,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise TokenError(
                f"could not reach Alation to mint an access token: {type(exc).__name__}"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        status = str(body.get("status", "")).lower() if isinstance(body, dict) else ""
        token = body.get("api_access_token") if isinstance(body, dict) else None
        if response.status_code != 200 or status == "failed" or not token:
            reason = body.get("message") or body.get("detail") if isinstance(body, dict) else None
            raise TokenError(
                f"Alation refused to mint an access token from the refresh token (HTTP {response.status_code}"
                f"{', ' + str(reason) if reason else ''}); "
                "check the refresh token (password) and the user id "
                "(login), or create a new refresh token in Alation"
            )
        return str(token), _expiry(body)
