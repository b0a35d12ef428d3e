"""The sent-event path made cheaper without giving up a guarantee (issue 17, item 3).

- Delivery threads kept between requests (one per request in flight: concurrent callers such as the
  relay's delivery threads never queue behind each other), ended when idle, started anew in a
  forked child; the request is never sent before the caller's ``before_sending`` (the
  write-ahead) has returned, even when that raises.
- A sent entry leaves ``claimed/`` by a rename into ``sent/``, removed later: never listed, counted,
  claimed or replayed; a planted file there is never followed; a forked emitter that exits before
  removing its file leaves it for the next send.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from airflow_provider_alation.alation import delivery
from airflow_provider_alation.alation.delivery import Sender
from airflow_provider_alation.outbox.replay import replay
from airflow_provider_alation.outbox.store import LocalOutbox
from airflow_provider_alation.testing.fake_alation import FakeAlation, Fault
from tests.support.emitter import distinct_event
from tests.test_bounded_network import settings, transport


def _sender(fake: FakeAlation, token: str, tmp_path: Path) -> Sender:
    s = settings(fake, token, tmp_path)
    return Sender(s.endpoint_url, lambda: token, 2, s.verify)


def _body() -> bytes:
    return json.dumps(distinct_event()).encode()


def _fork_posting(sender: Sender, budget: float) -> int:
    """A child that posts one event with ``sender`` and exits 0 if it was sent (as the provider's
    forked emitter: ``os._exit`` at once); its pid."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if sender.post(_body(), budget).kind == "sent" else 2
        finally:
            os._exit(code)
    return pid


def _delivery_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "alation-delivery"]


# -- the delivery thread ----------------------------------------------------------------------------
def test_one_delivery_thread_serves_consecutive_requests_and_ends_when_idle(
    fake_alation: FakeAlation, token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "WORKER_IDLE_SECONDS", 0.5)
    sender = _sender(fake_alation, token, tmp_path)
    seen: list[int] = []
    for n in range(1, 4):
        assert sender.post(_body(), 5).kind == "sent"
        sender.run_later(lambda: seen.append(threading.get_ident()))  # by the thread that sent
        deadline = time.monotonic() + 5
        while len(seen) < n and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(seen) == 3 and len(set(seen)) == 1, seen  # one thread for the three requests
    (worker,) = [t for t in _delivery_threads() if t.ident == seen[0]]
    worker.join(5)
    assert not worker.is_alive(), "an idle delivery thread stays"
    assert sender.post(_body(), 5).kind == "sent"  # a new one is started for the next request
    assert len(fake_alation.events) == 4


