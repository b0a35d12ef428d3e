"""A real Airflow deployment for end-to-end tests: api-server, scheduler and dag-processor.

Unlike ``airflow dags test`` (tests/support/airflow_home.py), this runs Airflow as a user does:
the metadata database is a database on the tests' PostgreSQL, the executor is LocalExecutor, the
three services run as separate processes (logs in ``<home>/processes/<name>.log``), connections
live in the metadata database (created through the REST API, as the UI does) and DAG runs are
triggered through the REST API.

Auth: the default SimpleAuthManager with ``[core] simple_auth_manager_all_admins = True``, whose
middleware authorises every REST request as an admin, so the client sends no credentials.

Waiting for a run: the run's terminal state is not enough, because the task is marked successful
before the OpenLineage listener's emitter (a fork of the task runner, or a thread in it) has sent
its events. Every process that works on a task instance carries the task instance's id (a UUID) in
its title: the LocalExecutor worker supervising it (``airflow worker -- LocalExecutor: <id>``, back
to ``<idle>`` when the supervision is over), the task runner (``airflow worker -- <id>``) and the
listener's forks (``... - OpenLineage - ...``). :meth:`Deployment.trigger` waits until no process
has a title naming one of the run's task instances.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil
import requests

from tests.support.airflow_home import REPO, TRANSPORT, airflow_bin
from tests.support.network import free_port
from tests.support.postgres import PostgresServer

DAGS_SOURCE = REPO / "tests" / "deployment_dags"
SERVICES = ("api-server", "scheduler", "dag-processor")
NAMESPACE = "deploy-airflow"
PG_CONN_ID = "deploy_pg"
ALATION_CONN_ID = "alation_default"
TERMINAL_RUN_STATES = ("success", "failed")

T = TypeVar("T")


class DeploymentError(AssertionError):
    """The deployment did not do what it was asked in time (the message carries log tails)."""


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<{path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float, logs: Callable[[], str], interval: float = 0.25
) -> T:
    """Poll ``probe`` until it returns something other than None; on timeout raise with ``logs()``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise DeploymentError(f"timed out after {timeout:g}s waiting for {what}\n{logs()}")
        time.sleep(interval)


@dataclass
class TaskRun:
    """One task instance of a finished run, as the REST API describes it."""

    task_id: str
    id: str
    state: str | None
    duration: float | None
    try_number: int
    log_path: Path | None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path is not None else ""


@dataclass
class DagRunResult:
    dag_id: str
    run_id: str
    state: str
    tasks: dict[str, TaskRun]
    #: GET /execution/connections/<conn_id> lines the api-server logged while the run was going
    #: (from the trigger until every task process had exited), per connection id.
    connection_reads: dict[str, int]
    #: seconds from the trigger until the last task process had exited
    elapsed: float
    #: seconds from the runs' terminal state until the last task process had exited, and the titles
    #: of the task processes still running when the runs were terminal
    process_wait: float
    processes_left: list[str]


