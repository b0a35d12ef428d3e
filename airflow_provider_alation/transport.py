"""``AlationTransport``: the OpenLineage transport that sends Alation exactly what makes lineage.

Configure it with one line::

    AIRFLOW__OPENLINEAGE__TRANSPORT='{"type": "airflow_provider_alation.transport.AlationTransport"}'

It reads the ``alation_default`` connection (``"conn_id"`` picks another) or, outside Airflow,
inline settings (``"url"``, ``"token"`` and the extra keys). Per event: the first gate step (no
settings needed), the settings, then the :class:`~airflow_provider_alation.pipeline.Pipeline`
(selection, write-ahead, resolution, shaping, delivery inside ``time_budget``). ``emit`` never
raises and never takes longer than ``time_budget``: this is the one place that rule is enforced.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import attr
from openlineage.client.transport.transport import Config, Transport

from airflow_provider_alation.alation.delivery import Outcome
from airflow_provider_alation.alation.masking import mask_secret
from airflow_provider_alation.integration import metrics, task_context
from airflow_provider_alation.pipeline import Pipeline, skipped
from airflow_provider_alation.settings import (
    DEFAULT_CONN_ID,
    AlationSettings,
    SettingsError,
    build_settings,
)

if TYPE_CHECKING:
    from openlineage.client.client import Event

log = logging.getLogger(__name__)

#: Settings are re-read after this many seconds, so a long-lived process sees connection edits.
SETTINGS_TTL_SECONDS = 60.0

_INLINE_ONLY = ("url", "token", "user_id")


@attr.define
class AlationConfig(Config):
    """Transport configuration: a connection id, or inline settings for use outside Airflow."""

    conn_id: str = DEFAULT_CONN_ID
    inline: dict[str, Any] | None = attr.field(default=None, repr=False)

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> AlationConfig:
        values = {k: v for k, v in params.items() if k not in ("type", "name", "priority")}
        conn_id = str(values.pop("conn_id", DEFAULT_CONN_ID) or DEFAULT_CONN_ID)
        if any(key in values for key in _INLINE_ONLY):
            return cls(conn_id=conn_id, inline=values)
        if values:
            # Extra keys without url/token: keep them so the error names them at first use.
            return cls(conn_id=conn_id, inline=values)
        return cls(conn_id=conn_id)


class AlationTransport(Transport):
    kind = "alation"
    config_class = AlationConfig

    def __init__(self, config: AlationConfig) -> None:
        # No I/O here: no connection lookup, no network (the listener builds transports in the
        # scheduler too, where most events are dropped by the gate).
        self.config = config
        self._lock = threading.Lock()
        self._settings: AlationSettings | None = None
        self._settings_error: SettingsError | None = None
        self._loaded_at = float("-inf")
        self._pipeline: Pipeline | None = None
        self._logged: set[str] = set()
        self._pid = os.getpid()

    def _after_fork(self) -> None:
        """In a forked child (the OpenLineage provider emits from one): a fresh lock, and the
        pipeline drops what it must not share with the parent."""
        self._lock = threading.Lock()
        if self._pipeline is not None:
            self._pipeline.after_fork()
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"<AlationTransport(conn_id={self.config.conn_id!r}, inline={self.config.inline is not None})>"

    __str__ = __repr__

    # -- the one place where "never fail the task" is enforced ---------------------------------
    def emit(self, event: Event) -> Outcome | None:
        started = time.monotonic()
        if self._pid != os.getpid():
            self._after_fork()
        try:
            return self._emit(event, started)
        except Exception as exc:
            self._log_once(
                f"bug:{type(exc).__name__}",
                logging.ERROR,
                "Alation lineage: unexpected %s while handling an event; the task is not affected. "
                "Please report this with the stack trace (debug log).",
                type(exc).__name__,
            )
            log.debug("Alation transport failure", exc_info=True)
            return None

    def close(self, timeout: float = -1) -> bool:
        if self._pipeline is not None:
            self._pipeline.close()
        return True

    def _emit(self, event: Any, started: float) -> Outcome | None:
        reason = Pipeline.precheck(event)
        if reason:
            return skipped(event, reason)
        pipeline = self.pipeline()
        if pipeline is None:
            metrics.incr("events.invalid_settings")
            return None
        return pipeline.run(event, started, task_context.current_task())

    # -- settings -----------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Read the settings now, in this process (the plugin calls it in the task process before
        the OpenLineage provider forks the emitting child, which then inherits them), and have the
        pipeline ready what every event needs (:meth:`Pipeline.prepare`). Quietly: an invalid
        connection is reported when an event with lineage needs it, not for every task."""
        if self.settings(report=False) is not None and self._pipeline is not None:
            self._pipeline.prepare(task_context.current_task())

    def pipeline(self) -> Pipeline | None:
        """The pipeline for the current settings; None (logged once) when they are invalid."""
        return self._pipeline if self.settings() is not None else None

    def settings(self, report: bool = True) -> AlationSettings | None:
        """The validated settings (cached for a minute); None, logged once, when they are invalid.

        A child forked off a task process to emit uses what the task process read (see
        :mod:`~airflow_provider_alation.integration.task_context`), however old: it never reads the
        connection.
        """
        with self._lock:
            stale = time.monotonic() - self._loaded_at > SETTINGS_TTL_SECONDS
            if stale and task_context.in_forked_emitter() and self._loaded_at > float("-inf"):
                stale = False
            if stale:
                try:
                    settings = self.read_settings()
                except SettingsError as exc:
                    self._settings, self._settings_error, self._pipeline = None, exc, None
                else:
                    if settings != self._settings or self._pipeline is None:
                        # The old pipeline is not closed: an abandoned request may still use it.
                        self._pipeline = Pipeline(settings)
                    self._settings, self._settings_error = settings, None
                self._loaded_at = time.monotonic()
            if self._settings_error is not None and report:
                self._log_once(
                    str(self._settings_error),
                    logging.ERROR,
                    "%s\nAlation lineage is not sent until this is fixed; the task itself is not affected.",
                    self._settings_error,
                )
            return self._settings

    def read_settings(self) -> AlationSettings:
        """The settings, inline or from the connection (raises :class:`SettingsError`)."""
        inline = self.config.inline
        if inline is not None and any(key in inline for key in _INLINE_ONLY):
            settings = build_settings(inline, "the transport configuration", inline=True)
            mask_secret(settings.token.get_secret_value())
            return settings
        if inline:
            raise SettingsError(
                [
                    f'transport configuration: keys {sorted(inline)} given without "url" and "token"; '
                    "either give url and token inline too (outside Airflow) or move these keys into the "
                    f"extra of connection {self.config.conn_id!r}"
                ],
                "the transport configuration",
            )
        from airflow_provider_alation.integration.connection import load_settings

        return load_settings(self.config.conn_id)

    def _log_once(self, key: str, level: int, message: str, *args: Any) -> None:
        if key in self._logged:
            return
        self._logged.add(key)
        log.log(level, message, *args)
