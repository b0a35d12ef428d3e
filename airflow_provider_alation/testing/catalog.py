"""Realistic Alation data-source records for the stand-in, the tests, the demo and the benchmark.

:data:`REFERENCE_SOURCES` pairs each kind of source with a URI as Alation stores it (the table
test resolves the namespaces Airflow's hooks emit against them); :func:`synthetic_datasources`
makes thousands of distinct ones, shaped like ``/integration/v1/datasource/`` items (and, for
OCF connectors, ``/integration/v2/datasource/`` items without host/port fields).
"""

from __future__ import annotations

import random
from typing import Any

#: (dbtype, title, uri as Alation's API returns it: without ``jdbc:``)
REFERENCE_SOURCES: tuple[tuple[str, str, str], ...] = (
    ("postgresql", "Sales (Postgres)", "postgresql://prod-db.example.com:5432/sales_db"),
    ("postgresql", "Finance (Postgres)", "postgresql://pgprod.corp.example.com:5432/finance"),
    ("mysql", "Shop (MySQL)", "mysql://mysql.example.com:3306/shop"),
    ("sqlserver", "DW (SQL Server)", "sqlserver://sql.example.com:1433;databaseName=dw;encrypt=true"),
    ("sqlserver", "Synapse", "sqlserver://synapse-ws.sql.azuresynapse.net:1433;database=pool1"),
    ("oracle", "ERP (Oracle)", "oracle:thin:@//ora.example.com:1521/ORCLPDB1"),
    (
        "oracle",
        "Billing (Oracle RAC)",
        "oracle:thin:@(DESCRIPTION=(ADDRESS_LIST=(ADDRESS=(PROTOCOL=TCP)(HOST=rac1.example.com)"
        "(PORT=1521))(ADDRESS=(PROTOCOL=TCP)(HOST=rac2.example.com)(PORT=1531)))"
        "(CONNECT_DATA=(SERVICE_NAME=billing)))",
    ),
    (
        "redshift",
        "Analytics (Redshift)",
        "redshift://analytics.c9xyz1abc.us-east-1.redshift.amazonaws.com:5439/dev",
    ),
    (
        "redshift",
        "ETL (Redshift Serverless)",
        "redshift://wg-etl.123456789012.eu-west-1.redshift-serverless.amazonaws.com:5439/dev",
    ),
    (
        "snowflake",
        "Snowflake (org-account)",
        "snowflake://myorg-myaccount.snowflakecomputing.com:443/?warehouse=WH&db=ANALYTICS",
    ),
    (
        "snowflake",
        "Snowflake (locator)",
        "snowflake://xy12345.us-east-1.snowflakecomputing.com/?warehouse=WH",
    ),
    (
        "snowflake",
        "Snowflake (privatelink)",
        "snowflake://ab67890.eu-central-1.privatelink.snowflakecomputing.com:443/?db=RAW",
    ),
    ("trino", "Lakehouse (Trino)", "trino://trino.example.com:8080/hive"),
    (
        "databricks",
        "Databricks SQL",
        "databricks://adb-1234567890123456.7.azuredatabricks.net:443/default;transportMode=http;ssl=1;"
        "httpPath=/sql/1.0/warehouses/abc123",
    ),
    ("teradata", "EDW (Teradata)", "teradata://td.example.com/DBS_PORT=1025,DATABASE=edw"),
    ("hive", "Hive", "hive2://hive.example.com:10000/default"),
    (
        "awsathena",
        "Athena",
        "awsathena://athena.us-east-1.amazonaws.com:443;S3OutputLocation=s3://athena-out/",
    ),
    ("db2", "Mainframe (DB2)", "db2://db2.example.com:50000/SAMPLE"),
    (
        "bigquery",
        "BigQuery",
        "bigquery://https://www.googleapis.com/bigquery/v2:443/acme-analytics;OAuthType=0",
    ),
)


def reference_datasources() -> dict[str, list[dict[str, Any]]]:
    """:data:`REFERENCE_SOURCES` as API items: native sources in v1, Databricks as an OCF source."""
    v1, v2 = [], []
    for number, (dbtype, title, uri) in enumerate(REFERENCE_SOURCES, start=1):
        if dbtype == "databricks":
            v2.append({"id": 100 + number, "title": title, "uri": uri, "connector_id": 7})
        else:
            v1.append({"id": number, "dbtype": dbtype, "title": title, "uri": uri})
    return {"v1": v1, "v2": v2}


_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("postgresql", "postgresql://pg-{n}.db.example.com:5432/db{n}"),
    ("mysql", "mysql://mysql-{n}.db.example.com:3306/app{n}"),
    ("sqlserver", "sqlserver://mssql-{n}.db.example.com:1433;databaseName=dw{n}"),
    ("oracle", "oracle:thin:@//ora-{n}.db.example.com:1521/SVC{n}"),
    ("redshift", "redshift://rs-{n}.c{n:06d}x.us-east-1.redshift.amazonaws.com:5439/dev"),
    ("snowflake", "snowflake://org{n}-acct{n}.snowflakecomputing.com:443/?warehouse=WH"),
    ("teradata", "teradata://td-{n}.db.example.com/DBS_PORT=1025,DATABASE=d{n}"),
    ("trino", "trino://trino-{n}.db.example.com:8080/hive"),
)


def synthetic_datasources(count: int, *, ocf_share: float = 0.1, seed: int = 7) -> dict[str, list[dict]]:
    """``count`` distinct data sources of eight kinds, about ``ocf_share`` of them v2 (OCF) items."""
    rng = random.Random(seed)
    v1: list[dict[str, Any]] = []
    v2: list[dict[str, Any]] = []
    for n in range(count):
        dbtype, template = _TEMPLATES[n % len(_TEMPLATES)]
        uri = template.format(n=n)
        title = f"{dbtype} source {n}"
        if rng.random() < ocf_share:
            v2.append({"id": 100_000 + n, "title": title, "uri": uri, "connector_id": 3})
        else:
            v1.append({"id": n + 1, "dbtype": dbtype, "title": title, "uri": uri, "deleted": False})
    return {"v1": v1, "v2": v2}


def synthetic_namespaces(count: int) -> list[str]:
    """Namespaces as the OpenLineage provider emits them for :func:`synthetic_datasources`."""
    kinds = (
        lambda n: f"postgres://pg-{n}.db.example.com:5432",
        lambda n: f"mysql://mysql-{n}.db.example.com:3306",
        lambda n: f"mssql://mssql-{n}.db.example.com:1433",
        lambda n: f"oracle://ora-{n}.db.example.com:1521",
        lambda n: f"redshift://rs-{n}.us-east-1:5439",
        lambda n: f"snowflake://org{n}-acct{n}",
        lambda n: f"teradata://td-{n}.db.example.com:1025",
        lambda n: f"trino://trino-{n}.db.example.com:8080",
    )
    return [kinds[n % len(kinds)](n) for n in range(count)]
