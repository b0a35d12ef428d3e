"""The dataset namespace the OpenLineage provider emits for an Airflow database connection.

The SQL operators name their datasets ``SQLParser.create_namespace(hook.get_openlineage_database_info
(connection))``. When the connection's provider is installed, :func:`emitted_namespace` asks that
hook, so the answer is the provider's own. Otherwise :func:`builtin_namespace` applies the same
rules, written down per connection type from the providers' code (pure: no Airflow import), so a
check run on a machine without, say, the Snowflake provider still says what a worker with it emits.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

#: scheme and default port per connection type whose provider's hook emits ``scheme://host:port``
#: (``get_openlineage_database_info``); Databricks emits the workspace host without a port.
HOST_PORT_TYPES: dict[str, tuple[str, int | None]] = {
    "postgres": ("postgres", 5432),
    "mysql": ("mysql", 3306),
    "mssql": ("mssql", 1433),
    "oracle": ("oracle", 1521),
    "trino": ("trino", 8080),
    "teradata": ("teradata", 1025),
    "databricks": ("databricks", None),
}
#: Hooks with OpenLineage support that ``Connection.get_hook()`` does not return for the type.
SQL_HOOKS: dict[str, tuple[str, str]] = {
    "databricks": (
        "airflow.providers.databricks.hooks.databricks_sql.DatabricksSqlHook",
        "databricks_conn_id",
    ),
}


@dataclass(frozen=True)
class ConnectionFields:
    """The parts of an Airflow connection the namespace depends on (no secrets)."""

    conn_id: str
    conn_type: str
    host: str | None = None
    port: int | None = None
    extra: Mapping[str, Any] | None = None

    def option(self, name: str) -> Any:
        extra = self.extra or {}
        return extra.get(name) or extra.get(f"extra__{self.conn_type}__{name}")


def _hostname(host: str) -> str:
    """The host name as ``urlparse(connection.get_uri()).hostname`` gives it (lowercase, no scheme/path)."""
    text = host.strip()
    if "://" not in text:
        text = "//" + text
    return urlsplit(text).hostname or host.strip().lower()


def _authority(host: str, port: int | None) -> str:
    hostname = _hostname(host)
    return f"{hostname}:{port}" if port else hostname


def fix_snowflake_account(name: str) -> str:
    """The Snowflake provider's ``fix_account_name``: ``locator.region.cloud``, or ``org-account`` as is."""
    if not any(ch in name for ch in "-_"):
        return f"{name}.us-west-1.aws"
    if "." in name:
        parts = name.split(".")
        if len(parts) == 2:
            return f"{parts[0]}.{parts[1]}.aws"
        account, region, cloud, *_ = parts
        return f"{account}.{region}.{cloud}"
    cloud = next((c for c in ("aws", "gcp", "azure") if c in name), "")
    if cloud:
        account, _, rest = name.partition(cloud)
        region = rest.strip("-_.").replace("_", "-")
        return f"{account.strip('-_.')}.{region}.{cloud}" if region else name
    return name


def _snowflake(conn: ConnectionFields) -> str:
    account = str(conn.option("account") or "").strip()
    if not account:
        raise ValueError("the Snowflake connection has no account (extra 'account')")
    region = str(conn.option("region") or "").strip()
    if region and region not in account:
        account = f"{account}.{region}"
    return f"snowflake://{fix_snowflake_account(account.lower())}"


def _aws_region(conn: ConnectionFields, host: str) -> str:
    """The region the hooks read from the AWS connection; here the extra's, or the endpoint host's."""
    labels = host.split(".")
    from_host = labels[2] if host.endswith(".amazonaws.com") and len(labels) >= 6 else ""
    region = conn.option("region") or conn.option("region_name") or from_host
    if not region:
        raise ValueError(
            'the region comes from the AWS connection (aws_conn_id); add "region" to this connection\'s '
            "extra so the check can tell the namespace"
        )
    return str(region)


def _redshift(conn: ConnectionFields) -> str:
    """``RedshiftSQLHook._get_openlineage_redshift_authority_part``."""
    host = _hostname(conn.host or "")
    port = conn.port or 5439
    extra = conn.extra or {}
    if extra.get("iam") and extra.get("cluster_identifier"):
        return f"redshift://{extra['cluster_identifier']}.{_aws_region(conn, host)}:{port}"
    if not host:
        raise ValueError("the Redshift connection has no host")
    labels = host.split(".")
    identifier = f"{labels[0]}.{labels[2]}" if host.endswith("amazonaws.com") and len(labels) == 6 else host
    return f"redshift://{identifier}:{port}"


