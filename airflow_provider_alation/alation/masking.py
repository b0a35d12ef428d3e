"""Keeping tokens out of logs and files: Airflow's secrets masker, and redaction of Alation's answers.

Pure, but for :func:`mask_secret`, which registers a secret with Airflow's masker when Airflow is
loaded (outside Airflow, importing it would cost seconds of the first event's time budget for
nothing). :func:`redact` is applied to any answer text kept in an outcome, a dead letter's reason,
a log line or an exception: a server (or proxy) that echoes the request's headers must not write
the token to disk.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable

REDACTED = "***"
#: Secrets shorter than this are not searched for (they would redact ordinary words).
MIN_SECRET_LENGTH = 6

_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)(?!\*\*\*)[A-Za-z0-9._~+/=\-]{6,}")
_KEY_VALUE = re.compile(
    r"(?i)(\b(?:authorization|proxy-authorization|token|api_access_token|access_token|refresh_token"
    r"|api_token|x-api-key)\b[\"']?\s*[:=]\s*[\"']?)(?!\*\*\*|bearer\b|basic\b)([^\s\"',;}\]]+)"
)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` without the given secrets nor ``Bearer <x>``/``TOKEN: <x>``-looking values."""
    if not text:
        return text
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_LENGTH and secret in text:
            text = text.replace(secret, REDACTED)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _KEY_VALUE.sub(lambda m: f"{m.group(1)}{REDACTED}", text)


def _airflow_masker() -> Callable[[str], None] | None:
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:
        try:
            from airflow.utils.log.secrets_masker import mask_secret  # type: ignore[no-redef]
        except ImportError:
            return None
    return mask_secret  # type: ignore[no-any-return]


def mask_secret(secret: str | None) -> None:
    """Register ``secret`` with Airflow's secrets masker when running inside Airflow."""
    if not secret or "airflow" not in sys.modules:
        return
    masker = _airflow_masker()
    if masker is not None:
        masker(secret)
