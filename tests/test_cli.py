"""``airflow-alation resolve`` and ``datasources``, run as a user runs them, against the stand-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_alation.testing.fake_alation import FakeAlation
from tests.support.airflow_home import AirflowHome, connection_json

CLI = str(Path(sys.executable).with_name("airflow-alation"))


def run_cli(
    fake: FakeAlation,
    token: str,
    home: Path,
    *args: str,
    extra: dict[str, Any] | None = None,
    columns: int = 400,
) -> subprocess.CompletedProcess[str]:
    settings = {"discover_datasources": True, "verify": str(fake.cert_path), "cache_dir": str(home / "cache")}
    settings.update(extra or {})
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW_CONN_ALATION_DEFAULT=connection_json(fake.url, token, settings),
        COLUMNS=str(columns),
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


# --- narrow terminals ---------------------------------------------------------------------------


def assert_fits(out: str, columns: int, *whole: str) -> None:
    """No line is wider than the terminal, and each value a user copies is on one line, unbroken."""
    lines = out.splitlines()
    too_wide = [line for line in lines if len(line) > columns]
    assert not too_wide, "\n".join(too_wide)
    for value in whole:
        assert any(value in line for line in lines), f"{value!r} is split or missing in:\n{out}"


NARROW_NAMESPACES = (
    "postgres://10.0.0.5:5432",
    "redshift://analytics.us-east-1:5439",
    "snowflake://myorg-myaccount",
    "postgres://pgbouncer.internal:6432",
    "databricks://adb-1234567890123456.7.azuredatabricks.net",
)


@pytest.mark.parametrize("columns", [80, 100, 120])
def test_resolve_fits_a_narrow_terminal(catalogued, token, tmp_path, columns) -> None:
    done = run_cli(
        catalogued,
        token,
        tmp_path,
        "resolve",
        *NARROW_NAMESPACES,
        extra={"namespace_map": {"10.0.0.5:5432": "prod-db.example.com:5432"}},
        columns=columns,
    )
    assert done.returncode == 1, done.stderr  # pgbouncer matches no data source
    assert_fits(
        done.stdout,
        columns,
        *NARROW_NAMESPACES,
        "postgres://prod-db.example.com:5432",
        "redshift://analytics.c9xyz1abc.us-east-1.redshift.amazonaws.com:5439",
        "snowflake://myorg-myaccount.snowflakecomputing.com:443",
        "databricks://adb-1234567890123456.7.azuredatabricks.net:443",
        "add pgbouncer.internal:6432 to",
        "#10 Snowflake (org-account)",
    )
    # The fix is prose wrapped at spaces, not a word per line.
    fix_lines = done.stdout[done.stdout.index("add pgbouncer.internal:6432") :].splitlines()[:3]
    assert all(len(line.split()) > 3 for line in fix_lines), fix_lines


def test_datasources_fit_a_narrow_terminal(catalogued, token, tmp_path) -> None:
    done = run_cli(catalogued, token, tmp_path, "datasources", columns=80)
    assert done.returncode == 0, done.stderr
    assert_fits(
        done.stdout,
        80,
        "rac1.example.com:1521",
        "rac2.example.com:1531",
        "analytics.c9xyz1abc.us-east-1.redshift.amazonaws.com:5439",
        "prod-db.example.com:5432",
    )


# --- airflow alation ... (the provider info's "cli" key) ------------------------------------------


def airflow_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OPENLINEAGE"))}
    return {**env, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "COLUMNS": "100"}


def test_airflow_alation_commands_and_version(tmp_path) -> None:
    airflow = str(Path(sys.executable).with_name("airflow"))
    env = airflow_env(tmp_path / "home")
    version = metadata.version("airflow-provider-alation")

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180, check=False)

    helped = run(airflow, "alation", "--help")
    assert helped.returncode == 0, helped.stderr
    for command in ("check", "resolve", "datasources", "replay", "version"):
        assert command in helped.stdout
    listed = run(airflow, "--help")
    assert "alation" in listed.stdout
    checked = run(airflow, "alation", "check", "--only", "versions", "--json")
    assert checked.returncode == 0, checked.stderr
    body = json.loads(checked.stdout[checked.stdout.index("{") :])
    assert {line["check"] for line in body["lines"]} >= {"apache-airflow", "openlineage-python"}
    resolve_help = run(airflow, "alation", "resolve", "--help")
    assert "--offline" in resolve_help.stdout and "NAMESPACE" in resolve_help.stdout
    assert run(airflow, "alation", "version").stdout.strip() == f"airflow-provider-alation {version}"
    assert run(CLI, "--version").stdout.strip() == f"airflow-alation {version}"
    assert run(CLI, "version").stdout.strip() == f"airflow-provider-alation {version}"
    # Bad usage and bad settings exit 2 under both names.
    assert run(airflow, "alation", "resolve").returncode == 2
    bad = {**env, "AIRFLOW_CONN_ALATION_DEFAULT": json.dumps({"conn_type": "alation", "host": "nope"})}
    failed = subprocess.run(
        [airflow, "alation", "resolve", "--offline", "postgres://x:5432"],
        env=bad,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr
