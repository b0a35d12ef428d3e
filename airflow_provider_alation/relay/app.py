"""The relay's FastAPI app: ``POST /api/v1/lineage``, what OpenLineage's ``http`` transport sends.

Checks, cheapest first, before anything is read or written: the Bearer token (401 missing, 403
unknown), that the relay is not stopping (503), the ``Content-Encoding`` (415 unless identity or
gzip), the ``Content-Type`` (415 unless JSON), ``Content-Length`` (413 above ``max_body_bytes``),
the outbox below its caps (503 with ``Retry-After``). Then the body is read with the cap (413),
gunzipped with ``max_decompressed_bytes`` (413) and parsed (400 unless one OpenLineage event). The
event then takes the transport's path: the gate, the sender's selection, the write-ahead (2xx only
once it is on disk), and a delivery thread resolves, shapes and sends it to Alation.

``create_app()`` with no argument reads ``ALATION_RELAY_CONFIG`` (the standalone server's uvicorn
workers call it as a factory).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from airflow_provider_alation.alation.delivery import late_answer_seconds
from airflow_provider_alation.lineage.logtext import printable
from airflow_provider_alation.outbox.store import LocalOutbox, outbox_for
from airflow_provider_alation.pipeline import Admitted, Pipeline, skipped
from airflow_provider_alation.relay.config import (
    RelayConfig,
    SenderConfig,
    find_sender,
    load_config,
    sender_settings,
    token_digest,
)
from airflow_provider_alation.relay.worker import Delivery, Replayer
from airflow_provider_alation.settings import AlationSettings, SettingsError

log = logging.getLogger(__name__)

LINEAGE_PATH = "/api/v1/lineage"
#: The outbox's usage is looked at at most this often per sender (a directory listing).
USAGE_TTL_SECONDS = 1.0
JSON_TYPES = ("application/json", "text/json")


class Refused(Exception):
    """An answer other than 2xx, with the message the sender sees."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass
class _Sender:
    config: SenderConfig
    settings: AlationSettings
    pipeline: Pipeline
    outbox: LocalOutbox
    usage_at: float = float("-inf")
    full: str = ""


