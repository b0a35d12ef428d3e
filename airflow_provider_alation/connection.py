"""The Airflow connection (type ``alation``) mapped onto :class:`AlationSettings`.

``host`` is the tenant URL, ``password`` the token, ``login`` the Alation user id (refresh tokens
only), ``extra`` the JSON object of optional settings. Only :func:`load_settings` touches Airflow.
"""

from __future__ import annotations

import json
from typing import Any

from airflow_provider_alation.settings import (
    DEFAULT_CONN_ID,
    AlationSettings,
    SettingsError,
    build_settings,
)

#: The connection form (``get_ui_field_behaviour``), also declared in the provider info.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden_fields": ["schema", "port"],
    "relabeling": {
        "host": "Tenant URL",
        "password": "API token",
        "login": "Alation user id (refresh tokens only)",
        "extra": "Settings (JSON)",
    },
    "placeholders": {
        "host": "https://acme.alationcloud.com",
        "password": "API token from Settings > Server Admin > API Access Tokens",
        "login": 'numeric user id, only with "token_type": "refresh_token"',
        "extra": '{"namespace_map": {"pgbouncer.internal:6432": "prod-db.example.com:5432"}, '
        '"dags": {"include": [], "exclude": []}, "opt_in_tag": "alation"}',
    },
}


def parse_extra(extra: Any, source: str) -> dict[str, Any]:
    """The connection's extra as a dict; malformed JSON is a :class:`SettingsError`, not an empty dict."""
    if extra is None or extra == "":
        return {}
    if isinstance(extra, dict):
        return dict(extra)
    try:
        value = json.loads(extra)
    except (TypeError, ValueError) as exc:
        raise SettingsError(
            [
                f"extra: not valid JSON ({exc}); write a JSON object such as "
                '{"namespace_map": {}, "dags": {"include": ["*"]}}'
            ],
            source,
        ) from None
    if not isinstance(value, dict):
        raise SettingsError([f"extra: must be a JSON object, got {type(value).__name__}"], source)
    return value


def settings_from_fields(
    *,
    host: str | None,
    password: str | None,
    login: str | None = None,
    port: int | None = None,
    schema: str | None = None,
    extra: Any = None,
    conn_id: str = DEFAULT_CONN_ID,
) -> AlationSettings:
    """Settings from a connection's fields (pure: used by the hook, the transport and the CLI)."""
    source = f"Airflow connection {conn_id!r}"
    values = parse_extra(extra, source)
    clash = sorted({"url", "token", "user_id"}.intersection(values))
    if clash:
        raise SettingsError(
            [
                f"extra.{key}: set this in the connection's "
                f"{ {'url': 'host', 'token': 'password', 'user_id': 'login'}[key] } field, not in extra"
                for key in clash
            ],
            source,
        )
    url = (host or "").strip()
    if url and schema and "://" not in url:
        url = f"{schema}://{url}"
    if url and port and "://" in url and url.count(":") == 1:
        url = f"{url.rstrip('/')}:{port}"
    elif url and port and "://" not in url and ":" not in url:
        url = f"{url}:{port}"
    values["url"] = url
    values["token"] = password or ""
    if login not in (None, ""):
        values["user_id"] = login
    return build_settings(values, source)


def _base_hook() -> Any:
    try:
        from airflow.sdk import BaseHook  # Airflow 3
    except ImportError:  # Airflow 2.10
        from airflow.hooks.base import BaseHook
    return BaseHook


def _is_not_found(exc: Exception) -> bool:
    return (
        "isn't defined" in str(exc)
        or "not found" in str(exc).lower()
        or type(exc).__name__ in ("AirflowNotFoundException", "AirflowRuntimeError")
    )


def get_connection(conn_id: str) -> Any:
    """The Airflow connection, wherever Airflow keeps it; None when it does not exist.

    In a task (Airflow 3) only the Task SDK may read connections; in a command-line process or a
    scheduler the Task SDK sees secrets backends and environment variables but not the metadata
    database, so the core lookup (which includes it) is tried next.
    """
    try:
        return _base_hook().get_connection(conn_id)
    except Exception as exc:
        if not _is_not_found(exc):
            raise
    try:
        from airflow.models.connection import Connection
    except ImportError:  # pragma: no cover - Airflow always has it
        return None
    try:
        return Connection.get_connection_from_secrets(conn_id)
    except Exception as exc:
        if _is_not_found(exc) or "database" in str(exc).lower() or type(exc).__name__ == "RuntimeError":
            return None
        raise


def missing_connection_fix(conn_id: str) -> str:
    return (
        f"create it with conn type 'alation' (Admin > Connections) or set AIRFLOW_CONN_{conn_id.upper()} "
        "to its JSON"
    )


def load_settings(conn_id: str = DEFAULT_CONN_ID) -> AlationSettings:
    """Read the Airflow connection and validate it (raises :class:`SettingsError`)."""
    conn = get_connection(conn_id)
    if conn is None:
        raise SettingsError(
            [f"connection {conn_id!r} does not exist; {missing_connection_fix(conn_id)}"],
            f"Airflow connection {conn_id!r}",
        )
    return settings_from_connection(conn, conn_id)


def settings_from_connection(conn: Any, conn_id: str) -> AlationSettings:
    """Settings from an Airflow ``Connection`` object (raises :class:`SettingsError`)."""
    return settings_from_fields(
        host=conn.host,
        password=conn.password,
        login=conn.login,
        port=conn.port,
        schema=conn.schema,
        extra=conn.extra,
        conn_id=conn_id,
    )
