"""The token Alation's OpenLineage endpoint takes as ``Authorization: Bearer`` (and its REST API
as ``TOKEN``).

``api_token``: the connection's password as is. ``refresh_token``: exchanged, with the user id,
for an API access token at ``/integration/v1/createAPIAccessToken/``, cached until shortly before
it expires. Alation can answer that call HTTP 200 with ``"status": "failed"``, so the body decides.

Each task event is emitted from a short-lived process, so a minted access token is also cached on
disk, where it is never in clear: it is encrypted (Fernet) with a key derived (HKDF-SHA256) from the
refresh token, so the file is useless without the secret that could mint a new token anyway, and a
new refresh token simply makes the old file unreadable. Fernet authenticates as well, so a planted file
is not used either; it is read only as a regular file (no link followed, size-capped), and written
only into a ``cache_dir`` nobody else can write to.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests

from airflow_provider_alation.alation import network
from airflow_provider_alation.alation.masking import mask_secret, redact
from airflow_provider_alation.outbox.disk import atomic_write, cache_key, check_private_dir, read_regular_file
from airflow_provider_alation.settings import AlationSettings

CREATE_ACCESS_TOKEN_PATH = "integration/v1/createAPIAccessToken/"
REFRESH_MARGIN_SECONDS = 300.0
DEFAULT_ACCESS_TOKEN_LIFETIME = 24 * 3600.0
#: The encrypted token file is read only as a regular file (no link followed) of at most this size.
TOKEN_FILE_MAX_BYTES = 64 * 1024


log = logging.getLogger(__name__)


class TokenError(RuntimeError):
    """The token could not be obtained; the message never contains a token.

    ``problem`` is the delivery word for why: ``"auth"`` (Alation refused), ``"unreachable"``,
    ``"timeout"`` or ``"tls"`` (Alation could not be asked).
    """

    def __init__(self, message: str, problem: str = "auth") -> None:
        super().__init__(message)
        self.problem = problem


class AccessTokenCache:
    """The minted access token on disk, encrypted with a key derived from the refresh token."""

    def __init__(self, cache_dir: str | Path, url: str, user_id: int | None, refresh_token: str) -> None:
        # Imported here: only refresh tokens need it, and every emitting process imports this module.
        from cryptography.fernet import Fernet
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        self.path = Path(cache_dir) / f"access-token-{cache_key(url, str(user_id))}.bin"
        key = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=b"airflow-provider-alation/access-token/v1",
            info=f"{url}|{user_id}".encode(),
        ).derive(refresh_token.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def __repr__(self) -> str:
        return f"AccessTokenCache(path={str(self.path)!r})"

    def read(self) -> tuple[str, float] | None:
        from cryptography.fernet import InvalidToken

        try:
            data = json.loads(self._fernet.decrypt(read_regular_file(self.path, TOKEN_FILE_MAX_BYTES)))
            return str(data["token"]), float(data["expires_at"])
        except (OSError, InvalidToken, ValueError, KeyError, TypeError):
            return None

    def write(self, token: str, expires_at: float) -> None:
        payload = json.dumps({"token": token, "expires_at": expires_at}).encode()
        try:
            check_private_dir(self.path.parent, "cache directory (cache_dir)")
            atomic_write(self.path, self._fernet.encrypt(payload))
        except OSError as exc:
            log.debug("Alation lineage: cannot cache the access token in %s: %s", self.path.parent, exc)

    def clear(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


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
            # A token said to expire (almost) now, e.g. with clock skew, is still used for a few
            # minutes rather than re-minted on every request; a 401 makes it be dropped anyway.
            return max(moment.timestamp(), time.time() + 2 * REFRESH_MARGIN_SECONDS)
    return time.time() + DEFAULT_ACCESS_TOKEN_LIFETIME


class BearerToken:
    """Callable returning the bearer token for the settings' ``token_type``."""

    def __init__(
        self, settings: AlationSettings, session: requests.Session | None = None, disk_cache: bool = True
    ) -> None:
        self._settings = settings
        self._session = session
        self._lock = threading.Lock()
        self._access: str | None = None
        self._expires_at = 0.0
        self._disk: AccessTokenCache | None = None
        if disk_cache and settings.token_type == "refresh_token":
            self._disk = AccessTokenCache(
                settings.cache_dir, settings.url, settings.user_id, settings.token.get_secret_value()
            )
        self.minted = 0

    def __repr__(self) -> str:
        return f"BearerToken(token_type={self._settings.token_type!r})"

    @property
    def refreshable(self) -> bool:
        """True when a refused token can be replaced by minting a new one."""
        return self._settings.token_type == "refresh_token"

    def __call__(self) -> str:
        settings = self._settings
        if settings.token_type == "api_token":
            return settings.token.get_secret_value()
        with self._lock:
            if self._access is None or time.time() > self._expires_at - REFRESH_MARGIN_SECONDS:
                cached = self._disk.read() if self._disk is not None else None
                if cached is not None and time.time() < cached[1] - REFRESH_MARGIN_SECONDS:
                    self._access, self._expires_at = cached
                    mask_secret(self._access)
                else:
                    self._access, self._expires_at = self._mint()
                    self.minted += 1
                    if self._disk is not None:
                        self._disk.write(self._access, self._expires_at)
            return self._access

    def forget(self) -> None:
        """Drop the cached access token (Alation refused it): the next call mints a new one."""
        with self._lock:
            self._access, self._expires_at = None, 0.0
            if self._disk is not None:
                self._disk.clear()

    def _mint(self) -> tuple[str, float]:
        """One call to createAPIAccessToken, ended within ``timeout`` x OVERALL_TIMEOUT_FACTOR (or
        earlier, by the caller's :func:`network.within` deadline), its answer capped at 64 KiB."""
        settings = self._settings
        refresh_token = settings.token.get_secret_value()
        session = self._session or network.new_session()
        try:
            response = network.request(
                session,
                "POST",
                f"{settings.url}/{CREATE_ACCESS_TOKEN_PATH}",
                timeout=settings.timeout,
                cap=network.SMALL_CAP_BYTES,
                json={"refresh_token": refresh_token, "user_id": settings.user_id},
                verify=settings.verify,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            from airflow_provider_alation.alation.delivery import (
                classify_exception,  # delivery imports this module
            )

            raise TokenError(
                f"could not reach Alation to mint an access token: {type(exc).__name__}",
                classify_exception(exc).problem,
            ) from None
        finally:
            if self._session is None:
                session.close()
        try:
            body = response.json()
        except ValueError:
            body = {}
        status = str(body.get("status", "")).lower() if isinstance(body, dict) else ""
        token = body.get("api_access_token") if isinstance(body, dict) else None
        if response.status_code != 200 or status == "failed" or not token:
            reason = body.get("message") or body.get("detail") if isinstance(body, dict) else None
            if reason:
                reason = redact(str(reason)[:300], (refresh_token, token if isinstance(token, str) else None))
            raise TokenError(
                f"Alation refused to mint an access token from the refresh token (HTTP {response.status_code}"
                f"{', ' + str(reason) if reason else ''}); "
                "check the refresh token (password) and the user id "
                "(login), or create a new refresh token in Alation"
            )
        mask_secret(str(token))
        return str(token), _expiry(body)
