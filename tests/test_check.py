"""``airflow-alation check``, the preflight DAG and the Test button, against a real Airflow home
(several database connections) and the HTTPS stand-in serving the reference data sources."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_alation.commands.check import (
    MIGRATE_HINT,
    NO_CONVERTER,
    NO_PROVIDER,
    NOT_A_DATASET,
    AssetVerdict,
    CheckLine,
    asset_lines,
    dag_lines,
    discovery_fix,
    emission_lines,
    execution_timeout_lines,
    namespace_line,
    outbox_lines,
    split_instruction,
    tenant_lines,
    version_line,
)
from airflow_provider_alation.integration.configuration import TRANSPORT_LINE, TRANSPORT_PATH
from airflow_provider_alation.lineage.resolution import NamespaceResolver
from airflow_provider_alation.settings import build_settings
from airflow_provider_alation.testing.catalog import reference_datasources
from airflow_provider_alation.testing.fake_alation import FakeAlation
from tests.support.airflow_home import AirflowHome, connection_json, dag_run_succeeded
from tests.support.airflow_home import api_server as start_api_server
from tests.support.network import refused_port

CLI = str(Path(sys.executable).with_name("airflow-alation"))

DB_PASSWORD = "db-pw-7f3a9c2e41"
#: Database connections as users write them; each matches a reference data source.
GOOD_DATABASES = {
    "AIRFLOW_CONN_PG_SALES": f"postgres://etl:{DB_PASSWORD}@prod-db.example.com:5432/sales_db",
    "AIRFLOW_CONN_MYSQL_SHOP": f"mysql://etl:{DB_PASSWORD}@mysql.example.com/shop",
    "AIRFLOW_CONN_TRINO_LAKE": "trino://etl@trino.example.com:8080/hive",
    "AIRFLOW_CONN_SF_ORG": json.dumps(
        {"conn_type": "snowflake", "login": "etl", "extra": {"account": "myorg-myaccount"}}
    ),
    "AIRFLOW_CONN_SF_LOCATOR": json.dumps(
        {"conn_type": "snowflake", "login": "etl", "extra": {"account": "xy12345", "region": "us-east-1"}}
    ),
    "AIRFLOW_CONN_REDSHIFT_DW": json.dumps(
        {
            "conn_type": "redshift",
            "host": "analytics.c9xyz1abc.us-east-1.redshift.amazonaws.com",
            "port": 5439,
        }
    ),
}


def alation_env(fake: FakeAlation, token: str, tmp_path: Path, **extra: Any) -> dict[str, str]:
    settings = {
        "discover_datasources": True,
        "verify": str(fake.cert_path),
        "cache_dir": str(tmp_path / "cache"),
        "spool_dir": str(tmp_path / "spool"),
        **extra,
    }
    return {"AIRFLOW_CONN_ALATION_DEFAULT": connection_json(fake.url, token, settings), **GOOD_DATABASES}


def run_check(
    airflow_home: AirflowHome, env: dict[str, str], *args: str, json_output: bool = True
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, str]]]:
    full_env = {**airflow_home.base_env(), "COLUMNS": "300", **env}
    argv = [CLI, "check", *args, *(["--json"] if json_output else [])]
    done = subprocess.run(argv, env=full_env, capture_output=True, text=True, timeout=180, check=False)
    lines = (
        json.loads(done.stdout[done.stdout.index("{") :])["lines"]
        if json_output and "{" in done.stdout
        else []
    )
    return done, lines


def find(lines: list[dict[str, str]], section: str, check: str) -> dict[str, str]:
    hits = [line for line in lines if line["section"] == section and line["check"] == check]
    assert len(hits) == 1, f"no single {section}/{check} line in {json.dumps(lines, indent=1)}"
    return hits[0]


def failing(lines: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(line["section"], line["check"]) for line in lines if line["status"] == "fail"]


def no_secrets(done: subprocess.CompletedProcess[str], *secrets: str) -> None:
    for secret in secrets:
        assert secret not in done.stdout + done.stderr


# --- the command, end to end ------------------------------------------------------------------


def test_good_setup_passes_every_line(airflow_home, catalogued, token, tmp_path) -> None:
    done, lines = run_check(airflow_home, alation_env(catalogued, token, tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert failing(lines) == []
    for package in ("apache-airflow", "apache-airflow-providers-openlineage", "openlineage-python"):
        assert find(lines, "versions", package)["status"] == "pass"
    assert find(lines, "openlineage", "transport")["status"] == "pass"
    assert find(lines, "connection", "connection alation_default settings")["status"] == "pass"
    token_line = find(lines, "tenant", "token accepted")
    assert token_line["status"] == "pass" and token_line["message"].startswith("OK: Alation at ")
    assert find(lines, "tenant", "tenant reachable")["status"] == "pass"
    assert find(lines, "datasources", "discovery")["message"].startswith("19 data sources")
    opted = find(lines, "dags", "opted-in DAGs")
    assert opted["status"] == "pass" and "alation_quickstart" in opted["message"]
    assert "alation_preflight" not in opted["message"]
    # The Postgres provider is installed: the quickstart's postgres:// assets become datasets.
    assets = find(lines, "dags", "assets")
    assert (
        assets["status"] == "pass" and "become OpenLineage datasets here (postgres://)" in assets["message"]
    )
    expected = {
        "pg_sales": "Sales (Postgres)",
        "mysql_shop": "Shop (MySQL)",
        "trino_lake": "Lakehouse (Trino)",
        "sf_org": "Snowflake (org-account)",
        "sf_locator": "Snowflake (locator)",
        "redshift_dw": "Analytics (Redshift)",
    }
    for conn_id, title in expected.items():
        line = find(lines, "namespaces", conn_id)
        assert line["status"] == "pass" and title in line["message"], line
    # The Postgres provider is installed: its hook names the namespace; the others use the built-in rules.
    assert "PostgresHook.get_openlineage_database_info" in find(lines, "namespaces", "pg_sales")["message"]
    assert (
        "emitted as snowflake://xy12345.us-east-1.aws" in find(lines, "namespaces", "sf_locator")["message"]
    )
    assert (
        "emitted as redshift://analytics.us-east-1:5439"
        in find(lines, "namespaces", "redshift_dw")["message"]
    )
    assert find(lines, "outbox", "waiting events")["status"] == "pass"
    # The only event sent is the probe: a START without datasets, which Alation makes no lineage of.
    assert [(e["eventType"], e["job"]["name"], e["inputs"]) for e in catalogued.events] == [
        ("START", "connection_test", [])
    ]
    assert done.stdout.startswith("{"), done.stdout[:300]
    no_secrets(done, token, DB_PASSWORD)


def test_openlineage_not_pointed_at_the_transport(airflow_home, catalogued, token, tmp_path) -> None:
    env = alation_env(catalogued, token, tmp_path)
    env["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps({"type": "http", "url": catalogued.url})
    done, _lines = run_check(airflow_home, env, json_output=False)
    assert done.returncode == 1
    assert (
        "FAIL" in done.stdout
        and "OpenLineage is not sending to Alation (its transport is HttpTransport)" in done.stdout
    )
    assert TRANSPORT_LINE in done.stdout.replace("\n", "")
    assert "Traceback" not in done.stdout + done.stderr
    # The instruction is said once: in the fix.
    _, lines = run_check(airflow_home, env, "--only", "openlineage")
    line = find(lines, "openlineage", "transport")
    assert TRANSPORT_LINE not in line["message"] and line["fix"].count(TRANSPORT_LINE) == 1


@pytest.mark.parametrize(
    ("config", "status", "words"),
    [
        (
            {
                "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
                    {"type": "composite", "transports": [{"type": "console"}, {"type": TRANSPORT_PATH}]}
                )
            },
            "pass",
            "AlationTransport (inside the CompositeTransport)",
        ),
        (
            {"AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "alation"})},
            "fail",
            "cannot build its client",
        ),
        ({"AIRFLOW__OPENLINEAGE__DISABLED": "true"}, "fail", "OpenLineage is disabled"),
        ("config_path", "pass", "OpenLineage transport is AlationTransport."),
    ],
)
def test_openlineage_line_reads_the_client_the_provider_builds(
    airflow_home, catalogued, token, tmp_path, config, status, words
) -> None:
    env = alation_env(catalogued, token, tmp_path)
    if config == "config_path":  # the provider reads config_path before transport
        path = tmp_path / "openlineage.yml"
        path.write_text(f"transport:\n  type: {TRANSPORT_PATH}\n")
        config = {
            "AIRFLOW__OPENLINEAGE__CONFIG_PATH": str(path),
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "console"}),
        }
    done, lines = run_check(airflow_home, {**env, **config}, "--only", "openlineage")
    line = find(lines, "openlineage", "transport")
    assert line["status"] == status and words in line["message"], line
    assert done.returncode == (0 if status == "pass" else 1)


def test_malformed_connection_variable_is_not_called_missing(airflow_home, token) -> None:
    value = f"alation://:{token}@https://acme.alationcloud.com"
    done, lines = run_check(airflow_home, {"AIRFLOW_CONN_ALATION_DEFAULT": value}, "--only", "connection")
    line = find(lines, "connection", "connection alation_default")
    assert line["status"] == "fail" and "cannot read it as a connection" in line["message"]
    assert '"conn_type": "alation"' in line["fix"]
    no_secrets(done, token)


def test_declared_additional_datasource_connections_count_as_matched(
    airflow_home, catalogued, token, tmp_path
) -> None:
    env = alation_env(catalogued, token, tmp_path, additional_datasource_connections=["10.20.30.40:5432"])
    env["AIRFLOW_CONN_PG_BY_IP"] = f"postgres://etl:{DB_PASSWORD}@10.20.30.40:5432/sales_db"
    done, lines = run_check(
        airflow_home, env, "--only", "namespaces", "--connection", "pg_by_ip", "--connection", "pg_gone"
    )
    line = find(lines, "namespaces", "pg_by_ip")
    assert (
        line["status"] == "pass" and "10.20.30.40:5432 (additional_datasource_connections)" in line["message"]
    )
    # A connection named on the command line that does not exist fails.
    assert failing(lines) == [("namespaces", "pg_gone")] and done.returncode == 1


def test_missing_connection(airflow_home, catalogued, token, tmp_path) -> None:
    done, lines = run_check(
        airflow_home, alation_env(catalogued, token, tmp_path), "--conn-id", "alation_prod"
    )
    assert done.returncode == 1
    line = find(lines, "connection", "connection alation_prod")
    assert line["status"] == "fail" and "does not exist" in line["message"]
    assert "AIRFLOW_CONN_ALATION_PROD" in line["fix"]
    assert failing(lines) == [("connection", "connection alation_prod")]
    assert find(lines, "tenant", "tenant")["status"] == "info"


def test_bad_extra(airflow_home, catalogued, token, tmp_path) -> None:
    env = alation_env(catalogued, token, tmp_path, timout=3, time_budget=-1)
    done, lines = run_check(airflow_home, env)
    assert done.returncode == 1
    line = find(lines, "connection", "connection alation_default settings")
    assert line["status"] == "fail"
    assert "extra.timout: unknown key. Did you mean 'timeout'?" in line["message"]
    assert "extra.time_budget" in line["message"]
    assert "Traceback" not in done.stderr
    no_secrets(done, token)


def test_rejected_token_gives_the_test_buttons_verdict(airflow_home, catalogued, token, tmp_path) -> None:
    env = alation_env(catalogued, "revoked-" + token, tmp_path)
    done, lines = run_check(airflow_home, env)
    assert done.returncode == 1
    line = find(lines, "tenant", "token accepted")
    assert line["status"] == "fail" and line["message"].startswith("Token rejected: HTTP 401")
    assert "API Access Tokens" in line["fix"]
    assert find(lines, "tenant", "tenant reachable")["status"] == "pass"
    # The Test button (hook.test_connection) with the same connection says exactly the same.
    button = subprocess.run(
        [
            sys.executable,
            "-c",
            "from airflow_provider_alation.hooks.alation import AlationHook;"
            "import json; print(json.dumps(AlationHook().test_connection()))",
        ],
        env={**airflow_home.base_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # the same verdict: the button's toast is the check line's message and fix in one text
    assert json.loads(button.stdout.strip().splitlines()[-1]) == [
        False,
        f"{line['message']} Fix: {line['fix']}.",
    ]
    no_secrets(done, token)


def test_unreachable_tenant(airflow_home, token, tmp_path) -> None:
    port = refused_port()
    settings = {"cache_dir": str(tmp_path / "cache"), "spool_dir": str(tmp_path / "spool"), "timeout": 2}
    env = {"AIRFLOW_CONN_ALATION_DEFAULT": connection_json(f"https://127.0.0.1:{port}", token, settings)}
    done, lines = run_check(airflow_home, env)
    assert done.returncode == 1
    line = find(lines, "tenant", "tenant reachable")
    assert line["status"] == "fail" and line["message"].startswith("Network unreachable")
    assert f"127.0.0.1:{port}" in line["fix"] and "token" not in line["fix"].lower()
    assert find(lines, "tenant", "token accepted")["status"] == "info"
    discovery = find(lines, "datasources", "discovery")
    assert discovery["status"] == "warn" and "discover_datasources" in discovery["fix"]


def test_database_connections_matching_no_data_source(airflow_home, catalogued, token, tmp_path) -> None:
    env = alation_env(catalogued, token, tmp_path)
    env["AIRFLOW_CONN_PG_BY_IP"] = f"postgres://etl:{DB_PASSWORD}@10.20.30.40:5432/sales_db"
    env["AIRFLOW_CONN_SF_NEW"] = json.dumps(
        {"conn_type": "snowflake", "login": "etl", "extra": {"account": "myorg-newaccount"}}
    )
    done, lines = run_check(airflow_home, env, "--only", "namespaces")
    assert done.returncode == 1
    assert sorted(failing(lines)) == [("namespaces", "pg_by_ip"), ("namespaces", "sf_new")]
    pg = find(lines, "namespaces", "pg_by_ip")
    assert "emitted as postgres://10.20.30.40:5432" in pg["message"]
    assert "matches no Alation data source" in pg["message"]
    assert pg["fix"].startswith("add 10.20.30.40:5432 to the 'Additional Datasource Connections' field")
    sf = find(lines, "namespaces", "sf_new")
    assert "sent as snowflake://myorg-newaccount.snowflakecomputing.com:443" in sf["message"]
    assert sf["fix"].startswith(
        "add myorg-newaccount.snowflakecomputing.com:443 to the 'Additional Datasource"
    )
    assert find(lines, "namespaces", "pg_sales")["status"] == "pass"
    no_secrets(done, token, DB_PASSWORD)


def test_without_discovery_namespaces_are_warnings_not_failures(
    airflow_home, catalogued, token, tmp_path
) -> None:
    env = alation_env(catalogued, token, tmp_path, discover_datasources=False)
    done, lines = run_check(airflow_home, env, "--only", "namespaces", "--only", "datasources")
    assert done.returncode == 0, done.stdout
    assert find(lines, "datasources", "discovery")["status"] == "warn"
    snowflake = find(lines, "namespaces", "sf_org")
    assert snowflake["status"] == "warn" and "not checked against Alation" in snowflake["message"]
    assert catalogued.api_requests() == []


def test_connection_stored_in_the_metadata_database_is_checked(
    airflow_home, catalogued, token, tmp_path
) -> None:
    added = airflow_home.run(
        "connections",
        "add",
        "mssql_dw_db",
        "--conn-uri",
        f"mssql://etl:{DB_PASSWORD}@sql.example.com:1433/dw",
        env={},
    )
    assert added.returncode == 0, added.stderr
    _done, lines = run_check(airflow_home, alation_env(catalogued, token, tmp_path), "--only", "namespaces")
    line = find(lines, "namespaces", "mssql_dw_db")
    assert line["status"] == "pass" and "DW (SQL Server)" in line["message"], line
    _named, lines = run_check(
        airflow_home,
        alation_env(catalogued, token, tmp_path),
        "--only",
        "namespaces",
        "--connection",
        "pg_sales",
    )
    assert [line["check"] for line in lines] == ["pg_sales"]


# --- assets no installed provider converts ------------------------------------------------------

ASSET_DAGS = f"""
from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset

