"""Metrics through Airflow's ``Stats`` (StatsD/OpenTelemetry as the deployment configures it).

Names, all under the ``alation.`` prefix:

- ``alation.events.sent``                - events Alation answered 2xx (first attempt, drain or replay)
- ``alation.events.skipped.<reason>``    - events the gate dropped (``not_complete``, ``no_inputs``, ...)
- ``alation.events.queued``              - events kept in the outbox for replay (not delivered now)
- ``alation.events.failed.<problem>``    - why they were not delivered (``auth``, ``timeout``, ...)
- ``alation.events.replayed``            - outbox events delivered later (drain or replay)
- ``alation.events.dead_lettered``       - events Alation refused for good, moved to dead/
- ``alation.events.invalid_settings``    - events not sent because the connection is invalid
- ``alation.events.too_large``           - events above ``max_event_bytes`` after trimming (dead-lettered)
- ``alation.outbox.dropped``             - oldest outbox events dropped because a cap was hit
- ``alation.outbox.unavailable``         - events sent without the outbox (spool_dir unusable)
- ``alation.outbox.quarantined``         - outbox entries not this provider's (or cut short), never sent
- ``alation.send.duration``              - timer: seconds spent delivering one event
"""

from __future__ import annotations

import sys
from functools import cache
from typing import Any


class _NoStats:
    def incr(self, *args: Any, **kwargs: Any) -> None:
        return None

    def timing(self, *args: Any, **kwargs: Any) -> None:
        return None


@cache
def _stats() -> Any:
    if "airflow" not in sys.modules:  # outside Airflow: importing it would cost seconds for nothing
        return _NoStats()
    try:
        from airflow.providers.common.compat.sdk import Stats
    except ImportError:
        try:
            from airflow.stats import Stats
        except ImportError:  # outside Airflow
            return _NoStats()
    return Stats


PREFIX = "alation"


def incr(name: str, count: int = 1) -> None:
    _stats().incr(f"{PREFIX}.{name}", count)


def timing(name: str, seconds: float) -> None:
    _stats().timing(f"{PREFIX}.{name}", seconds * 1000.0)
