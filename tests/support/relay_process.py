"""A standalone relay (``airflow-alation relay``) in a subprocess, for tests and bench/relay_load.py.

The relay's config file format is written in one place, :func:`relay_config`; everything else
talks to the relay over HTTP as a sender does (``POST /api/v1/lineage``, ``Authorization: Bearer
<relay token>``) or looks at the sender's outbox on disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from airflow_provider_alation.outbox.store import LocalOutbox
from tests.support.network import free_port

ENDPOINT = "/api/v1/lineage"


def relay_bin() -> str:
    candidate = Path(sys.executable).with_name("airflow-alation")
    return str(candidate) if candidate.exists() else "airflow-alation"


@dataclass(frozen=True)
class Sender:
    """One sender the relay accepts: its relay token and its Alation settings (the transport's
    inline config: ``url``, ``token``, ``verify``, ``spool_dir``, ``namespace_map``, ...)."""

    name: str
    token: str
    alation: dict[str, Any]

    @property
    def spool_dir(self) -> Path:
        return Path(self.alation["spool_dir"])


def relay_config(senders: list[Sender], **extra: Any) -> dict[str, Any]:
    """The relay's config file (README "## The relay")."""
    return {
        **extra,
        "senders": [{"name": s.name, "token": s.token, "alation": dict(s.alation)} for s in senders],
    }


@dataclass
class RelayProcess:
    """``airflow-alation relay --config <dir>/relay.json --host 127.0.0.1 --port P --workers N``."""

    directory: Path
    senders: list[Sender]
    workers: int = 2
    extra_config: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def lineage_url(self) -> str:
        return self.url + ENDPOINT

    @property
    def log_path(self) -> Path:
        return self.directory / "relay.log"

    @property
    def config_path(self) -> Path:
        return self.directory / "relay.json"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def command(self) -> list[str]:
        return [
            relay_bin(),
            "relay",
            "--config",
            str(self.config_path),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]

    def start(self, timeout: float = 60) -> RelayProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(relay_config(self.senders, **self.extra_config), indent=2))
        self.config_path.chmod(0o600)  # it holds tokens
        self.port = self.port or free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENLINEAGE")}
        env.update({"PYTHONUNBUFFERED": "1", **self.env})
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its workers are stopped with it, by process group
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"relay exited with {self.process.returncode}:\n{self.log_text()[-4000:]}")
            if self.healthy():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"relay did not listen within {timeout} s:\n{self.log_text()[-4000:]}")

    def healthy(self) -> bool:
        """``GET /health`` answers 200 (a worker has started its relay)."""
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as answer:
                return answer.status == 200
        except (OSError, ValueError):
            return False

    def pids(self) -> list[int]:
        """The relay's process and its workers (for memory sampling)."""
        import psutil

        if self.process is None or self.process.poll() is not None:
            return []
        try:
            parent = psutil.Process(self.process.pid)
            return [parent.pid, *(child.pid for child in parent.children(recursive=True))]
        except psutil.Error:
            return []

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM to the relay's process group (graceful), SIGKILL after ``timeout``."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.process.returncode if self.process is not None else None

    def __enter__(self) -> RelayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def outbox_counts(spool_dir: str | Path) -> dict[str, int]:
    """Entries waiting (pending), being sent (claimed) and refused for good (dead) in an outbox."""
    return LocalOutbox(spool_dir).counts()


def wait_outbox_empty(spool_dir: str | Path, timeout: float) -> dict[str, int]:
    """Wait until nothing is pending or claimed; the last counts."""
    deadline = time.monotonic() + timeout
    counts = outbox_counts(spool_dir)
    while counts["pending"] + counts["claimed"] and time.monotonic() < deadline:
        time.sleep(0.2)
        counts = outbox_counts(spool_dir)
    return counts