START = pendulum.datetime(2024, 1, 1, tz="UTC")

with DAG(dag_id="orders_to_lake", start_date=START, schedule=None, tags=["alation"]):
    EmptyOperator(
        task_id="export",
        inlets=[
            Asset("mysql://etl:{DB_PASSWORD}@mysql.example.com:3306/shop/orders"),
            Asset("postgres://10.0.0.5:5432/sales/public/orders"),
        ],
        outlets=[Asset("s3://lake/raw/orders.parquet"), Asset(name="orders_exported")],
    )

with DAG(dag_id="untagged_s3", start_date=START, schedule=None, tags=["example"]):
    EmptyOperator(task_id="copy", outlets=[Asset("s3://lake/raw/untagged.parquet")])
"""


def test_assets_no_installed_provider_converts_are_named_with_the_package(
    airflow_home, tmp_path, token
) -> None:
    """The quickstart's failure mode (0 events, the reason only at DEBUG) with schemes whose
    providers this environment lacks: mysql:// and s3://, next to a postgres:// that converts."""
    from importlib.util import find_spec

    for module in ("airflow.providers.mysql", "airflow.providers.amazon"):
        if find_spec(module) is not None:
            pytest.skip(f"{module} is installed here: its assets convert")
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "asset_dags.py").write_text(ASSET_DAGS)
    (dags / "broken.py").write_text("from airflow.sdk import DAG\n\nraise RuntimeError('no DAG here')\n")
    settings = {"cache_dir": str(tmp_path / "cache"), "spool_dir": str(tmp_path / "spool")}
    env = {
        "AIRFLOW_CONN_ALATION_DEFAULT": connection_json("https://acme.alationcloud.com", token, settings),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
    }
    done, lines = run_check(airflow_home, env, "--only", "dags")
    assert done.returncode == 0, done.stdout + done.stderr
    line = find(lines, "dags", "assets of orders_to_lake")
    assert line["status"] == "warn", line
    assert line["message"].startswith("2 of its 4 assets become no OpenLineage dataset here")
    assert (
        "mysql://mysql.example.com:3306/shop/orders (no installed provider converts mysql://)"
        in (line["message"])
    )
    assert "s3://lake/raw/orders.parquet (no installed provider converts s3://)" in line["message"]
    assert "postgres://" not in line["message"]
    assert line["fix"] == (
        "pip install apache-airflow-providers-mysql apache-airflow-providers-amazon on every scheduler "
        "and worker, then restart them"
    )
    airflow_only = find(lines, "dags", "assets without a dataset URI")
    assert airflow_only["status"] == "info" and "orders_exported (orders_to_lake)" in airflow_only["message"]
    # Untagged DAGs are not Alation's business; a DAG file that fails to import stays its own line.
    assert not [x for x in lines if "untagged_s3" in x["message"] + x["check"]]
    assert find(lines, "dags", "DAG import errors")["status"] == "warn"
    assert "Traceback" not in done.stdout
    no_secrets(done, token, DB_PASSWORD)


