"""Real Airflow runs for bench/compare.py: ``airflow dags test`` of the DAGs in bench/dags against a
real PostgreSQL server, with OpenLineage disabled, the stock ``http`` transport or AlationTransport."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.airflow_home import AirflowHome, airflow_bin, connection_json  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402

BENCH_DAGS = Path(__file__).resolve().parent / "dags"
ALATION_TRANSPORT = {"type": "airflow_provider_alation.transport.AlationTransport"}
KINDS = ("disabled", "http", "alation")

SQL_TASKS = 20
SETUP_SQL = "\n".join(
    f"DROP TABLE IF EXISTS public.t_in_{k}, public.t_out_{k};"
    f"CREATE TABLE public.t_in_{k} (id integer PRIMARY KEY, name text NOT NULL, amount numeric NOT NULL);"
    f"CREATE TABLE public.t_out_{k} (id integer NOT NULL, name text NOT NULL, amount numeric NOT NULL);"
    f"INSERT INTO public.t_in_{k} SELECT g, 'row ' || g, g * 1.5 FROM generate_series(1, 100) AS g;"
    for k in range(SQL_TASKS)
)

_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT[\d:.]+Z) \[\w+\s*\] (.*)$")


def stock_transport(url: str, token: str, ca_cert: str | None) -> dict:
    """The OpenLineage provider's plain ``http`` transport pointed at Alation's endpoint."""
    config: dict = {
        "type": "http",
        "url": url,
        "endpoint": "open_lineage_event/",
        "auth": {"type": "api_key", "apiKey": token},
    }
    if ca_cert:
        config["sslContext"] = {"caCertPath": ca_cert}
    return config


def alation_extra(ca_cert: str | None, spool_dir: str, cache_dir: str) -> dict:
    return {
        "dags": {"include": ["*"]},
        "verify": ca_cert if ca_cert else True,
        "spool_dir": spool_dir,
        "cache_dir": cache_dir,
    }


@dataclass
class TaskTiming:
    task_id: str
    begin: float  # "[DAG TEST] starting task_id=..." (epoch seconds)
    started: float | None = None  # "Task started": the task instance's start_date
    end: float | None = None  # "[DAG TEST] end task ...": the task process would exit here

    @property
    def occupied(self) -> float | None:
        """Seconds from the task's start_date to the end of the task (listeners included)."""
        return None if self.started is None or self.end is None else self.end - self.started


@dataclass
class DagRun:
    dag_id: str
    kind: str
    ok: bool
    wall: float  # the whole `airflow dags test` process
    run_wall: float  # until the DAG run was marked finished
    tasks: dict[str, TaskTiming] = field(default_factory=dict)
    output: str = ""

    @property
    def slot_seconds(self) -> float:
        """Sum over the tasks of the time each occupied (start_date to end, listeners included)."""
        return sum(t.occupied or 0.0 for t in self.tasks.values())


