"""AlationTransport against the HTTPS stand-in: gate, rewrite, delivery, budget, secrets."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from openlineage.client.event_v2 import RunState

from airflow_provider_alation.lineage import gate
from airflow_provider_alation.testing.fake_alation import FakeAlation, Fault
from airflow_provider_alation.transport import AlationConfig, AlationTransport
from tests.support.network import refused_port
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
    outcome = broken.emit(event)
    assert (outcome.kind, outcome.detail) == ("skipped", gate.lineage_reason(event))
    assert fake_alation.requests == []
    assert not [r for r in alation_logs.records if r.levelno >= logging.WARNING]


def test_dag_not_opted_in_sends_nothing(fake_alation, token) -> None:
    t = transport(fake_alation, token)
    assert t.emit(make_event(tags=())).detail == gate.NOT_OPTED_IN
    assert t.emit(make_event(tags=("other",))).detail == gate.NOT_OPTED_IN
    assert fake_alation.requests == []
    assert transport(fake_alation, token, dags={"include": ["my_*"]}).emit(make_event(tags=())).kind == "sent"
    assert (
        transport(fake_alation, token, dags={"exclude": ["my_dag"]}).emit(make_event()).detail
        == gate.EXCLUDED
    )
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
    port = refused_port()
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


def test_an_event_above_the_cap_after_trimming_is_dead_lettered_not_posted(
    fake_alation, token, alation_logs, tmp_path
) -> None:
    from airflow_provider_alation.outbox.store import LocalOutbox

    spool = tmp_path / "spool"
    event = make_event(inputs=60, outputs=60)  # 120 datasets: about 6 KB that no trim can remove
    outcome = transport(fake_alation, token, max_event_bytes=2048, spool_dir=str(spool)).emit(event)
    assert outcome.kind == "too_large" and "above max_event_bytes=2048" in outcome.detail
    assert fake_alation.requests == []
    (dead,) = LocalOutbox(str(spool)).list("dead")
    assert dead.reason["problem"] == "too_large" and dead.reason["job"] == "my_dag.my_task"
    (error,) = [r for r in alation_logs.records if r.levelno == logging.ERROR]
    assert "is not sent" in error.getMessage() and "replay --dead" in error.getMessage()


def test_per_query_event_opted_in_by_the_tag_the_task_process_recorded(fake_alation, token) -> None:
    from airflow_provider_alation.integration import task_context
    from tests.test_gate import _child

    t = transport(fake_alation, token, namespace_map={})
    try:
        assert t.emit(_child()).detail == gate.NOT_OPTED_IN  # no tags on the event itself
        task_context.set_current("etl", "load", ["alation"])
        assert t.emit(_child()).kind == "sent"
        task_context.set_current("other_dag", "load", ["alation"])  # another DAG's tags do not count
        assert t.emit(_child()).detail == gate.NOT_OPTED_IN
    finally:
        task_context.clear()
    assert [e["job"]["name"] for e in fake_alation.events] == ["etl.load.query.1"]


def test_a_forked_emitter_uses_the_settings_the_task_process_read(
    fake_alation, token, monkeypatch, tmp_path
) -> None:
    """The child never reads the connection (under ``airflow dags test`` that read is never
    answered), however old the parent's copy: here the connection is gone by the time it emits."""
    import json
    import os

    from airflow_provider_alation import transport as transport_module
    from airflow_provider_alation.integration import task_context
    from tests.support.airflow_home import connection_json

    monkeypatch.setattr(transport_module, "SETTINGS_TTL_SECONDS", 0.0)  # any later call would re-read
    extra = {"verify": str(fake_alation.cert_path), "spool_dir": str(tmp_path / "spool")}
    monkeypatch.setenv("AIRFLOW_CONN_ALATION_DEFAULT", connection_json(fake_alation.url, token, extra))
    t = AlationTransport(AlationConfig.from_dict({}))
    task_context.set_current("my_dag", "my_task", ["alation"])
    try:
        t.prepare()  # in the task process, before the fork
        monkeypatch.delenv("AIRFLOW_CONN_ALATION_DEFAULT")
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the emitting child
            code = 1
            try:
                outcome = t.emit(make_event())
                os.write(write, json.dumps(outcome.kind if outcome else None).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert json.loads(os.read(read, 100)) == "sent"
        # In the task process itself a stale copy is re-read: the connection is gone now.
        assert t.emit(make_event()) is None
    finally:
        task_context.clear()
    assert len(fake_alation.events) == 1


def test_a_job_name_or_namespace_cannot_forge_log_records(fake_alation, token, alation_logs) -> None:
    from openlineage.client.serde import Serde

    event = Serde.to_dict(make_event(job_name="my_dag.x\nERROR forged record"))
    event["inputs"][0]["namespace"] = "postgres://evil\r\nhost:5432"
    event["outputs"][0]["name"] = "db.s.\ud800lone"  # a lone surrogate in a dataset name
    outcome = transport(fake_alation, token).emit(event)
    assert outcome is not None and outcome.kind in ("sent", "rejected")
    for record in alation_logs.records:
        message = record.getMessage()
        assert "\n" not in message.replace("\nAlation lineage is not sent", ""), message
        assert "\r" not in message


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda e: e["inputs"][0].update(facets={"symlinks": "x"}), id="symlinks-a-string"),
        pytest.param(lambda e: e["run"]["facets"].update(weird=["a", "list"]), id="facet-a-list"),
        pytest.param(lambda e: e["job"].update(facets="a string"), id="job-facets-a-string"),
        pytest.param(lambda e: e["run"]["facets"].update(cycle=e["run"]), id="a-cycle"),
        pytest.param(lambda e: e["job"].update(name="my_dag.\ud800"), id="lone-surrogate"),
    ],
)
def test_an_event_of_unexpected_shape_is_sent_or_dead_lettered_never_lost(
    fake_alation, token, alation_logs, tmp_path, mutate
) -> None:
    from openlineage.client.serde import Serde

    from airflow_provider_alation.outbox.store import LocalOutbox

    event = Serde.to_dict(make_event())
    mutate(event)
    spool = tmp_path / "spool"
    outcome = transport(fake_alation, token, spool_dir=str(spool), dags={"include": ["*"]}).emit(event)
    dead = LocalOutbox(str(spool)).list("dead")
    assert outcome is not None
    if outcome.kind == "unshapeable":
        assert len(dead) == 1 and dead[0].reason["problem"] == "unshapeable"
        assert any("my_dag" in r.getMessage() for r in alation_logs.records if r.levelno == logging.ERROR)
    else:  # sent; or, where the stand-in finds it invalid OpenLineage, refused and dead-lettered
        assert outcome.kind in ("sent", "rejected"), outcome
        assert len(fake_alation.requests) == 1
        assert len(dead) == (outcome.kind == "rejected")