# --- the preflight DAG ------------------------------------------------------------------------


def test_preflight_dag_passes_on_a_good_setup(airflow_home, catalogued, token, tmp_path) -> None:
    result = airflow_home.dags_test("alation_preflight", env=alation_env(catalogued, token, tmp_path))
    assert dag_run_succeeded(result, "alation_preflight"), result.stdout[-3000:] + result.stderr[-3000:]
    assert set(task_states(airflow_home, "alation_preflight").values()) == {"success"}
    assert "PASS  tenant / token accepted: OK: Alation at " in result.stdout
    assert "PASS  namespaces / sf_org" in result.stdout
    no_secrets(result, token, DB_PASSWORD)


def test_preflight_dag_fails_loudly_on_a_rejected_token(airflow_home, catalogued, token, tmp_path) -> None:
    env = alation_env(catalogued, "revoked-" + token, tmp_path)
    result = airflow_home.dags_test("alation_preflight", env=env)
    output = result.stdout + result.stderr
    assert not dag_run_succeeded(result, "alation_preflight")
    assert "FAIL  tenant / token accepted: Token rejected: HTTP 401" in output
    assert "AirflowFailException" in output
    states = task_states(airflow_home, "alation_preflight")
    # The token fails the probe and the data-source API; what does not depend on it still passes.
    assert states["check_tenant"] == states["check_datasources"] == "failed"
    assert {states[t] for t in ("check_versions", "check_openlineage", "check_dags", "check_outbox")} == {
        "success"
    }
    # Without the data sources, namespace matches are unknown: warnings, not failures.
    assert states["check_namespaces"] == "success"
    assert "WARN  namespaces / pg_sales" in output
    no_secrets(result, token, DB_PASSWORD)