def _epoch(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def parse_task_timings(output: str) -> dict[str, TaskTiming]:
    """Per task: when ``dags test`` started it, its start_date, and when it ended (in-process runs
    are sequential, so each "Task started" belongs to the last task started)."""
    tasks: dict[str, TaskTiming] = {}
    current: TaskTiming | None = None
    for line in output.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        stamp, message = match.groups()
        if message.startswith("[DAG TEST] starting task_id="):
            task_id = message.split("task_id=", 1)[1].split()[0]
            current = tasks[task_id] = TaskTiming(task_id, _epoch(stamp))
        elif message.startswith("Task started ") and current is not None and current.started is None:
            current.started = _epoch(stamp)
        elif message.startswith("[DAG TEST] end task ") and current is not None:
            current.end = _epoch(stamp)
            current = None
    return tasks


class AirflowBench:
    """A PostgreSQL server and an Airflow home with the bench DAGs, reused by every run."""

    def __init__(self) -> None:
        self.postgres = PostgresServer.start()
        try:
            self.postgres.create_database("bench")
            self.home = AirflowHome.create([BENCH_DAGS])
        except BaseException:
            self.postgres.stop()
            raise
        self.tmp = Path(tempfile.mkdtemp(prefix="alation-bench-"))
        # Byte-code as on a real install (pip compiles on install): this environment may set
        # PYTHONDONTWRITEBYTECODE and ship no .pyc, so every process would compile every module it
        # imports. That hurts AlationTransport more than the stock transport: its modules are first
        # imported in the provider's forked child, for every event, while the stock transport's are
        # already imported by the parent. Compiled once (warm_up) into a temporary prefix.
        self.home.extra_env = {
            "PYTHONDONTWRITEBYTECODE": "",
            "PYTHONPYCACHEPREFIX": str(self.tmp / "pycache"),
        }

    def close(self) -> None:
        self.postgres.stop()
        self.home.cleanup()
        subprocess.run(["rm", "-rf", str(self.tmp)], check=False)

    def __enter__(self) -> AirflowBench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def prepare_tables(self) -> None:
        """(Re)create ``t_in_k`` (100 rows each) and an empty ``t_out_k`` for the bench DAGs."""
        import psycopg2

        conn = psycopg2.connect(
            host="127.0.0.1", port=self.postgres.port, user=self.postgres.user, dbname="bench"
        )
        try:
            with conn, conn.cursor() as cursor:
                cursor.execute(SETUP_SQL)
        finally:
            conn.close()

    def warm_up(self, url: str, token: str, ca_cert: str) -> None:
        """One short run of each kind, not measured: byte-code compiled and cached, as installed."""
        self.prepare_tables()
        for kind in KINDS:
            env = {**self.env(kind, url, token, ca_cert), "BENCH_TASK_TIME_TASKS": "1"}
            run = self.run("bench_task_time", kind, env, stop_after_run=True)
            if not run.ok:
                raise RuntimeError(f"warm-up run ({kind}) failed:\n{run.output[-3000:]}")

    def env(self, kind: str, url: str | None, token: str, ca_cert: str | None) -> dict[str, str]:
        env = {"AIRFLOW_CONN_BENCH_POSTGRES": self.postgres.conn_uri("bench")}
        if kind == "disabled":
            env["AIRFLOW__OPENLINEAGE__DISABLED"] = "true"
        elif kind == "http":
            assert url is not None
            env["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(stock_transport(url, token, ca_cert))
        elif kind == "alation":
            assert url is not None
            spool = tempfile.mkdtemp(prefix="spool-", dir=self.tmp)  # each run its own outbox
            cache = tempfile.mkdtemp(prefix="cache-", dir=self.tmp)
            env["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(ALATION_TRANSPORT)
            env["AIRFLOW_CONN_ALATION_DEFAULT"] = connection_json(
                url, token, alation_extra(ca_cert, spool, cache)
            )
        else:
            raise ValueError(kind)
        return env

    def run(
        self,
        dag_id: str,
        kind: str,
        env: dict[str, str],
        *,
        stop_after_run: bool = False,
        timeout: float = 900,
    ) -> DagRun:
        """``airflow dags test dag_id``; with ``stop_after_run``, the process (group) is ended once the
        DAG run is marked finished, instead of waiting for the DAG-level OpenLineage event that the
        provider sends from a process pool at exit (up to minutes against a dead endpoint)."""
        full_env = {**self.home.base_env(), **env}
        started = time.perf_counter()
        process = subprocess.Popen(
            [airflow_bin(), "dags", "test", dag_id],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: the forked OpenLineage children included
        )
        lines: list[str] = []
        finished_at: float | None = None
        timer = threading.Timer(timeout, _end_group, (process,))
        timer.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                if finished_at is None and "DagRun Finished: dag_id=" in line:
                    finished_at = time.perf_counter()
                    if stop_after_run:
                        threading.Timer(1.0, _end_group, (process,)).start()
            process.wait()
        finally:
            timer.cancel()
            if process.poll() is None:
                _end_group(process)
        wall = time.perf_counter() - started
        output = "".join(lines)
        ok = f"dag_id={dag_id}" in output and "state=success" in output
        if not stop_after_run:
            ok = ok and process.returncode == 0
        return DagRun(
            dag_id=dag_id,
            kind=kind,
            ok=ok,
            wall=wall,
            run_wall=(finished_at or time.perf_counter()) - started,
            tasks=parse_task_timings(output),
            output=output,
        )


def _end_group(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL, to the process group of a ``dags test`` this module started."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
