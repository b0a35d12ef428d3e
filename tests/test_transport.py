"""AlationTransport against the HTTPS stand-in: gate, rewrite, delivery, budget, secrets."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from openlineage.client.event_v2 import RunState

from airflow_provider_alation.testing.fake_alation import FakeAlation, Fault
from airflow_provider_alation.transport import AlationConfig, AlationTransport
from tests.support.network import free_port
from tests.test_gate import make_event

MAP = {"db:5432": "prod-db.example.com:5432"}


def transport(fake: FakeAlation, token: str, **overrides: Any) -> AlationTransport:
    config = {
        "type": "airflow_provider_alation.transport.AlationTransport",
        "url": fake.url,
        "token": token,
        "verify": str(fake.cert_path),
        "namespace_map": MAP,
        "time_budget": 3,
        "timeout": 2,
        **overrides,
    }
    return AlationTransport(AlationConfig.from_dict(config))


def all_logs(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


def test_complete_event_sent_once_with_bearer_and_rewritten(fake_alation, token, alation_logs) -> None:
    outcome = transport(fake_alation, token).emit(make_event())
    assert outcome is not None and outcome.kind == "sent"
    assert len(fake_alation.events) == 1
    (request,) = fake_alation.requests
    assert request.path == "/open_lineage_event/"
    assert request.headers["authorization"] == f"Bearer {token}"
    assert request.headers["content-type"] == "application/json"
    sent = fake_alation.events[0]
    assert sent["eventType"] == "COMPLETE"
    assert {d["namespace"] for d in sent["inputs"] + sent["outputs"]} == {
        "postgres://prod-db.example.com:5432"
    }
    assert token not in all_logs(alation_logs)


@pytest.mark.parametrize(
    "event",
    [
        make_event(RunState.START),
        make_event(RunState.RUNNING),
        make_event(RunState.FAIL),
        make_event(inputs=0),
        make_event(outputs=0),
        make_event(job_type="DAG", job_name="my_dag"),
    ],
)
def test_dropped_events_send_nothing_and_read_no_settings(fake_alation, token, alation_logs, event) -> None:
    # The url is invalid: had the transport read its settings, it would log an error.
    broken = transport(fake_alation, token, url="not a url")
    assert broken.emit(event) is None
    assert fake_alation.requests == []
    assert not [r for r in alation_logs.records if r.levelno >= logging.WARNING]


def test_dag_not_opted_in_sends_nothing(fake_alation, token) -> None:
    t = transport(fake_alation, token)
    assert t.emit(make_event(tags=())) is None
    assert t.emit(make_event(tags=("other",))) is None
    assert fake_alation.requests == []
    assert transport(fake_alation, token, dags={"include": ["my_*"]}).emit(make_event(tags=())).kind == "sent"
    assert transport(fake_alation, token, dags={"exclude": ["my_dag"]}).emit(make_event()) is None
    assert len(fake_alation.events) == 1


def test_bad_settings_logged_once_and_never_raise(fake_alation, token, alation_logs) -> None:
    t = transport(fake_alation, token, url="not a url", timeout=-1)
    assert t.emit(make_event()) is None
    assert t.emit(make_event()) is None
    errors = [r for r in alation_logs.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert "url: 'not a url' is not a tenant URL" in message
    assert "timeout: Input should be greater than 0" in message
    assert token not in message
    assert fake_alation.requests == []


def test_rejected_token(fake_alation, token, alation_logs) -> None:
    outcome = transport(fake_alation, "wrong-token-value-123").emit(make_event())
    assert (outcome.kind, outcome.status, outcome.problem) == ("retry", 401, "auth")
    assert len(fake_alation.requests) == 1  # no point retrying a rejected token within the budget
    assert "rotate it in Alation" in all_logs(alation_logs)
    assert "wrong-token-value-123" not in all_logs(alation_logs)


def test_wrong_endpoint_is_permanent(fake_alation, token, alation_logs) -> None:
    outcome = transport(fake_alation, token, endpoint="api/v1/open_lineage").emit(make_event())
    assert (outcome.kind, outcome.status, outcome.problem) == ("rejected", 404, "not_found")
    assert "endpoint not found" in all_logs(alation_logs)


def test_retries_5xx_then_succeeds(fake_alation, token) -> None:
    fake_alation.fail_next(Fault(503), Fault(502))
    outcome = transport(fake_alation, token).emit(make_event())
    assert (outcome.kind, outcome.attempts) == ("sent", 3)
    assert [r.status for r in fake_alation.requests] == [503, 502, 200]
    assert len(fake_alation.events) == 1


def test_retry_after_is_honoured(fake_alation, token) -> None:
    fake_alation.fail_next(Fault(429, headers={"Retry-After": "1"}))
    started = time.monotonic()
    outcome = transport(fake_alation, token).emit(make_event())
    assert outcome.kind == "sent"
    assert time.monotonic() - started >= 1.0


def test_hanging_server_bounded_by_time_budget(fake_alation, token) -> None:
    fake_alation.fail_next(*[Fault(200, delay=10)] * 5)
    started = time.monotonic()
    outcome = transport(fake_alation, token, time_budget=1.5, timeout=1).emit(make_event())
    elapsed = time.monotonic() - started
    assert outcome.kind == "retry" and outcome.problem == "timeout"
    assert elapsed < 1.5 + 0.5


def test_connection_refused_bounded_by_time_budget(token) -> None:
    port = free_port()
    config = {
        "url": f"https://127.0.0.1:{port}",
        "token": token,
        "dags": {"include": ["*"]},
        "time_budget": 1.5,
        "timeout": 1,
    }
    started = time.monotonic()
    outcome = AlationTransport(AlationConfig.from_dict(config)).emit(make_event())
    assert outcome.kind == "retry" and outcome.problem == "unreachable"
    assert outcome.attempts >= 2
    assert time.monotonic() - started < 1.5 + 0.5


def test_tls_failure_without_ca_bundle(fake_alation, token, alation_logs) -> None:
    outcome = transport(fake_alation, token, verify=True).emit(make_event())
    assert outcome.problem == "tls"
    assert "set the 'verify' extra to the CA bundle path" in all_logs(alation_logs)
    assert fake_alation.events == []


def test_dry_run_logs_the_final_event_and_sends_nothing(fake_alation, token, alation_logs) -> None:
    outcome = transport(fake_alation, token, dry_run=True).emit(make_event())
    assert outcome.detail == "dry_run"
    assert fake_alation.requests == []
    logged = all_logs(alation_logs)
    assert "(dry_run): would POST" in logged and "prod-db.example.com:5432" in logged
    assert token not in logged


def test_refresh_token_is_exchanged_for_an_access_token(tmp_path, token) -> None:
    with FakeAlation("unused-api-token", tls_dir=tmp_path, refresh_token=token, user_id=7) as fake:
        t = transport(fake, token, token_type="refresh_token", user_id=7)
        assert t.emit(make_event()).kind == "sent"
        assert t.emit(make_event()).kind == "sent"
        minted = [r for r in fake.requests if r.path == "/integration/v1/createAPIAccessToken/"]
        assert len(minted) == 1  # cached
        bearer = fake.requests[-1].headers["authorization"].removeprefix("Bearer ")
        assert bearer in fake.access_tokens and bearer != token


def test_refresh_token_refused_with_http_200_status_failed(tmp_path, token, alation_logs) -> None:
    with FakeAlation("unused-api-token", tls_dir=tmp_path, refresh_token="another", user_id=7) as fake:
        outcome = transport(fake, token, token_type="refresh_token", user_id=7).emit(make_event())
        assert (outcome.kind, outcome.problem) == ("retry", "auth")
        assert fake.events == []
    logged = all_logs(alation_logs)
    assert "Alation refused to mint an access token" in logged
    assert token not in logged


def test_repr_hides_token(fake_alation, token) -> None:
    t = transport(fake_alation, token)
    t.emit(make_event())
    assert token not in repr(t) and token not in str(t) and token not in repr(t.config)