@dataclass
class Deployment:
    home: Path
    port: int
    env: dict[str, str]
    postgres: PostgresServer
    data_database: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    scheduler_env: dict[str, str] = field(default_factory=dict)
    session: requests.Session = field(default_factory=requests.Session)
    #: the DAG ids :meth:`wait_dags_parsed` waits for; None: the ``deploy_*`` DAGs of DAGS_SOURCE
    dag_ids: tuple[str, ...] | None = None

    # -- lifecycle ----------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        postgres: PostgresServer,
        dags_source: Path = DAGS_SOURCE,
        dag_ids: tuple[str, ...] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> Deployment:
        """A fresh home, a migrated metadata database, and the data database with tables a, b, c.

        ``dags_source``: the folder whose ``*.py`` files are the DAGs (then ``dag_ids`` names the DAG
        ids to wait for); ``extra_env``: added to (or replacing) every service's environment.
        """
        suffix = uuid.uuid4().hex[:8]
        meta_db, data_db = f"airflow_meta_{suffix}", f"deploy_data_{suffix}"
        postgres.create_database(meta_db)
        postgres.create_database(data_db)
        home = Path(tempfile.mkdtemp(prefix="alation-deployment-"))
        dags = home / "dags"
        dags.mkdir()
        for path in sorted(dags_source.glob("*.py")):
            shutil.copy(path, dags / path.name)
        (home / "processes").mkdir()
        port = free_port()
        from cryptography.fernet import Fernet

        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OPENLINEAGE"))}
        env = {
            **base,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",  # LocalExecutor forks this many workers up front
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (
                f"postgresql+psycopg2://{postgres.user}@127.0.0.1:{postgres.port}/{meta_db}"
            ),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": uuid.uuid4().hex,
            "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(TRANSPORT),
            "AIRFLOW__OPENLINEAGE__NAMESPACE": NAMESPACE,
            "PYTHONWARNINGS": "ignore",
            **(extra_env or {}),
        }
        deployment = cls(
            home=home, port=port, env=env, postgres=postgres, data_database=data_db, dag_ids=dag_ids
        )
        try:  # interrupted (Ctrl-C) or failed here, nothing would remove the home
            deployment._seed_data_database()
            result = subprocess.run(
                [airflow_bin(), "db", "migrate"],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
        except BaseException:
            shutil.rmtree(home, ignore_errors=True)
            raise
        (home / "processes" / "db-migrate.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            shutil.rmtree(home, ignore_errors=True)
            raise DeploymentError(
                f"airflow db migrate failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return deployment

    def _seed_data_database(self) -> None:
        import psycopg2

        conn = psycopg2.connect(
            host="127.0.0.1", port=self.postgres.port, user=self.postgres.user, dbname=self.data_database
        )
        try:
            with conn, conn.cursor() as cursor:
                for table in ("a", "b", "c"):
                    cursor.execute(f"CREATE TABLE IF NOT EXISTS {table} (id integer)")
                cursor.execute("INSERT INTO a VALUES (1), (2)")
        finally:
            conn.close()

    def start(self) -> Deployment:
        """Start the three services, wait until they are healthy and every DAG is parsed."""
        try:
            self._spawn("api-server", "api-server", "--port", str(self.port), "--host", "127.0.0.1")
            self._spawn("dag-processor", "dag-processor")
            self._spawn("scheduler", "scheduler", extra_env=self.scheduler_env)
            self.wait_healthy()
            self.wait_dags_parsed()
            self.put_connection(
                PG_CONN_ID,
                conn_type="postgres",
                host="127.0.0.1",
                port=self.postgres.port,
                login=self.postgres.user,
                schema=self.data_database,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, *args: str, extra_env: dict[str, str] | None = None) -> None:
        log_path = self.home / "processes" / f"{name}.log"
        with open(log_path, "ab") as log:
            self.processes[name] = subprocess.Popen(
                [airflow_bin(), *args],
                env={**self.env, **(extra_env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.home,
                start_new_session=True,  # its own process group: stopped with all its children
            )

    def _stop_process(self, name: str, grace: float = 15) -> None:
        process = self.processes.pop(name, None)
        if process is None:
            return
        try:
            family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            family = []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        # Anything of its family that left the process group (or outlived its parent): killed by pid.
        _, alive = psutil.wait_procs(family, timeout=5)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop every service (scheduler first, so no new task starts), then their children."""
        for name in ("scheduler", "dag-processor", "api-server"):
            self._stop_process(name)
        self.session.close()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)

    def restart_scheduler(self, extra_env: dict[str, str]) -> None:
        """Restart the scheduler (whose LocalExecutor workers run the tasks) with ``extra_env``."""
        self._stop_process("scheduler")
        self.scheduler_env = dict(extra_env)
        self._spawn("scheduler", "scheduler", extra_env=self.scheduler_env)
        self.wait_healthy()

    def scheduler_environ(self) -> dict[str, str]:
        """The environment the running scheduler (and so its LocalExecutor workers) has."""
        return psutil.Process(self.processes["scheduler"].pid).environ()

    @contextlib.contextmanager
    def scheduler_config(self, extra_env: dict[str, str]) -> Iterator[None]:
        """Run the body with the scheduler (and so the tasks) configured with ``extra_env``."""
        before = dict(self.scheduler_env)
        self.restart_scheduler(extra_env)
        try:
            yield
        finally:
            self.restart_scheduler(before)

    # -- logs -----------------------------------------------------------------------------------------
    def process_log(self, name: str) -> Path:
        return self.home / "processes" / f"{name}.log"

    def log_tails(self, *names: str, lines: int = 30) -> str:
        names = names or SERVICES
        return "\n".join(
            f"--- {name} (last {lines} lines) ---\n{tail(self.process_log(name), lines)}" for name in names
        )

    def log_files(self) -> list[Path]:
        """Every log file of the deployment: the services' and the task logs."""
        files = list((self.home / "processes").glob("*.log"))
        files += [p for p in (self.home / "logs").rglob("*") if p.is_file()]
        return sorted(files)

    def task_log_path(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> Path:
        return (
            self.home
            / "logs"
            / f"dag_id={dag_id}"
            / f"run_id={run_id}"
            / f"task_id={task_id}"
            / f"attempt={try_number}.log"
        )

    def files_containing(self, secret: str) -> list[Path]:
        return [path for path in self.log_files() if secret in path.read_text(errors="replace")]

    def connection_reads(self, conn_id: str, since: int = 0) -> int:
        """How many ``GET /execution/connections/<conn_id>`` the api-server logged after byte ``since``."""
        with open(self.process_log("api-server"), "rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
        # The api-server's access log (INFO): "... method=GET path=/execution/connections/<id> query= ..."
        return len(re.findall(rf"method=GET path=/execution/connections/{re.escape(conn_id)}(?=\s)", text))

    def api_log_size(self) -> int:
        return self.process_log("api-server").stat().st_size

    # -- REST API ------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str, expect: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        response = self.session.request(method, f"{self.url}/api/v2/{path.lstrip('/')}", timeout=30, **kwargs)
        if response.status_code not in expect:
            raise DeploymentError(
                f"{method} /api/v2/{path} answered {response.status_code}: {response.text[:2000]}\n"
                f"{self.log_tails('api-server')}"
            )
        return response.json() if response.content else None

    def wait_healthy(self, timeout: float = 180) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise DeploymentError(
                        f"{name} exited with {process.returncode}\n{self.log_tails(name, lines=60)}"
                    )
            try:
                response = self.session.get(f"{self.url}/api/v2/monitor/health", timeout=5)
            except requests.RequestException:
                return None
            if response.status_code != 200:
                return None
            health = response.json()
            parts = ("metadatabase", "scheduler", "dag_processor")
            if all((health.get(part) or {}).get("status") == "healthy" for part in parts):
                return health
            return None

        return wait_for(
            "api-server, scheduler and dag-processor to be healthy", probe, timeout, self.log_tails
        )

    def wait_dags_parsed(self, timeout: float = 180) -> list[str]:
        if self.dag_ids is None:
            expected = sorted(path.stem for path in DAGS_SOURCE.glob("*.py"))
            params: dict[str, Any] = {"dag_id_pattern": "deploy_%", "limit": 100}
        else:
            expected, params = sorted(self.dag_ids), {"limit": 100}

        def probe() -> list[str] | None:
            errors = self.api("GET", "importErrors")
            if errors["total_entries"]:
                raise DeploymentError(f"DAG import errors: {json.dumps(errors['import_errors'], indent=1)}")
            dags = self.api("GET", "dags", params=params)
            found = sorted(d["dag_id"] for d in dags["dags"])
            return found if found == expected else None

        return wait_for(
            f"DAGs {expected} to be parsed", probe, timeout, lambda: self.log_tails("dag-processor")
        )

    def put_connection(self, conn_id: str, **fields: Any) -> None:
        """Create the connection, or replace all its fields when it exists (``PATCH``)."""
        body = {"connection_id": conn_id, **fields}
        if isinstance(body.get("extra"), dict):
            body["extra"] = json.dumps(body["extra"])
        existing = self.session.get(f"{self.url}/api/v2/connections/{conn_id}", timeout=30)
        if existing.status_code == 404:
            self.api("POST", "connections", expect=(201,), json=body)
        else:
            mask = [key for key in body if key != "connection_id"]
            self.api("PATCH", f"connections/{conn_id}", params={"update_mask": mask}, json=body)

    def put_alation_connection(self, host: str, token: str, extra: dict[str, Any]) -> None:
        self.put_connection(ALATION_CONN_ID, conn_type="alation", host=host, password=token, extra=extra)

    def trigger(self, *dag_ids: str, timeout: float = 180) -> dict[str, DagRunResult]:
        """Unpause and trigger each DAG at once; wait for every run to finish and its processes to exit."""
        api_offset = self.api_log_size()
        started = time.monotonic()
        run_ids: dict[str, str] = {}
        for dag_id in dag_ids:
            self.api("PATCH", f"dags/{dag_id}", json={"is_paused": False})
            run_id = f"deploy__{uuid.uuid4().hex[:12]}"
            self.api(
                "POST",
                f"dags/{dag_id}/dagRuns",
                json={"dag_run_id": run_id, "logical_date": None, "conf": {}},
            )
            run_ids[dag_id] = run_id
        results: dict[str, DagRunResult] = {}
        tasks: dict[str, dict[str, TaskRun]] = {}
        states: dict[str, str] = {}
        for dag_id, run_id in run_ids.items():
            remaining = max(1.0, timeout - (time.monotonic() - started))
            states[dag_id] = self._wait_run(dag_id, run_id, remaining)
            tasks[dag_id] = self.task_runs(dag_id, run_id)
        ti_ids = [task.id for per_dag in tasks.values() for task in per_dag.values()]
        finished = time.monotonic()
        left = self.process_titles(self.task_processes(ti_ids))
        self.wait_task_processes_exited(ti_ids, timeout=60)
        elapsed = time.monotonic() - started
        reads = {
            conn_id: self.connection_reads(conn_id, api_offset) for conn_id in (ALATION_CONN_ID, PG_CONN_ID)
        }
        for dag_id, run_id in run_ids.items():
            results[dag_id] = DagRunResult(
                dag_id,
                run_id,
                states[dag_id],
                tasks[dag_id],
                reads,
                elapsed,
                elapsed - (finished - started),
                left,
            )
        for dag_id in dag_ids:  # pause again: a DAG left unpaused costs the scheduler nothing, but tidy
            self.api("PATCH", f"dags/{dag_id}", json={"is_paused": True})
        return results

    def _wait_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        def probe() -> str | None:
            state = self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}")["state"]
            return state if state in TERMINAL_RUN_STATES else None

        def logs() -> str:
            task_logs = "\n".join(
                f"--- {path} ---\n{tail(path, 30)}"
                for path in sorted(
                    (self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}").rglob("*.log")
                )
            )
            return f"{self.log_tails('scheduler', lines=60)}\n{task_logs}"

        return wait_for(f"run {run_id} of {dag_id} to finish", probe, timeout, logs, interval=0.5)

    def task_runs(self, dag_id: str, run_id: str) -> dict[str, TaskRun]:
        answer = self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        runs = {}
        for ti in answer["task_instances"]:
            path = self.task_log_path(dag_id, run_id, ti["task_id"], ti["try_number"])
            runs[ti["task_id"]] = TaskRun(
                task_id=ti["task_id"],
                id=ti["id"],
                state=ti["state"],
                duration=ti["duration"],
                try_number=ti["try_number"],
                log_path=path if path.exists() else None,
            )
        return runs

    def task_processes(self, ti_ids: list[str]) -> list[psutil.Process]:
        """Processes whose title names one of the task instances (supervisor, task runner, forks)."""
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            title = " ".join(proc.info["cmdline"] or [])
            if any(ti_id in title for ti_id in ti_ids):
                found.append(proc)
        return found

    @staticmethod
    def process_titles(processes: list[psutil.Process]) -> list[str]:
        titles = []
        for proc in processes:
            with contextlib.suppress(psutil.Error):
                titles.append(f"pid {proc.pid} ppid {proc.ppid()}: {' '.join(proc.cmdline())}")
        return titles

    def wait_task_processes_exited(self, ti_ids: list[str], timeout: float = 60) -> None:
        def probe() -> bool | None:
            return True if not self.task_processes(ti_ids) else None

        def logs() -> str:
            left = self.process_titles(self.task_processes(ti_ids))
            return "still running:\n" + "\n".join(left) + "\n" + self.log_tails("scheduler")

        wait_for(f"the processes of task instances {ti_ids} to exit", probe, timeout, logs, interval=0.1)
