"""AlationTransport side by side with the stock OpenLineage ``http`` transport on a real deployment.

    .venv/bin/python bench/deployment.py [--repeat 3] [--with-disabled] [--json] [--load FILE]
                                         [--keep-logs DIR]

bench/compare.py measures with ``airflow dags test`` (every task in one process). This runs Airflow
as a user does (tests/support/deployment.py): a PostgreSQL cluster in a temporary directory holding
the metadata database and the data database, ``airflow api-server``, ``airflow scheduler``
(LocalExecutor, ``[core] parallelism`` 4) and ``airflow dag-processor`` as separate processes, the
connections in the metadata database (created through the REST API: ``bench_postgres`` for the SQL
tasks, ``alation_default`` with host = the receiver's URL, password = token, extra ``{"dags":
{"include": ["*"]}, "verify": <CA bundle>, "spool_dir": ..., "cache_dir": ...}``), and DAG runs of
``bench_twenty_sql`` (bench/dags/bench_lineage.py) triggered through the REST API.

The two transports alternate in one run: stock, AlationTransport, stock, AlationTransport, ...
(``--repeat`` pairs, after one unmeasured warm-up run of each). Before each run the scheduler is
restarted with the transport in ``AIRFLOW__OPENLINEAGE__TRANSPORT``: the scheduler emits the DAG
run's events itself, and its LocalExecutor workers, so the task processes, inherit its environment.
Both transports post to the same HTTPS stand-in for Alation (``FakeAlation``, TLS verified against
its CA), which counts what it receives. The data tables are recreated before each run.

What a DAG run of ``bench_twenty_sql`` runs: ``check`` (PythonOperator, no datasets),
``ddl_and_seed`` (DDL + an INSERT: an output table, no input table; AlationTransport drops its
events too, as they carry no lineage), and 20 ``copy_k`` (``INSERT INTO t_out_k SELECT ... FROM
t_in_k``, one input and one output table each). The EmptyOperator ``start`` is never sent to a
worker: the scheduler marks it successful itself, and neither transport is given an event for it.
So a run has 22 task processes.

What is measured, per DAG run, and how:

- **requests / bytes**: POSTs to the stand-in's lineage endpoint from the trigger until the count has
  been still for 2 s after the last task process exited (the scheduler sends the DAG's COMPLETE from
  a process pool, after the run is marked successful). Bytes on the wire = request line + headers +
  body as sent (before TLS), as bench/compare.py counts them. Also counted: the stand-in's REST API
  GETs (AlationTransport's data source discovery) and the api-server's access-log lines
  ``GET /execution/connections/alation_default`` (the task processes reading the connection).
- **DAG-run wall time**: from the REST call that triggers the run until no process names one of the
  run's task instances in its title (the LocalExecutor worker supervising it, the task runner, the
  OpenLineage listener's forks; see tests/support/deployment.py), polled every 0.1 s; and the run's
  own ``start_date`` -> ``end_date`` (REST API). The run is marked successful when its last task
  instance is, which is *before* that task's success listeners run: the run's own duration does not
  contain the last tasks' COMPLETE emission, the wall time does.
- **CPU time of the task processes**: user + system CPU seconds of the scheduler's LocalExecutor
  workers and their reaped children (psutil ``cpu_times``), read after the run; the scheduler is
  restarted before each run, so this is every supervisor, task runner and OpenLineage fork of that
  run. Less sensitive than wall times to other work on the machine.
- **listener time after success** (per task): from the task instance's ``end_date`` to the task
  runner's last ``::endgroup::`` log line. The task runner sets ``end_date`` and reports success
  (``SucceedTask``) *before* ``finalize()`` calls the ``on_task_instance_success`` listeners
  (airflow/sdk/execution_time/task_runner.py: ``run`` then ``finalize``, which logs ``::endgroup::``
  as its last line, after the listeners and ``before_stopping``). This span is the OpenLineage
  provider forking the emitting child, the child extracting the metadata (for SQL tasks a
  ``SELECT CURRENT_SCHEMA`` on the task's database), building, redacting and emitting the COMPLETE
  event, and the task process waiting for the child; with AlationTransport also the plugin's
  listener (it has the transport read its settings in the task process before the fork). Both
  timestamps are on the same clock (the task log's timestamps are the task runner's). This is the
  time the success listeners keep the task process, and so its executor slot, busy.
- **where that time goes** (per task), from lines at INFO on the same timeline: the forked child's
  first line is, for SQL tasks, the extractor's ``Running statement: SELECT CURRENT_SCHEMA``, and its
  last the adapter's ``Successfully emitted OpenLineage `COMPLETE` event`` (after ``client.emit``
  returned). So *end_date to the child's SQL extraction* = ``finalize()`` up to the listeners, the
  plugins' listeners that run before the OpenLineage one (AlationTransport's reads its settings in
  the task process), the fork and the child's start; *child: extraction to COMPLETE emitted* =
  metadata extraction, building and redacting the event and ``client.emit`` (the stock transport's
  client and HTTP session are built here, in the child; AlationTransport's were built in the task
  process by its plugin, before the fork); *COMPLETE emitted to listeners done* = the child's exit,
  the task process reaping it, ``before_stopping``. (The Python task has no SQL line: one span up
  to the emission.) The listener's own fork/reap lines are at DEBUG, which
  ``[logging] namespace_levels`` does not enable for the provider's stdlib logger (the handler
  stays at INFO), and the provider's ``ol.emit.attempts`` StatsD timer needs the ``statsd`` package
  (not installed here) and carries no task id; neither is used. A log line costs ~0.1 ms itself.
- **start_date to execute**: to the end of the task runner's ``Pre Execute`` group (its first
  ``::endgroup::``), which includes the ``on_task_instance_running`` listeners: the START event
  (forked child: extraction, build, emit; AlationTransport drops it in the child without I/O).
- **task-slot time** (per task): from the task instance's ``start_date`` (set when the supervisor
  starts it) to the supervisor's ``Workload finished`` line in the scheduler's log (the LocalExecutor
  worker's log: after the task process exited and its sockets were drained; the worker takes its
  next task after it). The sum over the 22 tasks uses the supervisor's own ``duration`` from that
  line (supervisor start to end). **Caveat, measured separately**: the supervisor can notice the
  task process's exit up to ``[workers] min_heartbeat_interval`` (5 s) late: when the task runner's
  sockets are closed before the process can be reaped, its ``select()`` has nothing left to wake it
  and sleeps the heartbeat interval (``ActivitySubprocess._monitor_subprocess``). The row *exit
  noticed late* counts the tasks whose ``Workload finished`` came more than 1 s after the task
  runner's last log line; *task process time* (``start_date`` to the last ``::endgroup::``) is the
  slot time without that lag.

``--with-disabled`` adds a run with ``AIRFLOW__OPENLINEAGE__DISABLED=true`` before each pair (and
one warm-up), shown as a reference column: what the deployment costs without any lineage.
``--keep-logs DIR`` copies the task and service logs there before the clean-up. Everything (the
services and their children, PostgreSQL, the stand-in, the temporary directories) is stopped and
removed on exit, on failure, on Ctrl-C and on SIGTERM.

The JSON (and the table's last lines) name the commit and a digest of the package's sources at the
start and the end of the run, flagged when they differ (the code measured changed mid-run).

Every value is per DAG run (per-task values: the run's median over the group's tasks); the table
shows median (min-max) over the ``--repeat`` runs of each transport, and the ratio
AlationTransport ÷ stock of the medians (min-max of the ratios of the same pair).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402

from bench.airflow_runs import ALATION_TRANSPORT, SETUP_SQL, alation_extra, stock_transport  # noqa: E402
from bench.compare import (  # noqa: E402
    cell,
    machine,
    machine_line,
    print_rows,
    print_saved,
    ratio_cell,
    ratio_stats,
)

DAG_ID = "bench_twenty_sql"
DAG_IDS = ("bench_task_time", "bench_twenty_sql")  # both DAGs of bench/dags/bench_lineage.py
KINDS = ("http", "alation")
KIND_LABEL = {"disabled": "OpenLineage disabled", "http": "stock http", "alation": "AlationTransport"}
LINEAGE_TASKS = tuple(f"copy_{k:02d}" for k in range(20))
GROUPS = {
    "lineage": ("20 lineage tasks (INSERT ... SELECT): Alation sends their COMPLETE", LINEAGE_TASKS),
    "seed": ("seed task (DDL + INSERT, output only): Alation drops its events", ("ddl_and_seed",)),
    "none": ("task without datasets (PythonOperator): Alation drops its events", ("check",)),
}
EXPECTED = {
    # 22 task processes; the scheduler sends the DAG's START and COMPLETE
    "http": {"COMPLETE DAG": 1, "COMPLETE TASK": 22, "START DAG": 1, "START TASK": 22},
    "alation": {"COMPLETE TASK": 20},
    "disabled": {},
}
LATE_EXIT = 1.0  # seconds from the task runner's last log line to "Workload finished"

_WORKLOAD = re.compile(
    r"^(\S+Z) \[info\s*\] Workload finished .*?duration=([\d.]+).*?workload_id=([0-9a-f-]+)", re.M
)


# -- parsing ---------------------------------------------------------------------------------------
def epoch(stamp: str | None) -> float | None:
    if not stamp:
        return None
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def task_log_marks(path: Path | None) -> dict[str, float]:
    """Timestamps (epoch s) of the task runner's lines this bench uses, from a JSON task log."""
    marks: dict[str, float] = {}
    if path is None or not path.exists():
        return marks
    post = False  # after "::group::Post Execute": the success listeners' lines
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        event, stamp = str(record.get("event", "")), epoch(record.get("timestamp"))
        if stamp is None:
            continue
        if event == "::group::Post Execute":
            post = True
        elif event == "::endgroup::":
            marks.setdefault("first_endgroup", stamp)  # end of "Pre Execute": START listener done
            marks["last_endgroup"] = stamp  # end of finalize(): success listeners done
        elif post and event.startswith("Running statement: SELECT CURRENT_SCHEMA"):
            marks.setdefault("child_extracting", stamp)  # the SQL extractor, in the forked child
        elif post and event.startswith("Successfully emitted OpenLineage `COMPLETE`"):
            marks["emitted"] = stamp  # the forked child, after client.emit returned
        marks["last_line"] = stamp
    return marks


