"""The one pipeline every event that carries lineage goes through, for one set of settings:

    selection -> write-ahead (outbox) -> resolve -> shape -> deliver -> settle -> drain

:class:`AlationTransport` runs it per event inside ``emit`` (the first gate step, which needs no
settings, is the transport's); the relay runs it for events OpenLineage senders POST. No network
attempt (a discovery refresh, minting, the request) comes before the write-ahead, so an event that
passed the gate is on disk first. The relay writes it before anything else (it answers 202 then);
the transport after resolving and shaping in memory (no network: a refresh due is preceded by the
write), while its delivery thread takes the request up; an event those fail on goes to the dead
letters, and any other failure before the write writes it. Every failure after it leaves the
event in the outbox or the dead letters with its reason. Reporting (one line per namespace per
process, one per setup problem) lives here too.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openlineage.client.serde import Serde

from airflow_provider_alation.alation.delivery import Outcome, Sender, sender_for
from airflow_provider_alation.alation.discovery import load_index, load_index_cached
from airflow_provider_alation.alation.tokens import BearerToken
from airflow_provider_alation.integration import metrics
from airflow_provider_alation.lineage import gate
from airflow_provider_alation.lineage.datasources import EndpointIndex
from airflow_provider_alation.lineage.logtext import printable
from airflow_provider_alation.lineage.namespaces import parse_namespace, redact
from airflow_provider_alation.lineage.resolution import NamespaceResolver, Resolution
from airflow_provider_alation.lineage.shaping import body_shaper, encode, shape_event, strip_credentials
from airflow_provider_alation.outbox.replay import late_settler, replay, settle
from airflow_provider_alation.outbox.store import Claim, LocalOutbox, outbox_for
from airflow_provider_alation.outbox.streaming import ForwardedRuns
from airflow_provider_alation.settings import AlationSettings

log = logging.getLogger(__name__)

#: A long-lived process looks at the discovered data sources (the disk cache) this often.
INDEX_RECHECK_SECONDS = 30.0
#: After a successful send, outbox events are sent for at most this long (within time_budget).
DRAIN_SECONDS = 1.0
#: Less than this left of time_budget after resolving: the event is left in the outbox for replay.
MIN_SEND_SECONDS = 0.1
#: Files of sent events removed while a request is in flight (usually the one file a forked emitter
#: before this one left), and after a send by the delivery thread of a long-lived process.
SENT_PURGE_WHILE_SENDING = 4
SENT_PURGE_AFTER = 64


@dataclass
class Admitted:
    """An event past the gate and on disk (``claim``, unless there is no outbox: dry_run, or an
    unwritable spool_dir; or ``deferred``: written by :meth:`Pipeline.deliver`), not yet resolved,
    shaped or sent."""

    event: dict[str, Any]
    body: bytes
    job_name: str
    outbox: LocalOutbox | None
    claim: Claim | None
    deferred: bool = False
    #: Set by :meth:`Pipeline.deliver`: whether (and where) the event has been written.
    entry: _Entry | None = None


class Pipeline:
    """Selection, write-ahead, resolution, shaping and delivery under one set of settings.

    No I/O when built. Its HTTP session, token, outbox and resolver are made at first use and
    kept; :meth:`after_fork` drops what a forked child must not share with its parent.
    """

    def __init__(self, settings: AlationSettings, *, evict: bool = True) -> None:
        self.settings = settings
        #: Above the outbox caps, drop the oldest waiting events (the transport: a task must go on)
        #: or refuse the new one (the relay: what it acknowledged is owed, so it answers 503).
        self.evict = evict
        self._lock = threading.Lock()
        self._resolver = NamespaceResolver.for_settings(settings)
        self._index_checked_at = float("-inf")
        self._bearer: BearerToken | None = None
        self._sender: Sender | None = None
        self._outbox: LocalOutbox | None = None
        self._logged: set[str] = set()
        self._forwarded: ForwardedRuns | None = None
        #: Entries waiting in the outbox, and claims not this send's, at the last caps check (-1:
        #: unknown, so a drain looks).
        self._waiting_seen = -1

    def __repr__(self) -> str:
        return f"<Pipeline {self.settings.endpoint_url}>"

    def after_fork(self) -> None:
        """In a forked child: fresh locks, no HTTP connection shared with the parent, no token or
        lock another thread held at fork time. What :meth:`prepare` readied (the outbox's checked
        directories, the index, the compiled rules) is kept: it holds no lock or connection (a
        stored index opens its file again in a new process)."""
        self._lock = threading.Lock()
        self._sender, self._bearer = None, None

    def prepare(self, task: gate.TaskOfProcess | None = None) -> None:
        """In the task process, before the OpenLineage provider forks a child per event: ready what
        every event needs and no event changes, so each child starts warm. Nothing here talks to
        Alation: the outbox's directories checked and its key read, the DAG patterns compiled, and
        the discovered index opened when its cache is fresh (a stale one is refreshed by the child,
        inside its time budget, as before). Skipped for a task whose DAG is not selected (its events
        are dropped anyway). The rules were compiled when the pipeline was built."""
        settings = self.settings
        gate.warm_patterns(settings.dags)  # a dropped event's selection uses them too
        if task is not None and gate.dag_selection_reason(*task[::2], settings.dags, settings.opt_in_tag):
            return
        self._resolver.rules.warm()
        if not settings.dry_run:
            with contextlib.suppress(OSError):  # reported by the child, when an event needs the outbox
                self._get_outbox(settings).prepare()
        if settings.discover_datasources and self._index_checked_at == float("-inf"):
            load = load_index_cached(settings)
            if load.state == "fresh" and load.index is not None:
                self._use_index(load.index)
                self._index_checked_at = time.monotonic()

    def close(self) -> None:
        if self._sender is not None:
            self._sender.close()

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for a request abandoned at the end of a time budget to get its late
        answer, which settles its event (the relay calls it before its process exits)."""
        sender = self._sender
        return sender is None or sender.wait_idle(timeout)

    @staticmethod
    def precheck(event: Any) -> str | None:
        """The first gate step, which needs no settings (so a dropped event costs microseconds and
        reads no connection): why Alation would not make lineage of ``event``, or None."""
        return gate.lineage_reason(event)

    def run(self, event: Any, started: float, task: gate.TaskOfProcess | None = None) -> Outcome:
        """An event that passed :meth:`precheck`, from selection to settlement, within
        ``time_budget`` counted from ``started`` (the transport's path)."""
        # On disk before the first network attempt (a discovery refresh, or the request), so a killed
        # process loses nothing: deliver writes it while the delivery thread takes the request up,
        # and fsyncs it while the request is in flight, so the flush is not added to the round trip.
        admitted = self.admit(event, task, durable=False, defer_write=True)
        if isinstance(admitted, Outcome):
            return admitted
        try:
            return self.deliver(admitted, started)
        except Exception:  # a bug before the write (the transport logs it): the event is kept anyway
            entry = admitted.entry
            if admitted.deferred and admitted.outbox is not None and (entry is None or not entry.written):
                with contextlib.suppress(Exception):
                    self._write_ahead(admitted.outbox, admitted.body, self.settings)
            raise

    def admit(
        self,
        event: Any,
        task: gate.TaskOfProcess | None = None,
        *,
        durable: bool = True,
        defer_write: bool = False,
    ) -> Admitted | Outcome:
        """Selection, then the write-ahead: what an event that passed :meth:`precheck` needs before
        a sender may be told it is safe (the relay answers 2xx here). An :class:`Outcome` when the
        event is not admitted (``skipped``, or dead-lettered because not even JSON can hold it).
        ``durable=False`` (the transport): the entry is written but fsynced by :meth:`deliver`, while
        its request is in flight; ``defer_write`` (the transport): written by :meth:`deliver`, before
        its first network attempt (a discovery refresh, or the request: never sent before it is on
        disk), while the delivery thread takes the request up. A streaming run is always written
        here (its first forwarding is marked after)."""
        settings = self.settings
        reason = gate.selection_reason(
            event, settings.dags, settings.opt_in_tag, settings.skip_job_types, task
        )
        if reason:
            return skipped(event, reason)
        stream_run: str | None = None
        if gate.event_state(event) != "COMPLETE":  # only a streaming START/RUNNING passes precheck
            complete = self._streaming_copy(event)
            if complete is None:
                return skipped(event, gate.NOT_COMPLETE)
            event, stream_run = complete, gate.run_id(event)

        names = gate.job_names(event)
        job_name = printable(names[0] if names else "?")
        try:  # the event as the outbox keeps it: credentials stripped, nothing else changed yet
            raw = Serde.to_dict(event) if not isinstance(event, dict) else copy.deepcopy(event)
            strip_credentials(raw)
            raw_body = encode(raw)
        except Exception as exc:  # noqa: BLE001 - a structure not even JSON can hold: kept as best we can
            detail = f"could not be serialised ({type(exc).__name__}: {printable(exc, 200)})"
            return self._not_sendable(
                None, _best_effort_body(event), job_name, settings, "unshapeable", detail
            )

        # Write-ahead before anything that can block (a discovery refresh, the request): from then on
        # the event is on disk, and a replay resolves and shapes it again if need be.
        outbox = None if settings.dry_run else self._get_outbox(settings)
        if outbox is not None and not self.evict and self._at_cap(outbox, len(raw_body)):
            return Outcome("retry", None, "the outbox is at its cap", problem="full")
        if defer_write and stream_run is None and outbox is not None:
            return Admitted(raw, raw_body, job_name, outbox, None, deferred=True)
        claim = self._write_ahead(outbox, raw_body, settings, durable) if outbox is not None else None
        # A streaming run is marked after its write-ahead: a process dying in between sends the run
        # twice at worst, never not at all; a run another process forwarded first is withdrawn.
        written = claim is not None or outbox is None
        if stream_run is not None and written and not self._first_forward(stream_run):
            if claim is not None and outbox is not None:
                outbox.settle(claim, "sent")
            return skipped(event, gate.NOT_COMPLETE)
        return Admitted(raw, raw_body, job_name, outbox, claim)

    def _at_cap(self, outbox: LocalOutbox, size: int) -> bool:
        """For a pipeline that must not evict (the relay's: every event it acknowledged is owed):
        whether one more event of ``size`` bytes would go over a cap."""
        try:
            return outbox.full(size) is not None
        except OSError:  # an unusable spool_dir: the write-ahead says so
            return False

    def _streaming_copy(self, event: Any) -> dict[str, Any] | None:
        """A streaming job's START/RUNNING as a COMPLETE copy (same run id) with
        ``stream_as_complete`` on; None (skipped as ``not_complete``) when it is off."""
        if not self.settings.stream_as_complete or not gate.run_id(event):
            return None
        complete = Serde.to_dict(event) if not isinstance(event, dict) else copy.deepcopy(event)
        complete["eventType"] = "COMPLETE"
        return complete

    def _first_forward(self, run_id: str) -> bool:
        """True for the one process (sharing ``cache_dir``) that forwards this run first."""
        with self._lock:
            if self._forwarded is None:
                where = None if self.settings.dry_run else Path(self.settings.cache_dir) / "streaming"
                self._forwarded = ForwardedRuns(where, scope=self.settings.url)
        return self._forwarded.first(run_id)

    def deliver(self, admitted: Admitted, started: float) -> Outcome:
        """Resolve, shape, POST and settle an admitted event within ``time_budget`` from ``started``."""
        settings = self.settings
        raw, raw_body, job_name, outbox, claim = (
            admitted.event,
            admitted.body,
            admitted.job_name,
            admitted.outbox,
            admitted.claim,
        )
        entry = admitted.entry = _Entry(claim, written=not (admitted.deferred and outbox is not None))
        write = functools.partial(self._write_ahead, outbox, raw_body, settings, False)
        if not self._resolver_ready(settings):  # a refresh may take a while: on disk first
            entry.write_once(write)
        claim = entry.claim
        try:
            # No refresh unless written: the recheck interval may end between these two lines.
            resolver = self._resolver_for(settings, started, may_refresh=entry.written)
            shaped = shape_event(
                raw,
                resolver.resolve,
                settings.max_event_bytes,
                in_place=True,
                symlink_tables=settings.symlink_tables,
                encoded=raw_body,  # the write-ahead's bytes are the body when shaping changes nothing
            )
        except Exception as exc:
            log.debug("Alation lineage: shaping failure", exc_info=True)
            detail = f"could not be shaped ({type(exc).__name__}: {printable(exc, 200)})"
            return self._not_sendable(claim, raw_body, job_name, settings, "unshapeable", detail)
        self._report_resolutions(shaped.resolutions, resolver.index is not None)
        body = shaped.body
        if shaped.trimmed:
            log.warning(
                "Alation lineage: the event of %s was above max_event_bytes=%d; removed %s; now %d bytes%s",
                job_name,
                settings.max_event_bytes,
                ", ".join(shaped.trimmed),
                shaped.size,
                "" if shaped.size <= settings.max_event_bytes else ", still above the cap",
            )
        if shaped.size > settings.max_event_bytes:
            detail = (
                f"is {shaped.size} bytes after removing {', '.join(shaped.trimmed) or 'nothing removable'}, "
                f"above max_event_bytes={settings.max_event_bytes}"
            )
            return self._not_sendable(claim, raw_body, job_name, settings, "too_large", detail)

        if settings.dry_run or outbox is None:
            log.info("Alation lineage (dry_run): would POST to %s: %s", settings.endpoint_url, body.decode())
            return Outcome("sent", None, "dry_run")
        left = settings.time_budget - (time.monotonic() - started)
        if (claim is not None or not entry.written) and left < MIN_SEND_SECONDS:
            entry.write_once(write)
            if entry.claim is not None:
                return self._keep_for_replay(outbox, entry.claim, job_name, settings, left)

        sender = self._get_sender(settings)
        budget = settings.time_budget - (time.monotonic() - started)

        def first() -> None:  # on disk before the request is sent; the delivery thread wakes meanwhile
            entry.write_once(write)

        def alongside() -> None:  # while the request is in flight
            self._finish_write_ahead(outbox, entry.claim, settings)
            outbox.purge_sent(SENT_PURGE_WHILE_SENDING)  # of emitters that exited before removing theirs

        def on_late(outcome: Outcome) -> None:  # set before the request can be abandoned
            if entry.claim is not None:
                late_settler(outbox, entry.claim, replayed=False)(outcome)

        outcome = sender.post(body, budget, on_late=on_late, before_sending=first, while_sending=alongside)
        entry.write_once(write)  # if nothing was sent (the previous request still in flight)
        claim = entry.claim
        self._finish_write_ahead(outbox, claim, settings)  # if nothing was sent meanwhile
        metrics.timing("send.duration", outcome.elapsed)
        if claim is None:
            problem = outcome.problem or "other"
            metrics.incr("events.sent" if outcome.kind == "sent" else f"events.failed.{problem}")
        elif not outcome.abandoned:
            try:
                if settle(outbox, claim, outcome, replayed=False) == "sent":
                    with contextlib.suppress(RuntimeError):  # no thread to run it: a later send does
                        sender.run_later(functools.partial(outbox.purge_sent, SENT_PURGE_AFTER))
            except OSError as exc:  # the claim goes back to pending after its lease
                log.warning("Alation lineage: could not settle outbox entry %s: %s", claim.entry, exc)
        self._report_outcome(outcome, job_name, settings, claim is not None)
        if outcome.kind == "sent" and claim is not None and settings.drain_max_events and self._waiting_seen:
            # Skipped when the caps check during this send saw nothing waiting and no other claim.
            self._drain(outbox, sender, settings, started, outcome.elapsed)
        return outcome

    def _not_sendable(
        self,
        claim: Claim | None,
        body: bytes,
        job_name: str,
        settings: AlationSettings,
        problem: str,
        detail: str,
    ) -> Outcome:
        """An event that passed the gate but will not be POSTed (``too_large``, ``unshapeable``):
        to the dead letters with the reason, where ``airflow-alation replay --dead`` tries it again
        (after the cap is raised, or with a version that can shape it)."""
        metrics.incr(f"events.{problem}")
        where = "not kept (dry_run)"
        if not settings.dry_run:
            outbox = self._get_outbox(settings)
            self._finish_write_ahead(outbox, claim, settings)
            reason = {"problem": problem, "detail": detail, "job": job_name}
            try:
                if claim is None:  # not written yet (deferred, or not serialisable): written now
                    claim = outbox.put(body)
                    if self.evict:
                        self._enforce_caps(outbox, settings)
                outbox.settle(claim, "dead", reason)
                where = f"in the dead letters in {settings.spool_dir}/dead"
            except OSError as exc:
                where = f"not kept: the outbox is not writable ({printable(exc, 200)})"
        log.error(
            "Alation lineage: the event of %s is not sent: it %s. It is %s; %s",
            job_name,
            detail,
            where,
            "dry_run is on, so nothing is kept or sent."
            if settings.dry_run
            else "raise max_event_bytes, then `airflow-alation replay --dead` sends it."
            if problem == "too_large"
            else "please report this with the event (debug log); `airflow-alation replay --dead` tries it "
            "again.",
        )
        return Outcome(problem, None, detail)  # type: ignore[arg-type]

    def _keep_for_replay(
        self, outbox: LocalOutbox, claim: Claim, job_name: str, settings: AlationSettings, left: float
    ) -> Outcome:
        """Resolving took what time_budget left for the POST: the event waits in the outbox."""
        self._finish_write_ahead(outbox, claim, settings)
        detail = f"{max(left, 0):.2f}s of time_budget={settings.time_budget:g}s left after resolving"
        try:
            outbox.settle(claim, "retry")
        except OSError as exc:  # the claim goes back to pending after its lease
            log.warning("Alation lineage: could not settle outbox entry %s: %s", claim.entry, exc)
        metrics.incr("events.queued")
        log.warning(
            "Alation lineage: the event of %s is not sent now (%s); it is kept in the outbox and sent by "
            "the next successful send or `airflow-alation replay`.",
            job_name,
            detail,
        )
        return Outcome("retry", None, detail, problem="timeout")

    # -- outbox -----------------------------------------------------------------------------------
    def _get_outbox(self, settings: AlationSettings) -> LocalOutbox:
        with self._lock:
            if self._outbox is None:
                self._outbox = outbox_for(settings)
            return self._outbox

    def _write_ahead(
        self, outbox: LocalOutbox, body: bytes, settings: AlationSettings, durable: bool = True
    ) -> Claim | None:
        """The event on disk before the first network attempt; None (logged once) if it cannot be.
        Not ``durable``: fsynced and the caps enforced by :meth:`_finish_write_ahead`, later."""
        try:
            claim = outbox.put(body, durable=durable)
        except OSError as exc:
            metrics.incr("outbox.unavailable")
            self._log_once(
                "outbox-unavailable",
                logging.ERROR,
                "Alation lineage: cannot write to spool_dir %s (%s); events are sent without the outbox, "
                "so one that cannot be delivered now is lost. Make spool_dir writable (a shared volume on "
                "Celery/Kubernetes workers).",
                settings.spool_dir,
                exc,
            )
            return None
        if durable and self.evict:
            self._enforce_caps(outbox, settings)
        return claim

    def _finish_write_ahead(
        self, outbox: LocalOutbox, claim: Claim | None, settings: AlationSettings
    ) -> None:
        """What :meth:`_write_ahead` left for later (while the request is in flight): fsync the entry,
        then enforce the caps. Once per claim; a disk that cannot fsync leaves the entry written."""
        if claim is None or outbox.is_durable(claim):
            return
        try:
            outbox.make_durable(claim)
        except OSError as exc:
            self._log_once(
                "outbox-fsync",
                logging.WARNING,
                "Alation lineage: could not flush an outbox entry to disk (%s); it is kept, but a crash "
                "of the machine could lose it",
                exc,
            )
        if self.evict:
            self._enforce_caps(outbox, settings)

    def _enforce_caps(self, outbox: LocalOutbox, settings: AlationSettings) -> None:
        self._waiting_seen = -1  # unknown until this check says otherwise: a drain looks
        try:
            dropped = outbox.enforce_caps()
        except OSError:
            return
        # Nothing to drain: nothing pending, and no claim but this send's own (a claim of a killed
        # emitter is put back by the drain's reclaim once its lease is over).
        self._waiting_seen = (
            -1
            if dropped.pending < 0 or dropped.claimed < 0
            else dropped.pending + max(0, dropped.claimed - 1)
        )
        if dropped.count:
            metrics.incr("outbox.dropped", dropped.count)
            log.error(
                "Alation lineage: the outbox %s is full (outbox_max_events=%d, outbox_max_bytes=%d): "
                "dropped the %d oldest event(s) (%d bytes) that were waiting for replay. Fix delivery "
                "(see the warnings above) and run `airflow-alation replay`, or raise the caps.",
                settings.spool_dir,
                settings.outbox_max_events,
                settings.outbox_max_bytes,
                dropped.count,
                dropped.bytes,
            )

    def _drain(
        self, outbox: LocalOutbox, sender: Sender, settings: AlationSettings, started: float, took: float
    ) -> None:
        """Alation answered: send a few events waiting in the outbox, in a small time slice.

        Only when the slice leaves each of them well more time than this send took, and stopping at
        the first that fails: an event whose answer would arrive after the slice would be "in doubt"
        and sent again by a replay.
        """
        window = min(DRAIN_SECONDS, settings.time_budget - (time.monotonic() - started) - 0.25)
        if window <= 0.3 or window < 3 * took:
            return
        try:
            summary = replay(
                outbox,
                sender,
                per_event_budget=window,
                limit=settings.drain_max_events,
                window=window,
                stop_on_first_failure=True,
                prepare=body_shaper(
                    self._resolver.resolve, settings.max_event_bytes, symlink_tables=settings.symlink_tables
                ),
            )
        except OSError as exc:
            log.debug("Alation lineage: outbox drain skipped: %s", exc)
            return
        if summary.sent or summary.dead:
            log.info(
                "Alation lineage: sent %d event(s) waiting in the outbox (%d dead-lettered)",
                summary.sent,
                summary.dead,
            )

    def _get_bearer(self, settings: AlationSettings) -> BearerToken:
        with self._lock:
            if self._bearer is None:
                self._bearer = BearerToken(settings)
            return self._bearer

    def _get_sender(self, settings: AlationSettings) -> Sender:
        bearer = self._get_bearer(settings)
        with self._lock:
            if self._sender is None:
                self._sender = sender_for(settings, bearer)
            return self._sender

    def _resolver_ready(self, settings: AlationSettings) -> bool:
        """Whether :meth:`_resolver_for` answers without I/O (no discovery refresh is due)."""
        return (
            not settings.discover_datasources
            or time.monotonic() - self._index_checked_at < INDEX_RECHECK_SECONDS
        )

    def _resolver_for(
        self, settings: AlationSettings, started: float, may_refresh: bool = True
    ) -> NamespaceResolver:
        """The resolver, with Alation's data sources when discovery is on (from the disk cache,
        refreshed with at most half of what is left of the time budget)."""
        if not may_refresh or self._resolver_ready(settings):
            return self._resolver
        remaining = settings.time_budget - (time.monotonic() - started)
        budget = max(0.0, min(settings.timeout, remaining / 2))
        load = load_index(settings, budget, token=self._get_bearer(settings))
        self._index_checked_at = time.monotonic()
        if load.state in ("stale", "unavailable") and load.detail:
            age = load.age()
            self._log_once(
                f"discovery:{load.state}:{load.detail}",
                logging.WARNING,
                "Alation lineage: could not refresh Alation's data sources (%s); %s. Events are still sent.",
                load.detail,
                f"resolving with the copy from {age / 60:.0f} min ago"
                if age is not None
                else "resolving without them until they can be read",
            )
        self._use_index(load.index)
        return self._resolver

    def _use_index(self, index: EndpointIndex | None) -> None:
        if index is not self._resolver.index:
            self._resolver = NamespaceResolver(self._resolver.rules, index, self._resolver.declared)

    # -- reporting --------------------------------------------------------------------------------
    def _log_once(self, key: str, level: int, message: str, *args: Any) -> None:
        if key in self._logged:
            return
        self._logged.add(key)
        log.log(level, message, *args)

    def _report_resolutions(self, resolutions: list[Resolution], discovery: bool) -> None:
        """One line per namespace per process: INFO when handled, WARNING when Alation won't link it."""
        for resolution in resolutions:
            key = f"ns:{resolution.original}"
            if key in self._logged:
                continue
            original = printable(redact(resolution.original))
            sent = printable(resolution.namespace)
            if resolution.rule == "not_applicable":
                detail = printable(resolution.detail, 600)
                self._log_once(key, logging.INFO, "Alation lineage: %s: %s", original, detail)
            elif resolution.matched and "short host name" in resolution.detail:
                self._log_once(
                    key,
                    logging.WARNING,
                    "Alation lineage: namespace %s -> %s, matched to Alation data source %s by its short "
                    "host name only; if that is the right server, confirm it with the namespace_map entry "
                    '"%s": "%s", otherwise map it to the right host:port',
                    original,
                    sent,
                    resolution.datasource,
                    printable(parse_namespace(resolution.original).host_port),
                    printable(resolution.host_port),
                )
            elif resolution.matched:
                if resolution.changed:
                    self._log_once(
                        key,
                        logging.INFO,
                        "Alation lineage: namespace %s -> %s (%s rule %s), Alation data source %s",
                        original,
                        sent,
                        resolution.rule,
                        resolution.detail,
                        resolution.datasource,
                    )
            elif resolution.rule == "unchanged" or discovery:
                self._log_once(
                    key,
                    logging.WARNING,
                    "Alation lineage: namespace %s is sent as %s, which %s: %s",
                    original,
                    sent,
                    "matches no Alation data source"
                    if discovery
                    else "matched no namespace_map rule, so Alation links it only if a data source's "
                    "JDBC URI has the same host:port",
                    printable(resolution.fix, 600),
                )
            else:
                self._log_once(
                    key,
                    logging.INFO,
                    "Alation lineage: namespace %s -> %s (%s rule %s); Alation links it if a data "
                    "source's JDBC URI has host:port %s",
                    original,
                    sent,
                    resolution.rule,
                    resolution.detail,
                    printable(resolution.host_port),
                )

    def _report_outcome(
        self, outcome: Outcome, job_name: Any, settings: AlationSettings, durable: bool
    ) -> None:
        kept = (
            "it is kept in the outbox and sent by the next successful send or `airflow-alation replay`"
            if durable
            else "it is lost (no outbox)"
        )
        if outcome.kind == "sent":
            log.info(
                "Alation lineage: sent COMPLETE event of %s (HTTP %s, %d attempt(s), %.2fs)",
                job_name,
                outcome.status,
                outcome.attempts,
                outcome.elapsed,
            )
        elif outcome.kind == "rejected":
            log.error(
                "Alation lineage: Alation refused the event of %s for good: %s%s",
                job_name,
                outcome.detail,
                f"; moved to the dead letters in {settings.spool_dir}/dead (retry them after a fix with "
                "`airflow-alation replay --dead`)"
                if durable
                else "",
            )
        elif outcome.problem in ("auth", "tls"):
            # Every event fails the same way until the setup is fixed: say it once per process.
            self._log_once(
                f"outcome:{outcome.problem}",
                logging.ERROR,
                "Alation lineage: %s. The event of %s is not delivered; %s.",
                outcome.detail,
                job_name,
                kept,
            )
        elif outcome.abandoned:
            log.warning(
                "Alation lineage: no answer from %s for the event of %s within time_budget=%gs; the "
                "request may still succeed. %s.",
                settings.endpoint_url,
                job_name,
                settings.time_budget,
                "Until its answer arrives it stays in the outbox, and a replay sends it after the lease "
                f"of {settings.outbox_lease:g}s if it never does"
                if durable
                else "Without the outbox it is lost if it fails",
            )
        else:
            log.warning(
                "Alation lineage: event of %s not delivered to %s after %d attempt(s) in %.1fs (%s); %s.",
                job_name,
                settings.endpoint_url,
                outcome.attempts,
                outcome.elapsed,
                outcome.detail,
                kept,
            )


@dataclass
class _Entry:
    """The outbox entry of an event being delivered, once written (``claim`` None: it could not be)."""

    claim: Claim | None
    written: bool

    def write_once(self, write: Callable[[], Claim | None]) -> None:
        """Write the entry unless it was (or its writing failed: never again after the request)."""
        if not self.written:
            self.written = True
            self.claim = write()


def _best_effort_body(event: Any) -> bytes:
    """The event as JSON, whatever it holds (a cycle, an odd object): what can be kept of it."""
    try:
        raw = Serde.to_dict(event) if not isinstance(event, dict) else event
        return json.dumps(raw, default=repr, ensure_ascii=True).encode("ascii")
    except Exception as exc:  # noqa: BLE001 - a summary is kept instead
        summary = {"unserialisable_event": True, "job": list(gate.job_names(event)), "error": repr(exc)[:500]}
        return json.dumps(summary, default=repr).encode()


def skipped(event: Any, reason: str) -> Outcome:
    metrics.incr(f"events.skipped.{reason}")
    log.debug("Alation lineage: event of %s skipped (%s)", printable(gate.dag_id_of(event)), reason)
    return Outcome("skipped", None, reason)
