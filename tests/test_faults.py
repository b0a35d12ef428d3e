"""Faults against the stand-in (loopback only): each emit returns within time_budget plus a small
margin, and after the fault ends and a replay runs, the stand-in holds every gated event once."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_alation.alation.delivery import NETWORK_RETRY_SECONDS
from airflow_provider_alation.outbox.replay import ReplaySummary, outbox_for, replay, sender_for
from airflow_provider_alation.outbox.store import LocalOutbox
from airflow_provider_alation.settings import AlationSettings, build_settings
from airflow_provider_alation.testing.fake_alation import FakeAlation, Fault
from airflow_provider_alation.transport import AlationConfig, AlationTransport
from tests.support.airflow_home import REPO
from tests.support.emitter import distinct_event
from tests.support.network import refused_port, release_port

BUDGET = 2.0
MARGIN = 0.5


def config(fake_url: str, token: str, spool: Path, cert: Path | None, **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "url": fake_url,
        "token": token,
        "spool_dir": str(spool),
        "time_budget": BUDGET,
        "timeout": 1,
        "drain_max_events": 0,
        **extra,
    }
    if cert is not None and "verify" not in extra:
        values["verify"] = str(cert)
    return values


def emit_timed(transport: AlationTransport, event: dict[str, Any]) -> tuple[Any, float]:
    started = time.monotonic()
    outcome = transport.emit(event)
    return outcome, time.monotonic() - started


def replay_all(
    values: dict[str, Any], *, dead: bool = False, reclaim_after: float | None = None
) -> ReplaySummary:
    settings: AlationSettings = build_settings({**values, "time_budget": 5, "timeout": 2}, inline=True)
    outbox = outbox_for(settings)
    if reclaim_after is not None:
        outbox.reclaim_stale(reclaim_after)
    return replay(outbox, sender_for(settings), per_event_budget=settings.time_budget, dead=dead)


def run_ids(fake: FakeAlation) -> list[str]:
    return [event["run"]["runId"] for event in fake.events]


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


def test_connection_refused_then_replayed_once(token, tmp_path, spool) -> None:
    port = refused_port()
    values = config(f"https://localhost:{port}", token, spool, None, verify=False)
    event = distinct_event()
    outcome, took = emit_timed(AlationTransport(AlationConfig.from_dict(values)), event)
    assert took < BUDGET + MARGIN
    assert (outcome.kind, outcome.problem) == ("retry", "unreachable")
    # Retried, but only for NETWORK_RETRY_SECONDS: the event is on disk and the task need not wait.
    assert outcome.attempts >= 2 and outcome.elapsed < NETWORK_RETRY_SECONDS + MARGIN
    assert LocalOutbox(spool).counts()["pending"] == 1
    release_port(port)  # Alation is back, on that port
    with FakeAlation(token, tls_dir=tmp_path / "tls", port=port) as fake:
        summary = replay_all({**values, "verify": str(fake.cert_path)})
        assert (summary.sent, run_ids(fake)) == (1, [event["run"]["runId"]])
    assert LocalOutbox(spool).counts() == {"pending": 0, "claimed": 0, "dead": 0}


def test_hang_returns_within_budget_then_replayed_once(fake_alation, token, spool) -> None:
    # One request may take the whole budget: the server accepts it and does not answer in time.
    values = config(fake_alation.url, token, spool, fake_alation.cert_path, timeout=BUDGET)
    fake_alation.fail_next(Fault(503, delay=BUDGET + 1.0))
    event = distinct_event()
    outcome, took = emit_timed(AlationTransport(AlationConfig.from_dict(values)), event)
    assert took < BUDGET + MARGIN
    assert outcome.abandoned
    # The hung request finally answers 503: its late answer puts the event back for replay.
    deadline = time.monotonic() + 5
    while LocalOutbox(spool).counts()["pending"] != 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert LocalOutbox(spool).counts() == {"pending": 1, "claimed": 0, "dead": 0}
    assert replay_all(values).sent == 1
    assert run_ids(fake_alation) == [event["run"]["runId"]]


def test_one_byte_a_second_returns_within_budget_and_is_not_sent_twice(fake_alation, token, spool) -> None:
    # Each byte arrives within the per-read timeout: only the overall budget can stop the wait.
    values = config(fake_alation.url, token, spool, fake_alation.cert_path)
    fake_alation.fail_next(Fault(200, drip=0.25))  # accepted, answered one byte every 0.25 s
    event = distinct_event()
    outcome, took = emit_timed(AlationTransport(AlationConfig.from_dict(values)), event)
    assert took < BUDGET + MARGIN
    assert outcome.abandoned
    # The answer completes later: the late 200 removes the event from the outbox, so a replay
    # does not send it again.
    deadline = time.monotonic() + 15
    while LocalOutbox(spool).counts()["claimed"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert LocalOutbox(spool).counts() == {"pending": 0, "claimed": 0, "dead": 0}
    assert replay_all(values).sent == 0
    assert run_ids(fake_alation) == [event["run"]["runId"]]


def test_503_burst_is_retried_inside_the_budget(fake_alation, token, spool) -> None:
    values = config(fake_alation.url, token, spool, fake_alation.cert_path, time_budget=3)
    fake_alation.fail_next(Fault(503), Fault(503), Fault(502))
    outcome, took = emit_timed(AlationTransport(AlationConfig.from_dict(values)), distinct_event())
    assert outcome.kind == "sent" and outcome.attempts == 4
    assert took < 3 + MARGIN
    assert len(fake_alation.events) == 1
    assert LocalOutbox(spool).counts() == {"pending": 0, "claimed": 0, "dead": 0}


def test_outage_longer_than_the_budget_then_replayed_once(fake_alation, token, spool) -> None:
    values = config(fake_alation.url, token, spool, fake_alation.cert_path)
    fake_alation.lineage_down = True
    transport = AlationTransport(AlationConfig.from_dict(values))
    events = [distinct_event() for _ in range(3)]
    for event in events:
        outcome, took = emit_timed(transport, event)
        assert outcome.kind == "retry" and took < BUDGET + MARGIN
    # An attempt still waiting for its answer when the budget ran out is left to finish, and its
    # late 503 puts the event back in pending/ (a replay meanwhile would skip it: it is claimed).
    pipeline = transport.pipeline()
    assert pipeline is not None and pipeline.wait_idle(10)
    assert fake_alation.events == []
    fake_alation.lineage_down = False
    assert replay_all(values).sent == 3
    assert sorted(run_ids(fake_alation)) == sorted(e["run"]["runId"] for e in events)


def test_429_retry_after_honoured_within_the_budget(fake_alation, token, spool) -> None:
    values = config(fake_alation.url, token, spool, fake_alation.cert_path, time_budget=3)
    transport = AlationTransport(AlationConfig.from_dict(values))
    fake_alation.fail_next(Fault(429, headers={"Retry-After": "1"}))
    outcome, took = emit_timed(transport, distinct_event())
    assert outcome.kind == "sent" and 1.0 <= took < 3 + MARGIN
    # A Retry-After beyond the budget is not waited for: the event is kept and replayed.
    fake_alation.fail_next(Fault(429, headers={"Retry-After": "60"}))
    late = distinct_event()
    outcome, took = emit_timed(transport, late)
    assert outcome.kind == "retry" and took < 3 + MARGIN
    assert replay_all(values).sent == 1
    assert run_ids(fake_alation).count(late["run"]["runId"]) == 1
    assert len(fake_alation.events) == 2


def test_401_keeps_events_and_says_so_once(fake_alation, token, spool, alation_logs) -> None:
    values = config(fake_alation.url, token + "-revoked", spool, fake_alation.cert_path)
    transport = AlationTransport(AlationConfig.from_dict(values))
    events = [distinct_event() for _ in range(2)]
    for event in events:
        outcome, took = emit_timed(transport, event)
        assert (outcome.kind, outcome.problem) == ("retry", "auth") and took < BUDGET + MARGIN
    token_lines = [r for r in alation_logs.records if "rejected the token" in r.getMessage()]
    assert len(token_lines) == 1 and token_lines[0].levelno == logging.ERROR
    assert "kept in the outbox" in token_lines[0].getMessage()
    assert LocalOutbox(spool).counts()["pending"] == 2
    # The token is fixed in the connection: the replay sends both, once.
    assert replay_all({**values, "token": token}).sent == 2
    assert sorted(run_ids(fake_alation)) == sorted(e["run"]["runId"] for e in events)
    assert token not in alation_logs.text


def test_413_goes_to_the_dead_letters_with_alations_answer(fake_alation, token, spool, alation_logs) -> None:
    values = config(fake_alation.url, token, spool, fake_alation.cert_path)
    fake_alation.fail_next(Fault(413, b'{"detail": "Request entity too large"}'))
    event = distinct_event()
    outcome, took = emit_timed(AlationTransport(AlationConfig.from_dict(values)), event)
    assert (outcome.kind, outcome.status) == ("rejected", 413) and took < BUDGET + MARGIN
    (dead,) = LocalOutbox(spool).list()
    assert dead.state == "dead" and dead.reason is not None
    assert dead.reason["status"] == 413 and "Request entity too large" in str(dead.reason["response_head"])
    assert "max_event_bytes" in str(dead.reason["detail"])
    assert "airflow-alation replay --dead" in alation_logs.text
    assert replay_all(values).sent == 0  # dead letters wait for a person
    assert replay_all(values, dead=True).sent == 1
    assert run_ids(fake_alation) == [event["run"]["runId"]]


def test_self_signed_certificate_without_then_with_the_ca_bundle(
    fake_alation, token, spool, alation_logs
) -> None:
    values = config(fake_alation.url, token, spool, None)  # verify: true, the system CAs
    event = distinct_event()
    outcome, took = emit_timed(AlationTransport(AlationConfig.from_dict(values)), event)
    assert (outcome.kind, outcome.problem) == ("retry", "tls") and took < BUDGET + MARGIN
    assert "set the 'verify' extra to the CA bundle path" in alation_logs.text
    assert fake_alation.events == []
    assert replay_all({**values, "verify": str(fake_alation.cert_path)}).sent == 1
    assert run_ids(fake_alation) == [event["run"]["runId"]]


def test_sigkill_mid_send_is_replayed_once(fake_alation, token, spool) -> None:
    values = config(fake_alation.url, token, spool, fake_alation.cert_path, time_budget=30, timeout=30)
    fake_alation.fail_next(Fault(503, delay=60))  # the request hangs until the process is killed
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.emitter", json.dumps(values), "1"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    outbox = LocalOutbox(spool)
    deadline = time.monotonic() + 60
    while not fake_alation.posts_started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake_alation.posts_started == 1, "the emitter never reached the stand-in"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    # The event was on disk before the request: it is there, claimed by the dead process.
    assert outbox.counts() == {"pending": 0, "claimed": 1, "dead": 0}
    assert replay_all(values).sent == 0  # within the lease, nobody touches the claim
    assert replay_all(values, reclaim_after=0).sent == 1
    assert len(fake_alation.events) == 1
    assert outbox.counts() == {"pending": 0, "claimed": 0, "dead": 0}


def test_replay_command_sends_and_summarises(fake_alation, token, spool, tmp_path) -> None:
    values = config(fake_alation.url, token, spool, fake_alation.cert_path)
    fake_alation.lineage_down = True
    transport = AlationTransport(AlationConfig.from_dict(values))
    for _ in range(4):
        transport.emit(distinct_event())
    fake_alation.lineage_down = False
    extra = {k: v for k, v in values.items() if k not in ("url", "token")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(tmp_path / "home")
    env["AIRFLOW_CONN_ALATION_DEFAULT"] = json.dumps(
        {"conn_type": "alation", "host": fake_alation.url, "password": token, "extra": extra}
    )
    cli = str(Path(sys.executable).with_name("airflow-alation"))
    done = subprocess.run([cli, "replay", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout[done.stdout.index("{") :])
    assert body["sent"] == 4 and body["after"] == {"pending": 0, "claimed": 0, "dead": 0}
    assert len(fake_alation.events) == 4
    assert token not in done.stdout + done.stderr


def test_replaying_dead_letters_alation_still_refuses_ends(fake_alation, token, spool) -> None:
    values = config(fake_alation.url, token, spool, fake_alation.cert_path)
    transport = AlationTransport(AlationConfig.from_dict(values))
    for _ in range(2):
        fake_alation.fail_next(Fault(422, b'{"detail": "bad facet"}'))
        transport.emit(distinct_event())
    assert LocalOutbox(spool).counts()["dead"] == 2
    fake_alation.fail_next(Fault(422), Fault(422))  # still refused
    summary = replay_all(values, dead=True)
    assert (summary.claimed, summary.dead, summary.sent) == (2, 2, 0)  # each tried once, then it stops
    assert LocalOutbox(spool).counts()["dead"] == 2


def test_outbox_cap_holds_during_an_outage(fake_alation, token, spool, alation_logs) -> None:
    values = config(fake_alation.url, token, spool, fake_alation.cert_path, outbox_max_events=3)
    fake_alation.lineage_down = True
    transport = AlationTransport(AlationConfig.from_dict(values))
    for _ in range(6):
        transport.emit(distinct_event())
    counts = LocalOutbox(spool).counts()
    assert counts["pending"] + counts["claimed"] <= 3
    assert "is full" in alation_logs.text and "dropped the 1 oldest event(s)" in alation_logs.text


def test_a_forked_child_gets_its_own_connection_and_locks(fake_alation, token, spool) -> None:
    values = config(fake_alation.url, token, spool, fake_alation.cert_path)
    transport = AlationTransport(AlationConfig.from_dict(values))
    assert transport.emit(distinct_event()).kind == "sent"  # the parent has a live session now
    transport._lock.acquire()  # and a lock held by "another thread" at fork time
    pid = os.fork()
    if pid == 0:  # the child: as the OpenLineage provider's forked emitter
        try:
            outcome = transport.emit(distinct_event())
            os._exit(0 if outcome is not None and outcome.kind == "sent" else 1)
        finally:
            os._exit(2)
    transport._lock.release()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(fake_alation.events) == 2


def test_metrics_are_counted_under_the_alation_prefix(fake_alation, token, spool, monkeypatch) -> None:
    from airflow_provider_alation.integration import metrics

    seen: list[tuple[str, str, float]] = []

    class Recorder:
        def incr(self, name: str, count: int = 1) -> None:
            seen.append(("incr", name, count))

        def timing(self, name: str, value: float) -> None:
            seen.append(("timing", name, value))

    monkeypatch.setattr(metrics, "_stats", lambda: Recorder())
    values = config(fake_alation.url, token, spool, fake_alation.cert_path)
    transport = AlationTransport(AlationConfig.from_dict(values))
    transport.emit({**distinct_event(), "eventType": "START"})
    fake_alation.lineage_down = True
    transport.emit(distinct_event())
    fake_alation.lineage_down = False
    fake_alation.fail_next(Fault(400, b'{"detail": "bad"}'))
    transport.emit(distinct_event())
    replay_all(values)
    names = {name for _, name, _ in seen}
    assert {
        "alation.events.skipped.not_complete",
        "alation.events.queued",
        "alation.events.failed.server",
        "alation.events.dead_lettered",
        "alation.events.sent",
        "alation.events.replayed",
        "alation.send.duration",
    } <= names, names
    assert all(name.startswith("alation.") for name in names)


@pytest.mark.parametrize("budget", [0.3, 0.55, 0.8, 1.3])
def test_the_reported_problem_is_the_cause_not_the_budget(budget: float) -> None:
    from airflow_provider_alation.alation.delivery import Sender

    port = refused_port()
    sender = Sender(f"https://localhost:{port}/open_lineage_event/", lambda: "t", timeout=0.2, verify=False)
    outcome = sender.post(b"{}", budget)
    assert (outcome.kind, outcome.problem) == ("retry", "unreachable"), outcome
    assert "check outbound HTTPS" in outcome.detail


def test_every_5xx_is_retried_not_dead_lettered(fake_alation, token, spool) -> None:
    values = config(fake_alation.url, token, spool, fake_alation.cert_path, time_budget=3)
    fake_alation.fail_next(Fault(501), Fault(507))
    outcome, _ = emit_timed(AlationTransport(AlationConfig.from_dict(values)), distinct_event())
    assert outcome.kind == "sent" and outcome.attempts == 3
    assert LocalOutbox(spool).counts() == {"pending": 0, "claimed": 0, "dead": 0}


@pytest.mark.parametrize("late", [0.0, 0.5])
def test_a_retry_the_budget_cuts_short_reports_why_it_retried(
    monkeypatch: pytest.MonkeyPatch, late: float
) -> None:
    """The last retry of a refused connection can start just before the deadline; on a loaded
    machine it is then cut by the deadline (a capped read, the watchdog) and ends as a timeout. The
    outcome names the refusal that made it retry, not the timeout (the Test button once said 'did not
    answer within 1s' of a port that refused every connection, in CI)."""
    import time as time_module

    from airflow_provider_alation.alation.delivery import Outcome, Sender

    sender = Sender("https://127.0.0.1:9/open_lineage_event/", lambda: "t", timeout=1.0, verify=False)
    calls: list[float] = []

    def attempt_once(body: bytes, deadline: float, hard: float) -> Outcome:
        calls.append(time_module.monotonic())
        if len(calls) == 1:
            return Outcome("retry", None, "network unreachable: refused", problem="unreachable")
        time_module.sleep(max(0.0, hard - time_module.monotonic()))  # cut at the very end
        return Outcome("retry", None, "timed out: the watchdog ended it", problem="timeout")

    monkeypatch.setattr(sender, "_attempt_once", attempt_once)
    # The back-off (0.25-0.35 s) puts the retry within CUT_SHORT_SECONDS of this deadline.
    outcome = sender.post_blocking(b"{}", time_module.monotonic() + 0.45, late=late)
    assert len(calls) >= 2, calls  # it did retry, and the retry ran into the deadline
    assert (outcome.kind, outcome.problem) == ("retry", "unreachable"), outcome


def test_a_retry_with_time_to_answer_that_gets_none_reports_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 503, then a retry with most of the budget left that gets no answer: Alation stopped
    answering, and that is what is reported (not the earlier 503)."""
    import time as time_module

    from airflow_provider_alation.alation.delivery import Outcome, Sender

    sender = Sender("https://127.0.0.1:9/open_lineage_event/", lambda: "t", timeout=1.0, verify=False)
    calls: list[float] = []

    def attempt_once(body: bytes, deadline: float, hard: float) -> Outcome:
        calls.append(time_module.monotonic())
        if len(calls) == 1:
            return Outcome("retry", 503, "HTTP 503", problem="server")
        time_module.sleep(max(0.0, hard - time_module.monotonic()))  # hangs until the deadline
        return Outcome("retry", None, "timed out: no complete answer", problem="timeout")

    monkeypatch.setattr(sender, "_attempt_once", attempt_once)
    outcome = sender.post_blocking(b"{}", time_module.monotonic() + 1.0)
    assert len(calls) == 2, calls
    assert (outcome.kind, outcome.problem) == ("retry", "timeout"), outcome