def _postgres_redshift(conn: ConnectionFields) -> str:
    """``PostgresHook._get_openlineage_redshift_authority_part``: a postgres connection with redshift."""
    host = _hostname(conn.host or "")
    cluster = (conn.extra or {}).get("cluster-identifier") or (host.split(".")[0] if host else "")
    if not cluster:
        raise ValueError('the connection has no host and no "cluster-identifier" in its extra')
    return f"redshift://{cluster}.{_aws_region(conn, host)}:{conn.port or 5439}"


def _databricks(conn: ConnectionFields) -> str:
    host = str(conn.option("host") or conn.host or "")
    if not host:
        raise ValueError("the Databricks connection has no host")
    return f"databricks://{_hostname(host)}"


SPECIAL_TYPES: dict[str, Callable[[ConnectionFields], str]] = {
    "snowflake": _snowflake,
    "redshift": _redshift,
    "databricks": _databricks,
}


def is_database_type(conn_type: str) -> bool:
    return conn_type in HOST_PORT_TYPES or conn_type in SPECIAL_TYPES


def builtin_namespace(conn: ConnectionFields) -> str:
    """The namespace the provider of ``conn.conn_type`` emits (raises ValueError when it cannot be known)."""
    kind = conn.conn_type
    if kind == "postgres" and conn.option("redshift"):
        return _postgres_redshift(conn)
    if kind in SPECIAL_TYPES:
        return SPECIAL_TYPES[kind](conn)
    if kind not in HOST_PORT_TYPES:
        raise ValueError(f"no OpenLineage namespace is known for connection type {kind!r}")
    scheme, default_port = HOST_PORT_TYPES[kind]
    if not conn.host:
        raise ValueError("the connection has no host")
    return f"{scheme}://{_authority(conn.host, conn.port or default_port)}"


def fields_of(connection: Any) -> ConnectionFields:
    """:class:`ConnectionFields` of an Airflow ``Connection``."""
    extra = connection.extra_dejson  # Airflow logs a malformed extra and returns {}
    return ConnectionFields(
        conn_id=connection.conn_id,
        conn_type=(connection.conn_type or "").lower(),
        host=connection.host,
        port=connection.port,
        extra=extra if isinstance(extra, dict) else {},
    )


@dataclass(frozen=True)
class Emitted:
    """The namespace, how it was found, and why the hook's own answer could not be had (if so)."""

    namespace: str
    how: str
    hook_error: str = ""


def _sql_hook(connection: Any) -> Any:
    special = SQL_HOOKS.get((connection.conn_type or "").lower())
    if special is not None:
        from airflow.utils.module_loading import import_string

        path, conn_param = special
        return import_string(path)(**{conn_param: connection.conn_id})
    with warnings.catch_warnings():  # Airflow 3 deprecates the core hook lookup it still uses
        warnings.simplefilter("ignore")
        return connection.get_hook()


def emitted_namespace(connection: Any) -> Emitted | None:
    """What OpenLineage emits for an Airflow ``Connection``; None when it is no database.

    The hook's own ``get_openlineage_database_info`` when its provider is installed; otherwise the
    built-in rules for the connection type (raises ValueError when those cannot tell). A hook that
    has the method but fails here is reported in ``hook_error``: on a worker the SQL extractor would
    fail the same way and the task would send no datasets.
    """
    fields = fields_of(connection)
    if fields.conn_type == "alation":
        return None
    hook_error = ""
    try:
        hook = _sql_hook(connection)
    except Exception:  # noqa: BLE001 - the provider is not installed here: the built-in rules answer
        hook = None
    method = getattr(hook, "get_openlineage_database_info", None)
    if method is not None:
        try:
            info = method(connection)
        except Exception as exc:  # noqa: BLE001 - reported on the line, never raised
            info, hook_error = (
                None,
                f"{type(hook).__name__}.get_openlineage_database_info failed: {type(exc).__name__}",
            )
        if info is not None:
            from airflow.providers.openlineage.sqlparser import SQLParser

            return Emitted(
                SQLParser.create_namespace(info), f"{type(hook).__name__}.get_openlineage_database_info"
            )
    if not is_database_type(fields.conn_type):
        if hook_error:
            raise ValueError(hook_error)
        return None
    return Emitted(
        builtin_namespace(fields), f"built-in rules for connection type {fields.conn_type!r}", hook_error
    )
