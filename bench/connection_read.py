"""What one read of the Alation connection costs in a task process of a real deployment.

    .venv/bin/python bench/connection_read.py [READS]

A real deployment (tests/support/deployment.py: api-server, scheduler with LocalExecutor,
dag-processor on a throwaway PostgreSQL), the ``alation_default`` connection in its metadata
database, and a DAG whose task reads it READS times through the Execution API, as the transport
does once per task (and, before the plugin read it in the task process, once per event in every
forked emitter). Prints the first read and the median/min/max of the rest, in milliseconds.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from airflow_provider_alation.testing.fake_alation import FakeAlation
from tests.support.deployment import Deployment
from tests.support.postgres import PostgresServer

DAG = """
import json, time, pendulum
from airflow.sdk import DAG, task

@task
def read():
    from airflow.sdk import BaseHook
    times = []
    for _ in range({reads}):
        started = time.perf_counter()
        BaseHook.get_connection("alation_default")
        times.append((time.perf_counter() - started) * 1000)
    rest = sorted(times[1:])
    print("CONNECTION_READ_MS", json.dumps(
        {{"first": times[0], "median": rest[len(rest) // 2], "min": rest[0], "max": rest[-1], "n": len(rest)}}
    ))

with DAG(dag_id="bench_connection_read", start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), schedule=None):
    read()
"""


def main() -> None:
    reads = int(sys.argv[1]) if len(sys.argv) > 1 else 31
    token = "bench-token-" + "x" * 16
    postgres = PostgresServer.start()
    try:
        deployment = Deployment.create(postgres)
        (deployment.home / "dags" / "bench_connection_read.py").write_text(DAG.format(reads=reads))
        try:
            with FakeAlation(token, tls_dir=deployment.home / "tls") as fake:
                deployment.start()
                spool = str(deployment.home / "spool")
                deployment.put_alation_connection(
                    fake.url, token, {"verify": str(fake.cert_path), "spool_dir": spool}
                )
                deadline = time.monotonic() + 120
                while not deployment.api("GET", "dags", params={"dag_id_pattern": "bench_%"})["dags"]:
                    if time.monotonic() > deadline:
                        raise SystemExit("bench_connection_read was not parsed in 120 s")
                    time.sleep(1)
                (result,) = deployment.trigger("bench_connection_read").values()
                (task,) = result.tasks.values()
                line = next(x for x in task.log().splitlines() if "CONNECTION_READ_MS" in x)
                text = json.loads(line)["event"] if line.startswith("{") else line  # structured task log
                figures = json.loads(text.split("CONNECTION_READ_MS", 1)[1])
                print(json.dumps({k: round(v, 2) for k, v in figures.items()}, indent=1))
        finally:
            deployment.stop()
            deployment.cleanup()
    finally:
        postgres.stop()


if __name__ == "__main__":
    main()
