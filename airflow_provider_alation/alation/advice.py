"""Words shared by every place that tells a user what to fix (the Test button, ``check``): pure."""

from __future__ import annotations

from urllib.parse import urlsplit

TOKEN_FIX = (
    "create a new API token in Alation (Settings > Server Admin > API Access Tokens) and paste it into "
    "the connection's API token (password) field"
)
REFRESH_TOKEN_FIX = (
    "check the refresh token (password) and the Alation user id (login) it belongs to, or create a new "
    "refresh token in Alation"
)


def host_port(url: str) -> str:
    """``host:port`` of a URL, with the scheme's default port when the URL names none."""
    parts = urlsplit(url)
    host = parts.hostname or url
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port or (80 if parts.scheme == 'http' else 443)}"
