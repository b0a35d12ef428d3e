"""The namespace OpenLineage emits per database connection type (the built-in rules)."""

from __future__ import annotations

import pytest

from airflow_provider_alation.integration.connection_namespaces import (
    ConnectionFields,
    Emitted,
    builtin_namespace,
    emitted_namespace,
    fix_snowflake_account,
)


@pytest.mark.parametrize(
    ("conn_type", "host", "port", "extra", "namespace"),
    [
        ("postgres", "Prod-DB.example.com", None, {}, "postgres://prod-db.example.com:5432"),
        ("postgres", "10.0.0.5", 6432, {}, "postgres://10.0.0.5:6432"),
        ("mysql", "mysql.example.com", None, {}, "mysql://mysql.example.com:3306"),
        ("mssql", "sql.example.com", None, {}, "mssql://sql.example.com:1433"),
        ("oracle", "ora.example.com", 1522, {}, "oracle://ora.example.com:1522"),
        ("trino", "trino.example.com", None, {}, "trino://trino.example.com:8080"),
        ("teradata", "td.example.com", None, {}, "teradata://td.example.com:1025"),
        ("databricks", "adb-1.7.azuredatabricks.net", None, {}, "databricks://adb-1.7.azuredatabricks.net"),
        (
            "databricks",
            "https://ADB-1.7.azuredatabricks.net/",
            None,
            {},
            "databricks://adb-1.7.azuredatabricks.net",
        ),
        (
            "databricks",
            None,
            None,
            {"host": "https://adb-2.azuredatabricks.net"},
            "databricks://adb-2.azuredatabricks.net",
        ),
        (
            "redshift",
            "analytics.c9xyz1abc.us-east-1.redshift.amazonaws.com",
            None,
            {},
            "redshift://analytics.us-east-1:5439",
        ),
        # RedshiftSQLHook: cluster_identifier only with IAM; otherwise <cluster>.<region> from the
        # endpoint host, or the host itself (an IP, a private link).
        ("redshift", "10.1.1.1", 5439, {"cluster_identifier": "dw"}, "redshift://10.1.1.1:5439"),
        (
            "redshift",
            "10.1.1.1",
            5439,
            {"iam": True, "cluster_identifier": "dw", "region": "eu-west-1"},
            "redshift://dw.eu-west-1:5439",
        ),
        (
            "redshift",
            "wg.123456789012.eu-west-1.redshift-serverless.amazonaws.com",
            None,
            {},
            "redshift://wg.eu-west-1:5439",
        ),
        (
            "postgres",
            "analytics.c9xyz1abc.us-east-1.redshift.amazonaws.com",
            5439,
            {"redshift": True},
            "redshift://analytics.us-east-1:5439",
        ),
        ("snowflake", None, None, {"account": "MyOrg-MyAccount"}, "snowflake://myorg-myaccount"),
        ("snowflake", None, None, {"account": "xy12345"}, "snowflake://xy12345.us-west-1.aws"),
        (
            "snowflake",
            None,
            None,
            {"account": "xy12345", "region": "us-east-1"},
            "snowflake://xy12345.us-east-1.aws",
        ),
        (
            "snowflake",
            None,
            None,
            {"extra__snowflake__account": "ab67890.east-us-2.azure"},
            "snowflake://ab67890.east-us-2.azure",
        ),
        (
            "postgres",
            "10.1.1.1",
            None,
            {"redshift": True, "cluster-identifier": "dw", "region": "eu-west-1"},
            "redshift://dw.eu-west-1:5439",
        ),
    ],
)
def test_builtin_namespace(conn_type, host, port, extra, namespace) -> None:
    assert builtin_namespace(ConnectionFields("c", conn_type, host, port, extra)) == namespace


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (ConnectionFields("c", "postgres"), "no host"),
        (ConnectionFields("c", "snowflake"), "no account"),
        (ConnectionFields("c", "postgres", "10.1.1.1", None, {"redshift": True}), "AWS connection"),
        (ConnectionFields("c", "redshift"), "no host"),
        (ConnectionFields("c", "http", "example.com"), "no OpenLineage namespace is known"),
    ],
)
def test_builtin_namespace_says_what_is_missing(fields, message) -> None:
    with pytest.raises(ValueError, match=message):
        builtin_namespace(fields)


@pytest.mark.parametrize(
    ("account", "fixed"),
    [
        ("xy12345", "xy12345.us-west-1.aws"),
        ("xy12345.us-east-2", "xy12345.us-east-2.aws"),
        ("xy12345.europe-west3.gcp.europe-west3.gcp", "xy12345.europe-west3.gcp"),
        ("myorg-myaccount", "myorg-myaccount"),
        ("xy12345_aws_us_east_1", "xy12345.us-east-1.aws"),
    ],
)
def test_snowflake_account_spelling_follows_the_snowflake_provider(account, fixed) -> None:
    assert fix_snowflake_account(account) == fixed


def test_installed_hook_names_the_namespace_itself() -> None:
    from airflow.models.connection import Connection

    pg = Connection(conn_id="pg", uri="postgres://u:p@DB.example.com:6543/sales")
    assert emitted_namespace(pg) == Emitted(
        "postgres://db.example.com:6543", "PostgresHook.get_openlineage_database_info"
    )
    # The Postgres hook needs the Amazon provider for Redshift (not installed here): its failure is
    # reported, and the built-in rules say what a worker with the Amazon provider would emit.
    redshift = Connection(
        conn_id="rs",
        conn_type="postgres",
        host="analytics.c9xyz1abc.us-east-1.redshift.amazonaws.com",
        port=5439,
        extra='{"redshift": true}',
    )
    found = emitted_namespace(redshift)
    assert found.namespace == "redshift://analytics.us-east-1:5439"
    assert found.hook_error.startswith("PostgresHook.get_openlineage_database_info failed")
    http = Connection(conn_id="web", uri="http://example.com")
    assert emitted_namespace(http) is None
    alation = Connection(conn_id="a", conn_type="alation", host="https://acme.alationcloud.com")
    assert emitted_namespace(alation) is None
