"""uvicorn's HTTP protocol with a deadline for each request's headers, which uvicorn does not have.

Without one, a client that opens a connection and sends half a request line or half its headers
(a "slowloris") holds that connection for good: uvicorn's only timer is keep-alive's, which runs
between requests and stops as soon as a byte of the next one arrives. A few hundred such clients
use up ``max_connections`` and the relay answers every sender 503. Here a connection must complete
a request's headers within ``header_timeout`` seconds of being set up (after the TLS handshake with
``--tls-cert``), and of its previous answer on a keep-alive connection; else it is closed. A request
whose headers are in is left alone while it is handled: its body is bounded by ``body_timeout``
(the app answers 408), its answer by the delivery's own budget. A client still sending a body the
relay answered early (a 503, 401 or 413 before reading it) may finish it within ``body_timeout``
of its headers, then is closed.

The class extends the protocol uvicorn would pick itself (``httptools`` when installed, else
``h11``), through what both share: ``connection_made``, ``on_response_complete``, and their
``cycle`` (the request in progress, whose ``response_complete`` says it was answered), as uvicorn's
own ``shutdown`` reads them. The standalone server (``relay/server.py``) passes the limits of the
configuration it validated to its worker processes in ``ALATION_RELAY_CONNECTION_LIMITS``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from typing import Any

try:  # the protocol uvicorn's "auto" picks
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover - httptools not installed
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base  # type: ignore[assignment]

from airflow_provider_alation.relay.config import LIMITS_ENV, RelayConfig

log = logging.getLogger("airflow_provider_alation.relay")


def _default(field: str) -> float:
    return float(RelayConfig.model_fields[field].default)


@functools.cache
def _configured_limits() -> tuple[float, float]:
    """(header_timeout, body_timeout) the server validated and passed on; the defaults otherwise."""
    limits = (_default("header_timeout"), _default("body_timeout"))
    text = os.environ.get(LIMITS_ENV, "")
    if not text:
        return limits
    try:
        values = json.loads(text)
        return float(values["header_timeout"]), float(values["body_timeout"])
    except (ValueError, KeyError, TypeError):  # set by serve(): only a hand-made value gets here
        log.error(
            "Alation relay: %s is not valid (%r); using header_timeout=%g, body_timeout=%g",
            LIMITS_ENV,
            text,
            *limits,
        )
        return limits


class HeaderDeadlineProtocol(_Base):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol, closing a connection whose request headers do not arrive in time."""

    _deadline: asyncio.TimerHandle | None = None
    #: httptools: a request's headers are in and its body is not yet (h11 asks its connection).
    _in_body = False
    #: The body of a request answered early got what was left of its ``body_timeout`` once.
    _body_grace = False
    #: When the request in progress (``cycle``) had its headers in (the loop's clock).
    _headers_at = 0.0
    _cycle: Any = None

    @property  # type: ignore[override]
    def cycle(self) -> Any:
        return self._cycle

    @cycle.setter
    def cycle(self, value: Any) -> None:  # uvicorn sets it once a request's headers are in
        self._cycle = value
        if value is not None:
            self._headers_at = self.loop.time()

    def limits(self) -> tuple[float, float]:
        return _configured_limits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits()[0])

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._body_grace = False
        self._arm(self.limits()[0])  # a keep-alive connection: the next request's headers, in time too

    def on_headers_complete(self) -> None:  # httptools only
        self._in_body = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:  # httptools only
        self._in_body = False
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self._deadline = self.loop.call_later(seconds, self._headers_late)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _receiving_body(self) -> bool:
        conn = getattr(self, "conn", None)
        if conn is not None:  # h11
            import h11

            return conn.their_state is h11.SEND_BODY
        return self._in_body

    def _headers_late(self) -> None:
        self._deadline = None
        cycle: Any = self.cycle
        if cycle is not None and not cycle.response_complete:
            return  # being handled: its body has body_timeout, its answer the delivery's budget
        if self._receiving_body() and not self._body_grace:
            # Answered before its body was read: the sender may finish it, within body_timeout from
            # its headers (a 408, sent once body_timeout is over, gets nothing more).
            self._body_grace = True
            left = self._headers_at + self.limits()[1] - self.loop.time()
            if left > 0:
                self._arm(left)
                return
        if not self.transport.is_closing():
            log.info(
                "Alation relay: closed a connection from %s that sent no complete request within "
                "header_timeout=%gs",
                "{}:{}".format(*self.client) if self.client else "an unknown client",
                self.limits()[0],
            )
            self.transport.close()


def with_limits(header_timeout: float, body_timeout: float) -> type[asyncio.Protocol]:
    """The protocol class with limits of its own (a relay served in this process: tests)."""

    class Protocol(HeaderDeadlineProtocol):
        def limits(self) -> tuple[float, float]:
            return header_timeout, body_timeout

    return Protocol
