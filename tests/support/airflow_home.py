"""A throwaway Airflow home (embedded SQLite) that runs real DAGs with ``airflow dags test``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
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