def workloads_finished(text: str) -> dict[str, tuple[float, float]]:
    """``Workload finished`` lines of the scheduler's log: ti id -> (timestamp, supervisor duration)."""
    found = {}
    for stamp, duration, ti_id in _WORKLOAD.findall(text):
        found[ti_id] = (epoch(stamp) or 0.0, float(duration))
    return found


def read_from(path: Path, offset: int) -> str:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read().decode(errors="replace")


# -- the deployment --------------------------------------------------------------------------------
class BenchDeployment:
    """PostgreSQL, the three Airflow services, the HTTPS stand-in; everything removed by close()."""

    def __init__(self, log: Callable[[str], None]) -> None:
        from bench.receivers import bench_receiver
        from tests.support.deployment import Deployment
        from tests.support.postgres import PostgresServer

        self.log = log
        self.tmp = Path(tempfile.mkdtemp(prefix="alation-bench-deploy-"))
        self.postgres: Any = None
        self.deployment: Any = None
        self.fake: Any = None
        try:
            self.token = "bench-token-" + secrets.token_hex(12)
            self.fake = bench_receiver(self.token, self.tmp / "tls")
            self.postgres = PostgresServer.start()
            # Byte-code as on a real install (see bench/airflow_runs.py): compiled by the warm-up.
            self.deployment = Deployment.create(
                self.postgres,
                dags_source=BENCH / "dags",
                dag_ids=DAG_IDS,
                extra_env={
                    "PYTHONDONTWRITEBYTECODE": "",
                    "PYTHONPYCACHEPREFIX": str(self.tmp / "pycache"),
                },
            )
            self.deployment.start()
            dep = self.deployment
            dep.put_connection(
                "bench_postgres",
                conn_type="postgres",
                host="127.0.0.1",
                port=self.postgres.port,
                login=self.postgres.user,
                schema=dep.data_database,
            )
            extra = alation_extra(str(self.fake.cert_path), str(self.tmp / "spool"), str(self.tmp / "cache"))
            dep.put_alation_connection(self.fake.url, self.token, extra)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        # Each step on its own: a failure (or a second Ctrl-C) in one still runs the others.
        with contextlib.suppress(BaseException):
            if self.deployment is not None:
                self.deployment.cleanup()  # scheduler first, then every child, then the home
        with contextlib.suppress(BaseException):
            if self.postgres is not None:
                self.postgres.stop()
        with contextlib.suppress(BaseException):
            if self.fake is not None:
                self.fake.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def transport_env(self, kind: str) -> dict[str, str]:
        if kind == "disabled":
            return {"AIRFLOW__OPENLINEAGE__DISABLED": "true"}
        if kind == "http":
            config = stock_transport(self.fake.url, self.token, str(self.fake.cert_path))
        else:
            config = ALATION_TRANSPORT
        return {"AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(config)}

    def prepare_tables(self) -> None:
        import psycopg2

        conn = psycopg2.connect(
            host="127.0.0.1",
            port=self.postgres.port,
            user=self.postgres.user,
            dbname=self.deployment.data_database,
        )
        try:
            with conn, conn.cursor() as cursor:
                cursor.execute(SETUP_SQL)
        finally:
            conn.close()

    def settle(self, quiet: float = 2.0, limit: float = 20.0) -> None:
        """Wait until the stand-in's request count has not changed for ``quiet`` seconds."""
        deadline = time.monotonic() + limit
        count, since = len(self.fake.requests), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = len(self.fake.requests)
            if now != count:
                count, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return

    def run(self, kind: str) -> dict[str, Any]:
        """One measured DAG run of ``bench_twenty_sql`` with ``kind``'s transport."""
        from bench.receivers import Traffic

        dep = self.deployment
        dep.restart_scheduler(self.transport_env(kind))
        self.prepare_tables()
        self.settle(quiet=1.0)
        self.fake.reset()
        scheduler_offset = dep.process_log("scheduler").stat().st_size
        result = dep.trigger(DAG_ID, timeout=600)[DAG_ID]
        self.settle()
        cpu = self.worker_cpu()
        traffic = Traffic.of(self.fake)
        api_gets = len(self.fake.api_requests())
        dag_run = dep.api("GET", f"dags/{DAG_ID}/dagRuns/{result.run_id}")
        tis = dep.api("GET", f"dags/{DAG_ID}/dagRuns/{result.run_id}/taskInstances")["task_instances"]
        finished = workloads_finished(read_from(dep.process_log("scheduler"), scheduler_offset))
        tasks: dict[str, dict[str, Any]] = {}
        for ti in tis:
            task = result.tasks.get(ti["task_id"])
            marks = task_log_marks(task.log_path if task else None)
            start, end = epoch(ti["start_date"]), epoch(ti["end_date"])
            sup = finished.get(ti["id"])
            row: dict[str, Any] = {
                "state": ti["state"],
                "operator": ti["operator"],
                "worker": sup is not None,
            }
            if sup is not None and start is not None and end is not None:
                sup_end, sup_duration = sup
                row["slot"] = sup_end - start
                row["supervisor"] = sup_duration
                if "last_endgroup" in marks:
                    row["listener"] = marks["last_endgroup"] - end
                    row["process"] = marks["last_endgroup"] - start
                if "last_line" in marks:
                    row["exit_lag"] = sup_end - marks["last_line"]
                if "emitted" in marks:
                    row["to_emitted"] = marks["emitted"] - end
                    if "last_endgroup" in marks:
                        row["after_emitted"] = marks["last_endgroup"] - marks["emitted"]
                    if "child_extracting" in marks:
                        row["to_extracting"] = marks["child_extracting"] - end
                        row["extract_to_emitted"] = marks["emitted"] - marks["child_extracting"]
                if "first_endgroup" in marks:
                    row["pre_execute"] = marks["first_endgroup"] - start
            tasks[ti["task_id"]] = row
        problems = []
        if result.state != "success" or dag_run["state"] != "success":
            problems.append(f"{kind}: run {result.run_id} ended {result.state}")
        if traffic.by_type != EXPECTED[kind]:
            problems.append(f"{kind}: received {traffic.by_type}, expected {EXPECTED[kind]}")
        if kind == "alation":
            sent = sorted(e["job"]["name"].split(".")[-1] for e in self.fake.events)
            if sent != sorted(LINEAGE_TASKS):
                problems.append(f"alation: sent the events of {sent}")
        ran = [t for t, row in tasks.items() if row["worker"]]
        keys = ("listener", "to_emitted", "after_emitted", "pre_execute", "process")
        if kind == "disabled":
            keys = ("pre_execute", "process")
        missing = [t for t in ran if any(k not in tasks[t] for k in keys)]
        if len(ran) != 22 or missing:
            problems.append(f"{kind}: {len(ran)} task processes; timings missing for {missing}")
        return {
            "kind": kind,
            "run_id": result.run_id,
            "state": dag_run["state"],
            "requests": traffic.requests,
            "wire_bytes": traffic.wire_bytes,
            "body_bytes": traffic.body_bytes,
            "by_type": traffic.by_type,
            "api_gets": api_gets,
            "connection_reads": result.connection_reads,
            "cpu": cpu,
            "wall": result.elapsed,
            "after_terminal": result.process_wait,
            "run_duration": (epoch(dag_run["end_date"]) or 0.0) - (epoch(dag_run["start_date"]) or 0.0),
            "tasks": tasks,
            "problems": problems,
        }

    def worker_cpu(self) -> float:
        """CPU seconds of the scheduler's LocalExecutor workers since the scheduler (re)started, with
        their reaped children: the supervisors, the task runners and the OpenLineage listener's forks
        (each reaped by its parent), i.e. every task process of the run (the scheduler is restarted
        before each run)."""
        import psutil

        total = 0.0
        for proc in psutil.Process(self.deployment.processes["scheduler"].pid).children():
            with contextlib.suppress(psutil.Error):
                if "LocalExecutor" in " ".join(proc.cmdline()):
                    t = proc.cpu_times()
                    total += t.user + t.system + t.children_user + t.children_system
        return total

    def keep_logs(self, into: Path) -> None:
        into.mkdir(parents=True, exist_ok=True)
        for name in ("logs", "processes"):
            source = self.deployment.home / name
            if source.exists():
                shutil.copytree(source, into / name, dirs_exist_ok=True)


def code_state() -> dict[str, str]:
    """The commit and a digest of the package's sources as they are (uncommitted changes included)."""
    import hashlib
    import subprocess

    digest = hashlib.sha256()
    for path in sorted((REPO / "airflow_provider_alation").rglob("*.py")):
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False)
    return {"commit": head.stdout.strip(), "sources_sha256": digest.hexdigest()[:16]}


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt, so the clean-up in ``finally`` runs (SIGINT
    too: a shell starts a background job with SIGINT ignored)."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def measure(
    repeat: int,
    log: Callable[[str], None],
    keep_logs: Path | None,
    disabled: bool = False,
    warm_ups: int = 1,
) -> dict[str, Any]:
    kinds = ("disabled", *KINDS) if disabled else KINDS
    started = time.perf_counter()
    results: dict[str, Any] = {"machine": machine(), "runs": [], "warm_up": [], "code": code_state()}
    log("PostgreSQL, Airflow metadata database (db migrate), api-server, scheduler, dag-processor")
    bench = BenchDeployment(log)
    try:
        results["setup_seconds"] = time.perf_counter() - started
        for kind in kinds * warm_ups:
            run = bench.run(kind)
            log(
                f"  warm-up {KIND_LABEL[kind]}: {run['state']}, {run['requests']} requests, "
                f"{run['wall']:.1f} s"
            )
            results["warm_up"].append({k: v for k, v in run.items() if k != "tasks"})
        for pair in range(repeat):
            for kind in kinds:
                run = bench.run(kind)
                run["pair"] = pair
                results["runs"].append(run)
                tasks = [t for t in run["tasks"].values() if t["worker"]]
                late = sum(1 for t in tasks if t.get("exit_lag", 0) > LATE_EXIT)
                log(
                    f"  pair {pair + 1}/{repeat} {KIND_LABEL[kind]}: {run['state']}, "
                    f"{run['requests']} requests, {run['connection_reads']}, "
                    f"{run['wire_bytes']:,} B, wall {run['wall']:.1f} s, run {run['run_duration']:.1f} s, "
                    f"slots {sum(t['supervisor'] for t in tasks):.1f} s, {late} exits noticed late"
                )
                for problem in run["problems"]:
                    log(f"  [red]problem:[/red] {problem}")
    finally:
        if keep_logs is not None and bench.deployment is not None:
            with contextlib.suppress(OSError):
                bench.keep_logs(keep_logs)
        log("stopping the deployment, removing its temporary directories")
        bench.close()
    results["seconds"] = time.perf_counter() - started
    results["code_after"] = code_state()
    if results["code_after"] != results["code"]:
        log("[red]the package's code changed during the run: the runs measured different code[/red]")
    return results


