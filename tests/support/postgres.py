"""A real PostgreSQL server in a temporary directory (Debian's ``postgresql`` package).

initdb refuses to run as root, so as root the cluster is created and run as the ``postgres``
user; otherwise as the current user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.network import free_port


def _bin_dir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if not candidates:
        raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql")
    return Path(candidates[-1])


@dataclass
class PostgresServer:
    root: Path
    port: int
    user: str
    _bin: Path

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    @classmethod
    def start(cls) -> PostgresServer:
        root = Path(tempfile.mkdtemp(prefix="alation-pg-"))
        user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        server = cls(root=root, port=free_port(), user=user, _bin=_bin_dir())
        server._run(
            str(server._bin / "initdb"),
            "-D",
            str(root / "data"),
            "-U",
            user,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        server._run(
            str(server._bin / "pg_ctl"),
            "-D",
            str(root / "data"),
            "-l",
            str(root / "server.log"),
            "-w",
            "-o",
            f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", server.port)) == 0:
                    return server
            time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not start: {(root / 'server.log').read_text()}")

    def create_database(self, name: str) -> None:
        self._run(str(self._bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name)

    def stop(self) -> None:
        self._run(
            str(self._bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop", check=False
        )
        shutil.rmtree(self.root, ignore_errors=True)

    def conn_uri(self, database: str) -> str:
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{database}"
