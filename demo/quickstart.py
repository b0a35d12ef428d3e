"""The demo: run the quickstart DAG in a throwaway Airflow home and show what Alation would receive.

No Alation tenant and no database server are needed: Airflow uses its embedded SQLite database and
a local HTTPS stand-in plays Alation (the same one the tests use). The OpenLineage provider is
configured with a composite transport: a ``file`` transport records every event the provider emits
(before), and ``AlationTransport`` sends what Alation should get (after). Discovery is on: the
stand-in serves a catalogue of data sources of every kind. The demo starts with
``airflow-alation check`` (the preflight a user runs before waiting for lineage; the Airflow home
has the two Postgres connections the DAG's assets stand for, plus a Snowflake one) and ends with
``airflow-alation resolve`` on the namespaces the DAG emitted plus a few others.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from airflow_provider_alation import gate
from airflow_provider_alation.testing.catalog import reference_datasources
from airflow_provider_alation.testing.fake_alation import FakeAlation

REPO = Path(__file__).resolve().parents[1]
DAG_ID = "alation_quickstart"
TOKEN = "demo-token-not-a-secret"
NAMESPACE_MAP = {
    "postgres://10.0.0.5:5432": "postgres://prod-db.example.com:5432",
    "pgbouncer.internal:6432": "prod-db.example.com:5432",
}
#: Database connections the check reports on: the quickstart's two Postgres routes (rewritten by
#: NAMESPACE_MAP) and a Snowflake account (resolved by the normaliser and discovery).
DATABASE_CONNECTIONS = {
    "AIRFLOW_CONN_WAREHOUSE_DIRECT": "postgres://etl@10.0.0.5:5432/sales_db",
    "AIRFLOW_CONN_WAREHOUSE_POOLED": "postgres://etl@pgbouncer.internal:6432/sales_db",
    "AIRFLOW_CONN_SNOWFLAKE_ANALYTICS": json.dumps(
        {"conn_type": "snowflake", "login": "etl", "extra": {"account": "myorg-myaccount"}}
    ),
}
#: Namespaces other DAGs would emit, resolved by the built-in normalisers and discovery.
OTHER_NAMESPACES = (
    "snowflake://myorg-myaccount",
    "redshift://analytics.us-east-1:5439",
    "databricks://adb-1234567890123456.7.azuredatabricks.net",
    "postgres://reporting-db.internal:5432",
    "bigquery",
)

console = Console(width=max(shutil.get_terminal_size((200, 40)).columns, 200))


def datasets(event: dict, key: str) -> str:
    return "\n".join(f"{d['namespace']}  {d['name']}" for d in event.get(key) or []) or "-"


def run_airflow(args: list[str], env: dict[str, str], log: Path) -> None:
    airflow = str(Path(sys.executable).with_name("airflow"))
    with log.open("a") as out:
        code = subprocess.call([airflow, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        console.print(f"[red]airflow {' '.join(args)} failed (exit {code}); see {log}[/red]")
        console.print(log.read_text()[-4000:])
        raise SystemExit(code)


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="alation-demo-"))
    (home / "dags").mkdir()
    shutil.copy(REPO / "dags_examples" / f"{DAG_ID}.py", home / "dags")
    emitted = home / "emitted.jsonl"
    log = home / "airflow.log"
    with FakeAlation(TOKEN, tls_dir=home / "tls") as alation:
        alation.datasources.update(reference_datasources())
        connection = {
            "conn_type": "alation",
            "host": alation.url,
            "password": TOKEN,
            "extra": {
                "namespace_map": NAMESPACE_MAP,
                "verify": str(alation.cert_path),
                "discover_datasources": True,
                "cache_dir": str(home / "cache"),
            },
        }
        transport = {
            "type": "composite",
            "continue_on_failure": True,
            "transports": [
                {"type": "file", "log_file_path": str(emitted), "append": True},
                {"type": "airflow_provider_alation.transport.AlationTransport"},
            ],
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport),
                "AIRFLOW__OPENLINEAGE__NAMESPACE": "demo",
                "AIRFLOW_CONN_ALATION_DEFAULT": json.dumps(connection),
                "PYTHONWARNINGS": "ignore",
                **DATABASE_CONNECTIONS,
            }
        )
        console.print(
            f"[bold]Airflow home[/bold] {home} (SQLite); [bold]Alation stand-in[/bold] {alation.url}"
        )
        console.print("Connection alation_default, extra:", json.dumps(connection["extra"]["namespace_map"]))
        with console.status("airflow db migrate ..."):
            run_airflow(["db", "migrate"], env, log)
        cli = str(Path(sys.executable).with_name("airflow-alation"))
        with console.status("airflow-alation check ..."):
            checked = subprocess.run(
                [cli, "check"],
                env={**env, "COLUMNS": str(console.width)},
                capture_output=True,
                text=True,
                check=False,
            )
        api_calls_in_check = len(alation.api_requests())
        probes = len(alation.events)
        with console.status(f"airflow dags test {DAG_ID} ..."):
            run_airflow(["dags", "test", DAG_ID], env, log)
        received = list(alation.events)[probes:]
        api_calls_in_run = len(alation.api_requests()) - api_calls_in_check
        emitted_namespaces = sorted(
            {
                d["namespace"]
                for line in emitted.read_text().splitlines()
                if line.strip()
                for d in (json.loads(line).get("inputs") or []) + (json.loads(line).get("outputs") or [])
            }
        )
        with console.status("airflow-alation resolve ..."):
            resolved = subprocess.run(
                [cli, "resolve", *emitted_namespaces, *OTHER_NAMESPACES],
                env={**env, "COLUMNS": str(console.width)},
                capture_output=True,
                text=True,
                check=False,
            )
        api_calls_in_resolve = len(alation.api_requests()) - api_calls_in_run - api_calls_in_check

    console.print(
        f"\n[bold]0. airflow-alation check[/bold], before running anything (exit {checked.returncode}; "
        f"data-source API calls: {api_calls_in_check}; the probe is one START event without datasets)"
    )
    console.print(checked.stdout.rstrip(), markup=False, highlight=False)
    events = [json.loads(line) for line in emitted.read_text().splitlines() if line.strip()]
    sent_ids = {e["run"]["runId"] for e in received}

    before = Table(title=f"1. What the OpenLineage provider emitted ({len(events)} events)", show_lines=True)
    for column in ("event", "job", "inputs", "outputs", "to Alation?"):
        before.add_column(column, overflow="fold", min_width=8 if column == "event" else 14)
    for event in events:
        reason = gate.lineage_reason(event)
        verdict = (
            "[green]sent[/green]"
            if event["run"]["runId"] in sent_ids and not reason
            else (f"[yellow]no: {reason}[/yellow]" if reason else "[yellow]no[/yellow]")
        )
        before.add_row(
            event["eventType"],
            event["job"]["name"].removeprefix(f"{DAG_ID}.") or DAG_ID,
            datasets(event, "inputs"),
            datasets(event, "outputs"),
            verdict,
        )
    console.print(before)

    after = Table(
        title=f"2. What Alation received ({len(received)} events, namespaces rewritten)", show_lines=True
    )
    for column in ("event", "job", "inputs", "outputs"):
        after.add_column(column, overflow="fold", min_width=8 if column == "event" else 14)
    for event in received:
        after.add_row(
            event["eventType"],
            event["job"]["name"].removeprefix(f"{DAG_ID}."),
            datasets(event, "inputs"),
            datasets(event, "outputs"),
        )
    console.print(after)
    console.print(
        f"\n[bold]3. airflow-alation resolve[/bold] (data-source API calls: {api_calls_in_run} in the DAG "
        f"run, {api_calls_in_resolve} for this command: both read the cache the check wrote)"
    )
    console.print(resolved.stdout.rstrip(), markup=False, highlight=False)
    console.print(f"Full events: {emitted} (before); Airflow log: {log}")
    if len(received) != 2 or checked.returncode != 0:
        console.print(
            "[red]Expected a passing check and 2 events at the stand-in; see the Airflow log.[/red]"
        )
        raise SystemExit(1)


if __name__ == "__main__":
    main()
