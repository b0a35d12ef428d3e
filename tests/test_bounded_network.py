"""Every wait on Alation is bounded: time against the budget, memory against endless bodies, threads
and descriptors in a long-lived producer, tokens out of debug output and dead letters, and a process
killed mid-discovery still makes the next ones back off. Loopback only; bounds, not benchmarks."""

from __future__ import annotations

import http.client
import json
import os
import resource
import signal
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_alation.alation import masking
from airflow_provider_alation.alation.delivery import WORKER_IDLE_SECONDS, Sender, late_answer_seconds
from airflow_provider_alation.alation.discovery import UNFINISHED, load_index
from airflow_provider_alation.alation.network import OVERALL_TIMEOUT_FACTOR
from airflow_provider_alation.alation.probe import probe_connection
from airflow_provider_alation.alation.tokens import BearerToken, TokenError
from airflow_provider_alation.outbox.store import LocalOutbox
from airflow_provider_alation.settings import AlationSettings, build_settings
from airflow_provider_alation.testing.catalog import synthetic_datasources
from airflow_provider_alation.testing.fake_alation import FakeAlation, Fault
from airflow_provider_alation.transport import AlationConfig, AlationTransport
from tests.support.emitter import distinct_event, stand_in_config

MARGIN = 1.0
REFRESH_TOKEN = "refresh-token-" + "r" * 24
USER_ID = 7


