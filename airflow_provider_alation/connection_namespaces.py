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
from urllib.parse import quote, urlsplit

#: scheme and default port per connection type (the providers' get_openlineage_database_info).
HOST_PORT_TYPES: dict[str, tuple[str, int | None]] = {
    "postgres": ("postgres", 5432),
    "mysql": ("mysql", 3306),
    "mssql": ("mssql", 1433),
    "oracle": ("oracle", 1521),
    "trino": ("trino", 8080),
    "presto": ("presto", 8080),
    "teradata": ("teradata", 1025),
    "vertica": ("vertica", 5433),
    "exasol": ("exasol", 8563),
    "hiveserver2": ("hive", 10000),
    "db2": ("db2", 50000),
    "databricks": ("databricks", None),
}
#: Types whose datasets carry no database host (Alation cannot link them; shown as not applicable).
HOSTLESS_TYPES: dict[str, str] = {
    "google_cloud_platform": "bigquery",
    "gcpbigquery": "bigquery",
    "aws": "awsathena",
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


def _authority(host: str, port: int | None) -> str:
    # DbApiHook.get_openlineage_authority_part: urlparse(connection.get_uri()).hostname -> lowercased
    hostname = urlsplit(f"//{quote(host, safe=':[]@')}").hostname or host
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


def _redshift(conn: ConnectionFields) -> str:
    host = (conn.host or "").lower()
    labels = host.split(".") if host.endswith(".amazonaws.com") else []
    # <cluster>.<id>.<region>.redshift[-serverless].amazonaws.com, or the extra (the AWS hook's region)
    cluster = conn.option("cluster_identifier") or (labels[0] if labels else "")
    region = conn.option("region") or conn.option("region_name") or (labels[2] if len(labels) > 4 else "")
    if not cluster or not region:
        raise ValueError(
            "the Redshift connection names no cluster and region (host '<cluster>.<id>.<region>."
            "redshift.amazonaws.com', or extra 'cluster_identifier' and 'region')"
        )
    return f"redshift://{cluster}.{region}:{conn.port or 5439}"


SPECIAL_TYPES: dict[str, Callable[[ConnectionFields], str]] = {
    "snowflake": _snowflake,
    "redshift": _redshift,
}


def is_database_type(conn_type: str) -> bool:
    return conn_type in HOST_PORT_TYPES or conn_type in SPECIAL_TYPES or conn_type in HOSTLESS_TYPES


def builtin_namespace(conn: ConnectionFields) -> str:
    """The namespace the provider of ``conn.conn_type`` emits (raises ValueError when it cannot be known)."""
    kind = conn.conn_type
    if kind == "postgres" and conn.option("redshift"):
        return _redshift(conn)
    if kind in SPECIAL_TYPES:
        return SPECIAL_TYPES[kind](conn)
    if kind in HOSTLESS_TYPES:
        return HOSTLESS_TYPES[kind]
    if kind not in HOST_PORT_TYPES:
        raise ValueError(f"no OpenLineage namespace is known for connection type {kind!r}")
    scheme, default_port = HOST_PORT_TYPES[kind]
    if not conn.host:
        raise ValueError("the connection has no host")
    return f"{scheme}://{_authority(conn.host.strip(), conn.port or default_port)}"


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


def emitted_namespace(connection: Any) -> tuple[str, str] | None:
    """(namespace, how it was found) for an Airflow ``Connection``; None when it is no database.

    The hook's own ``get_openlineage_database_info`` when its provider is installed; otherwise the
    built-in rules for the connection type (raises ValueError when those cannot tell).
    """
    fields = fields_of(connection)
    if fields.conn_type == "alation":
        return None
    try:
        with warnings.catch_warnings():  # Airflow 3 deprecates the core hook lookup it still uses
            warnings.simplefilter("ignore")
            hook = connection.get_hook()
        info = hook.get_openlineage_database_info(connection)
    except Exception:  # noqa: BLE001 - provider not installed, or a hook without OpenLineage support
        info = None
    if info is not None:
        from airflow.providers.openlineage.sqlparser import SQLParser

        return SQLParser.create_namespace(info), f"{type(hook).__name__}.get_openlineage_database_info"
    if not is_database_type(fields.conn_type):
        return None
    return builtin_namespace(fields), f"built-in rules for connection type {fields.conn_type!r}"
