"""dbt with the real, unmodified OpenLineage sender (``dbt-ol``) in a venv of its own.

dbt-core, dbt-postgres and openlineage-dbt pin versions Airflow's own pins may not agree with, so
they live in ``.venv-dbt/`` at the repository root (gitignored), created on first use and reused
while its marker file records the same pins.

    python -m tests.support.dbt          # create (or reuse) the venv and print how long it took
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.airflow_home import REPO

VENV = REPO / ".venv-dbt"
PROJECT = REPO / "tests" / "support" / "dbt_project"
# Versions that install together on Python 3.11; openlineage-dbt matches the main venv's
# openlineage-python so both ends speak the same client.
REQUIREMENTS = ("dbt-core==1.10.23", "dbt-postgres==1.10.0", "openlineage-dbt==1.54.0")
_MARKER = VENV / "requirements.json"


def _python() -> Path:
    return VENV / "bin" / "python"


def dbt_ol_bin() -> Path:
    return VENV / "bin" / "dbt-ol"


def venv_ready() -> bool:
    try:
        return json.loads(_MARKER.read_text()) == list(REQUIREMENTS) and dbt_ol_bin().exists()
    except (OSError, ValueError):
        return False


def ensure_venv(timeout: float = 1800) -> float:
    """Create ``.venv-dbt`` with :data:`REQUIREMENTS` unless present; the seconds it took (0 if reused)."""
    if venv_ready():
        return 0.0
    started = time.monotonic()
    shutil.rmtree(VENV, ignore_errors=True)
    # The base interpreter of the running venv (not the venv's python: that would nest the venvs).
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(VENV)], check=True, timeout=300)
    done = subprocess.run(
        [str(_python()), "-m", "pip", "install", "--disable-pip-version-check", "-q", *REQUIREMENTS],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(REQUIREMENTS)} failed:\n{done.stderr[-4000:]}")
    _MARKER.write_text(json.dumps(list(REQUIREMENTS)))
    return time.monotonic() - started


@dataclass
class DbtProject:
    """A copy of :data:`PROJECT` whose ``profiles.yml`` points at one PostgreSQL database."""

    root: Path
    host: str
    port: int
    user: str
    database: str

    @classmethod
    def create(cls, directory: Path, *, host: str, port: int, user: str, database: str) -> DbtProject:
        root = directory / "dbt_project"
        shutil.copytree(PROJECT, root, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
        project = cls(root=root, host=host, port=port, user=user, database=database)
        (root / "profiles.yml").write_text(
            "alation_relay_test:\n"
            "  target: test\n"
            "  outputs:\n"
            "    test:\n"
            "      type: postgres\n"
            f"      host: {host}\n"
            f"      port: {port}\n"
            f"      user: {user}\n"
            "      password: ''\n"
            f"      dbname: {database}\n"
            "      schema: analytics\n"
            "      threads: 1\n"
        )
        return project

    def env(self, openlineage_url: str, api_key: str, namespace: str = "dbt-relay-test") -> dict[str, str]:
        """The sender's environment. With no other transport configured, openlineage-python (1.54,
        ``OpenLineageClient._http_transport_from_env_variables``) builds its ``http`` transport from
        ``OPENLINEAGE_URL``, ``OPENLINEAGE_ENDPOINT`` (default ``api/v1/lineage``, joined to the
        URL) and ``OPENLINEAGE_API_KEY`` (auth ``api_key``: ``Authorization: Bearer <key>``)."""
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("OPENLINEAGE", "DBT_", "VIRTUAL_ENV"))
        }
        env.update(
            {
                "PATH": f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}",
                "OPENLINEAGE_URL": openlineage_url,
                "OPENLINEAGE_ENDPOINT": "api/v1/lineage",
                "OPENLINEAGE_API_KEY": api_key,
                "OPENLINEAGE_NAMESPACE": namespace,
                "DBT_PROFILES_DIR": str(self.root),
                "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
                "DO_NOT_TRACK": "1",
            }
        )
        return env

    def dbt_ol(
        self, *args: str, openlineage_url: str, api_key: str, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """``dbt-ol <args>`` in the project (e.g. ``build``): dbt runs, then its lineage is sent."""
        return subprocess.run(
            [str(dbt_ol_bin()), *args, "--project-dir", str(self.root), "--profiles-dir", str(self.root)],
            cwd=self.root,
            env=self.env(openlineage_url, api_key),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


if __name__ == "__main__":
    seconds = ensure_venv()
    print(f"{VENV}: {'reused' if not seconds else f'created in {seconds:.1f} s'}", flush=True)
