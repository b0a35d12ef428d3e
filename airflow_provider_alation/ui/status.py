"""What the "Alation lineage" page shows, computed by the check command's own functions
(:mod:`airflow_provider_alation.commands.check`), so the page and ``airflow-alation check`` cannot
disagree. No web framework here: :mod:`airflow_provider_alation.ui.app` serves these as JSON.

The page's load never calls Alation: the data sources come from the disk cache only, and the DAGs,
their tags and assets from the metadata database (what the DAG processors recorded), never from
parsing DAG files. The tenant probe, the refresh of the data sources and the replay are actions a
person asks for. Nothing returned holds a token or a password: the settings lines name the tenant
URL and the token's type only, namespaces are stripped of credentials, and dead letters show the
reason the provider wrote (redacted when written).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from airflow_provider_alation.commands import check
from airflow_provider_alation.commands.check import CheckLine
from airflow_provider_alation.settings import AlationSettings

#: Dead letters listed on the page (the counts cover them all).
DEAD_LETTERS_SHOWN = 50
#: A replay from the page stops after this many events or seconds; the rest waits for the next one.
REPLAY_LIMIT = 1000
REPLAY_WINDOW = 60.0


def _lines(lines: list[CheckLine]) -> list[dict[str, str]]:
    return [line.as_dict() for line in lines]


def _timed(timings: dict[str, float], name: str, step: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    try:
        return step()
    finally:
        timings[name] = round((time.perf_counter() - started) * 1000, 1)


def settings_of(conn_id: str | None = None) -> tuple[list[CheckLine], AlationSettings | None, str]:
    """The connection lines, the settings (None when unusable) and where they come from, read as
    the check reads them (the connection the configured transport names, unless ``conn_id``)."""
    from airflow_provider_alation.integration.configuration import built_transport_status

    return check._guarded_settings(conn_id, functools.cache(built_transport_status))


def _datasources(settings: AlationSettings, refresh: bool) -> tuple[list[CheckLine], Any, dict[str, Any]]:
    """The discovery line, the index and its summary; the cache only unless ``refresh``."""
    from airflow_provider_alation.alation.discovery import load_index_cached

    if not settings.discover_datasources:
        lines, index = check.check_datasources(settings)
        return lines, None, {"enabled": False, "count": 0, "age_seconds": None, "state": "off"}
    found = check._guarded(
        "datasources", lambda: check.check_datasources(settings, refresh, cache_only=not refresh)
    )
    lines, index = found if isinstance(found, tuple) else (found, None)
    load = load_index_cached(settings)  # the in-process memo: no second parse of the file
    summary = {
        "enabled": True,
        "count": load.count,
        "age_seconds": round(load.age(), 1) if load.age() is not None else None,
        "state": load.state,
        "cache_dir": str(settings.cache_dir),
    }
    return lines, index, summary


def outbox_summary(settings: AlationSettings) -> dict[str, Any]:
    """The outbox lines, its counts, the oldest waiting event's age and the dead letters' reasons."""
    lines, infos = check.outbox_state(settings)
    counts = {state: sum(info.state == state for info in infos) for state in ("pending", "claimed", "dead")}
    waiting = [info.queued_at for info in infos if info.state != "dead"]
    dead = sorted((info for info in infos if info.state == "dead"), key=lambda info: info.queued_at)
    now = time.time()
    return {
        "spool_dir": str(settings.spool_dir),
        "lines": _lines(lines),
        "waiting": counts["pending"] + counts["claimed"],
        "counts": counts,
        "oldest_age_seconds": round(now - min(waiting), 1) if waiting else None,
        "dead_letters": [
            {
                "entry": info.entry,
                "age_seconds": round(now - info.queued_at, 1),
                "size": info.size,
                "reason": _reason_text(info.reason),
            }
            for info in dead[-DEAD_LETTERS_SHOWN:]
        ],
    }


def _reason_text(reason: dict[str, object] | None) -> str:
    if not reason:
        return "no reason recorded"
    from airflow_provider_alation.lineage.namespaces import redact

    parts = [f"{key} {reason[key]}" for key in ("status", "problem", "detail", "job") if reason.get(key)]
    return redact("; ".join(parts))[:500]


def page_status(conn_id: str | None = None) -> dict[str, Any]:
    """Everything the page shows on load (no request to Alation)."""
    from airflow_provider_alation.integration.configuration import built_transport_status

    started = time.perf_counter()
    timings: dict[str, float] = {}
    transport_state = functools.cache(built_transport_status)
    openlineage = _timed(
        timings,
        "openlineage",
        lambda: check._guarded("openlineage", lambda: check.check_openlineage(transport_state)),
    )
    connection, settings, source = _timed(
        timings, "connection", lambda: check._guarded_settings(conn_id, transport_state)
    )
    result: dict[str, Any] = {"source": source, "openlineage": _lines(openlineage)}
    if settings is None:
        result["connection"] = _lines(connection)
        result["usable"] = False
        result["seconds"] = round(time.perf_counter() - started, 3)
        return result
    connection = [*connection, *check._guarded("connection", lambda: check.execution_timeout_lines(settings))]
    result["connection"] = _lines(connection)
    result["usable"] = True
    result["tenant"] = {"url": settings.url, "endpoint": settings.endpoint}
    lines, index, summary = _timed(timings, "datasources", lambda: _datasources(settings, refresh=False))
    result["datasources"] = {**summary, "lines": _lines(lines)}
    coverage = _timed(
        timings,
        "namespaces",
        lambda: check._guarded("namespaces", lambda: check.namespace_coverage(settings, index)),
    )
    result["namespaces"] = [
        found.as_dict() if isinstance(found, check.Coverage) else {"line": found.as_dict()}
        for found in coverage
    ]
    result["dags"] = _lines(
        _timed(
            timings, "dags", lambda: check._guarded("dags", lambda: check.check_dags_in_database(settings))
        )
    )
    outbox = _timed(timings, "outbox", lambda: check._guarded("outbox", lambda: outbox_summary(settings)))
    result["outbox"] = outbox if isinstance(outbox, dict) else {"lines": _lines(outbox)}
    result["timings_ms"] = timings
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def tenant_status(conn_id: str | None = None) -> dict[str, Any]:
    """The Test button's probe (one START event naming no dataset), as the check's tenant lines."""
    connection, settings, source = settings_of(conn_id)
    if settings is None:
        return {"source": source, "lines": _lines(connection)}
    tenant = check._guarded("tenant", lambda: check.check_tenant(settings))
    return {"source": source, "lines": _lines(tenant)}


def refresh_datasources(conn_id: str | None = None) -> dict[str, Any]:
    """Read Alation's data sources now and replace the cache (the check's ``--refresh``)."""
    connection, settings, source = settings_of(conn_id)
    if settings is None:
        return {"source": source, "lines": _lines(connection)}
    lines, _, summary = _datasources(settings, refresh=True)
    return {"source": source, **summary, "lines": _lines(lines)}


def resolve(namespace: str, conn_id: str | None = None) -> dict[str, Any]:
    """What a namespace becomes and why (``airflow-alation resolve``, with the cached index only)."""
    from airflow_provider_alation.alation.discovery import load_index_cached
    from airflow_provider_alation.lineage.resolution import NamespaceResolver

    connection, settings, source = settings_of(conn_id)
    if settings is None:
        return {"source": source, "lines": _lines(connection)}
    load = load_index_cached(settings) if settings.discover_datasources else None
    index = load.index if load is not None else None
    row = NamespaceResolver.for_settings(settings, index).resolve(namespace.strip()).as_row(index is not None)
    return {"source": source, "datasources": load.state if load is not None else "off", **row}


def replay_now(conn_id: str | None = None) -> dict[str, Any]:
    """Replay the outbox now (``airflow-alation replay``), bounded by :data:`REPLAY_LIMIT` events and
    :data:`REPLAY_WINDOW` seconds."""
    from airflow_provider_alation.outbox.replay import replay_with
    from airflow_provider_alation.outbox.store import outbox_for

    connection, settings, source = settings_of(conn_id)
    if settings is None:
        return {"source": source, "lines": _lines(connection)}
    outbox = outbox_for(settings)
    before = outbox.counts()
    summary = replay_with(settings, outbox, limit=REPLAY_LIMIT, window=REPLAY_WINDOW)
    return {"source": source, **summary.as_dict(), "before": before, "after": outbox.counts()}
