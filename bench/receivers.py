"""Local receivers for the benchmarks: the HTTPS stand-in for Alation (what it received, in requests
and bytes), the same stand-in in a process of its own (emit_cost.py, catalogue.py), an endpoint that
accepts TCP connections but never answers, and a closed port."""

from __future__ import annotations

import contextlib
import gc
import json
import queue
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from airflow_provider_alation.testing.fake_alation import FakeAlation, Request


def bench_receiver(token: str, tls_dir: str | Path, answer_delay: float = 0.0) -> FakeAlation:
    """The HTTPS stand-in for Alation (TCP_NODELAY on, as a real server), started; ``answer_delay``
    seconds before each event's answer (its ``answer_delay`` attribute can be changed later)."""
    return FakeAlation(token, tls_dir=tls_dir, answer_delay=answer_delay).start()


class ReceiverProcess:
    """:func:`bench_receiver` in a child process of its own, as Alation is never in the client's.

    In this process, the stand-in's Python request handling (TLS, parsing, JSON) would compete for
    the GIL with the client being measured, and what the client overlaps with its request in flight
    would delay the server's answer. ``with ReceiverProcess(token, tls_dir) as receiver:`` serves
    until the block ends; :attr:`url` and :attr:`cert_path` as a :class:`FakeAlation`'s.

    The child (this file with ``--serve``) takes its settings (token, TLS folder, answer delay, and
    a JSON file of data sources to serve, as fake_alation's ``--datasources``), then commands, one
    JSON object a line on its stdin, and answers each with one JSON line on its stdout: first
    ``{"ready": true, "url", "cert"}`` (or ``{"error"}``), then ``{"cmd": "answer_delay", "seconds":
    s}`` -> ``{"ok": true}``, ``{"cmd": "counts", "marker": m}`` -> ``{"events", "requests", "posts",
    "marked"}``. Its stdin
    closed (at the end of the block, or when this process dies), it stops and exits.
    """

    #: Seconds to wait for the child's "ready" (an interpreter start, imports and a certificate).
    START_TIMEOUT = 60.0
    #: Seconds to wait for the answer to a command, and for the child to exit once told to.
    ANSWER_TIMEOUT = 30.0

    def __init__(
        self,
        token: str,
        tls_dir: str | Path,
        answer_delay: float = 0.0,
        datasources: str | Path | None = None,
    ) -> None:
        self._settings = {
            "token": token,
            "tls_dir": str(Path(tls_dir).resolve()),
            "answer_delay": answer_delay,
            # a JSON file of data sources to serve, as fake_alation's --datasources
            "datasources": str(datasources) if datasources is not None else None,
        }
        self._process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: IO[bytes] | None = None
        self._reader: threading.Thread | None = None
        self.url = ""
        self.cert_path: Path | None = None

    def start(self) -> ReceiverProcess:
        if self._process is not None:
            return self
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(
            target=self._read, args=(self._process.stdout,), name="receiver-process-stdout", daemon=True
        )
        self._reader.start()
        try:
            ready = self._ask(self._settings, self.START_TIMEOUT, "start")
            self.url, self.cert_path = ready["url"], Path(ready["cert"])
        except BaseException:
            self.stop()
            raise
        return self

    def _read(self, stdout: IO[str]) -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in stdout:
                self._lines.put(line)
        self._lines.put(None)  # end of the child's output: it exited

    def _ask(self, message: dict[str, Any], timeout: float, what: str) -> dict[str, Any]:
        """Send one JSON line to the child and return its one-line answer; raise a RuntimeError with
        the child's stderr if it does not answer within ``timeout`` seconds, exits or fails."""
        assert self._process is not None and self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(message) + "\n")
            self._process.stdin.flush()
            line = self._lines.get(timeout=timeout)
        except (OSError, ValueError):  # its stdin closed: the child is gone
            line = None
        except queue.Empty:
            raise RuntimeError(
                f"the stand-in for Alation (pid {self._process.pid}) did not answer {what} within "
                f"{timeout:g} s{self._stderr_tail()}"
            ) from None
        if line is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)
            raise RuntimeError(
                f"the stand-in for Alation exited (status {self._process.returncode}) instead of "
                f"answering {what}{self._stderr_tail()}"
            )
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(
                f"the stand-in for Alation failed {what}: {answer['error']}{self._stderr_tail()}"
            )
        return answer

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip()
        return f"; its stderr:\n{text[-3000:]}" if text else ""

    def set_answer_delay(self, seconds: float) -> None:
        """Hold every POST to the endpoint ``seconds`` before its answer, from the next one on."""
        self._ask({"cmd": "answer_delay", "seconds": seconds}, self.ANSWER_TIMEOUT, "answer_delay")

    def counts(self, marker: str = "") -> dict[str, int]:
        """What the stand-in received so far: accepted ``events``, ``requests`` (any), ``posts`` (to
        the endpoint) and ``marked``, the requests with ``marker`` in their headers."""
        answer = self._ask({"cmd": "counts", "marker": marker}, self.ANSWER_TIMEOUT, "counts")
        return {key: int(answer[key]) for key in ("events", "requests", "posts", "marked")}

    def stop(self) -> None:
        """Close the child's stdin (it stops and exits), killing it if it has not within the timeout."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            assert process.stdin is not None
            process.stdin.close()
        try:
            process.wait(timeout=self.ANSWER_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self._reader is not None:
            self._reader.join(timeout=self.ANSWER_TIMEOUT)
            self._reader = None
        if process.stdout is not None:
            process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> ReceiverProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _serve() -> None:
    """The child of :class:`ReceiverProcess`: its settings, then commands, on stdin (see there).

    Its automatic garbage collection is off: the stand-in keeps every event it receives, and a full
    collection over them (one every few hundred requests, ~20-35 ms with a few hundred events held)
    stalled whichever answer it fell on. That pause is the stand-in's, not the client's: it was the
    x4-x7 p99 of emit_cost's "new transport per event" line, all on one request per run. A bench
    run holds at most a few thousand events, so nothing it leaks meanwhile matters.
    """
    gc.disable()

    def answer(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    first = sys.stdin.readline()
    if not first:
        return  # the parent went away before sending the settings
    try:
        settings = json.loads(first)
        fake = bench_receiver(settings["token"], settings["tls_dir"], float(settings["answer_delay"]))
        if settings.get("datasources"):
            fake.datasources.update(json.loads(Path(settings["datasources"]).read_text()))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        answer({"error": f"{type(exc).__name__}: {exc}"})
        return
    try:
        answer({"ready": True, "url": fake.url, "cert": str(fake.cert_path)})
        for line in sys.stdin:  # until the parent closes it (or dies)
            try:
                command = json.loads(line)
                if command["cmd"] == "answer_delay":
                    fake.answer_delay = float(command["seconds"])
                    answer({"ok": True})
                elif command["cmd"] == "counts":
                    marker = command.get("marker") or ""
                    with fake._lock:
                        requests = list(fake.requests)
                        events = len(fake.events)
                    answer(
                        {
                            "events": events,
                            "requests": len(requests),
                            "posts": sum(
                                1 for r in requests if r.method == "POST" and r.path == fake.endpoint
                            ),
                            "marked": sum(1 for r in requests if marker in str(r.headers)),
                        }
                    )
                else:
                    answer({"error": f"unknown command {command['cmd']!r}"})
            except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
                answer({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        fake.stop()


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
    """An https URL on a local port nobody listens on: every connection is refused at once. The
    port stays bound (never listening) while the block runs: released, it could be taken meanwhile,
    or picked as a connecting socket's own port (a TCP self-connect, which answers nothing)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"https://localhost:{sock.getsockname()[1]}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--serve"]:
        sys.exit(f"usage: {sys.argv[0]} --serve (the child of ReceiverProcess; settings on stdin)")
    _serve()
