"""Metrics through Airflow's ``Stats`` (StatsD/OpenTelemetry as the deployment configures it).

Names, all under the ``alation.`` prefix:

- ``alation.events.sent``                - events Alation answered 2xx
- ``alation.events.skipped.<reason>``    - events the gate dropped (``not_complete``, ``no_inputs``, ...)
- ``alation.events.failed.<problem>``    - events not delivered this time (``auth``, ``timeout``, ...)
- ``alation.events.rejected``            - events Alation refused for good (4xx)
- ``alation.events.invalid_settings``    - events not sent because the connection is invalid
- ``alation.send.duration``              - timer: seconds spent delivering one event
"""

from __future__ import annotations

from functools import cache
from typing import Any


class _NoStats:
    def incr(self, *args: Any, **kwargs: Any) -> None:
        return None

    def timing(self, *args: Any, **kwargs: Any) -> None:
        return None


@cache
def _stats() -> Any:
    try:
        from airflow.providers.common.compat.sdk import Stats
    except ImportError:
        try:
            from airflow.stats import Stats
        except ImportError:  # outside Airflow
            return _NoStats()
    return Stats


PREFIX = "alation"


def incr(name: str) -> None:
    _stats().incr(f"{PREFIX}.{name}")


def timing(name: str, seconds: float) -> None:
    _stats().timing(f"{PREFIX}.{name}", seconds * 1000.0)
