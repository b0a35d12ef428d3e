"""A throwaway Airflow home (embedded SQLite) that runs real DAGs with ``airflow dags test``."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TRANSPORT = {"type": "airflow_provider_alation.transport.AlationTransport"}


def airflow_bin() -> str:
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else "airflow"


def connection_json(host: str, token: str, extra: dict[str, Any] | str | None = None, **fields: Any) -> str:
    """An ``AIRFLOW_CONN_*`` value in Airflow's JSON form."""
    conn: dict[str, Any] = {"conn_type": "alation", "host": host, "password": token, **fields}
    if extra is not None:
        conn["extra"] = extra
    return json.dumps(conn)


@dataclass
class AirflowHome:
    home: Path
    dags: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, dag_sources: list[Path]) -> AirflowHome:
        home = Path(tempfile.mkdtemp(prefix="alation-airflow-"))
        dags = home / "dags"
        dags.mkdir()
        for source in dag_sources:
            for path in sorted(source.glob("*.py")):
                if path.name == "__init__.py":
                    continue  # a package marker (the shipped example DAGs' folder), not a DAG file
                shutil.copy(path, dags / path.name)
        airflow = cls(home=home, dags=dags)
        result = airflow.run("db", "migrate", env={}, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{result.stdout}\n{result.stderr}")
        return airflow

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OPENLINEAGE"))}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(TRANSPORT),
                "AIRFLOW__OPENLINEAGE__NAMESPACE": "test-airflow",
                "PYTHONWARNINGS": "ignore",
            }
        )
        env.update(self.extra_env)
        return env

    def run(self, *args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
        full_env = {**self.base_env(), **env}
        return subprocess.run(
            [airflow_bin(), *args], env=full_env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def dags_test(
        self, dag_id: str, env: dict[str, str], timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return self.run("dags", "test", dag_id, env=env, timeout=timeout)

    def cleanup(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)


def dag_run_succeeded(result: subprocess.CompletedProcess[str], dag_id: str) -> bool:
    output = result.stdout + result.stderr
    return result.returncode == 0 and f"dag_id={dag_id}" in output and "state=success" in output


@contextlib.contextmanager
def api_server(home: AirflowHome, env: dict[str, str], log_name: str = "api-server.log") -> Iterator[str]:
    """A real ``airflow api-server`` on a free loopback port for ``home`` (its base environment plus
    ``env``), its output in ``<home>/<log_name>``; yields its URL once it answers, stops it after."""
    import requests

    from tests.support.network import free_port

    port = free_port()
    log_path = home.home / log_name
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [airflow_bin(), "api-server", "--port", str(port)],
            env={**home.base_env(), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if requests.get(f"{url}/api/v2/version", timeout=2).status_code in (200, 401, 403):
                        break
                except requests.ConnectionError:
                    time.sleep(0.5)
            else:
                raise RuntimeError(
                    f"airflow api-server did not answer in 120 s:\n{log_path.read_text()[-3000:]}"
                )
            yield url
        finally:
            server.terminate()
            server.wait(timeout=30)
