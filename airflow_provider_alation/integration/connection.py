"""The Airflow connection (type ``alation``) mapped onto :class:`AlationSettings`.

``host`` is the tenant URL, ``port`` its port (443 when blank), ``password`` the token, ``login``
the Alation user id (refresh tokens only), ``extra`` the JSON object of optional settings. Only
:func:`load_settings` touches Airflow.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from airflow_provider_alation.settings import (
    DEFAULT_CONN_ID,
    EXTRA_KEYS,
    AlationSettings,
    SettingsError,
    build_settings,
)

#: The connection form (``get_ui_field_behaviour``), also declared in the provider info.
#: Port is shown (not hidden): Airflow 3.3.2's Connections list sends ``port: 0`` for a connection
#: without one, and its test endpoint then answers "Bad Request" (see ``ui_test_button``).
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden_fields": ["schema"],
    "relabeling": {
        "host": "Tenant URL",
        "port": "Port",
        "password": "API token",
        "login": "Alation user id (refresh tokens only)",
        "extra": "Settings (JSON)",
    },
    "placeholders": {
        "host": "https://acme.alationcloud.com",
        "port": "443",
        "password": "API token from Settings > Server Admin > API Access Tokens",
        "login": "numeric user id, only with token type refresh_token",
        "extra": '{"namespace_map": {"pgbouncer.internal:6432": "prod-db.example.com:5432"}, '
        '"dags": {"include": [], "exclude": []}, "opt_in_tag": "alation"}',
    },
}


#: Form labels of the settings (Airflow 3.2+ ``conn-fields``); the rest are derived from the name.
FIELD_LABELS: dict[str, str] = {
    "endpoint": "Endpoint",
    "token_type": "Token type",
    "namespace_map": "Namespace map (JSON)",
    "additional_datasource_connections": "Additional datasource connections (host:port, one per line)",
    "dags": "DAG selection (JSON)",
    "skip_job_types": "Job types never sent (one per line)",
    "opt_in_tag": "Opt-in DAG tag",
    "discover_datasources": "Discover data sources",
    "discovery_ttl": "Discovery cache (seconds)",
    "cache_dir": "Cache directory",
    "timeout": "Timeout (seconds per request)",
    "time_budget": "Time budget (seconds per event)",
    "verify": "Verify TLS",
    "spool_dir": "Outbox directory",
    "outbox_max_events": "Outbox max events",
    "outbox_max_bytes": "Outbox max bytes",
    "drain_max_events": "Outbox events sent after each send",
    "max_event_bytes": "Max event bytes",
    "symlink_tables": "Name tables from symlinks",
    "stream_as_complete": "Forward streaming jobs as COMPLETE",
    "dry_run": "Dry run",
    "allow_http": "Allow plain http://",
}

#: Said in the description of settings whose default is computed where they are read.
_DYNAMIC_DEFAULTS = {
    "cache_dir": "blank: $AIRFLOW_HOME/alation/cache of each process",
    "spool_dir": "blank: $AIRFLOW_HOME/alation/spool of each process",
    "verify": "true: the system's CAs; false: no verification, for testing only",
    "token_type": "blank: api_token",
}

#: Airflow masks the values of keys containing these words (``token_type``!) in what it sends the
#: browser, so a default there would reach the form, and a new connection, as "***".
_MASKED_WORDS = ("token", "password", "passwd", "secret", "api_key", "private_key", "access_key", "proxy")


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return {name: _json_default(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, (tuple, list)):
        return [_json_default(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_default(item) for key, item in value.items()}
    return value


def _field_schema(name: str, field: FieldInfo) -> dict[str, Any]:
    """The JSON Schema of one setting as Airflow's connection form renders it (always nullable:
    a blank field is unset, so the setting keeps its default)."""
    annotation = field.annotation
    origin = typing.get_origin(annotation)
    schema: dict[str, Any]
    if annotation is bool:
        schema = {"type": ["boolean", "null"]}
    elif annotation is int:
        schema = {"type": ["integer", "null"]}
    elif annotation is float:
        schema = {"type": ["number", "null"]}
    elif origin is Literal:
        schema = {"type": ["string", "null"], "enum": list(typing.get_args(annotation))}
    elif origin is tuple:
        schema = {"type": ["array", "null"], "items": {"type": "string"}}
    elif origin is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        schema = {"type": ["object", "null"]}
    elif origin in (typing.Union, types.UnionType):  # verify: true, false or a CA bundle path
        schema = {"type": ["string", "null"]}
    else:
        schema = {"type": ["string", "null"]}
    for constraint in field.metadata:
        if isinstance(constraint, annotated_types.Ge):
            schema["minimum"] = constraint.ge
        elif isinstance(constraint, annotated_types.Le):
            schema["maximum"] = constraint.le
    if any(word in name for word in _MASKED_WORDS):
        pass  # no default: Airflow would send it to the form as "***" (blank keeps the default)
    elif field.default is not PydanticUndefined:
        default = _json_default(field.default)
        schema["default"] = str(default).lower() if name == "verify" else default
    elif name in ("namespace_map", "dags"):
        schema["default"] = _json_default(field.default_factory())  # type: ignore[call-arg,misc]
    return schema


def conn_fields() -> dict[str, dict[str, Any]]:
    """Airflow 3.2+ ``conn-fields`` for every extra key, generated from :class:`AlationSettings`
    (type, default, bounds, description), so that the form cannot drift from what is validated."""
    fields: dict[str, dict[str, Any]] = {}
    for name in EXTRA_KEYS:
        field = AlationSettings.model_fields[name]
        description = field.description or ""
        if name in _DYNAMIC_DEFAULTS:
            description = f"{description} ({_DYNAMIC_DEFAULTS[name]})"
        fields[name] = {
            "label": FIELD_LABELS.get(name, name.replace("_", " ").capitalize()),
            "description": f"{description} [extra key: {name}]",
            "schema": _field_schema(name, field),
        }
    return fields


def _is_blank(value: Any) -> bool:
    """What Airflow's form writes for a field left untouched: null, or an empty or blank string."""
    return value is None or (isinstance(value, str) and not value.strip())


def parse_extra(extra: Any, source: str) -> dict[str, Any]:
    """The connection's extra as a dict; malformed JSON is a :class:`SettingsError`, not an empty dict.

    Keys whose value is blank (``null``, ``""``) are left out: the connection form writes them for
    the fields a user did not fill, which keep their defaults."""
    if extra is None or extra == "":
        return {}
    if isinstance(extra, dict):
        return {key: value for key, value in extra.items() if not _is_blank(value)}
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
    return {key: item for key, item in value.items() if not _is_blank(item)}


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
    settings = build_settings(values, source)
    settings._conn_id = conn_id
    return settings


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