def values(fake: FakeAlation, token: str, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return stand_in_config(fake, token, tmp_path, **{"drain_max_events": 0, **extra})


def transport(fake: FakeAlation, token: str, tmp_path: Path, **extra: Any) -> AlationTransport:
    return AlationTransport(AlationConfig.from_dict(values(fake, token, tmp_path, **extra)))


def settings(fake: FakeAlation, token: str, tmp_path: Path, **extra: Any) -> AlationSettings:
    return build_settings(values(fake, token, tmp_path, **extra), inline=True)


def timed(call: Any, *args: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call(*args)
    return result, time.monotonic() - started


def with_refresh_token(fake: FakeAlation) -> FakeAlation:
    fake.refresh_token, fake.user_id = REFRESH_TOKEN, USER_ID
    return fake


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def live_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- time -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fault",
    [
        Fault(drip=0.1, drip_bytes=3500),  # a normal page arriving at ~35 KB/s
        Fault(header_drip=0.2),  # the status line and headers one byte at a time
        Fault(500, endless=True),  # an error page that never ends
    ],
    ids=["slow-page", "trickled-header", "endless-500"],
)
def test_discovery_inside_emit_keeps_the_time_budget(fake_alation, token, tmp_path, fault) -> None:
    fake_alation.datasources.update(synthetic_datasources(3000))
    fake_alation.fail_api_next(*[fault] * 8)
    budget = 3.0
    emitter = transport(
        fake_alation, token, tmp_path, discover_datasources=True, time_budget=budget, timeout=2
    )
    outcome, took = timed(emitter.emit, distinct_event())
    assert took < budget + MARGIN, took
    assert outcome.kind == "sent"  # the event still goes, after a bounded share of the budget
    assert took < budget / 2 + MARGIN  # discovery used at most min(timeout, half of what was left)


def test_many_slow_pages_are_bounded_in_total(fake_alation, token, tmp_path) -> None:
    # Each page arrives well within the per-read timeout; only a total bound stops the sum.
    fake_alation.datasources.update(synthetic_datasources(6000))
    fake_alation.api_delay = 0.4
    emitter = transport(fake_alation, token, tmp_path, discover_datasources=True, time_budget=2, timeout=1)
    outcome, took = timed(emitter.emit, distinct_event())
    assert outcome.kind == "sent" and took < 2 + MARGIN, took
    assert len(fake_alation.api_requests()) <= 3


def test_minting_is_bounded_outside_and_inside_emit(fake_alation, token, tmp_path) -> None:
    with_refresh_token(fake_alation).fail_token_next(Fault(header_drip=0.3), Fault(header_drip=0.3))
    s = settings(
        fake_alation, REFRESH_TOKEN, tmp_path, token_type="refresh_token", user_id=USER_ID, timeout=1
    )
    started = time.monotonic()
    with pytest.raises(TokenError) as raised:
        BearerToken(s)()
    assert time.monotonic() - started < 1 * OVERALL_TIMEOUT_FACTOR + MARGIN
    assert raised.value.problem == "timeout"
    extra = {"token_type": "refresh_token", "user_id": USER_ID, "time_budget": 1.5, "timeout": 1}
    emitter = transport(fake_alation, REFRESH_TOKEN, tmp_path, **extra)
    outcome, took = timed(emitter.emit, distinct_event())
    assert outcome.kind == "retry" and took < 1.5 + MARGIN, (outcome, took)


def test_the_test_button_probe_is_bounded(fake_alation, token, tmp_path) -> None:
    fake_alation.fail_next(Fault(200, header_drip=0.3))
    verdict, took = timed(probe_connection, settings(fake_alation, token, tmp_path, timeout=1))
    assert not verdict.ok and verdict.problem == "timeout"
    assert took < 1 + MARGIN, took


# -- memory ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["event-post", "datasource-page", "token"])
def test_an_endless_body_is_not_read_whole(fake_alation, token, tmp_path, where) -> None:
    extra: dict[str, Any] = {"time_budget": 2, "timeout": 1}
    secret = token
    if where == "event-post":
        fake_alation.fail_next(*[Fault(500, endless=True)] * 20)
    elif where == "datasource-page":
        fake_alation.fail_api_next(*[Fault(200, endless=True, body=b'[{"id": 1},')] * 8)
        extra["discover_datasources"] = True
    else:
        with_refresh_token(fake_alation).fail_token_next(*[Fault(200, endless=True)] * 8)
        extra.update(token_type="refresh_token", user_id=USER_ID)
        secret = REFRESH_TOKEN
    before = maxrss_mb()
    emitter = transport(fake_alation, secret, tmp_path, **extra)
    outcome, took = timed(emitter.emit, distinct_event())
    assert took < 2 + MARGIN, took
    time.sleep(1.0)  # an abandoned delivery thread, if any, would keep reading after emit
    grown = maxrss_mb() - before
    assert grown < 100, f"peak memory grew by {grown:.0f} MB"
    assert outcome.kind in ("retry", "sent")
    assert threading.active_count() < 20


# -- threads and descriptors in a long-lived producer -----------------------------------------------
def test_sixty_emits_against_a_trickling_tenant_leave_few_threads_and_descriptors(
    fake_alation, token, tmp_path
) -> None:
    emitter = transport(fake_alation, token, tmp_path, time_budget=0.5, timeout=0.5)
    assert emitter.emit(distinct_event()).kind == "sent"  # warm: session, outbox, settings
    threads, fds = threading.active_count(), live_fds()
    # Every answer is accepted, then trickled below the per-read timeout (18 bytes at 0.2 s: 3.6 s).
    fake_alation.fail_next(*[Fault(200, drip=0.2)] * 60)
    slowest = 0.0
    for _ in range(60):
        _, took = timed(emitter.emit, distinct_event())
        slowest = max(slowest, took)
    grown_threads, grown_fds = threading.active_count() - threads, live_fds() - fds
    print(
        f"60 emits: slowest {slowest:.2f}s, +{grown_threads} threads, +{grown_fds} fds, "
        f"{fake_alation.posts_started - 1} POSTs"
    )
    assert slowest < 0.5 + MARGIN
    # A new request only once the previous abandoned one has ended (each takes 3.6 s).
    assert fake_alation.posts_started - 1 <= 10, fake_alation.posts_started
    # One abandoned delivery thread with one server thread and connection (the process's one
    # deadline watchdog was started by the warm-up emit).
    assert grown_threads <= 4, grown_threads
    assert grown_fds <= 6, grown_fds
    # The abandoned request ends by its late-answer bound, and the delivery thread once idle for
    # WORKER_IDLE_SECONDS: nothing stays behind.
    deadline = time.monotonic() + late_answer_seconds(0.5) + WORKER_IDLE_SECONDS + 3

    def delivering() -> bool:
        return any(t.name == "alation-delivery" for t in threading.enumerate())

    while (threading.active_count() > threads + 1 or delivering()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert threading.active_count() <= threads + 1 and not delivering()
    # Not sent twice, none lost: the trickled ones settled late (sent), the others wait for replay.
    counts = LocalOutbox(tmp_path / "spool").counts()
    assert counts["claimed"] == 0 and counts["dead"] == 0
    assert len(fake_alation.events) - 1 + counts["pending"] == 60


# -- secrets ----------------------------------------------------------------------------------------
def test_http_client_debug_output_never_shows_a_token(fake_alation, token, tmp_path, capfd) -> None:
    with_refresh_token(fake_alation).datasources.update(synthetic_datasources(10))
    s = settings(
        fake_alation,
        REFRESH_TOKEN,
        tmp_path,
        token_type="refresh_token",
        user_id=USER_ID,
        discover_datasources=True,
    )
    saved = http.client.HTTPConnection.debuglevel
    http.client.HTTPConnection.debuglevel = 1
    try:
        bearer = BearerToken(s)
        load = load_index(s, 10.0, token=bearer)  # mints, then reads both APIs
        outcome = Sender(s.endpoint_url, bearer, 2, s.verify).post(json.dumps(distinct_event()).encode(), 5)
    finally:
        http.client.HTTPConnection.debuglevel = saved
    assert load.state == "refreshed" and outcome.kind == "sent" and bearer.minted == 1
    printed = capfd.readouterr()
    minted = list(fake_alation.access_tokens)
    for secret in [REFRESH_TOKEN, *minted]:
        assert secret not in printed.out and secret not in printed.err


def test_minted_access_tokens_are_registered_with_airflows_masker(
    fake_alation, tmp_path, monkeypatch
) -> None:
    masked: list[str] = []
    monkeypatch.setitem(sys.modules, "airflow", sys.modules.get("airflow") or types.ModuleType("airflow"))
    monkeypatch.setattr(masking, "_airflow_masker", lambda: masked.append)
    with_refresh_token(fake_alation)
    s = settings(fake_alation, REFRESH_TOKEN, tmp_path, token_type="refresh_token", user_id=USER_ID)
    minted = BearerToken(s)()
    assert minted in masked
    assert BearerToken(s)() == minted  # from the disk cache in another process: masked there too
    assert masked.count(minted) == 2


def test_a_400_echoing_the_headers_leaves_no_token_in_the_dead_letter(
    fake_alation, token, tmp_path, alation_logs
) -> None:
    fake_alation.fail_next(Fault(400, echo_headers=True))
    outcome = transport(fake_alation, token, tmp_path).emit(distinct_event())
    assert outcome.kind == "rejected"
    reasons = list((tmp_path / "spool" / "dead").glob("*.reason.json"))
    assert len(reasons) == 1
    text = reasons[0].read_text()
    assert token not in text
    assert "authorization" not in text.lower() or "Bearer ***" in text
    assert json.loads(text)["status"] == 400
    assert token not in alation_logs.text


def test_redaction_of_answer_text() -> None:
    text = '{"Authorization": "Bearer abc.def-123456", "TOKEN": "zzzzzzzz", "x": "s3cr3t-value"}'
    redacted = masking.redact(text, ["s3cr3t-value"])
    assert "abc.def-123456" not in redacted and "zzzzzzzz" not in redacted and "s3cr3t" not in redacted
    assert masking.redact("the token was refused") == "the token was refused"


# -- back-off recorded before the wait --------------------------------------------------------------
def test_a_process_killed_mid_discovery_makes_the_next_ones_back_off(fake_alation, token, tmp_path) -> None:
    fake_alation.datasources.update(synthetic_datasources(10))
    fake_alation.fail_api_next(Fault(header_drip=0.5))  # the first page hangs for a minute
    s = settings(fake_alation, token, tmp_path, discover_datasources=True)
    child = os.fork()
    if child == 0:  # the OpenLineage provider's emitting child: it will be killed mid-fetch
        try:
            load_index(s, 60.0, token=lambda: token)
        finally:
            os._exit(0)
    deadline = time.monotonic() + 10
    while not fake_alation.api_requests() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(child, signal.SIGKILL)  # as the provider does at its 10 s
    os.waitpid(child, 0)
    assert len(fake_alation.api_requests()) == 1
    # The next process (this one never read the cache): no second hanging fetch within the back-off.
    load, took = timed(lambda: load_index(s, 5.0, token=lambda: token))
    assert load.state == "unavailable" and UNFINISHED in load.detail
    assert took < 0.5 and len(fake_alation.api_requests()) == 1
    # An explicit refresh (the CLI's --refresh) still asks Alation, and clears the back-off.
    assert load_index(s, 5.0, token=lambda: token, refresh=True).state == "refreshed"
    assert load_index(s, 5.0, token=lambda: token).state == "fresh"


def test_a_forked_child_gets_its_own_deadline_watchdog(fake_alation, token, tmp_path) -> None:
    """The watchdog thread (one per process) is not inherited by a fork: the child starts its own,
    so its requests are still bounded."""
    from airflow_provider_alation.alation import network

    session = network.new_session()
    url = fake_alation.url + fake_alation.endpoint
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    network.request(  # the parent's watchdog runs
        session,
        "POST",
        url,
        timeout=2,
        cap=1024,
        data=b"{}",
        headers=headers,
        verify=str(fake_alation.cert_path),
    )
    fake_alation.fail_next(Fault(200, header_drip=0.2))  # far below the per-read timeout
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            started = time.monotonic()
            try:
                network.request(
                    network.new_session(),
                    "POST",
                    url,
                    timeout=5,
                    deadline=started + 1.0,
                    cap=1024,
                    data=b"{}",
                    headers=headers,
                    verify=str(fake_alation.cert_path),
                )
            except Exception as exc:  # noqa: BLE001 - reported to the parent
                os.write(write, f"{type(exc).__name__} {time.monotonic() - started:.2f}".encode())
                code = 0
        finally:
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    name, took = os.read(read, 200).decode().split()
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    assert name == "ReadTimeout" and float(took) < 1.0 + MARGIN, (name, took)