# -- the table -------------------------------------------------------------------------------------
def per_run(
    results: dict[str, Any], kind: str, value: Callable[[dict[str, Any]], float | None]
) -> list[float]:
    values = [value(run) for run in results["runs"] if run["kind"] == kind]
    return [v for v in values if v is not None]


def group_median(run: dict[str, Any], group: str, key: str) -> float | None:
    values = [run["tasks"][t][key] for t in GROUPS[group][1] if key in run["tasks"].get(t, {})]
    return statistics.median(values) if values else None


def worker_tasks(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in run["tasks"].values() if t["worker"]]


def build_rows(results: dict[str, Any]) -> list[tuple[str, ...] | str]:
    pairs = len(per_run(results, "http", lambda r: 1.0))
    disabled = bool(per_run(results, "disabled", lambda r: 1.0))
    rows: list[tuple[str, ...] | str] = []

    def row(label: str, unit: str, value: Callable[[dict[str, Any]], float | None], **fmt: Any) -> None:
        h, a = per_run(results, "http", value), per_run(results, "alation", value)
        d = per_run(results, "disabled", value) if disabled else []
        digits = fmt.get("digits", 2)
        rows.append(
            (
                label,
                unit,
                *((cell(d, fmt.get("scale", 1.0), digits),) if disabled else ()),
                cell(h, fmt.get("scale", 1.0), digits),
                cell(a, fmt.get("scale", 1.0), digits),
                ratio_cell(ratio_stats(a, h)) if h and a and min(h) > 0 else "-",
            )
        )

    rows.append(
        f"1. per DAG run of bench_twenty_sql on a real deployment (22 task processes; {pairs} runs of each)"
    )
    row("requests to the endpoint", "", lambda r: r["requests"], digits=0)
    row("bytes sent (request line + headers + body)", "KB", lambda r: r["wire_bytes"], scale=1e-3, digits=1)
    row("event bytes (bodies)", "KB", lambda r: r["body_bytes"], scale=1e-3, digits=1)
    row("other requests to the stand-in (REST API GETs)", "", lambda r: r["api_gets"], digits=0)
    row(
        "reads of alation_default through the Execution API",
        "",
        lambda r: r.get("connection_reads", {}).get("alation_default"),
        digits=0,
    )
    row("DAG-run wall: trigger to every task process exited", "s", lambda r: r["wall"])
    row("DAG run start_date to end_date", "s", lambda r: r["run_duration"])
    row("  run seen finished (polled) to last task process exited", "s", lambda r: r["after_terminal"])
    row(
        "task-slot time, sum (supervisor start to end)",
        "s",
        lambda r: sum(t["supervisor"] for t in worker_tasks(r)),
    )
    row("CPU time of the task processes (workers + reaped children)", "s", lambda r: r.get("cpu"))
    row(
        "task process time, sum (start_date to listeners done)",
        "s",
        lambda r: sum(t.get("process", 0.0) for t in worker_tasks(r)),
    )
    row(
        f"exit noticed late (> {LATE_EXIT:g} s after the task's last log line)",
        "tasks",
        lambda r: sum(1 for t in worker_tasks(r) if t.get("exit_lag", 0) > LATE_EXIT),
        digits=0,
    )
    for group, (title, _) in GROUPS.items():
        rows.append(f"2. per task, {title} (each run: the median over these tasks)")
        if group != "none":
            spans = [
                ("  end_date to the child's SQL extraction (plugins, fork)", "to_extracting"),
                ("  child: extraction to COMPLETE emitted (extract, build, emit)", "extract_to_emitted"),
            ]
        else:
            spans = [("  end_date to COMPLETE emitted (plugins, fork, build, emit)", "to_emitted")]
        per_task = [
            ("listener time after success (end_date to listeners done)", "ms", "listener", 1e3, 1),
            *((label, "ms", key, 1e3, 1) for label, key in spans),
            ("  COMPLETE emitted to listeners done (child exit, reaped)", "ms", "after_emitted", 1e3, 1),
            ("start_date to execute (incl. the START listener)", "s", "pre_execute", 1.0, 3),
            ("task-slot time (start_date to supervisor end)", "s", "slot", 1.0, 2),
            ("task process time (start_date to listeners done)", "s", "process", 1.0, 2),
        ]
        for label, unit, key, scale, digits in per_task:
            row(label, unit, lambda r, g=group, k=key: group_median(r, g, k), scale=scale, digits=digits)
    return rows