class Relay:
    """The relay's state in one process: senders, their pipelines, delivery and replay."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self._digests = [(token_digest(sender.secret()), sender) for sender in config.senders]
        self._senders: dict[str, _Sender] = {}
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self.delivery = Delivery(config.delivery_threads, config.queue_size)
        self.replayer: Replayer | None = None
        self.stopping = False
        self.started = False

    # -- life ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Read every sender's settings (an invalid one is logged and answered 503), start the
        delivery threads and the replay."""
        with self._lock:
            if self.started:
                return
            self.started = True
        for sender in self.config.senders:
            self._sender(sender)
        self.delivery.start()
        self.replayer = Replayer([s.settings for s in self._senders.values()], self.config.replay_interval)
        self.replayer.start()
        log.info(
            "Alation relay: serving %d sender(s) (%s), %d delivery thread(s)",
            len(self.config.senders),
            ", ".join(s.name for s in self.config.senders),
            self.config.delivery_threads,
        )

    def stop(self) -> None:
        """Stop accepting; queued events go back to ``pending``, those in flight get their time
        budget to finish (or stay claimed for a replay after the lease)."""
        self.stopping = True
        if not self.started:
            return
        budget = max((s.settings.time_budget for s in self._senders.values()), default=8.0)
        put_back = self.delivery.stop(budget + 1.0)
        if self.replayer is not None:
            self.replayer.stop(budget + 1.0)
        # Requests abandoned at the end of a time budget: their late answers settle their events.
        late = max((late_answer_seconds(s.settings.timeout) for s in self._senders.values()), default=10.0)
        deadline = time.monotonic() + late
        for sender in self._senders.values():
            sender.pipeline.wait_idle(deadline - time.monotonic())
            sender.pipeline.close()
        log.info("Alation relay: stopped; %d queued event(s) put back in the outbox for replay", put_back)

    def _sender(self, config: SenderConfig) -> _Sender | None:
        found = self._senders.get(config.name)
        if found is not None:
            return found
        with self._lock:
            found = self._senders.get(config.name)
            if found is not None:
                return found
            try:
                settings = sender_settings(config, self.config)
            except SettingsError as exc:
                if config.name not in self._errors:
                    log.error("Alation relay: sender %r cannot be served: %s", config.name, exc)
                self._errors[config.name] = str(exc)
                return None
            found = self._senders[config.name] = _Sender(
                config, settings, Pipeline(settings, evict=False), outbox_for(settings)
            )
            return found

    # -- one request -------------------------------------------------------------------------------
    def authenticate(self, header: str | None) -> SenderConfig:
        if not header:
            raise Refused(
                401,
                "missing Authorization header: send 'Authorization: Bearer <relay token>'",
                {"WWW-Authenticate": "Bearer"},
            )
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise Refused(
                401, "the Authorization header must be 'Bearer <relay token>'", {"WWW-Authenticate": "Bearer"}
            )
        sender = find_sender(self._digests, presented.strip())
        if sender is None:
            raise Refused(
                403, "unknown relay token: use the token the relay's configuration gives this sender"
            )
        return sender

    def check_room(self, sender: _Sender) -> None:
        """503 while the sender's outbox is at a cap (looked at once a second)."""
        now = time.monotonic()
        if now - sender.usage_at >= USAGE_TTL_SECONDS:
            sender.usage_at = now
            try:
                held = sender.outbox.full(1)  # any event is at least a byte
            except OSError:
                held = None
            settings = sender.settings
            if held is not None:
                count, size = held
                sender.full = (
                    f"the relay's outbox for this sender is full ({count} events, {size} bytes; caps "
                    f"outbox_max_events={settings.outbox_max_events}, outbox_max_bytes="
                    f"{settings.outbox_max_bytes}): Alation is not taking events fast enough; retry later"
                )
            else:
                sender.full = ""
        if sender.full:
            raise Refused(503, sender.full, {"Retry-After": str(self.config.retry_after)})

    def accept(self, sender: _Sender, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The gate, the sender's selection and the write-ahead (blocking: run in a thread)."""
        reason = Pipeline.precheck(event)
        if reason:
            skipped(event, reason)
            return 200, {"status": "skipped", "reason": reason}
        admitted = sender.pipeline.admit(event)
        if not isinstance(admitted, Admitted):
            if admitted.kind == "skipped":
                return 200, {"status": "skipped", "reason": admitted.detail}
            if admitted.problem == "full":  # checked at the write itself: nothing acknowledged is evicted
                sender.full = (
                    "the relay's outbox for this sender is full: Alation is not taking events fast "
                    "enough; retry later"
                )
                raise Refused(503, sender.full, {"Retry-After": str(self.config.retry_after)})
            raise Refused(422, f"the event cannot be sent to Alation: it {admitted.detail}")
        if admitted.claim is None and not sender.settings.dry_run:
            raise Refused(
                503,
                "the relay cannot write to its outbox (spool_dir); the event was not taken: retry later",
                {"Retry-After": str(self.config.retry_after)},
            )
        queued = self.delivery.submit(sender.pipeline, admitted)
        body: dict[str, Any] = {"status": "accepted", "job": admitted.job_name}
        run_id = (event.get("run") or {}).get("runId")
        if isinstance(run_id, str):
            body["runId"] = run_id
        if not queued:
            body["queued"] = "outbox"  # on disk; the next replay sends it
        return 202, body


# -- the request body ---------------------------------------------------------------------------------


def _content_checks(request: Request, config: RelayConfig) -> bool:
    """Raises for an unknown encoding, a non-JSON type or a declared length above the cap; True
    when the body is gzip."""
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip"):
        raise Refused(
            415, f"Content-Encoding {printable(encoding, 40)!r} is not supported: send gzip or none"
        )
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media and media not in JSON_TYPES and not media.endswith("+json"):
        raise Refused(415, f"Content-Type {printable(media, 60)!r} is not JSON: send application/json")
    length = request.headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise Refused(400, "invalid Content-Length")
        if int(length) > config.max_body_bytes:
            raise Refused(413, _too_large(int(length), config.max_body_bytes, "the body"))
    return encoding in ("gzip", "x-gzip")


def _too_large(size: int, cap: int, what: str) -> str:
    return f"{what} is {size} bytes or more, above the relay's cap of {cap} bytes: send one event per request"


async def _read_body(request: Request, cap: int, timeout: float) -> bytes:
    """The body, at most ``cap`` bytes, within ``timeout`` seconds as a total: a sender trickling
    it a byte at a time is cut off (408) instead of holding a connection."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with _deadline(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise Refused(413, _too_large(size, cap, "the body"))
                chunks.append(chunk)
    except TimeoutError:
        raise Refused(408, f"the body did not arrive within {timeout:g} s: send it at once") from None
    return b"".join(chunks)


def _deadline(seconds: float) -> Any:
    """``asyncio.timeout`` (Python 3.11+; the same task, so the server's receive channel is untouched);
    on 3.10 no bound, as before."""
    timeout = getattr(asyncio, "timeout", None)
    return timeout(seconds) if timeout is not None else contextlib.nullcontext()


def gunzip(data: bytes, cap: int) -> bytes:
    """Undo gzip, never holding more than ``cap`` + 1 bytes of output (a gzip bomb is a 413)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, cap + 1)
    except zlib.error as exc:
        raise Refused(400, f"the body is not valid gzip ({exc})") from None
    if len(out) > cap or inflater.unconsumed_tail:
        raise Refused(413, _too_large(cap + 1, cap, "the decompressed body"))
    if not inflater.eof:
        raise Refused(400, "the gzip body is truncated")
    if inflater.unused_data.strip(b"\0"):
        raise Refused(400, "the body has data after its gzip stream (several gzip members are not accepted)")
    return out


#: Deeper than any OpenLineage event (a Spark logical plan included); far from Python's recursion limit.
MAX_DEPTH = 200


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (NaN and Infinity are not allowed)")


def _depth(value: Any) -> int:
    """How deeply ``value`` nests, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > deepest:
            deepest = level
            if deepest > MAX_DEPTH:
                return deepest
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def parse_event(body: bytes) -> dict[str, Any]:
    """One OpenLineage event (RunEvent, DatasetEvent or JobEvent) as a dict, else 400."""
    if not body.strip():
        raise Refused(400, "the body is empty: send one OpenLineage event as JSON")
    try:
        event = json.loads(body, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise Refused(400, "the body is not UTF-8 JSON") from None
    except ValueError as exc:
        raise Refused(400, f"the body is not JSON ({printable(exc, 120)})") from None
    except RecursionError:
        raise Refused(400, "the body is JSON nested too deeply to be an OpenLineage event") from None
    if isinstance(event, list):
        raise Refused(400, "the body is a JSON array: send one OpenLineage event per request, as an object")
    if _depth(event) > MAX_DEPTH:
        raise Refused(
            400, f"the body is JSON nested deeper than {MAX_DEPTH} levels, not an OpenLineage event"
        )
    if not isinstance(event, dict):
        raise Refused(400, f"the body is a JSON {type(event).__name__}, not an OpenLineage event object")
    run, job, dataset = event.get("run"), event.get("job"), event.get("dataset")
    if run is None and job is None and dataset is None:
        raise Refused(
            400,
            "not an OpenLineage event: it has none of run, job and dataset (a RunEvent needs run and job)",
        )
    problems = [
        name
        for name, value in (("run", run), ("job", job), ("dataset", dataset))
        if value is not None and not isinstance(value, dict)
    ]
    if problems:
        raise Refused(400, f"not an OpenLineage event: {', '.join(problems)} must be JSON object(s)")
    if run is not None:
        missing = [
            path
            for path, value in (
                ("run.runId", run.get("runId")),
                ("job.namespace", (job or {}).get("namespace")),
                ("job.name", (job or {}).get("name")),
            )
            if not isinstance(value, str) or not value
        ]
        if missing:
            raise Refused(400, f"not an OpenLineage RunEvent: missing {', '.join(missing)}")
    if not isinstance(event.get("eventTime"), str):
        raise Refused(400, "not an OpenLineage event: eventTime (an ISO 8601 string) is missing")
    return event


def _refusal(refused: Refused) -> JSONResponse:
    return JSONResponse(
        {"status": "refused", "error": refused.message}, status_code=refused.status, headers=refused.headers
    )


# -- the app ------------------------------------------------------------------------------------------


def build_app(relay: Relay, *, lifespan: bool = True) -> FastAPI:
    """The FastAPI app around ``relay`` (``lifespan``: start and stop it with the app)."""

    @asynccontextmanager
    async def life(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(relay.start)
        try:
            yield
        finally:
            await run_in_threadpool(relay.stop)

    app = FastAPI(
        title="Alation OpenLineage relay",
        lifespan=life if lifespan else None,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.relay = relay

    @app.post(LINEAGE_PATH)
    async def lineage(request: Request) -> JSONResponse:
        try:
            config = relay.authenticate(request.headers.get("authorization"))
            if relay.stopping:
                raise Refused(503, "the relay is shutting down: retry", {"Retry-After": "5"})
            gzipped = _content_checks(request, relay.config)
            sender = relay._sender(config)
            if sender is None:
                raise Refused(
                    503,
                    f"the relay's Alation settings for sender {config.name!r} are invalid (see the relay's "
                    "log); the event was not taken",
                    {"Retry-After": str(relay.config.retry_after)},
                )
            relay.check_room(sender)
            body = await _read_body(request, relay.config.max_body_bytes, relay.config.body_timeout)
            if gzipped:
                body = gunzip(body, relay.config.max_decompressed_bytes)
            elif len(body) > relay.config.max_decompressed_bytes:
                raise Refused(413, _too_large(len(body), relay.config.max_decompressed_bytes, "the body"))
            event = parse_event(body)
            status, answer = await run_in_threadpool(relay.accept, sender, event)
        except Refused as refused:
            return _refusal(refused)
        return JSONResponse(answer, status_code=status)

    @app.get("/health")
    async def health() -> JSONResponse:
        if relay.stopping:
            return JSONResponse({"status": "stopping"}, status_code=503)
        return JSONResponse({"status": "ok", "queued": relay.delivery.waiting})

    return app


def create_app(config: RelayConfig | None = None) -> FastAPI:
    """The relay app (uvicorn's factory): ``config``, else ``ALATION_RELAY_CONFIG``."""
    return build_app(Relay(config if config is not None else load_config()))
