"""Settling an outbox entry after a delivery attempt, and replaying the outbox.

I/O orchestration over :class:`~airflow_provider_alation.outbox.store.Outbox` and
:class:`~airflow_provider_alation.alation.delivery.Sender`; used by the transport (the first attempt and the
bounded drain after a successful send), by ``airflow-alation replay`` and by the maintenance DAG.

Verdicts: 2xx -> the entry is removed; a permanent refusal (400, 404, 413, 422, other 4xx, a
redirect) -> dead letter with the status and the first bytes of the answer; everything else
(401/403, 429, 5xx, network, timeout) -> kept for replay. An entry this provider did not write (not a
regular file, too large, or its authentication code does not verify), or one cut short, is never
sent: the outbox moves it to ``quarantine/`` and the replay counts it and goes on.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_alation.alation.delivery import Outcome, Sender, sender_for
from airflow_provider_alation.integration import metrics
from airflow_provider_alation.lineage.shaping import NotSendable, body_shaper
from airflow_provider_alation.outbox.store import Claim, Outbox, Verdict, outbox_for
from airflow_provider_alation.settings import DEFAULT_CONN_ID, AlationSettings

log = logging.getLogger(__name__)

#: Problems that fail every event the same way until someone fixes the setup: a replay stops.
STOPPING_PROBLEMS = frozenset({"auth", "tls", "unreachable"})
#: A replay also stops after this many transient failures in a row (Alation still down).
MAX_FAILURES_IN_A_ROW = 3


def verdict_of(outcome: Outcome) -> Verdict:
    if outcome.kind == "sent":
        return "sent"
    if outcome.kind == "rejected":
        return "dead"
    return "retry"


def job_of(body: bytes) -> str:
    try:
        return str(json.loads(body).get("job", {}).get("name", "?"))
    except (ValueError, AttributeError):
        return "?"


def settle(outbox: Outbox, claim: Claim, outcome: Outcome, *, replayed: bool) -> Verdict:
    """Apply ``outcome`` to the entry and count it; returns the verdict."""
    verdict = verdict_of(outcome)
    reason: dict[str, Any] | None = None
    if verdict == "dead":
        reason = {
            "status": outcome.status,
            "problem": outcome.problem,
            "detail": outcome.detail,
            "response_head": outcome.response_head,
            "job": job_of(claim.body),
        }
    outbox.settle(claim, verdict, reason)
    if verdict == "sent":
        metrics.incr("events.sent")
        if replayed or claim.was_dead:
            metrics.incr("events.replayed")
    elif verdict == "dead":
        metrics.incr("events.dead_lettered")
    else:
        metrics.incr(f"events.failed.{outcome.problem or 'other'}")
        if not replayed:
            metrics.incr("events.queued")
    return verdict


@dataclass
class ReplaySummary:
    claimed: int = 0
    sent: int = 0
    dead: int = 0
    kept: Counter[str] = field(default_factory=Counter)  # problem -> events kept for replay
    reclaimed: int = 0  # claims of killed processes put back before this replay
    quarantined: int = 0  # entries this provider did not write, or cut short: in quarantine/ (never sent)
    stopped: str = ""  # why the replay stopped early, with the fix
    seconds: float = 0.0

    @property
    def kept_total(self) -> int:
        return sum(self.kept.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "claimed": self.claimed,
            "sent": self.sent,
            "dead_lettered": self.dead,
            "kept_for_replay": dict(self.kept),
            "reclaimed": self.reclaimed,
            "quarantined": self.quarantined,
            "stopped": self.stopped,
            "seconds": round(self.seconds, 3),
        }


def replay(
    outbox: Outbox,
    sender: Sender,
    *,
    per_event_budget: float,
    dead: bool = False,
    limit: int | None = None,
    window: float | None = None,
    reclaim: bool = True,
    stop_on_first_failure: bool = False,
    on_event: Callable[[Verdict, Outcome], None] | None = None,
    prepare: Callable[[bytes], bytes] | None = None,
) -> ReplaySummary:
    """Send the entries waiting when the replay starts (dead letters with ``dead``), oldest first,
    until all were tried, ``limit`` were claimed, ``window`` seconds have passed, or a problem that
    fails every event stops it.

    Each entry is claimed right before its own attempt, so no claim waits behind others long enough
    to outlive its lease, and an entry settled back (refused again) is not tried twice in one run.
    Safe to run in several processes or machines at once over a shared outbox.

    ``prepare`` turns an entry into the body to send (the transport's and the command's shaper:
    entries are kept as written ahead, before namespaces are resolved); an entry it raises
    :class:`~airflow_provider_alation.lineage.shaping.NotSendable` for goes to the dead letters with the
    reason (or stays there), unsent.
    """
    started = time.monotonic()
    summary = ReplaySummary()
    reclaim_stale = getattr(outbox, "reclaim_stale", None)
    if reclaim and reclaim_stale is not None:
        summary.reclaimed = reclaim_stale()
    quarantined_before = getattr(outbox, "quarantined", 0)
    sweep = getattr(outbox, "sweep", None)
    if sweep is not None:  # directories, FIFOs, links... named *.json: quarantined, never read
        sweep(dead)
    waiting = [info.entry for info in outbox.list("dead" if dead else "pending")]
    failures_in_a_row = 0
    for entry in waiting:
        if summary.stopped or (limit is not None and summary.claimed >= limit):
            break
        budget = per_event_budget
        if window is not None:
            budget = min(budget, window - (time.monotonic() - started))
            if budget <= 0.2:
                summary.stopped = "time window used up"
                break
        claims = outbox.claim(1, dead=dead, entries=[entry])
        if not claims:
            continue  # sent or claimed by another process meanwhile
        claim = claims[0]
        summary.claimed += 1
        body = claim.body
        if prepare is not None:
            try:
                body = prepare(body)
            except NotSendable as exc:
                _dead_unsent(outbox, claim, exc)
                summary.dead += 1
                continue
        outcome = sender.post(body, budget, on_late=late_settler(outbox, claim))
        if outcome.abandoned:  # settled by its late answer, or replayed after the lease
            verdict: Verdict = "retry"
        else:
            verdict = _settle_quietly(outbox, claim, outcome)
        if verdict == "sent":
            summary.sent += 1
            failures_in_a_row = 0
        elif verdict == "dead":
            summary.dead += 1
            failures_in_a_row = 0
        else:
            summary.kept[outcome.problem or "other"] += 1
            failures_in_a_row += 1
            if outcome.problem in STOPPING_PROBLEMS:
                summary.stopped = outcome.detail
            elif stop_on_first_failure or failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                summary.stopped = f"{failures_in_a_row} failure(s) in a row, last: {outcome.detail}"
        if on_event is not None:
            on_event(verdict, outcome)
    purge_sent = getattr(outbox, "purge_sent", None)
    if purge_sent is not None and summary.sent:  # what this replay delivered, and older leftovers
        purge_sent(2 * summary.sent + 16)  # bounded: a drain runs inside emit()
    summary.quarantined = getattr(outbox, "quarantined", 0) - quarantined_before
    if summary.quarantined:
        metrics.incr("outbox.quarantined", summary.quarantined)
    summary.seconds = time.monotonic() - started
    return summary


def _dead_unsent(outbox: Outbox, claim: Claim, exc: NotSendable) -> None:
    metrics.incr(f"events.{exc.problem}")
    reason = {"problem": exc.problem, "detail": exc.detail, "job": job_of(claim.body)}
    log.error(
        "Alation lineage: outbox entry %s of %s is not sent: it %s", claim.entry, reason["job"], exc.detail
    )
    try:
        outbox.settle(claim, "dead", reason)
    except OSError as error:
        log.warning("Alation lineage: could not settle outbox entry %s: %s", claim.entry, error)


def _settle_quietly(outbox: Outbox, claim: Claim, outcome: Outcome) -> Verdict:
    """Settle; a disk error is logged (the claim is put back after its lease) instead of raised."""
    try:
        return settle(outbox, claim, outcome, replayed=True)
    except OSError as exc:
        log.warning("Alation lineage: could not settle outbox entry %s: %s", claim.entry, exc)
        return "retry"


def late_settler(outbox: Outbox, claim: Claim, replayed: bool = True) -> Callable[[Outcome], None]:
    """The ``on_late`` callback: settles an answer that arrived after the budget, never raising
    (it runs in a daemon thread)."""

    def late(outcome: Outcome) -> None:
        try:
            settle(outbox, claim, outcome, replayed=replayed)
        except Exception as exc:  # noqa: BLE001 - a daemon thread must not die with a traceback
            log.warning("Alation lineage: could not settle the late answer for %s: %s", claim.entry, exc)

    return late


def shaper_for(settings: AlationSettings) -> Callable[[bytes], bytes]:
    """The shaper a replay outside the transport uses: the settings' rules and, with discovery,
    Alation's data sources (from the cache, or read within the interactive bound)."""
    from airflow_provider_alation.lineage.resolution import NamespaceResolver

    index = None
    if settings.discover_datasources:
        from airflow_provider_alation.alation.discovery import load_index_interactive

        index = load_index_interactive(settings).index
    resolver = NamespaceResolver.for_settings(settings, index)
    return body_shaper(resolver.resolve, settings.max_event_bytes, symlink_tables=settings.symlink_tables)