def print_table(results: dict[str, Any], console: Console) -> None:
    console.print(
        machine_line(results["machine"], ", real deployment", " (LocalExecutor, parallelism 4)"),
        highlight=False,
    )
    print_rows(build_rows(results), console, disabled=any(r["kind"] == "disabled" for r in results["runs"]))
    console.print(
        "cells: median (min-max) over the runs of each transport; ratios: of the medians (min-max of "
        "the ratios of the same pair). Order of the runs: "
        + ("OL disabled, " if any(r["kind"] == "disabled" for r in results["runs"]) else "")
        + "stock, Alation, repeated, after one unmeasured warm-up run of each"
    )
    code = results.get("code", {})
    if code:
        changed = results.get("code_after", code) != code
        console.print(
            f"code: commit {code.get('commit', '?')[:12]}, "
            f"package sources sha256 {code.get('sources_sha256')}"
            + (" [red](changed during the run)[/red]" if changed else ""),
            highlight=False,
        )
    for kind in KINDS:
        types = next((r["by_type"] for r in results["runs"] if r["kind"] == kind), None)
        if types:
            console.print(f"events received per DAG run, {KIND_LABEL[kind]}: {types}")
    for run in results["runs"]:
        for problem in run["problems"]:
            console.print(f"[red]problem:[/red] {problem}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3, help="pairs of runs (stock, Alation), default 3")
    parser.add_argument(
        "--warm-ups",
        type=int,
        default=1,
        help="unmeasured runs of each kind first (default 1)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead")
    parser.add_argument(
        "--load", metavar="FILE", help="print the table of a saved --json result, measure nothing"
    )
    parser.add_argument(
        "--with-disabled",
        action="store_true",
        help="also a run with OpenLineage disabled before each pair (a reference column)",
    )
    parser.add_argument(
        "--keep-logs", metavar="DIR", type=Path, help="copy the deployment's task and service logs here first"
    )
    args = parser.parse_args()
    if args.load:
        print_saved(Path(args.load), print_table)
        return
    console = Console(stderr=args.json)
    if not console.is_terminal:
        console = Console(stderr=args.json, width=160)
    log = console.log if not args.json else (lambda message: print(message, file=sys.stderr))
    os.environ.pop("AIRFLOW_HOME", None)  # the deployment has its own
    try:
        with sigterm_as_interrupt():
            results = measure(args.repeat, log, args.keep_logs, args.with_disabled, args.warm_ups)
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc or 'Ctrl-C'}); everything stopped and removed", file=sys.stderr)
        sys.exit(130)
    results["args"] = {"repeat": args.repeat, "with_disabled": args.with_disabled}
    if args.json:
        print(json.dumps(results, indent=1, default=str))
    else:
        print_table(results, console)
        console.print(f"total {results['seconds']:.0f} s")


if __name__ == "__main__":
    main()
