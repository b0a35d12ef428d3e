"""Local receivers for bench/compare.py: the HTTPS stand-in for Alation (what it received, in requests
and bytes), an endpoint that accepts TCP connections but never answers, and a closed port."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from airflow_provider_alation.testing.fake_alation import FakeAlation, Request


def bench_receiver(token: str, tls_dir: str | Path, answer_delay: float = 0.0) -> FakeAlation:
    """The HTTPS stand-in for Alation (TCP_NODELAY on, as a real server), started; ``answer_delay``
    seconds before each event's answer (its ``answer_delay`` attribute can be changed later)."""
    return FakeAlation(token, tls_dir=tls_dir, answer_delay=answer_delay).start()


@dataclass(frozen=True)
class Traffic:
    """What the receiver got: POSTs to the endpoint and their size on the wire (before TLS)."""

    requests: int
    body_bytes: int
    wire_bytes: int  # request line + headers + body, as the client sent them
    by_type: dict[str, int]  # eventType (and DAG/TASK job type) -> count

    @staticmethod
    def of(fake: FakeAlation) -> Traffic:
        with fake._lock:
            posts = [r for r in fake.requests if r.method == "POST" and r.path == fake.endpoint]
            events = list(fake.events)
        by_type: dict[str, int] = {}
        for event in events:
            job_type = ((event.get("job") or {}).get("facets") or {}).get("jobType") or {}
            key = f"{event.get('eventType')} {job_type.get('jobType', '?')}"
            by_type[key] = by_type.get(key, 0) + 1
        return Traffic(
            requests=len(posts),
            body_bytes=sum(len(r.body) for r in posts),
            wire_bytes=sum(wire_size(r) for r in posts),
            by_type=dict(sorted(by_type.items())),
        )


def wire_size(request: Request) -> int:
    """Bytes of the HTTP/1.1 request as sent: ``POST /path HTTP/1.1``, ``Name: value`` lines, body.

    The stand-in keeps header names lower-cased; the size is the same.
    """
    head = len(f"{request.method} {request.path} HTTP/1.1\r\n")
    head += sum(len(name) + 2 + len(value) + 2 for name, value in request.headers.items()) + 2
    return head + len(request.body)


class HangingEndpoint:
    """Accepts TCP connections and never sends a byte (nor completes a TLS handshake)."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="hanging-endpoint", daemon=True)
        self.connections = 0

    @property
    def url(self) -> str:
        return f"https://localhost:{self._sock.getsockname()[1]}"

    def _accept(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            self._held.append(conn)  # kept open, never read from or written to

    def __enter__(self) -> HangingEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self._held:
            with contextlib.suppress(OSError):
                conn.close()
        self._sock.close()


@contextlib.contextmanager
def refused_endpoint() -> Iterator[str]:
    """An https URL on a local port nobody listens on: every connection is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield f"https://localhost:{port}"