def task_states(airflow_home: AirflowHome, dag_id: str) -> dict[str, str]:
    """Task states of the DAG's latest run, from the Airflow home's metadata database."""
    with sqlite3.connect(airflow_home.home / "airflow.db") as db:
        (run_id,) = db.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
        rows = db.execute(
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)
        ).fetchall()
    return dict(rows)


# --- the Test button through Airflow's REST API -------------------------------------------------


@pytest.fixture(scope="module")
def api_server(airflow_home: AirflowHome) -> Iterator[str]:
    env = {
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
    }
    with start_api_server(airflow_home, env) as url:
        yield url


@pytest.mark.parametrize("case", ["good", "rejected", "bad_extra"])
def test_rest_api_test_button_says_what_check_says(
    api_server, airflow_home, catalogued, token, tmp_path, case
) -> None:
    secret = {"good": token, "rejected": "revoked-" + token, "bad_extra": token}[case]
    settings = {"verify": str(catalogued.cert_path), "cache_dir": str(tmp_path / "cache")}
    if case == "bad_extra":
        settings["timout"] = 3
    env = {"AIRFLOW_CONN_ALATION_DEFAULT": connection_json(catalogued.url, secret, settings)}
    _, lines = run_check(airflow_home, env, "--only", "connection", "--only", "tenant")

    jwt = requests.get(f"{api_server}/auth/token", timeout=10).json()["access_token"]
    answer = requests.post(
        f"{api_server}/api/v2/connections/test",
        headers={"Authorization": f"Bearer {jwt}"},
        json={
            # The verdict names the request's connection id; check names alation_default too.
            "connection_id": "alation_default",
            "conn_type": "alation",
            "host": catalogued.url,
            "password": secret,
            "extra": json.dumps(settings),
        },
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    verdict = answer.json()
    if case == "bad_extra":
        line = find(lines, "connection", "connection alation_default settings")
        assert verdict["status"] is False and line["status"] == "fail"
        assert "extra.timout: unknown key. Did you mean 'timeout'?" in verdict["message"]
        assert line["message"] in verdict["message"]
    else:
        line = find(lines, "tenant", "token accepted")
        whole = f"{line['message']} Fix: {line['fix']}." if line.get("fix") else line["message"]
        assert verdict == {"status": line["status"] == "pass", "message": whole}
        assert verdict["status"] is (case == "good")
    assert secret not in answer.text


# --- the pure parts ---------------------------------------------------------------------------


def test_version_lines() -> None:
    assert version_line("openlineage-python", "1.54.0", ">=1.30.0").status == "pass"
    old = version_line("openlineage-python", "1.20.1", ">=1.30.0")
    assert old.status == "fail" and old.fix == "pip install --upgrade 'openlineage-python>=1.30.0'"
    missing = version_line("apache-airflow-providers-openlineage", None, ">=2.0.0")
    assert missing.status == "fail" and "not installed" in missing.message


def _settings(**extra: Any):
    return build_settings({"url": "https://acme.alationcloud.com", "token": "t0ken-abc", **extra}, "test")


@pytest.mark.parametrize(
    ("problem", "failing_check", "fix_word"),
    [
        ("unreachable", "tenant reachable", "acme.alationcloud.com:443"),
        ("timeout", "tenant reachable", "timeout"),
        ("tls", "tenant reachable", "CA bundle"),
        ("auth", "token accepted", "API Access Tokens"),
        ("not_found", "endpoint accepts events", "open_lineage_event/"),
        ("server", "endpoint accepts events", "support"),
    ],
)
def test_tenant_lines_name_the_failing_check(problem, failing_check, fix_word) -> None:
    lines = tenant_lines(_settings(), False, "the message", problem)
    failed = [line for line in lines if line.status == "fail"]
    assert [line.check for line in failed] == [failing_check]
    assert failed[0].message == "the message" and fix_word in failed[0].fix


def test_unverified_tls_is_a_warning() -> None:
    line = tenant_lines(_settings(verify=False), True, "OK", "")[0]
    assert line.status == "warn" and "not verified" in line.message


def test_refresh_token_that_cannot_reach_alation_is_a_network_problem_not_a_bad_token() -> None:
    from airflow_provider_alation.alation.probe import probe_connection

    port = refused_port()
    settings = _settings(
        url=f"https://127.0.0.1:{port}", token_type="refresh_token", user_id=7, timeout=1, time_budget=2
    )
    verdict = probe_connection(settings)
    assert verdict.problem == "unreachable" and verdict.message.startswith("Network unreachable")
    failed = [
        x for x in tenant_lines(settings, verdict.ok, verdict.message, verdict.problem) if x.status == "fail"
    ]
    assert [x.check for x in failed] == ["tenant reachable"]


def test_plain_http_tenant_is_a_warning() -> None:
    lines = tenant_lines(_settings(url="http://localhost:8080", allow_http=True), True, "OK", "")
    assert lines[0] == CheckLine(
        "tenant",
        "HTTPS",
        "warn",
        "the tenant URL http://localhost:8080 is plain HTTP (allow_http): the token travels unencrypted",
        "use the tenant's https:// URL and remove allow_http",
    )


def test_dag_lines() -> None:
    settings = _settings(dags={"include": ["etl_*"], "exclude": ["etl_tmp*"]})
    lines = dag_lines(
        [("etl_a", ()), ("etl_tmp1", ("alation",)), ("report", ("alation",)), ("misc", ())],
        settings,
        import_errors=["broken.py"],
        lineage_disabled=["report"],
    )
    by_check = {line.check: line for line in lines}
    assert by_check["opted-in DAGs"].message == "2 of 4 DAGs: etl_a, report"
    assert by_check["excluded DAGs"].message == "excluded by dags.exclude: etl_tmp1"
    assert by_check["OpenLineage selective enable"].status == "fail"
    assert by_check["DAG import errors"].status == "warn"
    none = dag_lines([("misc", ())], _settings())
    assert none[0].status == "fail" and "'alation'" in none[0].fix


def test_asset_verdicts_ask_the_openlineage_provider() -> None:
    """In this environment the Postgres and common-io providers convert; mysql:// and s3:// have no
    provider, an asset without a scheme is Airflow's alone. The URI is shown with its password masked."""
    from airflow.sdk import Asset

    from airflow_provider_alation.commands.check import _asset_registries, asset_verdict

    converters, handlers = _asset_registries()
    assert {"postgres", "postgresql", "file"} <= set(converters)

    def problem(asset: Asset) -> str:
        return asset_verdict(asset, converters, handlers).problem

    assert problem(Asset("postgres://10.0.0.5:5432/sales/public/orders")) == ""
    assert problem(Asset("file:///data/orders.csv")) == ""
    if "mysql" not in converters:
        assert problem(Asset("mysql://mysql.example.com/shop/orders")) == NO_PROVIDER
    if "s3" not in converters:
        assert problem(Asset("s3://lake/raw/orders.parquet")) == NO_PROVIDER
    assert problem(Asset(name="orders_exported")) == NOT_A_DATASET
    assert problem(Asset("x-team://orders")) == NOT_A_DATASET

    class Odd:
        uri = "mysql://etl:hunter22@mysql.example.com/shop/orders"

    odd = asset_verdict(Odd(), {}, {})
    assert odd.uri == "mysql://***@mysql.example.com/shop/orders" and odd.problem == NO_PROVIDER


def test_asset_lines() -> None:
    quickstart = "postgres://10.0.0.5:5432/sales/public/orders"
    # The quickstart without the Postgres provider: the package's own extra is the fix.
    (line,) = asset_lines([("alation_quickstart", [AssetVerdict(quickstart, "postgres", NO_PROVIDER)])])
    assert line == CheckLine(
        "dags",
        "assets of alation_quickstart",
        "warn",
        f"1 of its 1 assets become no OpenLineage dataset here, so its tasks send Alation no lineage for "
        f"them: {quickstart} (no installed provider converts postgres://)",
        "pip install 'airflow-provider-alation[postgres]' (the [postgres] extra brings "
        "apache-airflow-providers-postgres) on every scheduler and worker, then restart them",
    )
    lines = asset_lines(
        [
            ("a", [AssetVerdict("mysql://h:3306/d/t", "mysql", NO_CONVERTER)]),
            (
                "b",
                [AssetVerdict("delta://lake/t", "delta", NO_PROVIDER), AssetVerdict(quickstart, "postgres")],
            ),
            ("c", [AssetVerdict("signal", "", NOT_A_DATASET)]),
        ],
        unparsed=["elsewhere"],
    )
    by_check = {line.check: line for line in lines}
    assert by_check["assets of a"].fix.startswith("pip install --upgrade apache-airflow-providers-mysql on")
    assert "has no OpenLineage converter for mysql://" in by_check["assets of a"].message
    assert "converts delta:// assets" in by_check["assets of b"].fix
    assert by_check["assets without a dataset URI"].status == "info"
    assert "assets" not in by_check  # no PASS while a DAG warns
    # Everything converts: one PASS line; DAGs only the metadata database knows are named as unchecked.
    (ok,) = asset_lines([("q", [AssetVerdict(quickstart, "postgres")]), ("n", [])], ["elsewhere"])
    assert ok.status == "pass" and ok.check == "assets"
    assert ok.message == (
        "1 assets of the 2 opted-in DAGs in the DAGs folder become OpenLineage datasets here (postgres://); "
        "not checked: elsewhere (not in this DAGs folder)"
    )
    (none,) = asset_lines([("n", [])])
    assert none.status == "info" and "no opted-in DAG declares assets" in none.message


def test_namespace_line_statuses() -> None:
    from airflow_provider_alation.lineage.datasources import DataSource, DataSourceIndex

    index = DataSourceIndex.build(
        [DataSource.from_api(item, api) for api, items in reference_datasources().items() for item in items]
    )
    with_index = NamespaceResolver.from_map({}, index)
    without = NamespaceResolver.from_map({}, None)
    ns = "postgres://pgprod:5432"
    short = namespace_line("pg", ns, "hook", with_index.resolve(ns), True)
    assert short.status == "warn" and short.fix == '"pgprod:5432":"pgprod.corp.example.com:5432"'.join(
        ["confirm it with the namespace_map entry ", ""]
    )
    assert namespace_line("bq", "bigquery", "rules", with_index.resolve("bigquery"), True).status == "info"
    ip = "postgres://10.0.0.1:5432"
    assert namespace_line("ip", ip, "hook", with_index.resolve(ip), True).status == "fail"
    assert namespace_line("ip", ip, "hook", without.resolve(ip), False).status == "warn"


def test_outbox_lines() -> None:
    lines = outbox_lines("/spool", {"pending": 2, "claimed": 1, "dead": 4}, 600.0)
    assert [line.status for line in lines] == ["warn", "warn"]
    assert lines[0].message == "3 events in /spool wait to be sent, the oldest 10 min old"
    assert "replay --dead" in lines[1].fix
    assert outbox_lines("/spool", {"pending": 0, "claimed": 0, "dead": 0}, None)[0].status == "pass"


def test_errors_on_report_lines_mask_credentials() -> None:
    from airflow_provider_alation.commands.check import _guarded

    def broken() -> list[CheckLine]:
        raise RuntimeError("Invalid connection string: postgres://etl:hunter22@db.example.com:5432/x")

    (line,) = _guarded("namespaces", broken)
    assert line.status == "fail" and "hunter22" not in line.message
    assert "RuntimeError: Invalid connection string: postgres://***@db.example.com:5432/x" in line.message


# --- emission_policy, execution_timeout, network advice, un-migrated homes ---------------------


def test_emission_policy_that_silences_an_opted_in_dag_or_its_hook_lineage(
    airflow_home, catalogued, token, tmp_path
) -> None:
    env = alation_env(catalogued, token, tmp_path)
    env["AIRFLOW__OPENLINEAGE__EMISSION_POLICY"] = json.dumps(
        [
            {
                "scope": {"dag_id": "alation_quickstart", "task_id": "clean_orders"},
                "controls": {"emit": False},
            },
            {"scope": {"dag_id": "alation_quickstart"}, "controls": {"hook_lineage": False}},
            {"scope": {"dgg_id": "typo"}, "controls": {"emit": False}},
        ]
    )
    done, lines = run_check(airflow_home, env, "--only", "openlineage", "--only", "dags")
    silenced = find(lines, "dags", "emission policy of alation_quickstart")
    assert silenced["status"] == "warn" and "clean_orders" in silenced["message"], silenced
    assert "daily_revenue" not in silenced["message"]
    blind = find(lines, "dags", "hook lineage of alation_quickstart")
    assert blind["status"] == "warn" and "daily_revenue" in blind["message"], blind
    assert "clean_orders" not in blind["message"]  # silenced already
    invalid = find(lines, "openlineage", "emission_policy")
    assert invalid["status"] == "warn" and "dgg_id" in invalid["message"], invalid
    assert "OpenLineage emission policy:" not in done.stdout  # the provider's audit log stays out

    env["AIRFLOW__OPENLINEAGE__EMISSION_POLICY"] = json.dumps(
        [{"scope": {"dag_id": "alation_.*"}, "match_mode": "regex", "controls": {"emit": False}}]
    )
    _, lines = run_check(airflow_home, env, "--only", "dags")
    silenced = find(lines, "dags", "emission policy of alation_quickstart")
    assert "all its events" in silenced["message"] and "emit" in silenced["fix"]


def test_time_budget_not_below_the_providers_execution_timeout(
    airflow_home, catalogued, token, tmp_path
) -> None:
    env = alation_env(catalogued, token, tmp_path)
    env["AIRFLOW__OPENLINEAGE__EXECUTION_TIMEOUT"] = "8"
    _, lines = run_check(airflow_home, env, "--only", "connection")
    line = find(lines, "connection", "time_budget")
    assert line["status"] == "warn" and "execution_timeout 8s" in line["message"], line
    assert "AIRFLOW__OPENLINEAGE__EXECUTION_TIMEOUT" in line["fix"]
    _, lines = run_check(airflow_home, alation_env(catalogued, token, tmp_path), "--only", "connection")
    assert find(lines, "connection", "time_budget")["status"] == "pass"


def test_execution_timeout_lines() -> None:
    settings = build_settings({"url": "https://acme.alationcloud.com", "token": "t", "time_budget": 12})
    (line,) = execution_timeout_lines(settings, 10)
    assert line.status == "warn" and 'lower "time_budget" to 8' in line.fix
    assert execution_timeout_lines(settings, 30)[0].status == "pass"


def test_dns_failure_gets_network_advice_naming_host_port(airflow_home, token, tmp_path) -> None:
    settings = {
        "discover_datasources": True,
        "cache_dir": str(tmp_path / "cache"),
        "spool_dir": str(tmp_path / "spool"),
        "timeout": 2,
        "time_budget": 4,
    }
    url = "https://alation-tenant.invalid:8443"
    env = {"AIRFLOW_CONN_ALATION_DEFAULT": connection_json(url, token, settings)}
    done, lines = run_check(airflow_home, env, "--only", "tenant", "--only", "datasources")
    assert done.returncode == 1
    for section, check in (("tenant", "tenant reachable"), ("datasources", "discovery")):
        line = find(lines, section, check)
        assert line["status"] == "fail", line
        assert "alation-tenant.invalid:8443" in line["fix"], line
        assert "token" not in line["fix"].lower(), line
    no_secrets(done, token)


def test_discovery_fix_tells_network_from_token() -> None:
    settings = build_settings({"url": "https://acme.alationcloud.com", "token": "t"})
    dns = (
        "network unreachable: Failed to resolve 'acme.alationcloud.com' "
        "([Errno -2] Name or service not known)"
    )
    assert "acme.alationcloud.com:443" in discovery_fix(settings, dns)
    assert "token" not in discovery_fix(settings, dns).lower()
    assert "TOKEN header" in discovery_fix(settings, "HTTP 401: Alation rejected the token; rotate it")
    assert "TOKEN header" in discovery_fix(settings, "HTTP 403: forbidden")
    assert "acme.alationcloud.com:443" in discovery_fix(settings, "timed out: read timeout")
    assert "retry later" in discovery_fix(settings, "HTTP 503")


def test_transport_instruction_is_said_once() -> None:
    from airflow_provider_alation.integration.configuration import TRANSPORT_LINE

    for message in (
        f"OpenLineage is not sending to Alation (it is 'console'); set {TRANSPORT_LINE}",
        f"[openlineage] transport is not valid JSON; set {TRANSPORT_LINE}",
        "[openlineage] config_path is set; make sure its transport is AlationTransport, or unset it and "
        f"set {TRANSPORT_LINE}",
    ):
        head, fix = split_instruction(message)
        assert TRANSPORT_LINE not in head and fix.count(TRANSPORT_LINE) == 1, (head, fix)
    head, fix = split_instruction(
        "OpenLineage is disabled ([openlineage] disabled = True); no lineage is sent. "
        "Unset AIRFLOW__OPENLINEAGE__DISABLED."
    )
    assert "Unset" not in head and fix.startswith("Unset AIRFLOW__OPENLINEAGE__DISABLED")


def test_emission_lines() -> None:
    lines = emission_lines({"a": ["*"], "b": ["t1"]}, {"c": ["t2", "t3"]})
    assert [line.check for line in lines] == [
        "emission policy of a",
        "emission policy of b",
        "hook lineage of c",
    ]
    assert all(line.status == "warn" for line in lines)


def test_unmigrated_airflow_home_suggests_db_migrate(catalogued, token, tmp_path, airflow_home) -> None:
    fresh = tmp_path / "fresh-home"
    fresh.mkdir()
    env = {**alation_env(catalogued, token, tmp_path), "AIRFLOW_HOME": str(fresh)}
    _, lines = run_check(airflow_home, env, "--only", "namespaces")
    line = find(lines, "namespaces", "database connections")
    assert MIGRATE_HINT in line["message"] and "airflow db migrate" in line["fix"], line
    assert "airflow db migrate" not in line["message"]


def test_check_fits_80_columns(airflow_home, catalogued, token, tmp_path) -> None:
    env = alation_env(catalogued, token, tmp_path)
    env["AIRFLOW_CONN_PG_BY_IP"] = f"postgres://etl:{DB_PASSWORD}@10.20.30.40:5432/sales_db"
    env["COLUMNS"] = "80"
    done, _ = run_check(airflow_home, env, "--only", "namespaces", json_output=False)
    out = done.stdout
    assert [line for line in out.splitlines() if len(line) > 80] == []
    for value in (
        "postgres://10.20.30.40:5432",
        "redshift://analytics.c9xyz1abc.us-east-1.redshift.amazonaws.com:5439",
        "pg_by_ip",
        "add 10.20.30.40:5432 to",
    ):
        assert any(value in line for line in out.splitlines()), (value, out)
