"""Built-in normalisers: namespaces that can never match Alation as OpenLineage emits them.

Pure: no I/O, no Airflow. Each normaliser takes a parsed namespace and returns the namespace whose
host:port is what Alation stores for that kind of source, or None when it has nothing to say.
They run after the user's ``namespace_map`` rules and before discovered data sources.
:data:`NORMALISERS` documents each with an example (the README's table is tested against it).
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_alation.lineage.namespaces import Namespace

#: Schemes whose namespaces name a bucket, a file system, a project, a stream or a database file
#: (DuckDB, SQLite: ``duckdb://duckdb.db`` names a file, not a host), not a database server:
#: Alation links datasets to data sources by a database's host:port, so these can never resolve.
NO_HOST_SCHEMES = frozenset(
    {
        "bigquery",
        "s3",
        "s3a",
        "s3n",
        "gs",
        "gcs",
        "abfs",
        "abfss",
        "wasb",
        "wasbs",
        "adl",
        "file",
        "dbfs",
        "hdfs",
        "arn:aws:glue",
        "kafka",
        "pubsub",
        "duckdb",
        "sqlite",
    }
)

#: AWS regions whose legacy Snowflake account URL has no ``.aws`` segment
#: (``xy12345.us-east-1.snowflakecomputing.com``); US West (Oregon) has no region at all.
SNOWFLAKE_AWS_REGIONS_WITHOUT_CLOUD = frozenset(
    {"us-east-1", "eu-west-1", "eu-central-1", "ap-southeast-1", "ap-southeast-2"}
)
SNOWFLAKE_PORT = 443
#: The host suffixes of Snowflake account URLs (commercial and China regions).
SNOWFLAKE_SUFFIXES = (".snowflakecomputing.com", ".snowflakecomputing.cn")


def snowflake_host(account: str) -> str:
    """Snowflake's account URL host for an OpenLineage account spelling.

    ``org-account`` -> ``org-account.snowflakecomputing.com``;
    ``xy12345.us-west-1.aws`` / ``xy12345.us-west-2.aws`` -> ``xy12345.snowflakecomputing.com``;
    ``xy12345.us-east-1.aws`` -> ``xy12345.us-east-1.snowflakecomputing.com``;
    ``xy12345.east-us-2.azure`` -> ``xy12345.east-us-2.azure.snowflakecomputing.com``.
    """
    account = account.lower().replace("_", "-")
    if account.endswith(SNOWFLAKE_SUFFIXES):
        return account
    labels = account.split(".")
    if len(labels) == 3 and labels[2] == "aws":
        if labels[1] in ("us-west-1", "us-west-2"):
            labels = labels[:1]
        elif labels[1] in SNOWFLAKE_AWS_REGIONS_WITHOUT_CLOUD:
            labels = labels[:2]
    return ".".join(labels) + ".snowflakecomputing.com"


def _snowflake(ns: Namespace) -> Namespace | None:
    if ns.scheme != "snowflake" or not ns.host:
        return None
    return Namespace("snowflake", snowflake_host(ns.host), ns.port or SNOWFLAKE_PORT, ns.rest)


@dataclass(frozen=True)
class Normaliser:
    """Documentation of one built-in normaliser; the tests resolve ``before`` and expect ``after``."""

    name: str
    before: str
    after: str
    note: str = ""


NORMALISERS: tuple[Normaliser, ...] = (
    Normaliser(
        "snowflake",
        "snowflake://myorg-myaccount",
        "snowflake://myorg-myaccount.snowflakecomputing.com:443",
        "organisation-account form",
    ),
    Normaliser(
        "snowflake",
        "snowflake://xy12345.us-east-2.aws",
        "snowflake://xy12345.us-east-2.aws.snowflakecomputing.com:443",
        "account locator form; legacy AWS regions drop '.aws' (us-east-1, eu-west-1, ...) "
        "and US West (Oregon) drops the region",
    ),
    Normaliser(
        "canonical form",
        "databricks://adb-1234567890123456.7.azuredatabricks.net",
        "databricks://adb-1234567890123456.7.azuredatabricks.net:443",
        "a namespace without a port gets its scheme's default: Databricks 443, Athena 443, "
        "Postgres 5432, MySQL 3306, SQL Server 1433, Oracle 1521, Redshift 5439, Trino 8080, "
        "Teradata 1025, ...",
    ),
    Normaliser(
        "canonical form",
        "trino://Trino.Example.com",
        "trino://trino.example.com:8080",
        "the host is lowercased; the scheme is kept as emitted (Alation compares host and port only)",
    ),
)


def normalise(ns: Namespace) -> tuple[Namespace, str] | None:
    """The normalised namespace and the normaliser's name, or None when no normaliser applies."""
    if ns.host is None or ns.scheme in NO_HOST_SCHEMES:
        return None
    snowflake = _snowflake(ns)
    if snowflake is not None:
        return snowflake, "snowflake"
    return None


def is_unresolvable(ns: Namespace) -> bool:
    """True for namespaces Alation can never link to a data source (no database host:port)."""
    return ns.host is None or ns.scheme in NO_HOST_SCHEMES
