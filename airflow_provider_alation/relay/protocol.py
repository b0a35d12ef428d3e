"""uvicorn's HTTP protocol with a deadline for each request's headers, which uvicorn does not have.

Without one, a client that opens a connection and sends half a request line or half its headers
(a "slowloris") holds that connection for good: uvicorn's only timer is keep-alive's, which runs
between requests and stops as soon as a byte of the next one arrives. A few hundred such clients
use up ``max_connections`` and the relay answers every sender 503. Here a connection must complete
a request's headers within ``header_timeout`` seconds of opening, and of its previous answer on a
keep-alive connection; else it is closed. A request whose headers are in is left alone: its body
is bounded by ``body_timeout`` (the app answers 408), its answer by the delivery's own budget.

The class extends the protocol uvicorn would pick itself (``httptools`` when installed, else
``h11``), through the two places both share: ``connection_made`` and ``on_response_complete``,
and their ``cycle`` (the request in progress, whose ``response_complete`` says it was answered),
as uvicorn's own ``shutdown`` reads them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from typing import Any

try:  # the protocol uvicorn's "auto" picks
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover - httptools not installed
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base  # type: ignore[assignment]

from airflow_provider_alation.relay.config import CONFIG_ENV, RelayConfig, load_config

log = logging.getLogger("airflow_provider_alation.relay")


@functools.cache
def _configured_timeout() -> float:
    """``header_timeout`` of the configuration the workers serve (``ALATION_RELAY_CONFIG``)."""
    default = float(RelayConfig.model_fields["header_timeout"].default)
    if not os.environ.get(CONFIG_ENV, "").strip():
        return default
    try:
        return load_config().header_timeout
    except Exception:  # noqa: BLE001 - the app reports a bad configuration (503) with the reason
        return default


class HeaderDeadlineProtocol(_Base):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol, closing a connection whose request headers do not arrive in time."""

    _deadline: asyncio.TimerHandle | None = None

    def header_timeout(self) -> float:
        return _configured_timeout()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # a keep-alive connection: the next request's headers, in time too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self._deadline = self.loop.call_later(self.header_timeout(), self._headers_late)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_late(self) -> None:
        self._deadline = None
        cycle: Any = self.cycle
        if cycle is not None and not cycle.response_complete:
            return  # its headers are in: the body has body_timeout, the answer the delivery's budget
        if not self.transport.is_closing():
            log.info(
                "Alation relay: closed a connection from %s that sent no complete request headers within "
                "header_timeout=%gs",
                "{}:{}".format(*self.client) if self.client else "an unknown client",
                self.header_timeout(),
            )
            self.transport.close()


def with_header_timeout(seconds: float) -> type[asyncio.Protocol]:
    """The protocol class with its own ``header_timeout`` (a relay served in this process: tests)."""

    class Protocol(HeaderDeadlineProtocol):
        def header_timeout(self) -> float:
            return seconds

    return Protocol
