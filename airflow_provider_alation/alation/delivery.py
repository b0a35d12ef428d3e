"""Delivery: one POST of one event to Alation, retried inside a hard time budget.

I/O edge. ``requests`` does the HTTP, ``tenacity`` the retry policy (exponential back-off with
jitter, ``Retry-After`` honoured, never past the deadline). Because a server that accepts the
connection and then answers one byte at a time defeats per-socket timeouts, the attempts run in a
daemon thread (one per request in flight, kept between requests) and :meth:`Sender.post` stops
waiting at the deadline whatever the network does.
That thread is bounded too (see :mod:`~airflow_provider_alation.alation.network`): its request ends at most
:func:`late_answer_seconds` after the budget, reading at most 64 KiB of the answer, and a Sender has at
most one such abandoned request in flight per calling thread (a later event meanwhile is left in the
outbox for replay).

Outcomes:
- ``sent``: 2xx;
- ``retry``: worth sending again later (network error, TLS error, timeout, 408/425/429, any 5xx,
  401/403: a token fixed in the connection makes the same event go through);
- ``rejected``: Alation will never take this event (other 4xx, a redirect).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal, TypeVar

import requests
from tenacity import RetryCallState, Retrying, retry_if_result

from airflow_provider_alation.alation import network
from airflow_provider_alation.alation.masking import redact
from airflow_provider_alation.alation.tokens import BearerToken
from airflow_provider_alation.settings import AlationSettings

log = logging.getLogger(__name__)

#: ``skipped``: the gate dropped the event (``detail`` is the reason); ``too_large``: above
#: ``max_event_bytes`` after trimming, and ``unshapeable``: a structure shaping failed on; both are
#: dead-lettered unsent. The rest are delivery verdicts.
Kind = Literal["sent", "retry", "rejected", "skipped", "too_large", "unshapeable"]
#: Worth retrying: 408, 425, 429 and every 5xx (Alation's contract: back off on 429 and 5xx).
TRANSIENT_STATUS = frozenset({408, 425, 429, *range(500, 600)})
AUTH_STATUS = frozenset({401, 403})
USER_AGENT = "airflow-provider-alation"
RESPONSE_HEAD_BYTES = 512
#: How long connection errors and timeouts are retried within one send (other transient answers,
#: 429 and 5xx, are retried for the whole time budget).
NETWORK_RETRY_SECONDS = 1.0
#: A request abandoned at the end of the budget may still complete (its late answer settles the
#: event) for at most max(this, timeout x OVERALL_TIMEOUT_FACTOR) seconds more; then it is closed.
LATE_ANSWER_SECONDS = 10.0
#: A later event waits at most this share of its budget for the Sender's abandoned request to end.
INFLIGHT_WAIT_SHARE = 0.5
#: A retry started with less than this left of the budget, and cut short by its end, reports the
#: problem that made it retry rather than its own timeout.
CUT_SHORT_SECONDS = 0.25
#: A Sender's delivery thread ends after this long without work (a later request starts another).
WORKER_IDLE_SECONDS = 2.0
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    status: int | None
    detail: str
    attempts: int = 0
    elapsed: float = 0.0
    retry_after: float | None = None
    problem: str = ""  # "auth", "tls", "unreachable", "timeout", "not_found", "server", "rejected", ""
    #: The first bytes of Alation's answer to a refused event (kept with a dead letter).
    response_head: str = ""
    #: The budget ended with a request still in flight; its late answer settles the event.
    abandoned: bool = False

    @property
    def transient(self) -> bool:
        """Worth retrying now: not auth or TLS, which fail the same way until the setup is fixed."""
        return self.kind == "retry" and self.problem not in ("auth", "tls")


def retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def late_answer_seconds(timeout: float) -> float:
    return max(LATE_ANSWER_SECONDS, timeout * network.OVERALL_TIMEOUT_FACTOR)


def classify_response(response: requests.Response, secrets: Iterable[str | None] = ()) -> Outcome:
    """The verdict on an answer; text kept from it is redacted of ``secrets`` and token-like values."""
    outcome = _classify(response)
    if outcome.kind != "sent":
        outcome = dataclasses.replace(outcome, detail=redact(outcome.detail, secrets))
    if outcome.kind != "sent" and response.content:
        head = response.content[:RESPONSE_HEAD_BYTES].decode("utf-8", "replace")
        outcome = dataclasses.replace(outcome, response_head=redact(head, secrets))
    return outcome


def _classify(response: requests.Response) -> Outcome:
    status = response.status_code
    snippet = response.text[:200].strip() if response.content else ""
    if 200 <= status < 300:
        return Outcome("sent", status, "accepted")
    if status in AUTH_STATUS:
        return Outcome(
            "retry",
            status,
            f"HTTP {status}: Alation rejected the token; rotate it in Alation (Settings > Server Admin > "
            "API Access Tokens) and update the password of the Airflow connection",
            problem="auth",
        )
    if status in TRANSIENT_STATUS:
        return Outcome(
            "retry",
            status,
            f"HTTP {status}: {snippet}".rstrip(": "),
            retry_after=retry_after_seconds(response),
            problem="server",
        )
    if 300 <= status < 400:
        return Outcome(
            "rejected",
            status,
            f"HTTP {status} redirect to {response.headers.get('Location', '?')}: "
            "a redirect would lose a POST; "
            "set the connection host/endpoint to the final address",
            problem="rejected",
        )
    if status == 413:
        return Outcome(
            "rejected",
            status,
            "HTTP 413: the event is too large for Alation even after trimming; lower max_event_bytes "
            "so that heavy optional facets are removed before sending",
            problem="rejected",
        )
    if status == 404:
        return Outcome(
            "rejected",
            status,
            f"HTTP 404 at {response.url}: endpoint not found; check the host and the 'endpoint' extra "
            "(default open_lineage_event/)",
            problem="not_found",
        )
    return Outcome("rejected", status, f"HTTP {status}: {snippet}".rstrip(": "), problem="rejected")


def classify_exception(exc: BaseException) -> Outcome:
    if isinstance(exc, (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL)):
        # Their message would quote the header or URL, and so the token: name the type only.
        return Outcome(
            "rejected", None, f"{type(exc).__name__}: check the token and the URL", problem="rejected"
        )
    if isinstance(exc, network.ResponseTooLarge):
        return Outcome("retry", None, _short(exc), problem="server")
    if isinstance(exc, requests.exceptions.SSLError):
        return Outcome(
            "retry",
            None,
            f"TLS failure: {_short(exc)}; if the tenant uses a private CA, set the 'verify' extra to the "
            "CA bundle path",
            problem="tls",
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return Outcome("retry", None, f"timed out: {_short(exc)}", problem="timeout")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return Outcome(
            "retry",
            None,
            f"network unreachable: {_short(exc)}; "
            "check outbound HTTPS (TCP 443) from this worker to the tenant",
            problem="unreachable",
        )
    return Outcome("retry", None, f"{type(exc).__name__}: {_short(exc)}", problem="unreachable")


def _short(exc: BaseException) -> str:
    text = redact(str(exc))
    return text if len(text) <= 300 else text[:300] + "..."


def backoff(attempt: int) -> float:
    """Exponential back-off with jitter: 0.25 s, 0.5 s, 1 s, then 2 s; jitter spreads workers."""
    return min(2.0, 0.25 * 2 ** (attempt - 1)) + random.uniform(0, 0.1)


def retrying_until(
    deadline: float,
    retry_if: Callable[[T], bool],
    retry_after: Callable[[T], float | None],
    max_attempts: int | None = None,
    deadline_of: Callable[[T], float] | None = None,
) -> Retrying:
    """A tenacity policy over results: back-off (or ``Retry-After``), never past ``deadline``.

    The attempt function returns a result rather than raising; the last result is returned when
    the policy gives up. Shared by event delivery and data-source discovery. ``deadline_of`` may
    bring the deadline forward for some results (no attempt starts after it).
    """

    def wait(state: RetryCallState) -> float:
        result: T = state.outcome.result()  # type: ignore[union-attr]
        hinted = retry_after(result)
        return hinted if hinted is not None else backoff(state.attempt_number)

    def stop(state: RetryCallState) -> bool:
        # Stop when the next attempt could not even start before the deadline.
        if max_attempts is not None and state.attempt_number >= max_attempts:
            return True
        until = deadline
        if deadline_of is not None:
            until = min(deadline, deadline_of(state.outcome.result()))  # type: ignore[union-attr]
        return time.monotonic() + wait(state) + 0.05 >= until

    return Retrying(
        retry=retry_if_result(retry_if),
        wait=wait,
        stop=stop,
        retry_error_callback=lambda state: state.outcome.result(),  # type: ignore[union-attr]
        reraise=False,
    )


def sender_for(settings: AlationSettings, bearer: Callable[[], str] | None = None) -> Sender:
    """The sender for the settings' endpoint; ``bearer`` defaults to a new :class:`BearerToken`."""
    token = bearer if bearer is not None else BearerToken(settings)
    return Sender(settings.endpoint_url, token, settings.timeout, settings.verify)


