"""A local stand-in for Alation Cloud Service that enforces the documented contract.

Used by the tests and the demo; Alation itself cannot be reached from CI. It serves, over HTTPS
with a self-signed certificate (or plain HTTP if asked):

- ``POST /open_lineage_event/``: ``Authorization: Bearer <token>`` (401 otherwise),
  ``Content-Type: application/json`` (415), a JSON object (400) carrying the fields Alation requires
  (``eventType``, ``eventTime``, ``run.runId``, ``job.namespace``, ``job.name``, ``producer``,
  ``schemaURL``) and, when a ``validator`` is given, valid against the OpenLineage schema (400).
  Accepted events are recorded in order. Any other path: 404; a GET on the endpoint: 405.
- ``POST /integration/v1/createAPIAccessToken/``: mints an access token from the refresh token and
  user id, answering HTTP 200 with ``"status": "failed"`` when they are wrong, as Alation does.
- ``GET /integration/v1/datasource/`` and ``GET /integration/v2/datasource/``: the REST API's
  ``TOKEN`` header (the API token or a minted access token; 401 otherwise), pages of ``limit``
  objects (at most :attr:`FakeAlation.max_page`) from ``skip``, and an ``X-Next-Page`` header while
  more remain (unless ``next_page_header`` is off, as on tenants that only take ``skip``).

Faults for delivery tests are queued with :meth:`FakeAlation.fail_next`, for the REST API with
:meth:`FakeAlation.fail_api_next`, for token minting with :meth:`FakeAlation.fail_token_next`;
:attr:`FakeAlation.api_down` makes every REST call answer 503. Besides a status after a delay, a
fault can trickle the status line and headers (``header_drip``), send an endless body (``endless``),
echo the request's headers in its body (``echo_headers``), and on the REST API and minting trickle the
real answer (``drip``, ``drip_bytes`` at a time). ``answer_delay`` holds every POST to the endpoint
that long before its answer (a realistic round trip, for benchmarks).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import secrets
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

REQUIRED_FIELDS = (
    ("eventType",),
    ("eventTime",),
    ("run", "runId"),
    ("job", "namespace"),
    ("job", "name"),
    ("producer",),
    ("schemaURL",),
)


def make_self_signed_cert(directory: str | Path, hostname: str = "localhost") -> tuple[Path, Path]:
    """Write ``cert.pem`` and ``key.pem`` for ``localhost``/127.0.0.1 into ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@dataclass
class Fault:
    """One scripted answer: a status (with headers/body), after a hang of ``delay`` seconds.

    ``drip`` > 0: the event is accepted (recorded) and the 200 answer's body is sent one byte every
    ``drip`` seconds, a server that defeats per-read socket timeouts. On the REST API and minting, the
    real answer is sent ``drip_bytes`` at a time, every ``drip`` seconds.

    ``header_drip`` > 0: the status line and headers are sent one byte every ``header_drip`` seconds
    (the real answer on the REST API and minting, else ``status``/``body``). ``endless``: ``status``
    with a body that never ends (no Content-Length). ``echo_headers``: ``status`` with the request's
    headers in the body, as some servers and proxies do on errors.
    """

    status: int = 503
    body: bytes = b'{"detail": "injected fault"}'
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drip: float = 0.0
    drip_bytes: int = 1
    header_drip: float = 0.0
    endless: bool = False
    echo_headers: bool = False

    @property
    def slow(self) -> bool:
        """Served by the handler's ``_serve`` (trickled or endless) rather than a plain reply."""
        return bool(self.header_drip or self.endless)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


