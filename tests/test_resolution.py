"""Namespace resolution: what each source kind's namespace becomes, with and without discovery.

The emitted namespaces come from OpenLineage's own naming helpers (what Airflow's hooks use) where
one exists; the Alation URIs are ``REFERENCE_SOURCES`` (as Alation's API returns them).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from openlineage.client.naming import dataset as naming

from airflow_provider_alation.lineage.datasources import DataSource, DataSourceIndex, parse_datasource_uri
from airflow_provider_alation.lineage.normalisers import NORMALISERS
from airflow_provider_alation.lineage.resolution import NamespaceResolver
from airflow_provider_alation.lineage.shaping import shape_event
from airflow_provider_alation.testing.catalog import reference_datasources


def reference_index() -> DataSourceIndex:
    items = reference_datasources()
    return DataSourceIndex.build(
        [DataSource.from_api(item, api) for api in ("v1", "v2") for item in items[api]]
    )


@dataclass(frozen=True)
class Case:
    kind: str
    emitted: str
    #: with discovery: (namespace sent, rule, Alation data source title or None)
    discovered: tuple[str, str, str | None]
    #: without discovery: (namespace sent, rule)
    alone: tuple[str, str]


CASES = (
    Case(
        "Postgres",
        naming.Postgres("prod-db.example.com", "5432", "sales_db", "public", "orders").get_namespace(),
        ("postgres://prod-db.example.com:5432", "datasource", "Sales (Postgres)"),
        ("postgres://prod-db.example.com:5432", "unchanged"),
    ),
    Case(
        "Postgres, short host name",
        naming.Postgres("pgprod", "5432", "finance", "public", "ledger").get_namespace(),
        ("postgres://pgprod.corp.example.com:5432", "datasource", "Finance (Postgres)"),
        ("postgres://pgprod:5432", "unchanged"),
    ),
    Case(
        "MySQL",
        naming.MySQL("mysql.example.com", "3306", "shop", "orders").get_namespace(),
        ("mysql://mysql.example.com:3306", "datasource", "Shop (MySQL)"),
        ("mysql://mysql.example.com:3306", "unchanged"),
    ),
    Case(
        "SQL Server (MsSqlHook)",
        "mssql://sql.example.com:1433",
        ("mssql://sql.example.com:1433", "datasource", "DW (SQL Server)"),
        ("mssql://sql.example.com:1433", "unchanged"),
    ),
    Case(
        "Azure Synapse",
        naming.AzureSynapse("synapse-ws.sql.azuresynapse.net", "1433", "dbo", "t").get_namespace(),
        ("sqlserver://synapse-ws.sql.azuresynapse.net:1433", "datasource", "Synapse"),
        ("sqlserver://synapse-ws.sql.azuresynapse.net:1433", "unchanged"),
    ),
    Case(
        "Oracle (thin, service)",
        naming.Oracle("ora.example.com", "1521", "ORCLPDB1", "HR", "EMP").get_namespace(),
        ("oracle://ora.example.com:1521", "datasource", "ERP (Oracle)"),
        ("oracle://ora.example.com:1521", "unchanged"),
    ),
    Case(
        "Oracle RAC (DESCRIPTION, second address)",
        naming.Oracle("rac2.example.com", "1531", "billing", "B", "INVOICE").get_namespace(),
        ("oracle://rac2.example.com:1531", "datasource", "Billing (Oracle RAC)"),
        ("oracle://rac2.example.com:1531", "unchanged"),
    ),
    Case(
        "Redshift (cluster.region)",
        naming.Redshift("analytics", "us-east-1", "5439", "dev", "public", "t").get_namespace(),
        (
            "redshift://analytics.c9xyz1abc.us-east-1.redshift.amazonaws.com:5439",
            "datasource",
            "Analytics (Redshift)",
        ),
        ("redshift://analytics.us-east-1:5439", "unchanged"),
    ),
    Case(
        "Redshift Serverless (workgroup.region)",
        naming.Redshift("wg-etl", "eu-west-1", "5439", "dev", "public", "t").get_namespace(),
        (
            "redshift://wg-etl.123456789012.eu-west-1.redshift-serverless.amazonaws.com:5439",
            "datasource",
            "ETL (Redshift Serverless)",
        ),
        ("redshift://wg-etl.eu-west-1:5439", "unchanged"),
    ),
    Case(
        "Snowflake (org-account)",
        naming.Snowflake("myorg", "myaccount", "ANALYTICS", "PUBLIC", "T").get_namespace(),
        ("snowflake://myorg-myaccount.snowflakecomputing.com:443", "datasource", "Snowflake (org-account)"),
        ("snowflake://myorg-myaccount.snowflakecomputing.com:443", "normaliser"),
    ),
    Case(
        "Snowflake (account locator, legacy AWS region)",
        "snowflake://xy12345.us-east-1.aws",
        ("snowflake://xy12345.us-east-1.snowflakecomputing.com:443", "datasource", "Snowflake (locator)"),
        ("snowflake://xy12345.us-east-1.snowflakecomputing.com:443", "normaliser"),
    ),
    Case(
        "Snowflake (account locator, privatelink)",
        "snowflake://ab67890.eu-central-1.aws",
        (
            "snowflake://ab67890.eu-central-1.privatelink.snowflakecomputing.com:443",
            "datasource",
            "Snowflake (privatelink)",
        ),
        ("snowflake://ab67890.eu-central-1.snowflakecomputing.com:443", "normaliser"),
    ),
    Case(
        "Trino",
        naming.Trino("trino.example.com", "8080", "hive", "sales", "orders").get_namespace(),
        ("trino://trino.example.com:8080", "datasource", "Lakehouse (Trino)"),
        ("trino://trino.example.com:8080", "unchanged"),
    ),
    Case(
        "Databricks (OCF source, no port emitted)",
        "databricks://adb-1234567890123456.7.azuredatabricks.net",
        ("databricks://adb-1234567890123456.7.azuredatabricks.net:443", "datasource", "Databricks SQL"),
        ("databricks://adb-1234567890123456.7.azuredatabricks.net:443", "normaliser"),
    ),
    Case(
        "Teradata (DBS_PORT)",
        naming.Teradata("td.example.com", "1025", "edw", "sales").get_namespace(),
        ("teradata://td.example.com:1025", "datasource", "EDW (Teradata)"),
        ("teradata://td.example.com:1025", "unchanged"),
    ),
    Case(
        "Hive (hive2 URI)",
        naming.Hive("hive.example.com", "10000", "default", "t").get_namespace(),
        ("hive://hive.example.com:10000", "datasource", "Hive"),
        ("hive://hive.example.com:10000", "unchanged"),
    ),
    Case(
        "Athena",
        naming.Athena("us-east-1", "AwsDataCatalog", "db", "t").get_namespace(),
        ("awsathena://athena.us-east-1.amazonaws.com:443", "datasource", "Athena"),
        ("awsathena://athena.us-east-1.amazonaws.com:443", "normaliser"),
    ),
    Case(
        "DB2",
        naming.DB2("db2.example.com", "50000", "SAMPLE", "S", "T").get_namespace(),
        ("db2://db2.example.com:50000", "datasource", "Mainframe (DB2)"),
        ("db2://db2.example.com:50000", "unchanged"),
    ),
    # Impossible: no database host:port in the namespace. The event keeps it, as emitted.
    Case(
        "BigQuery (impossible: no host)",
        naming.BigQuery("acme-analytics", "sales", "orders").get_namespace(),
        ("bigquery", "not_applicable", None),
        ("bigquery", "not_applicable"),
    ),
    Case(
        "S3 (impossible: a bucket, not a database)",
        naming.S3("lake-bucket", "raw/orders.parquet").get_namespace(),
        ("s3://lake-bucket", "not_applicable", None),
        ("s3://lake-bucket", "not_applicable"),
    ),
    Case(
        "GCS (impossible)",
        naming.GCS("lake", "raw/x").get_namespace(),
        ("gs://lake", "not_applicable", None),
        ("gs://lake", "not_applicable"),
    ),
    # Not catalogued in Alation: sent as emitted, with the fix.
    Case(
        "Postgres through a pgbouncer nobody mapped",
        "postgres://pgbouncer.internal:6432",
        ("postgres://pgbouncer.internal:6432", "unchanged", None),
        ("postgres://pgbouncer.internal:6432", "unchanged"),
    ),
)


def test_table_covers_at_least_twelve_source_kinds() -> None:
    kinds = {case.kind.split(" (")[0].split(",")[0] for case in CASES}
    assert len(kinds) >= 12, sorted(kinds)


@pytest.mark.parametrize("case", CASES, ids=[case.kind for case in CASES])
def test_resolution_with_discovery(case: Case) -> None:
    resolution = NamespaceResolver.from_map({}, reference_index()).resolve(case.emitted)
    namespace, rule, title = case.discovered
    assert (resolution.namespace, resolution.rule) == (namespace, rule), resolution
    if title is None:
        assert resolution.datasource is None
    else:
        assert resolution.datasource is not None and resolution.datasource.endswith(title)
        assert resolution.fix == ""


@pytest.mark.parametrize("case", CASES, ids=[case.kind for case in CASES])
def test_resolution_without_discovery(case: Case) -> None:
    resolution = NamespaceResolver.from_map({}).resolve(case.emitted)
    assert (resolution.namespace, resolution.rule) == case.alone, resolution
    assert resolution.datasource is None


def test_unmatched_namespace_names_the_host_port_to_add() -> None:
    resolution = NamespaceResolver.from_map({}, reference_index()).resolve(
        "postgres://pgbouncer.internal:6432"
    )
    assert "pgbouncer.internal:6432" in resolution.fix
    assert "Additional Datasource Connections" in resolution.fix
    assert '"pgbouncer.internal:6432": "<host>:<port>' in resolution.fix


def test_unknown_redshift_cluster_fix_is_the_endpoint_entry() -> None:
    resolution = NamespaceResolver.from_map({}).resolve("redshift://finance.us-west-2:5439")
    assert resolution.rule == "unchanged"
    assert '"finance.us-west-2:5439": "finance.<id>.us-west-2.redshift.amazonaws.com:5439"' in resolution.fix
    assert "discover_datasources" in resolution.fix


def test_not_applicable_has_no_fix() -> None:
    for namespace in ("bigquery", "s3://bucket", "file:///tmp/x"):
        resolution = NamespaceResolver.from_map({}, reference_index()).resolve(namespace)
        assert (resolution.rule, resolution.namespace, resolution.fix) == ("not_applicable", namespace, "")


def test_user_rules_win_and_are_checked_against_alation() -> None:
    index = reference_index()
    resolver = NamespaceResolver.from_map(
        {
            "10.0.0.5:5432": "prod-db.example.com:5432",
            "10.0.0.6:5432": "typo-db.example.com:5432",
            # A rule beats discovery even where discovery would have found something else.
            "redshift://analytics.us-east-1:5439": "redshift://override.example.com:5439",
        },
        index,
    )
    good = resolver.resolve("postgres://10.0.0.5:5432")
    assert (good.namespace, good.rule, good.matched) == ("postgres://prod-db.example.com:5432", "host", True)
    typo = resolver.resolve("postgres://10.0.0.6:5432")
    assert (typo.rule, typo.matched) == ("host", False)
    assert "no Alation data source has typo-db.example.com:5432" in typo.fix
    override = resolver.resolve("redshift://analytics.us-east-1:5439")
    assert (override.namespace, override.rule) == ("redshift://override.example.com:5439", "exact")


def test_fuzzy_matches_refuse_ambiguity() -> None:
    index = DataSourceIndex.build(
        [
            DataSource(
                1,
                "a",
                "postgresql://proddb.eu.example.com:5432/x",
                endpoints=(("proddb.eu.example.com", 5432),),
            ),
            DataSource(
                2,
                "b",
                "postgresql://proddb.us.example.com:5432/x",
                endpoints=(("proddb.us.example.com", 5432),),
            ),
        ]
    )
    resolution = NamespaceResolver.from_map({}, index).resolve("postgres://proddb:5432")
    assert (resolution.rule, resolution.matched) == ("unchanged", False)
    # Another port is another server: never matched.
    single = DataSourceIndex.build([DataSource(1, "a", "", endpoints=(("pgprod.example.com", 5432),))])
    assert not NamespaceResolver.from_map({}, single).resolve("postgres://pgprod:6432").matched


@pytest.mark.parametrize("normaliser", NORMALISERS, ids=[n.before for n in NORMALISERS])
def test_documented_normalisers_do_what_the_docs_say(normaliser) -> None:
    resolution = NamespaceResolver.from_map({}).resolve(normaliser.before)
    assert resolution.namespace == normaliser.after
    assert resolution.rule == "normaliser"


@pytest.mark.parametrize(
    ("uri", "endpoints"),
    [
        ("jdbc:postgresql://PROD-DB.example.com/sales", [("prod-db.example.com", 5432)]),
        (
            "postgresql://h1.example.com:5432,h2.example.com:5433/db",
            [("h1.example.com", 5432), ("h2.example.com", 5433)],
        ),
        ("sqlserver://sql.example.com\\SALES;databaseName=dw", [("sql.example.com", 1433)]),
        ("sqlserver://sql.example.com\\SALES:1500;databaseName=dw", [("sql.example.com", 1500)]),
        ("sqlserver://sql.example.com;databaseName=dw;portNumber=1444", [("sql.example.com", 1444)]),
        ("jdbc:sqlserver://;serverName=sql2.example.com;port=1500", [("sql2.example.com", 1500)]),
        ("oracle:thin:@ora.example.com:1521:ORCL", [("ora.example.com", 1521)]),
        ("jdbc:oracle:thin:@ora.example.com/svc", [("ora.example.com", 1521)]),
        ("oracle:thin:scott/tiger@//ora.example.com:1522/svc", [("ora.example.com", 1522)]),
        ("teradata://td.example.com/DATABASE=dw", [("td.example.com", 1025)]),
        ("teradata://td.example.com/DATABASE=dw,DBS_PORT=1026", [("td.example.com", 1026)]),
        (
            "snowflake://acct.snowflakecomputing.com/?warehouse=W&role=R",
            [("acct.snowflakecomputing.com", 443)],
        ),
        ("mysql://user:secret@mysql.example.com/app?useSSL=true", [("mysql.example.com", 3306)]),
        ("postgresql://[2001:db8::1]:5432/db", [("[2001:db8::1]", 5432)]),
        ("not a uri", []),
        ("", []),
    ],
)
def test_uri_forms(uri: str, endpoints: list[tuple[str, int]]) -> None:
    assert parse_datasource_uri(uri) == endpoints


def test_v1_host_and_port_fields_are_an_extra_way_in() -> None:
    source = DataSource.from_api(
        {
            "id": 3,
            "dbtype": "postgresql",
            "host": "replica.example.com",
            "port": 5433,
            "uri": "postgresql://db.example.com:5432/x",
        },
        "v1",
    )
    assert source.endpoints == (("db.example.com", 5432), ("replica.example.com", 5433))


def test_event_rewritten_consistently_with_discovery() -> None:
    resolver = NamespaceResolver.from_map({}, reference_index())
    source_ns, target_ns = "redshift://analytics.us-east-1:5439", "snowflake://myorg-myaccount"
    event = {
        "eventType": "COMPLETE",
        "inputs": [
            {
                "namespace": source_ns,
                "name": "dev.public.orders",
                "facets": {
                    "dataSource": {"name": source_ns, "uri": source_ns + "/dev"},
                    "symlinks": {"identifiers": [{"namespace": source_ns, "name": "x", "type": "TABLE"}]},
                },
            }
        ],
        "outputs": [
            {
                "namespace": target_ns,
                "name": "ANALYTICS.PUBLIC.ORDERS",
                "facets": {
                    "columnLineage": {
                        "fields": {
                            "id": {
                                "inputFields": [
                                    {"namespace": source_ns, "name": "dev.public.orders", "field": "id"}
                                ]
                            }
                        }
                    }
                },
            }
        ],
    }
    shaped = shape_event(event, resolver.resolve, 1_000_000).event
    redshift = "redshift://analytics.c9xyz1abc.us-east-1.redshift.amazonaws.com:5439"
    snowflake = "snowflake://myorg-myaccount.snowflakecomputing.com:443"
    dataset = shaped["inputs"][0]
    assert dataset["namespace"] == redshift
    assert dataset["facets"]["symlinks"]["identifiers"][0]["namespace"] == redshift
    assert dataset["facets"]["dataSource"]["name"] == redshift
    assert dataset["facets"]["dataSource"]["uri"] == redshift + "/dev"
    output = shaped["outputs"][0]
    assert output["namespace"] == snowflake
    assert output["facets"]["columnLineage"]["fields"]["id"]["inputFields"][0]["namespace"] == redshift


@pytest.mark.parametrize(
    ("namespace", "host", "port"),
    [
        ("postgres://fe80::1", "[fe80::1]", 5432),
        ("postgres://[2001:DB8:0::1]:5433", "[2001:db8::1]", 5433),
        ("oracle://ora.example.com:1521:orcl", "ora.example.com", 1521),
        ("mssql://SQL01.corp\\INST:1433", "sql01.corp", 1433),
        ("postgres://user:secret@db.example.com", "db.example.com", 5432),
        ("postgres://db.example.com:abc", "db.example.com", None),
        ("postgres://db.example.com:99999", "db.example.com", None),
        ("postgres://db.example.com:0", "db.example.com", None),
        ("mysql:loadbalance://db.example.com", "db.example.com", 3306),
        ("postgres://h1:5432,h2:5432", None, None),
    ],
)
def test_odd_namespaces_parse_to_one_host_port_or_none(
    namespace: str, host: str | None, port: int | None
) -> None:
    from airflow_provider_alation.lineage.namespaces import parse_namespace

    parsed = parse_namespace(namespace)
    assert (parsed.host, parsed.port) == (host, port)


def test_invalid_port_is_never_replaced_by_the_default() -> None:
    resolution = NamespaceResolver.from_map({}, reference_index()).resolve(
        "postgres://prod-db.example.com:abc"
    )
    assert not resolution.matched
    assert "has no port" in resolution.fix


def test_sql_server_named_instance_matches_on_both_sides() -> None:
    index = DataSourceIndex.build(
        [
            DataSource.from_api(
                {"id": 1, "dbtype": "sqlserver", "uri": "sqlserver://sql01.corp\\INST;databaseName=x"}, "v1"
            )
        ]
    )
    assert NamespaceResolver.from_map({}, index).resolve("mssql://sql01.corp\\inst:1433").matched


@pytest.mark.parametrize(
    ("uri", "endpoints"),
    [
        ("postgresql://db.example.com:99999/x", []),
        ("postgresql://db.example.com:0/x", []),
        ("postgresql://db.example.com:\uff15\uff14\uff13\uff12/x", []),  # full-width digits
        ("oracle:thin:@tcps://ora.example.com:2484/svc", [("ora.example.com", 2484)]),
        ("oracle:thin:@ldap://ldap.example.com:389/cn=orcl,cn=OracleContext", []),
        ("oracle:thin:@PRODDB", []),
        (
            "mysql://address=(host=h1.example.com)(port=3307),address=(host=h2.example.com)/db",
            [("h1.example.com", 3307), ("h2.example.com", 3306)],
        ),
        ("sqlserver://user:pw@sql.example.com\\INST;databaseName=x", [("sql.example.com", 1433)]),
        ("sqlserver://sql.example.com;portNumber=abc", []),
        ("postgresql://[2001:DB8:0::1]:5432/db", [("[2001:db8::1]", 5432)]),
        (
            "redshift:iam://rs.abc.us-east-1.redshift.amazonaws.com/dev",
            [("rs.abc.us-east-1.redshift.amazonaws.com", 5439)],
        ),
    ],
)
def test_more_uri_forms(uri: str, endpoints: list[tuple[str, int]]) -> None:
    assert parse_datasource_uri(uri) == endpoints


def test_short_host_match_needs_the_same_kind_and_never_localhost() -> None:
    index = DataSourceIndex.build(
        [
            DataSource.from_api(
                {"id": 1, "dbtype": "mysql", "uri": "mysql://reports.corp.example.com:5432/x"}, "v1"
            ),
            DataSource.from_api(
                {"id": 2, "dbtype": "postgresql", "uri": "postgresql://localhost.corp.example.com/x"}, "v1"
            ),
        ]
    )
    resolver = NamespaceResolver.from_map({}, index)
    assert not resolver.resolve("postgres://reports:5432").matched  # a MySQL server, not a Postgres one
    assert not resolver.resolve("postgres://localhost:5432").matched


def test_snowflake_china_host_is_kept() -> None:
    resolution = NamespaceResolver.from_map({}).resolve("snowflake://acct.cn-north-1.snowflakecomputing.cn")
    assert resolution.namespace == "snowflake://acct.cn-north-1.snowflakecomputing.cn:443"


def test_expression_with_alternation_is_tried_for_every_scheme() -> None:
    resolver = NamespaceResolver.from_map(
        {"re:^postgres://a:5432$|^mysql://(b):3306$": "mysql://b.example.com:3306"}
    )
    assert resolver.resolve("mysql://b:3306").namespace == "mysql://b.example.com:3306"


def test_expression_value_may_be_a_bare_host_port() -> None:
    resolver = NamespaceResolver.from_map({"re:^postgres://([a-z]+)\\.tunnel:(\\d+)$": "\\1.example.com:\\2"})
    assert resolver.resolve("postgres://sales.tunnel:6543").namespace == "postgres://sales.example.com:6543"