def test_a_forked_child_sends_with_a_thread_of_its_own(
    fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    sender = _sender(fake_alation, token, tmp_path)
    assert sender.post(_body(), 5).kind == "sent"  # the parent's thread now exists
    _, status = os.waitpid(_fork_posting(sender, 5), 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(fake_alation.events) == 2


def test_nothing_is_sent_before_before_sending_has_returned(
    fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    sender = _sender(fake_alation, token, tmp_path)
    received_meanwhile: list[int] = []

    def write_ahead() -> None:
        time.sleep(0.3)  # a slow disk: the delivery thread is ready long before this returns
        received_meanwhile.append(len(fake_alation.requests))

    outcome = sender.post(_body(), 5, before_sending=write_ahead)
    assert outcome.kind == "sent" and received_meanwhile == [0]


def test_a_before_sending_that_raises_does_not_hold_the_request(
    fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    sender = _sender(fake_alation, token, tmp_path)

    def broken() -> None:
        raise OSError("disk gone")

    started = time.monotonic()
    assert sender.post(_body(), 5, before_sending=broken).kind == "sent"
    assert time.monotonic() - started < 4  # not left waiting for the budget


def test_a_transient_first_answer_is_still_retried_after_a_back_off(
    fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    """The first attempt is made without building the retry policy; a 503 still gets the policy's
    back-off (at least 0.25 s) and a second attempt."""
    fake_alation.fail_next(Fault(status=503))
    outcome = _sender(fake_alation, token, tmp_path).post_blocking(_body(), time.monotonic() + 5)
    assert outcome.kind == "sent" and outcome.attempts == 2 and outcome.elapsed >= 0.25
    fake_alation.fail_next(Fault(status=400))
    outcome = _sender(fake_alation, token, tmp_path).post_blocking(_body(), time.monotonic() + 5)
    assert outcome.kind == "rejected" and outcome.attempts == 1


# -- sent/ ------------------------------------------------------------------------------------------
def test_a_sent_entry_goes_to_sent_and_is_never_seen_again(tmp_path: Path) -> None:
    outbox = LocalOutbox(tmp_path / "spool")
    kept = outbox.put(b'{"kept": 1}')
    outbox.settle(kept, "retry")
    sent = outbox.put(b'{"sent": 1}')
    outbox.settle(sent, "sent")
    assert not sent.path.exists()
    assert [p.name for p in outbox.sent.iterdir()] == [f"{sent.entry}.sent"]
    assert [e.state for e in outbox.list()] == ["pending"]
    assert outbox.usage() == (1, len(b'{"kept": 1}'))
    assert outbox.counts()["pending"] == 1 and sum(outbox.counts().values()) == 1
    (claim,) = outbox.claim(10)
    assert claim.body == b'{"kept": 1}'
    assert outbox.purge_sent() == 1 and list(outbox.sent.iterdir()) == []


def test_purge_removes_only_its_own_files_and_follows_no_link(tmp_path: Path) -> None:
    outbox = LocalOutbox(tmp_path / "spool")
    outbox.prepare()
    precious = tmp_path / "precious.json"
    precious.write_text("{}")
    (outbox.sent / "planted.sent").symlink_to(precious)
    (outbox.sent / "folder.sent").mkdir()
    (outbox.sent / "notes.txt").write_text("mine")
    assert outbox.purge_sent() == 1  # the link itself
    assert precious.read_text() == "{}"
    assert sorted(p.name for p in outbox.sent.iterdir()) == ["folder.sent", "notes.txt"]


def test_a_removed_sent_folder_falls_back_to_removing_the_entry(tmp_path: Path) -> None:
    outbox = LocalOutbox(tmp_path / "spool")
    claim = outbox.put(b"{}")
    outbox.sent.rmdir()
    outbox.settle(claim, "sent")
    assert not claim.path.exists() and outbox.list() == []
    assert outbox.purge_sent() == 0  # no folder: nothing to do, no error


def test_a_forked_emitter_leaves_at_most_its_file_and_the_next_send_removes_it(
    fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    """As the OpenLineage provider's child: emit, then os._exit at once (no thread gets to run)."""
    emitter = transport(fake_alation, token, tmp_path, dags={"include": ["*"]})
    spool = LocalOutbox(tmp_path / "spool")
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            try:
                outcome = emitter.emit(distinct_event())
                code = 0 if outcome is not None and outcome.kind == "sent" else 2
            finally:
                os._exit(locals().get("code", 1))
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert len(list(spool.sent.iterdir())) <= 1  # each child removed what the one before left
    assert spool.list() == [] and len(fake_alation.events) == 3
    assert emitter.emit(distinct_event()).kind == "sent"
    deadline = time.monotonic() + 5
    while list(spool.sent.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)  # a long-lived process removes its own file right after the send
    assert list(spool.sent.iterdir()) == []
    summary = replay(spool, _sender(fake_alation, token, tmp_path), per_event_budget=5, reclaim=True)
    assert summary.claimed == 0 and len(fake_alation.events) == 4  # nothing is sent twice


# -- what a second reader found in this path --------------------------------------------------------
def test_a_failure_between_selection_and_the_request_still_leaves_the_event_on_disk(
    fake_alation: FakeAlation, token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_alation.pipeline import Pipeline

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug after admission")

    monkeypatch.setattr(Pipeline, "_report_resolutions", broken)
    emitter = transport(fake_alation, token, tmp_path, dags={"include": ["*"]})
    assert emitter.emit(distinct_event()) is None  # logged, never raised
    assert len(LocalOutbox(tmp_path / "spool").list()) == 1 and fake_alation.events == []


def test_a_thread_that_cannot_start_fails_one_request_not_the_sender(
    fake_alation: FakeAlation, token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_start = threading.Thread.start
    failures = [RuntimeError("can't start new thread")]

    def start(self: threading.Thread) -> None:
        if self.name == "alation-delivery" and failures:
            raise failures.pop()
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    sender = _sender(fake_alation, token, tmp_path)
    first = sender.post(_body(), 2)
    assert first.kind == "retry" and "could not start the delivery thread" in first.detail
    started = time.monotonic()
    assert sender.post(_body(), 2).kind == "sent" and time.monotonic() - started < 1.0
    assert len(fake_alation.events) == 1


def test_wait_idle_returns_once_the_late_answer_has_settled(
    fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    fake_alation.fail_next(Fault(status=200, delay=0.8))  # answered after the budget
    sender = _sender(fake_alation, token, tmp_path)
    settled: list[str] = []

    def on_late(outcome: delivery.Outcome) -> None:
        time.sleep(0.3)  # settling takes a while (a disk)
        settled.append(outcome.kind)

    assert sender.post(_body(), 0.3, on_late=on_late).abandoned
    assert sender.wait_idle(10) and len(settled) == 1  # its outcome, whichever it is


def test_a_sent_entry_that_cannot_be_renamed_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from airflow_provider_alation.outbox import store

    outbox = LocalOutbox(tmp_path / "spool")
    claim = outbox.put(b"{}")
    real_rename = os.rename

    def rename(src: object, dst: object) -> None:
        if str(dst).endswith(".sent"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(store.os, "rename", rename)
    outbox.settle(claim, "sent")
    assert not claim.path.exists() and outbox.list() == []


def test_no_discovery_refresh_before_the_event_is_written(
    fake_alation: FakeAlation, token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recheck interval ending between deliver's check and the resolver's: no refresh then."""
    from airflow_provider_alation import pipeline as pipeline_module

    answers = iter([True])  # "no refresh due" at deliver's check, due from then on
    monkeypatch.setattr(pipeline_module.Pipeline, "_resolver_ready", lambda self, s: next(answers, False))
    claimed_at_refresh: list[int] = []
    real_load = pipeline_module.load_index

    def load_index(*args: object, **kwargs: object) -> object:
        claimed_at_refresh.append(len(list((tmp_path / "spool" / "claimed").glob("*.json"))))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "load_index", load_index)
    emitter = transport(fake_alation, token, tmp_path, dags={"include": ["*"]}, discover_datasources=True)
    assert emitter.emit(distinct_event()).kind == "sent"
    assert all(count >= 1 for count in claimed_at_refresh), claimed_at_refresh


def test_a_sender_forked_while_another_thread_holds_its_lock_still_sends_in_the_child(
    fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    sender = _sender(fake_alation, token, tmp_path)
    assert sender.post(_body(), 5).kind == "sent"
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with sender._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5)
    pid = _fork_posting(sender, 3)
    release.set()
    holder.join()
    deadline = time.monotonic() + 15
    while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    if done == (0, 0):
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the child deadlocked on a lock held at the fork")
    assert os.waitstatus_to_exitcode(done[1]) == 0 and len(fake_alation.events) == 2


def test_concurrent_requests_do_not_wait_behind_each_other(
    fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    """The relay's delivery threads share a Sender: three requests answered after 0.4 s each, with
    a 1 s budget, all delivered within it (queued behind one thread, the third would run out of
    time after Alation accepted it, and a replay would send it again)."""
    fake_alation.answer_delay = 0.4
    sender = _sender(fake_alation, token, tmp_path)
    assert sender.post(_body(), 5).kind == "sent"  # warm: the connection, the first thread
    barrier = threading.Barrier(3)
    outcomes: list[delivery.Outcome] = []

    def post() -> None:
        barrier.wait(5)
        outcomes.append(sender.post(_body(), 1.0))

    callers = [threading.Thread(target=post) for _ in range(3)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(10)
    assert sorted(o.kind for o in outcomes) == ["sent"] * 3, outcomes
    assert len(fake_alation.events) == 4


def test_a_caller_arriving_while_another_request_is_answered_does_not_wait_for_it(
    fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    """Only an abandoned request holds the next one back; one still within its budget does not."""
    fake_alation.answer_delay = 0.7
    sender = _sender(fake_alation, token, tmp_path)
    outcomes: dict[str, delivery.Outcome] = {}
    first = threading.Thread(target=lambda: outcomes.__setitem__("a", sender.post(_body(), 1.5)))
    first.start()
    time.sleep(0.1)
    outcomes["b"] = sender.post(_body(), 1.0)  # would wait up to 0.5 s for "a", then give up
    first.join(10)
    assert outcomes["a"].kind == "sent" and outcomes["b"].kind == "sent", outcomes


def test_wait_idle_waits_for_every_abandoned_request_not_only_the_last(
    fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    sender = _sender(fake_alation, token, tmp_path)
    assert sender.post(_body(), 5).kind == "sent"  # warm
    fake_alation.fail_next(Fault(status=200, delay=0.8))  # the first of the two: late
    settled: list[str] = []

    def on_late(outcome: delivery.Outcome) -> None:
        time.sleep(0.2)
        settled.append(outcome.kind)

    barrier = threading.Barrier(2)
    outcomes: list[delivery.Outcome] = []

    def post() -> None:
        barrier.wait(5)
        outcomes.append(sender.post(_body(), 0.4, on_late=on_late))

    callers = [threading.Thread(target=post) for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(10)
    assert sorted(o.abandoned for o in outcomes) == [False, True], outcomes
    assert sender.wait_idle(10) and len(settled) == 1


def test_a_request_another_thread_abandoned_holds_nothing_back_its_own_does(
    fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    """An abandoned request is left to finish for its late answer (reads up to ``timeout``, not cut
    at the budget). Only the thread that abandoned it waits for it before its next request: the
    relay's other delivery threads, sharing the Sender, send at once."""
    sender = _sender(fake_alation, token, tmp_path)
    assert sender.post(_body(), 5).kind == "sent"  # warm
    fake_alation.fail_next(Fault(status=200, delay=1.6))  # Alation takes it; answers after 1.6 s
    settled: list[delivery.Outcome] = []
    others_done = threading.Event()
    results: dict[str, tuple[delivery.Outcome, float]] = {}

    def timed(name: str, budget: float) -> None:
        begun = time.monotonic()
        results[name] = (sender.post(_body(), budget, on_late=settled.append), time.monotonic() - begun)

    def thread_a() -> None:
        timed("abandoned", 0.5)
        others_done.wait(5)
        timed("a again", 6.0)  # waits for its own abandoned request first

    a = threading.Thread(target=thread_a)
    a.start()
    while "abandoned" not in results and a.is_alive():
        time.sleep(0.01)
    timed("other thread", 2.0)
    others_done.set()
    a.join(15)
    first, other, again = results["abandoned"], results["other thread"], results["a again"]
    assert first[0].abandoned, first
    assert other[0].kind == "sent" and other[1] < 1.0, other  # not held back by A's request
    assert again[0].kind == "sent" and again[1] > 0.5, again  # held until A's late answer came
    assert [o.kind for o in settled] == ["sent"], settled  # the late 200 settled A's first event
    assert len(fake_alation.events) == 3  # warm-up, the other thread, A again (a fault is not recorded)


def test_a_thread_reusing_an_ended_threads_ident_is_not_held_back_by_its_request(
    fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    """Thread idents are reused once a thread has ended: a new thread with the ident of one that
    abandoned a request must not wait for that request (only the same thread does)."""
    sender = _sender(fake_alation, token, tmp_path)
    assert sender.post(_body(), 5).kind == "sent"  # warm
    fake_alation.fail_next(Fault(status=200, delay=1.5))
    abandoned: list[delivery.Outcome] = []
    first = threading.Thread(target=lambda: abandoned.append(sender.post(_body(), 0.3)))
    first.start()
    first.join(5)
    assert abandoned and abandoned[0].abandoned, abandoned
    old_ident = first.ident
    results: list[tuple[delivery.Outcome, float]] = []

    def post_if_reused() -> None:  # only the thread with the old ident posts: no other thread starts
        if threading.get_ident() != old_ident:
            return
        begun = time.monotonic()
        outcome = sender.post(_body(), 1.0)
        results.append((outcome, time.monotonic() - begun))

    for _ in range(200):
        thread = threading.Thread(target=post_if_reused)
        thread.start()
        thread.join(5)
        if results:
            break
    else:
        pytest.skip("no new thread got the ended thread's ident")
    outcome, took = results[0]
    assert outcome.kind == "sent" and took < 0.5, (outcome, took)
    assert sender.wait_idle(10)
