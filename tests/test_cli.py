"""``airflow-alation resolve`` and ``datasources``, run as a user runs them, against the stand-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from airflow_provider_alation.testing.fake_alation import FakeAlation
from tests.support.airflow_home import AirflowHome, connection_json

CLI = str(Path(sys.executable).with_name("airflow-alation"))


def run_cli(
    fake: FakeAlation, token: str, home: Path, *args: str, extra: dict[str, Any] | None = None
) -> subprocess.CompletedProcess[str]:
    settings = {"discover_datasources": True, "verify": str(fake.cert_path), "cache_dir": str(home / "cache")}
    settings.update(extra or {})
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW_CONN_ALATION_DEFAULT=connection_json(fake.url, token, settings),
        COLUMNS="400",
    )
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=180, check=False)


def test_resolve_table_names_rule_match_and_fix(catalogued, token, tmp_path) -> None:
    done = run_cli(
        catalogued,
        token,
        tmp_path,
        "resolve",
        "postgres://10.0.0.5:5432",
        "redshift://analytics.us-east-1:5439",
        "snowflake://myorg-myaccount",
        "postgres://pgbouncer.internal:6432",
        "bigquery",
        extra={"namespace_map": {"10.0.0.5:5432": "prod-db.example.com:5432"}},
    )
    assert done.returncode == 1, done.stderr  # pgbouncer matches no data source
    out = done.stdout
    assert "19 data sources read from Alation just now" in out
    for expected in (
        "postgres://prod-db.example.com:5432",
        "#1 Sales (Postgres)",
        "redshift://analytics.c9xyz1abc.us-east-1.redshift.amazonaws.com:5439",
        "redshift cluster",
        "#10 Snowflake (org-account)",
        "no match",
        "add pgbouncer.internal:6432 to the 'Additional Datasource Connections' field",
        "not applicable",
    ):
        assert expected in out, expected
    assert token not in out + done.stderr


def test_resolve_json_and_trying_a_rule_with_map(catalogued, token, tmp_path) -> None:
    done = run_cli(
        catalogued,
        token,
        tmp_path,
        "resolve",
        "--json",
        "--map",
        '{"pgbouncer.internal:6432": "prod-db.example.com:5432"}',
        "postgres://pgbouncer.internal:6432",
        "mysql://mysql.example.com:3306",
    )
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout[done.stdout.index("{") :])
    rows = {row["namespace"]: row for row in body["namespaces"]}
    assert rows["postgres://pgbouncer.internal:6432"]["sent_as"] == "postgres://prod-db.example.com:5432"
    assert rows["postgres://pgbouncer.internal:6432"]["status"] == "matched"
    assert rows["mysql://mysql.example.com:3306"]["datasource"] == "#3 Shop (MySQL)"


def test_resolve_offline_reads_nothing_and_says_so(catalogued, token, tmp_path) -> None:
    done = run_cli(catalogued, token, tmp_path, "resolve", "--offline", "snowflake://myorg-myaccount")
    assert done.returncode == 0, done.stderr
    assert "not read (--offline)" in done.stdout
    assert "snowflake://myorg-myaccount.snowflakecomputing.com:443" in done.stdout
    assert "not checked" in done.stdout
    assert catalogued.api_requests() == []


def test_datasources_lists_host_ports_then_uses_the_cache(catalogued, token, tmp_path) -> None:
    first = run_cli(catalogued, token, tmp_path, "datasources", "--json")
    assert first.returncode == 0, first.stderr
    body = json.loads(first.stdout[first.stdout.index("{") :])
    assert body["state"] == "refreshed" and len(body["datasources"]) == 19
    by_title = {item["title"]: item for item in body["datasources"]}
    assert by_title["Billing (Oracle RAC)"]["endpoints"] == ["rac1.example.com:1521", "rac2.example.com:1531"]
    assert by_title["Databricks SQL"]["api"] == "v2"
    requests = len(catalogued.api_requests())
    second = run_cli(catalogued, token, tmp_path, "datasources", "--match", "oracle")
    assert second.returncode == 0, second.stderr
    assert "from the cache" in second.stdout and "ora.example.com:1521" in second.stdout
    assert "mysql.example.com" not in second.stdout
    assert len(catalogued.api_requests()) == requests  # served from the cache
    third = run_cli(catalogued, token, tmp_path, "datasources", "--refresh", "--json")
    assert json.loads(third.stdout[third.stdout.index("{") :])["state"] == "refreshed"
    assert len(catalogued.api_requests()) == 2 * requests


def test_datasources_unreachable_api_exits_1_with_reason(catalogued, token, tmp_path) -> None:
    catalogued.api_down = True
    done = run_cli(catalogued, token, tmp_path, "datasources", extra={"timeout": 1, "time_budget": 2})
    assert done.returncode == 1
    assert "no data sources: HTTP 503" in done.stdout


def test_bad_settings_exit_2_with_the_field_and_no_traceback(catalogued, token, tmp_path) -> None:
    done = run_cli(catalogued, token, tmp_path, "resolve", "postgres://x:5432", extra={"discovery_ttl": -5})
    assert done.returncode == 2
    assert "extra.discovery_ttl" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_reads_a_connection_stored_in_the_airflow_database(
    airflow_home: AirflowHome, catalogued, token, tmp_path
) -> None:
    extra = json.dumps(
        {"discover_datasources": True, "verify": str(catalogued.cert_path), "cache_dir": str(tmp_path)}
    )
    added = airflow_home.run(
        "connections",
        "add",
        "alation_cli_test",
        "--conn-type",
        "alation",
        "--conn-host",
        catalogued.url,
        "--conn-password",
        token,
        "--conn-extra",
        extra,
        env={},
    )
    assert added.returncode == 0, added.stderr
    env = {**airflow_home.base_env(), "COLUMNS": "400"}
    done = subprocess.run(
        [CLI, "resolve", "--conn-id", "alation_cli_test", "trino://trino.example.com:8080"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "#13 Lakehouse (Trino)" in done.stdout
