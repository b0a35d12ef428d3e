"""The demo: run the quickstart DAG in a throwaway Airflow home and show what Alation would receive.

No Alation tenant and no database server are needed: Airflow uses its embedded SQLite database and
a local HTTPS stand-in plays Alation (the same one the tests use). The OpenLineage provider is
configured with a composite transport: a ``file`` transport records every event the provider emits
(before), and ``AlationTransport`` sends what Alation should get (after). Discovery is on: the
stand-in serves a catalogue of data sources of every kind. The demo starts with
``airflow-alation check`` (the preflight a user runs before waiting for lineage; the Airflow home
has the two Postgres connections the DAG's assets stand for, plus a Snowflake one) and ends with
``airflow-alation resolve`` on the namespaces the DAG emitted plus a few others.

The output fits the terminal it runs in (80 columns and up); Airflow's own log lines go to
``.demo/airflow.log``, not into it; the throwaway Airflow home is removed at the end, also when a
step fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from airflow_provider_alation.example_dags import FOLDER as EXAMPLE_DAGS
from airflow_provider_alation.lineage import gate
from airflow_provider_alation.testing.catalog import reference_datasources
from airflow_provider_alation.testing.fake_alation import FakeAlation

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

#: Airflow's log and the commands' stderr: kept (the Airflow home is not), out of the demo's output.
LOG = Path(__file__).resolve().parents[1] / ".demo" / "airflow.log"
#: The events the provider emitted, kept for a look after the demo.
EMITTED = LOG.with_name("emitted.jsonl")
#: Below this width the events are blocks, not tables (a dataset's namespace is never split).
TABLE_WIDTH = 140

console = Console()


def datasets(event: dict, key: str) -> str:
    return "\n".join(f"{d['namespace']}  {d['name']}" for d in event.get(key) or []) or "-"


def event_block(event: dict, verdict: str = "") -> RenderableType:
    """One event for a narrow terminal: its type and job, then a line per dataset (namespace, name)."""
    job = event["job"]["name"].removeprefix(f"{DAG_ID}.") or DAG_ID
    parts: list[RenderableType] = [
        Text.assemble((f"{event['eventType']:<9}", "bold"), job, "  ", Text.from_markup(verdict))
    ]
    for key, label in (("inputs", "in "), ("outputs", "out")):
        for dataset in event.get(key) or []:
            line = f"  {label} {dataset['namespace']}  {dataset['name']}"
            if len(line) > console.width:  # the name on a line of its own, the namespace whole
                line = f"  {label} {dataset['namespace']}\n        {dataset['name']}"
            parts.append(Text(line, no_wrap=True, overflow="fold"))
    return Group(*parts)


@contextmanager
def throwaway_home() -> Iterator[Path]:
    """A temporary Airflow home, removed afterwards whatever happens (Ctrl-C included)."""
    home = Path(tempfile.mkdtemp(prefix="alation-demo-"))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run_airflow(args: list[str], env: dict[str, str]) -> None:
    airflow = str(Path(sys.executable).with_name("airflow"))
    with LOG.open("a") as out:
        out.write(f"\n$ airflow {' '.join(args)}\n")
        out.flush()
        code = subprocess.call([airflow, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        console.print(f"[red]airflow {' '.join(args)} failed (exit {code}); its log: {LOG}[/red]")
        raise SystemExit(code)


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``airflow-alation`` at this terminal's width; what it logs goes to :data:`LOG`."""
    cli = str(Path(sys.executable).with_name("airflow-alation"))
    with LOG.open("a") as out:
        out.write(f"\n$ airflow-alation {' '.join(args)}\n")
        out.flush()
        return subprocess.run(
            [cli, *args],
            env={**env, "COLUMNS": str(console.width)},
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
            check=False,
        )


def main() -> None:
    LOG.parent.mkdir(exist_ok=True)
    LOG.write_text("")
    with throwaway_home() as home:
        run_demo(home)


def run_demo(home: Path) -> None:
    (home / "dags").mkdir()
    shutil.copy(EXAMPLE_DAGS / f"{DAG_ID}.py", home / "dags")
    emitted = home / "emitted.jsonl"
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
        console.print("Connection alation_default, namespace_map:")
        for source, target in NAMESPACE_MAP.items():
            console.print(
                Text(f"  {json.dumps(source)}: {json.dumps(target)}", no_wrap=True, overflow="fold")
            )
        with console.status("airflow db migrate ..."):
            run_airflow(["db", "migrate"], env)
        with console.status("airflow-alation check ..."):
            checked = run_cli(["check"], env)
        api_calls_in_check = len(alation.api_requests())
        probes = len(alation.events)
        with console.status(f"airflow dags test {DAG_ID} ..."):
            run_airflow(["dags", "test", DAG_ID], env)
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
            resolved = run_cli(["resolve", *emitted_namespaces, *OTHER_NAMESPACES], env)
        api_calls_in_resolve = len(alation.api_requests()) - api_calls_in_run - api_calls_in_check

    console.print(
        f"\n[bold]0. airflow-alation check[/bold], before running anything (exit {checked.returncode}; "
        f"data-source API calls: {api_calls_in_check}; the probe is one START event without datasets)"
    )
    console.print(checked.stdout.rstrip(), markup=False, highlight=False, soft_wrap=True)
    events = [json.loads(line) for line in emitted.read_text().splitlines() if line.strip()]
    shutil.copy(emitted, EMITTED)
    sent_ids = {e["run"]["runId"] for e in received}
    wide = console.width >= TABLE_WIDTH

    def verdict(event: dict) -> str:
        reason = gate.lineage_reason(event)
        if event["run"]["runId"] in sent_ids and not reason:
            return "[green]sent[/green]"
        return f"[yellow]no: {reason}[/yellow]" if reason else "[yellow]no[/yellow]"

    title = f"1. What the OpenLineage provider emitted ({len(events)} events)"
    if wide:
        before = Table(title=title, show_lines=True)
        for column in ("event", "job", "inputs", "outputs", "to Alation?"):
            before.add_column(column, overflow="fold", min_width=8 if column == "event" else 14)
        for event in events:
            before.add_row(
                event["eventType"],
                event["job"]["name"].removeprefix(f"{DAG_ID}.") or DAG_ID,
                datasets(event, "inputs"),
                datasets(event, "outputs"),
                verdict(event),
            )
        console.print(before)
    else:
        console.print(f"\n[bold]{title}[/bold]")
        for event in events:
            console.print(event_block(event, verdict(event)))

    title = f"2. What Alation received ({len(received)} events, namespaces rewritten)"
    if wide:
        after = Table(title=title, show_lines=True)
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
    else:
        console.print(f"\n[bold]{title}[/bold]")
        for event in received:
            console.print(event_block(event))
    console.print(
        f"\n[bold]3. airflow-alation resolve[/bold] (data-source API calls: {api_calls_in_run} in the DAG "
        f"run, {api_calls_in_resolve} for this command: both read the cache the check wrote)"
    )
    console.print(resolved.stdout.rstrip(), markup=False, highlight=False, soft_wrap=True)
    console.print(Text.assemble("\nEvents as emitted: ", (str(EMITTED), "bold")))
    console.print(Text.assemble("Airflow's log: ", (str(LOG), "bold")))
    if len(received) != 2 or checked.returncode != 0:
        console.print("[red]Expected a passing check and 2 events at the stand-in; see Airflow's log.[/red]")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