class Sender:
    """Posts JSON bodies to one URL with a Bearer token. Builds its HTTP session on first use."""

    def __init__(
        self,
        url: str,
        bearer: Callable[[], str],
        timeout: float,
        verify: bool | str = True,
        session_factory: Callable[[], requests.Session] = network.new_session,
    ) -> None:
        self.url = url
        self._bearer = bearer
        self.timeout = timeout
        self.verify = verify
        self._session_factory = session_factory
        self._http: requests.Session | None = None
        self._lock = threading.Lock()
        #: Requests submitted and not ended (a later :meth:`post` waits for an abandoned one).
        self._pending: set[_Job] = set()
        #: Delivery threads: one per request in flight, kept between requests (waiting here), ended
        #: after :data:`WORKER_IDLE_SECONDS` without work; :meth:`run_later` work left for a busy one.
        self._idle: list[_Worker] = []
        self._busy = 0
        self._later: list[Callable[[], None]] = []
        _SENDERS.add(self)

    def _after_fork(self) -> None:
        """In a forked child: no lock another thread held at the fork, no delivery thread or request
        of the parent's, no pooled connection shared with it (its TLS state is the parent's)."""
        self._lock = threading.Lock()
        self._pending, self._http = set(), None
        self._idle, self._busy, self._later = [], 0, []

    def __repr__(self) -> str:
        return f"Sender(url={self.url!r}, timeout={self.timeout})"

    def _session(self) -> requests.Session:
        # One pooled session (urllib3's pool is thread-safe) so consecutive events reuse the connection.
        with self._lock:
            if self._http is None:
                self._http = self._session_factory()
            return self._http

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the requests in flight (abandoned ones: until their late answer
        has settled their event); True when none is left (a process about to exit calls it)."""
        return self._wait_for(lambda job: True, timeout)

    def _wait_for(self, which: Callable[[_Job], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            jobs = [job for job in self._pending if which(job)]
        return all(job.done.wait(max(0.0, deadline - time.monotonic())) for job in jobs)

    def _ended(self, job: _Job) -> None:
        with self._lock:
            self._pending.discard(job)

    def run_later(self, work: Callable[[], None]) -> None:
        """Run ``work`` in a delivery thread once it is free (best effort: a process that exits
        first, such as the OpenLineage provider's forked emitter, never runs it)."""
        with self._lock:
            if self._busy > 0:  # the thread finishing a request runs it next (no thread started for it)
                self._later.append(work)
                return
        self._submit(work)

    def _submit(self, work: Callable[[], None], job: _Job | None = None) -> None:
        """Give ``work`` to a waiting delivery thread, or start one; ``job`` is counted among the
        requests in flight in the same step. RuntimeError if no thread can start (nothing is then
        registered)."""
        with self._lock:
            self._busy += 1
            if job is not None:
                self._pending.add(job)
            if self._idle:
                self._idle.pop().jobs.put(work)
                return
            thread = threading.Thread(
                target=self._work, args=(_Worker(), work), name="alation-delivery", daemon=True
            )
            try:
                thread.start()
            except BaseException:
                if thread.ident is None:  # it never ran: nothing to count (else it counts itself down)
                    self._busy -= 1
                    if job is not None:
                        self._pending.discard(job)
                raise

    def _work(self, worker: _Worker, work: Callable[[], None]) -> None:
        """A delivery thread: runs its work, then what :meth:`run_later` left, then waits for more
        (starting a thread per request cost ~0.2 ms after an idle wait); ends when idle. Concurrent
        callers (the relay's delivery threads) each get a thread: no request waits behind another."""
        while True:
            try:
                work()
            except Exception:  # never let a job end the thread
                log.debug("Alation lineage: work of the delivery thread failed", exc_info=True)
            except BaseException:  # the thread ends (SystemExit...): not busy any more
                with self._lock:
                    self._busy -= 1
                raise
            with self._lock:
                if self._later:
                    work = self._later.pop(0)
                    continue
                self._busy -= 1
                self._idle.append(worker)
            try:
                work = worker.jobs.get(timeout=WORKER_IDLE_SECONDS)
            except queue.Empty:
                with self._lock:  # work is handed over under this lock: none can slip in unseen
                    if worker in self._idle:
                        self._idle.remove(worker)
                        return
                work = worker.jobs.get()  # handed some just now: it is already queued

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None

    def _attempt(self, body: bytes, deadline: float, hard: float) -> Outcome:
        outcome = self._attempt_once(body, deadline, hard)
        if (
            outcome.problem == "auth"
            and outcome.status in AUTH_STATUS
            and getattr(self._bearer, "refreshable", False)
        ):
            # A minted access token Alation no longer accepts (revoked, rotated): mint anew, once.
            self._bearer.forget()  # type: ignore[attr-defined]
            outcome = self._attempt_once(body, deadline, hard)
        return outcome

    def _attempt_once(self, body: bytes, deadline: float, hard: float) -> Outcome:
        """One POST: per-read timeouts within ``deadline``, the whole request (minting included)
        ended by ``hard`` (the deadline itself, or later for a request :meth:`post` may abandon)."""
        now = time.monotonic()
        if deadline - now <= 0.05:
            return Outcome("retry", None, "time budget used up", problem="timeout")
        # Per read: up to ``hard``, not ``deadline``. A request :meth:`post` may abandon at the
        # deadline is left to finish for its late answer (``on_late`` settles it); a read cut at the
        # deadline would turn an answer Alation is still giving into a timeout, and the event, which
        # Alation took, would be sent again.
        per_request = min(self.timeout, hard - now)
        try:
            with network.within(hard):
                bearer = self._bearer()
        except Exception as exc:  # noqa: BLE001 - e.g. a refresh token Alation refuses to exchange
            # A TokenError says whether Alation refused (auth) or could not be reached to mint one.
            return Outcome("retry", None, _short(exc), problem=getattr(exc, "problem", "auth"))
        try:
            response = network.request(
                self._session(),
                "POST",
                self.url,
                timeout=per_request,
                deadline=hard,
                cap=network.SMALL_CAP_BYTES,
                keep_head=True,  # the answer to an event: only its head is kept
                data=body,
                headers={
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {bearer}",
                    "User-Agent": USER_AGENT,
                },
                verify=self.verify,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            outcome = classify_exception(exc)
            return dataclasses.replace(outcome, detail=redact(outcome.detail, (bearer,)))
        return classify_response(response, (bearer,))

    def _retrying(self, deadline: float, started: float) -> Retrying:
        def deadline_of(outcome: Outcome) -> float:
            # No route or no answer: no new attempt after NETWORK_RETRY_SECONDS. The event is already
            # in the outbox, so the next successful send's drain or a replay delivers it, and a task
            # is not held for the whole budget by a tenant that is down.
            if outcome.problem in ("unreachable", "timeout"):
                return started + NETWORK_RETRY_SECONDS
            return deadline

        return retrying_until(
            deadline,
            retry_if=lambda outcome: outcome.transient,
            retry_after=lambda outcome: outcome.retry_after,
            deadline_of=deadline_of,
        )

    def post_blocking(self, body: bytes, deadline: float, late: float = 0.0) -> Outcome:
        """Attempts until sent, a permanent answer, or the deadline (in the calling thread).

        Returns by ``deadline`` + ``late`` whatever the network does (``late`` > 0 only for
        :meth:`post`, which may leave the last attempt to finish in its thread).
        """
        started = time.monotonic()
        history: list[Outcome] = []

        def attempt() -> Outcome:
            if history and deadline - time.monotonic() <= 0.05:
                return history[-1]  # report what went wrong, not that time then ran out
            left = deadline - time.monotonic()
            outcome = self._attempt(body, deadline, deadline + late)
            if (
                history
                and left < CUT_SHORT_SECONDS
                and outcome.problem == "timeout"
                and history[-1].problem != "timeout"
                and time.monotonic() >= deadline + late - 0.05
            ):
                # A retry that started at the budget's very end and was cut short (its reads capped
                # by the deadline, or stopped by the watchdog): what went wrong is what made it
                # retry, not that time ran out (the Test button said "did not answer" of a port that
                # refused every connection). A retry with time to get an answer reports its timeout.
                return history[-1]
            history.append(outcome)
            return outcome

        first = attempt()
        if not first.transient:  # sent, or a permanent answer: no retry policy to build
            return dataclasses.replace(first, attempts=1, elapsed=time.monotonic() - started)
        seed = [first]  # the policy's first "attempt" is the one made: it then waits, or stops

        def next_attempt() -> Outcome:
            return seed.pop() if seed else attempt()

        retrying = self._retrying(deadline, started)
        outcome: Outcome = retrying(next_attempt)
        attempts = retrying.statistics.get("attempt_number", 1)
        return dataclasses.replace(outcome, attempts=attempts, elapsed=time.monotonic() - started)

    def post(
        self,
        body: bytes,
        budget: float,
        on_late: Callable[[Outcome], None] | None = None,
        while_sending: Callable[[], None] | None = None,
        before_sending: Callable[[], None] | None = None,
    ) -> Outcome:
        """Post ``body``, returning within ``budget`` seconds whatever the network does.

        When the budget runs out with a request still in flight, the request is left to finish in
        a daemon thread, for at most :func:`late_answer_seconds`; ``on_late`` is called with its
        outcome. While that request is in flight, a later call waits for it within its own budget
        (at most :data:`INFLIGHT_WAIT_SHARE` of it), else returns a ``retry`` without sending: one
        abandoned request per Sender at most (per concurrent caller), so threads and connections do
        not pile up. Requests of concurrent callers (the relay's) run side by side.
        ``before_sending`` runs in the calling thread while the delivery thread takes the request
        up, and the request is sent only once it has returned (the caller's write-ahead: on disk
        before the first network attempt, without a thread hand-off after it). ``while_sending``
        runs in the calling thread then, while the request is in flight (work of the caller's that
        may overlap the round trip). Neither runs when nothing is sent.
        """
        started = time.monotonic()
        deadline = started + budget
        # Requests this thread abandoned at the end of their budget (still waiting for a late
        # answer): a new one waits for them, at most a share of its budget, so that they do not pile
        # up. Other threads' (the relay's delivery threads) hold nothing back here.
        caller = threading.current_thread()

        def mine(job: _Job) -> bool:  # the thread object, not its ident: an ended thread's is reused
            return job.abandoned and job.caller is caller

        if not self._wait_for(mine, budget * INFLIGHT_WAIT_SHARE):
            return Outcome(
                "retry",
                None,
                "the previous request to Alation is still waiting for its answer; not sending another "
                "one meanwhile",
                elapsed=time.monotonic() - started,
                problem="timeout",
            )
        job = _Job(self, body, deadline, on_late, gated=before_sending is not None)
        try:
            self._submit(job.run, job)
        except RuntimeError as exc:
            return Outcome("retry", None, f"could not start the delivery thread: {_short(exc)}")
        if before_sending is not None:
            try:
                before_sending()
            except Exception:  # the caller's concern; never the request's
                log.debug("Alation lineage: work before the request failed", exc_info=True)
            finally:
                job.go.set()
        if while_sending is not None:  # the caller's own work, overlapped with the round trip
            try:
                while_sending()
            except Exception:  # the caller's concern; never the request's
                log.debug("Alation lineage: work alongside the request failed", exc_info=True)
        job.done.wait(max(0.0, deadline - time.monotonic()))
        with job.lock:
            if job.outcome is not None:
                return job.outcome
            job.abandoned = True
        return Outcome(
            "retry",
            None,
            f"no complete answer within the time budget of {budget:g}s",
            elapsed=time.monotonic() - started,
            problem="timeout",
            abandoned=True,
        )


_SENDERS: weakref.WeakSet[Sender] = weakref.WeakSet()


def _reset_senders_after_fork() -> None:
    for sender in list(_SENDERS):
        sender._after_fork()


os.register_at_fork(after_in_child=_reset_senders_after_fork)


class _Worker:
    """A delivery thread's own queue (a thread is handed work only while it waits)."""

    __slots__ = ("jobs",)

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()


class _Job:
    """One :meth:`Sender.post`: its attempts, run by the delivery thread; its outcome, or, when the
    caller stopped waiting first (``abandoned``), ``on_late`` called with it."""

    __slots__ = (
        "abandoned",
        "body",
        "caller",
        "deadline",
        "done",
        "go",
        "lock",
        "on_late",
        "outcome",
        "sender",
    )

    def __init__(
        self,
        sender: Sender,
        body: bytes,
        deadline: float,
        on_late: Callable[[Outcome], None] | None,
        gated: bool = False,
    ) -> None:
        self.sender, self.body, self.deadline, self.on_late = sender, body, deadline, on_late
        #: The thread that posted it: only its own later requests wait for it once abandoned.
        self.caller = threading.current_thread()
        self.lock = threading.Lock()
        self.done = threading.Event()
        #: Set when the request may be sent (``gated``: once the caller's ``before_sending`` returned).
        self.go = threading.Event()
        if not gated:
            self.go.set()
        self.outcome: Outcome | None = None
        self.abandoned = False

    def run(self) -> None:
        sender = self.sender
        self.go.wait(max(0.0, self.deadline - time.monotonic()))
        with self.lock:
            given_up = self.abandoned
        try:
            if given_up:  # the caller stopped waiting before it could start: not sent, kept
                outcome = Outcome("retry", None, "not sent: no time left to start", problem="timeout")
            else:
                outcome = sender.post_blocking(self.body, self.deadline, late_answer_seconds(sender.timeout))
        except Exception as exc:  # noqa: BLE001 - a sender bug must not end the delivery thread
            outcome = Outcome("retry", None, f"unexpected {type(exc).__name__}: {_short(exc)}")
        with self.lock:
            self.outcome = outcome
            late = self.abandoned
        try:
            if late and self.on_late is not None:
                self.on_late(outcome)  # settled before ``done``: wait_idle then means settled
        finally:
            self.done.set()
            self.sender._ended(self)