def replay_with(settings: AlationSettings, outbox: Outbox, **options: Any) -> ReplaySummary:
    """One :func:`replay` of ``outbox`` under ``settings``: their sender, their time budget per
    event, each entry shaped with their rules before it is sent (the command, the maintenance DAG
    and the page's "replay now")."""
    return replay(
        outbox,
        sender_for(settings),
        per_event_budget=settings.time_budget,
        prepare=shaper_for(settings),
        **options,
    )


class ReplayStopped(RuntimeError):
    """A replay could not deliver because of a setup problem (token, TLS, network): fix it."""


def replay_connection(
    conn_id: str = DEFAULT_CONN_ID, *, dead: bool = False, limit: int | None = None
) -> dict[str, Any]:
    """Replay the outbox of an Airflow connection's settings (the maintenance DAG's task).

    Raises :class:`ReplayStopped`, failing the task in the Airflow UI, when a problem that needs
    a person (a rejected token, a TLS failure, no network) stopped the replay.
    """
    from airflow_provider_alation.integration.connection import load_settings

    settings = load_settings(conn_id)
    outbox = outbox_for(settings)
    summary = replay_with(settings, outbox, dead=dead, limit=limit)
    result = {**summary.as_dict(), "left": outbox.counts()}
    log.info("Alation lineage: outbox replay of %s: %s", settings.spool_dir, result)
    if summary.stopped and any(problem in STOPPING_PROBLEMS for problem in summary.kept):
        raise ReplayStopped(f"Alation outbox replay stopped: {summary.stopped}; {result}")
    return result
