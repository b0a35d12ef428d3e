"""The relay's background work, per process: delivery threads and the periodic outbox replay.

Every event the relay acknowledged is on disk (claimed by this process) before it is queued here,
so nothing below can lose one: an event whose delivery fails is settled back to the outbox with its
verdict by :meth:`Pipeline.deliver`; one still queued at shutdown is put back to ``pending`` (the next
replay, here or in another worker or replica, sends it); one in flight when the process is killed
stays claimed and is put back after the outbox lease.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from dataclasses import dataclass, field

from airflow_provider_alation.alation.delivery import Sender, late_answer_seconds, sender_for
from airflow_provider_alation.outbox.replay import STOPPING_PROBLEMS, replay, shaper_for
from airflow_provider_alation.outbox.store import outbox_for
from airflow_provider_alation.pipeline import Admitted, Pipeline
from airflow_provider_alation.settings import AlationSettings

log = logging.getLogger(__name__)

#: Events one replay round claims before it looks at whether the relay is stopping.
REPLAY_BATCH = 20


class _Stopping(Exception):
    """Ends a replay between two events when the relay stops."""


@dataclass
class _Job:
    pipeline: Pipeline
    admitted: Admitted
    queued_at: float = field(default_factory=time.monotonic)

    def stale(self) -> bool:
        """Queued for over half its claim's lease: a replay may take the claim before it is sent."""
        outbox = self.admitted.outbox
        return outbox is not None and time.monotonic() - self.queued_at > outbox.lease_seconds / 2


class Delivery:
    """A small pool of threads calling :meth:`Pipeline.deliver` for admitted events."""

    def __init__(self, threads: int, queue_size: int) -> None:
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=queue_size)
        self._threads = [
            threading.Thread(target=self._work, name=f"alation-relay-delivery-{n}", daemon=True)
            for n in range(threads)
        ]
        self._closed = threading.Event()
        self._busy = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, pipeline: Pipeline, admitted: Admitted) -> bool:
        """Queue an admitted event; False (it is put back to ``pending`` for replay) when the queue
        is full or the relay is stopping."""
        if not self._closed.is_set():
            try:
                self._queue.put_nowait(_Job(pipeline, admitted))
                return True
            except queue.Full:
                pass
        _put_back(admitted)
        return False

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if job.stale():
                # A backlog longer than the lease would let a replay reclaim and send the event
                # while it waits here, and this thread send it again: it goes to pending for that
                # replay instead.
                log.info(
                    "Alation relay: the event of %s waited %.0fs for a delivery thread; it is left to "
                    "the replay",
                    job.admitted.job_name,
                    time.monotonic() - job.queued_at,
                )
                _put_back(job.admitted)
                continue
            with self._lock:
                self._busy += 1
            try:
                job.pipeline.deliver(job.admitted, time.monotonic())
            except Exception:  # the event stays claimed; a replay sends it after the lease
                log.exception(
                    "Alation relay: unexpected failure delivering the event of %s", job.admitted.job_name
                )
            finally:
                with self._lock:
                    self._busy -= 1

    def stop(self, timeout: float) -> int:
        """Stop taking events; put the queued ones back to ``pending``; wait up to ``timeout`` for
        those in flight (they settle themselves). Returns how many were put back."""
        self._closed.set()
        put_back = 0
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                _put_back(job.admitted)
                put_back += 1
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            busy = self._busy
        if busy:
            log.warning(
                "Alation relay: %d event(s) still being delivered at shutdown; they stay in the outbox and "
                "are sent again by a replay after the lease if their answer does not arrive",
                busy,
            )
        return put_back


def _put_back(admitted: Admitted) -> None:
    if admitted.outbox is None or admitted.claim is None:
        return
    try:
        admitted.outbox.settle(admitted.claim, "retry")
    except OSError as exc:  # the claim goes back after the lease
        log.warning("Alation relay: could not put back outbox entry %s: %s", admitted.claim.entry, exc)


class Replayer:
    """Every ``interval`` seconds (with jitter, so workers spread out), sends what waits in each
    sender's outbox; stale claims of killed processes are put back first (after the lease).
    Several workers and replicas may share an outbox: claims are once-only."""

    def __init__(self, settings: list[AlationSettings], interval: float) -> None:
        unique: dict[str, AlationSettings] = {}
        for item in settings:
            unique.setdefault(item.spool_dir, item)
        self._settings = list(unique.values())
        self._senders: dict[str, Sender] = {}
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="alation-relay-replay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self._thread.join(timeout)
        deadline = time.monotonic() + max(
            (late_answer_seconds(s.timeout) for s in self._settings), default=10.0
        )
        for sender in self._senders.values():
            sender.wait_idle(deadline - time.monotonic())
            sender.close()

    def _loop(self) -> None:
        wait = random.uniform(0.5, 2.0)  # soon after start: what a previous run left behind
        while not self._stop.wait(wait):
            for settings in self._settings:
                if self._stop.is_set():
                    return
                try:
                    self.run_once(settings)
                except Exception:
                    log.exception("Alation relay: outbox replay of %s failed", settings.spool_dir)
            wait = self._interval * random.uniform(0.8, 1.2)

    def _stop_between_events(self, verdict: object, outcome: object) -> None:
        """Called after each replayed event is settled: a stopping relay claims no further one."""
        if self._stop.is_set():
            raise _Stopping

    def run_once(self, settings: AlationSettings) -> None:
        outbox = outbox_for(settings)
        if not outbox.usage()[0]:
            return
        sender = self._senders.get(settings.spool_dir)
        if sender is None:
            sender = self._senders[settings.spool_dir] = sender_for(settings)
        prepare = shaper_for(settings)
        sent = dead = 0
        reclaim = True
        while not self._stop.is_set():
            try:
                summary = replay(
                    outbox,
                    sender,
                    per_event_budget=settings.time_budget,
                    limit=REPLAY_BATCH,
                    reclaim=reclaim,
                    prepare=prepare,
                    on_event=self._stop_between_events,
                )
            except _Stopping:
                break
            reclaim = False
            sent, dead = sent + summary.sent, dead + summary.dead
            if summary.stopped or summary.claimed < REPLAY_BATCH:
                if summary.stopped and any(problem in STOPPING_PROBLEMS for problem in summary.kept):
                    log.warning(
                        "Alation relay: outbox replay of %s stopped: %s", settings.spool_dir, summary.stopped
                    )
                break
        if sent or dead:
            log.info(
                "Alation relay: replayed %d event(s) from %s (%d dead-lettered)",
                sent,
                settings.spool_dir,
                dead,
            )
