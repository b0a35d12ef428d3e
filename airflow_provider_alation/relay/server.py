"""The standalone relay: uvicorn serving :func:`~airflow_provider_alation.relay.app.create_app` with
several worker processes (``airflow-alation relay --config relay.json --workers 4``).

The configuration is validated here first (a mistake is a message and exit code 2, before any
port is opened), then passed to the workers in ``ALATION_RELAY_CONFIG``. uvicorn's SIGTERM/SIGINT
handling gives a graceful stop: no new connection, requests in flight are answered, then each
worker's relay puts its queued events back in the outbox and waits for those being delivered.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_provider_alation.relay.config import (
    CONFIG_ENV,
    LIMITS_ENV,
    RelayConfig,
    load_config,
    sender_settings,
)

FACTORY = "airflow_provider_alation.relay.app:create_app"
#: uvicorn's HTTP protocol with a deadline for request headers (an import string: the workers are
#: processes, and uvicorn is imported only when the relay runs).
PROTOCOL = "airflow_provider_alation.relay.protocol:HeaderDeadlineProtocol"
#: Seconds uvicorn waits for requests in flight at shutdown.
GRACEFUL_SECONDS = 30
#: Seconds an idle keep-alive connection is kept.
KEEP_ALIVE_SECONDS = 5


@dataclass(frozen=True)
class ServerOptions:
    config: str
    host: str = "127.0.0.1"
    port: int = 8090
    workers: int = 2
    tls_cert: str | None = None
    tls_key: str | None = None
    log_level: str = "info"


def check(location: str) -> tuple[RelayConfig, list[str]]:
    """The configuration and one line per sender (its Alation endpoint and outbox); raises
    :class:`~airflow_provider_alation.relay.config.RelayConfigError` or
    :class:`~airflow_provider_alation.settings.SettingsError`."""
    config = load_config(location)
    lines = []
    for sender in config.senders:
        settings = sender_settings(sender, config)
        lines.append(f"{sender.name}: {settings.endpoint_url} (outbox {settings.spool_dir})")
    return config, lines


def serve(options: ServerOptions) -> None:
    import uvicorn

    location = options.config
    if not location.lstrip().startswith("{"):
        location = str(Path(location).expanduser().resolve())
    config, _ = check(location)
    os.environ[CONFIG_ENV] = location
    # The limits of the configuration validated here, for the protocol in each worker process.
    os.environ[LIMITS_ENV] = json.dumps(
        {"header_timeout": config.header_timeout, "body_timeout": config.body_timeout}
    )
    uvicorn.run(
        FACTORY,
        factory=True,
        host=options.host,
        port=options.port,
        workers=options.workers,
        ssl_certfile=options.tls_cert,
        ssl_keyfile=options.tls_key,
        log_level=options.log_level,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        server_header=False,
        proxy_headers=False,
        **connection_options(config, PROTOCOL),
    )


def connection_options(config: RelayConfig, http: Any) -> dict[str, Any]:
    """uvicorn's settings for the relay's connections (the standalone server's, and the tests' server
    in one process, which passes its own ``http`` protocol class): a bound on connections per worker
    (beyond: 503 at once), and a deadline for a request's headers (uvicorn has none: see
    relay/protocol.py), so that idle half-open clients cannot hold them all."""
    return {
        "limit_concurrency": config.max_connections,
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "http": http,
    }