class FakeAlation:
    """The stand-in server. ``with FakeAlation(token=...) as alation:`` serves on a free port."""

    def __init__(
        self,
        token: str,
        *,
        endpoint: str = "/open_lineage_event/",
        tls_dir: str | Path | None = None,
        validator: Callable[[dict[str, Any]], list[str]] | None = None,
        refresh_token: str | None = None,
        user_id: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        answer_delay: float = 0.0,
    ) -> None:
        self.token = token
        self.endpoint = endpoint
        self.validator = validator
        self.refresh_token = refresh_token
        self.user_id = user_id
        self.access_tokens: dict[str, float] = {}
        self.events: list[dict[str, Any]] = []
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.api_faults: list[Fault] = []
        self.token_faults: list[Fault] = []
        self.api_down = False
        self.lineage_down = False  # every event answered 503 (an outage)
        self.posts_started = 0  # POSTs to the endpoint received, answered or not (yet)
        self.api_delay = 0.0  # seconds before each data-source page is answered
        #: Seconds every POST to the endpoint waits before it is answered: a tenant's round trip and
        #: processing time, which the loopback lacks (0: answered at once).
        self.answer_delay = answer_delay
        self.datasources: dict[str, list[dict[str, Any]]] = {"v1": [], "v2": []}
        self.max_page = 1000
        self.next_page_header = True
        self.ignore_skip = False  # a broken server that always answers the first page
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self.cert_path: Path | None = None
        if tls_dir is not None:
            self.cert_path, key_path = make_self_signed_cert(tls_dir)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.cert_path, key_path)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if tls_dir is not None else "http"
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"{self.scheme}://localhost:{self.port}"

    def start(self) -> FakeAlation:
        if self._thread is not None:  # started already (``with fake.start() as fake`` starts once)
            return self
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-alation", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeAlation:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def fail_api_next(self, *faults: Fault) -> None:
        with self._lock:
            self.api_faults.extend(faults)

    def fail_token_next(self, *faults: Fault) -> None:
        with self._lock:
            self.token_faults.extend(faults)

    def reset(self) -> None:
        with self._lock:
            self.events.clear()
            self.requests.clear()
            self.faults.clear()
            self.api_faults.clear()
            self.token_faults.clear()

    def api_requests(self, api: str | None = None) -> list[Request]:
        """The REST data-source requests received (of one API version, or both)."""
        prefix = f"/integration/{api}/datasource/" if api else "/integration/"
        with self._lock:
            return [r for r in self.requests if r.method == "GET" and r.path.startswith(prefix)]

    # -- request handling (called from the handler threads) ------------------------------------
    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self.faults.pop(0) if self.faults else None

    def _record(self, request: Request, event: dict[str, Any] | None = None) -> None:
        with self._lock:
            self.requests.append(request)
            if event is not None:
                self.events.append(event)

    def _bearer_ok(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        presented = header[len("Bearer ") :]
        if secrets.compare_digest(presented, self.token):
            return True
        with self._lock:
            expiry = self.access_tokens.get(presented)
        return expiry is not None and expiry > time.time()

    def handle_lineage(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any], dict | None]:
        if not self._bearer_ok(headers.get("authorization")):
            return 401, {"detail": "Authentication credentials were not provided or are invalid."}, None
        if headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return 415, {"detail": "Content-Type must be application/json"}, None
        try:
            event = json.loads(body)
        except ValueError:
            return 400, {"detail": "body is not JSON"}, None
        if not isinstance(event, dict):
            return 400, {"detail": "body must be one RunEvent object"}, None
        missing = []
        for path in REQUIRED_FIELDS:
            node: Any = event
            for part in path:
                node = node.get(part) if isinstance(node, dict) else None
            if node in (None, ""):
                missing.append(".".join(path))
        if missing:
            return 400, {"detail": f"missing required fields: {', '.join(missing)}"}, None
        if self.validator is not None:
            errors = self.validator(event)
            if errors:
                return 400, {"detail": "invalid OpenLineage event", "errors": errors[:5]}, None
        return 200, {}, event

    def _api_token_ok(self, presented: str | None) -> bool:
        if not presented:
            return False
        if secrets.compare_digest(presented, self.token):
            return True
        with self._lock:
            expiry = self.access_tokens.get(presented)
        return expiry is not None and expiry > time.time()

    def handle_datasources(
        self, api: str, headers: dict[str, str], query: dict[str, list[str]]
    ) -> tuple[int, Any, dict[str, str]]:
        if not self._api_token_ok(headers.get("token")):
            return 401, {"detail": "Authentication credentials were not provided."}, {}
        try:
            limit = int(query.get("limit", ["100"])[0])
            skip = int(query.get("skip", ["0"])[0])
        except ValueError:
            return 400, {"detail": "limit and skip must be integers"}, {}
        if limit < 1 or skip < 0:
            return 400, {"detail": "limit must be >= 1 and skip >= 0"}, {}
        limit = min(limit, self.max_page)
        if self.ignore_skip:
            skip = 0
        with self._lock:
            items = self.datasources[api]
            page = items[skip : skip + limit]
            more = skip + limit < len(items)
        extra = {}
        if more and self.next_page_header:
            extra["X-Next-Page"] = f"/integration/{api}/datasource/?limit={limit}&skip={skip + limit}"
        return 200, page, extra

    def handle_create_token(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, {"detail": "body is not JSON"}
        if (
            self.refresh_token is None
            or payload.get("refresh_token") != self.refresh_token
            or payload.get("user_id") != self.user_id
        ):
            return 200, {"status": "failed", "message": "Invalid refresh token or user id"}
        token = secrets.token_urlsafe(24)
        expires = time.time() + 24 * 3600
        with self._lock:
            self.access_tokens[token] = expires
        return 200, {
            "api_access_token": token,
            "token_expires_at": dt.datetime.fromtimestamp(expires, dt.timezone.utc).isoformat(),
            "token_status": "ACTIVE",
            "user_id": self.user_id,
        }


def _handler(fake: FakeAlation) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle's algorithm the body would wait for the
        # client's delayed ACK (~40 ms per request on Linux loopback), which no real server adds.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _reply(self, status: int, payload: Any, extra_headers: dict[str, str] | None = None) -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (extra_headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _drip(self, status: int, data: bytes, every: float) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.flush()
            try:
                for index in range(len(data)):
                    time.sleep(every)
                    self.wfile.write(data[index : index + 1])
                    self.wfile.flush()
            except OSError:
                return  # the client gave up

        def _serve(
            self, fault: Fault, status: int, data: bytes, extra_headers: dict[str, str] | None = None
        ) -> None:
            """Answer with ``fault``'s trickle (headers, then body) or endless body."""
            lines = [
                f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
                "Content-Type: application/json",
            ]
            if fault.endless:
                lines.append("Connection: close")
                self.close_connection = True
            else:
                lines.append(f"Content-Length: {len(data)}")
            lines += [f"{key}: {value}" for key, value in {**fault.headers, **(extra_headers or {})}.items()]
            head = ("\r\n".join(lines) + "\r\n\r\n").encode()
            try:
                if fault.header_drip:
                    for index in range(len(head)):
                        time.sleep(fault.header_drip)
                        self.wfile.write(head[index : index + 1])
                        self.wfile.flush()
                else:
                    self.wfile.write(head)
                if fault.endless:
                    chunk = (data or b"x") * max(1, 65536 // max(1, len(data)))
                    while True:
                        self.wfile.write(chunk)
                elif fault.drip:
                    step = max(1, fault.drip_bytes)
                    for index in range(0, len(data), step):
                        time.sleep(fault.drip)
                        self.wfile.write(data[index : index + step])
                        self.wfile.flush()
                else:
                    self.wfile.write(data)
            except OSError:
                self.close_connection = True  # the client gave up

        def _fault_body(self, fault: Fault, headers: dict[str, str]) -> bytes:
            if fault.echo_headers:
                return json.dumps({"detail": "bad request", "request_headers": headers}).encode()
            return fault.body

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def do_POST(self) -> None:
            body = self._body()
            headers = {k.lower(): v for k, v in self.headers.items()}
            path = urlsplit(self.path).path
            event = None
            if path == fake.endpoint:
                with fake._lock:
                    fake.posts_started += 1
                if fake.answer_delay > 0:
                    time.sleep(fake.answer_delay)
                fault = fake._next_fault()
                if fault is None and fake.lineage_down:
                    fault = Fault(503, b'{"detail": "Service unavailable"}')
                if fault is not None and fault.slow:
                    fake._record(Request("POST", path, headers, body, fault.status))
                    self._serve(fault, fault.status, self._fault_body(fault, headers))
                    return
                if fault is not None and fault.drip:
                    status, payload, event = fake.handle_lineage(headers, body)
                    fake._record(Request("POST", path, headers, body, status), event)
                    self._drip(status, json.dumps(payload or {"accepted": True}).encode(), fault.drip)
                    return
                if fault is not None:
                    if fault.delay:
                        time.sleep(fault.delay)
                    fake._record(Request("POST", path, headers, body, fault.status))
                    self._reply(fault.status, self._fault_body(fault, headers), fault.headers)
                    return
                status, payload, event = fake.handle_lineage(headers, body)
            elif path == "/integration/v1/createAPIAccessToken/":
                with fake._lock:
                    fault = fake.token_faults.pop(0) if fake.token_faults else None
                if fault is not None and fault.delay:
                    time.sleep(fault.delay)
                if fault is not None and (fault.slow or fault.drip) and not fault.endless:
                    status, payload = fake.handle_create_token(body)
                    fake._record(Request("POST", path, headers, body, status))
                    self._serve(fault, status, json.dumps(payload).encode())
                    return
                if fault is not None:
                    fake._record(Request("POST", path, headers, body, fault.status))
                    if fault.endless:
                        self._serve(fault, fault.status, fault.body)
                    else:
                        self._reply(fault.status, self._fault_body(fault, headers), fault.headers)
                    return
                status, payload = fake.handle_create_token(body)
            else:
                status, payload = 404, {"detail": "Not found."}
            fake._record(Request("POST", path, headers, body, status), event)
            self._reply(status, payload)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            path = parts.path
            headers = {k.lower(): v for k, v in self.headers.items()}
            api = {"/integration/v1/datasource/": "v1", "/integration/v2/datasource/": "v2"}.get(path)
            if api is not None:
                with fake._lock:
                    fault = fake.api_faults.pop(0) if fake.api_faults else None
                    if fault is None and fake.api_down:
                        fault = Fault(503, b'{"detail": "Service unavailable"}')
                if fault is not None and fault.delay:
                    time.sleep(fault.delay)
                if fault is not None and (fault.header_drip or fault.drip) and not fault.endless:
                    status, payload, extra = fake.handle_datasources(api, headers, parse_qs(parts.query))
                    fake._record(Request("GET", self.path, headers, b"", status))
                    self._serve(fault, status, json.dumps(payload).encode(), extra)
                    return
                if fault is not None:
                    fake._record(Request("GET", self.path, headers, b"", fault.status))
                    if fault.endless:
                        self._serve(fault, fault.status, fault.body)
                    else:
                        self._reply(fault.status, self._fault_body(fault, headers), fault.headers)
                    return
                if fake.api_delay:
                    time.sleep(fake.api_delay)
                status, payload, extra = fake.handle_datasources(api, headers, parse_qs(parts.query))
                fake._record(Request("GET", self.path, headers, b"", status))
                self._reply(status, payload, extra)
                return
            status = 405 if path == fake.endpoint else 404
            fake._record(Request("GET", path, headers, b"", status))
            self._reply(status, {"detail": "Method not allowed." if status == 405 else "Not found."})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="Local stand-in for Alation's OpenLineage endpoint")
    parser.add_argument("--token", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-dir", help="serve HTTPS with a self-signed certificate written here")
    parser.add_argument("--events", help="append each accepted event to this JSON-lines file")
    parser.add_argument(
        "--answer-delay",
        type=float,
        default=0.0,
        help="seconds each POST to the endpoint waits before it is answered (a tenant's round trip)",
    )
    parser.add_argument(
        "--datasources",
        help='serve the data sources of this JSON file ({"v1": [...], "v2": [...]}), '
        'or "reference" for the built-in examples of every kind',
    )
    args = parser.parse_args()
    fake = FakeAlation(args.token, tls_dir=args.tls_dir, port=args.port, answer_delay=args.answer_delay)
    if args.datasources == "reference":
        from airflow_provider_alation.testing.catalog import reference_datasources

        fake.datasources.update(reference_datasources())
    elif args.datasources:
        fake.datasources.update(json.loads(Path(args.datasources).read_text()))
    fake.start()
    print(json.dumps({"url": fake.url, "cert": str(fake.cert_path) if fake.cert_path else None}), flush=True)
    written = 0
    try:
        while True:
            time.sleep(0.2)
            if args.events:
                with fake._lock:
                    new = fake.events[written:]
                if new:
                    with open(args.events, "a", encoding="utf-8") as out:
                        for event in new:
                            out.write(json.dumps(event) + "\n")
                    written += len(new)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
