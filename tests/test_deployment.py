"""End to end on a real deployment: api-server, scheduler (LocalExecutor) and dag-processor on a
PostgreSQL metadata database, the OpenLineage provider configured with the Alation transport, the
connections in the metadata database (created through the REST API), DAG runs triggered through the
REST API. The HTTPS stand-in for Alation records what it receives.

Each test waits until every process of its runs' task instances has exited (see
tests/support/deployment.py) before looking at what Alation received.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_alation.testing.fake_alation import FakeAlation
from tests.support.deployment import DagRunResult, Deployment
from tests.support.postgres import PostgresServer

pytestmark = [pytest.mark.airflow, pytest.mark.postgres]

#: The OpenLineage listener kills its emitter after [openlineage] execution_timeout (10 s).
OL_KILL_WARNINGS = ("expired and will be terminated", "did not finish within execution_timeout")
#: A task of these DAGs takes 0.5-4 s (up to 7 s cold, on a busy 2-core machine); one held by the
#: listener until its kill timeout takes more than 10 s.
MAX_TASK_SECONDS = 8.0

Configure = Callable[..., None]


@pytest.fixture(scope="module")
def deployment(postgres: PostgresServer) -> Iterator[Deployment]:
    deployment = Deployment.create(postgres)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()
        if os.environ.get("ALATION_KEEP_DEPLOYMENT"):
            print(f"deployment kept in {deployment.home}")
        else:
            deployment.cleanup()


@pytest.fixture
def alation(deployment: Deployment, fake_alation: FakeAlation, token: str, tmp_path: Path) -> Configure:
    """Points ``alation_default`` (in the metadata database) at this test's stand-in; call it again
    with extra settings to replace the connection's extra."""

    def configure(**extra: Any) -> None:
        settings = {"verify": str(fake_alation.cert_path), "spool_dir": str(tmp_path / "spool"), **extra}
        deployment.put_alation_connection(fake_alation.url, token, settings)

    configure()
    return configure


def names(datasets: list[dict[str, Any]]) -> list[str]:
    return sorted(d["name"] for d in datasets)


def table(deployment: Deployment, name: str) -> str:
    return f"{deployment.data_database}.public.{name}"


def assert_clean(deployment: Deployment, result: DagRunResult, token: str) -> None:
    """The run succeeded, no task was held by the listener's kill timeout, the token is in no log."""
    tasks = result.tasks
    assert result.state == "success", {t.task_id: t.state for t in tasks.values()}
    for task in tasks.values():
        assert task.state == "success", task
        assert task.log_path is not None, f"no log file for {task}"
        log = task.log()
        for warning in OL_KILL_WARNINGS:
            assert warning not in log, f"{task.task_id}: {warning!r} in its log:\n{log[-3000:]}"
        assert task.duration is not None and task.duration < MAX_TASK_SECONDS, task
    leaked = deployment.files_containing(token)
    assert leaked == [], f"the token is in {leaked}"


def report(result: DagRunResult) -> None:
    durations = {t.task_id: round(t.duration or 0, 2) for t in result.tasks.values()}
    print(
        f"\n[deployment] {result.dag_id}: {result.elapsed:.1f}s trigger-to-exit, task durations {durations}, "
        f"task processes left when the run ended {result.processes_left}, gone {result.process_wait:.2f}s "
        "later, "
        f"Execution API connection reads {result.connection_reads}"
    )


def test_hook_task_in_tagged_dag_sends_only_its_query_event(
    deployment: Deployment, alation: Configure, fake_alation: FakeAlation, token: str
) -> None:
    result = deployment.trigger("deploy_hook_tagged")["deploy_hook_tagged"]
    report(result)
    assert_clean(deployment, result, token)

    assert [r.status for r in fake_alation.requests] == [200] * len(fake_alation.requests)
    assert [e["job"]["name"] for e in fake_alation.events] == ["deploy_hook_tagged.copy_a_to_b.query.1"]
    (event,) = fake_alation.events
    assert event["eventType"] == "COMPLETE"
    assert names(event["inputs"]) == [table(deployment, "a")]
    assert names(event["outputs"]) == [table(deployment, "b")]
    parent = event["run"]["facets"]["parent"]
    assert parent["job"]["name"] == "deploy_hook_tagged.copy_a_to_b"


def test_two_statement_task_sends_one_event_per_statement(
    deployment: Deployment, alation: Configure, fake_alation: FakeAlation, token: str
) -> None:
    result = deployment.trigger("deploy_hook_two_statements")["deploy_hook_two_statements"]
    report(result)
    assert_clean(deployment, result, token)

    job = "deploy_hook_two_statements.copy_a_to_b_to_c"
    events = {e["job"]["name"]: e for e in fake_alation.events}
    assert len(fake_alation.events) == 2, [e["job"]["name"] for e in fake_alation.events]
    assert sorted(events) == [f"{job}.query.1", f"{job}.query.2"]
    first, second = events[f"{job}.query.1"], events[f"{job}.query.2"]
    assert (names(first["inputs"]), names(first["outputs"])) == (
        [table(deployment, "a")],
        [table(deployment, "b")],
    )
    assert (names(second["inputs"]), names(second["outputs"])) == (
        [table(deployment, "b")],
        [table(deployment, "c")],
    )
    for event in fake_alation.events:
        assert event["eventType"] == "COMPLETE"
        assert event["run"]["facets"]["parent"]["job"]["name"] == job
        # No event merges the two statements into a -> c.
        assert not (
            table(deployment, "a") in names(event["inputs"])
            and table(deployment, "c") in names(event["outputs"])
        )


def test_dag_selection_follows_the_connection_extra_between_runs(
    deployment: Deployment, alation: Configure, fake_alation: FakeAlation, token: str
) -> None:
    # Included by name; the untagged DAG (not included) runs at the same time and sends nothing.
    alation(dags={"include": ["deploy_hook_included"]})
    results = deployment.trigger("deploy_hook_included", "deploy_hook_untagged")
    for result in results.values():
        report(result)
        assert_clean(deployment, result, token)
    assert [e["job"]["name"] for e in fake_alation.events] == ["deploy_hook_included.copy_a_to_b.query.1"]
    (event,) = fake_alation.events
    assert names(event["inputs"]) == [table(deployment, "a")]
    assert names(event["outputs"]) == [table(deployment, "b")]

    # The extra replaced through the REST API: the tagged DAG it excludes sends nothing, and the
    # DAG that is no longer included sends nothing either.
    fake_alation.reset()
    alation(dags={"exclude": ["deploy_hook_excluded"]})
    results = deployment.trigger("deploy_hook_excluded", "deploy_hook_included")
    for result in results.values():
        report(result)
        assert_clean(deployment, result, token)
    assert fake_alation.events == []
    assert fake_alation.requests == []


def test_sql_operator_sends_the_task_event(
    deployment: Deployment, alation: Configure, fake_alation: FakeAlation, token: str
) -> None:
    result = deployment.trigger("deploy_sql_operator")["deploy_sql_operator"]
    report(result)
    assert_clean(deployment, result, token)
    assert [e["job"]["name"] for e in fake_alation.events] == ["deploy_sql_operator.copy_a_to_b"]
    (event,) = fake_alation.events
    assert event["eventType"] == "COMPLETE"
    assert names(event["inputs"]) == [table(deployment, "a")]
    assert names(event["outputs"]) == [table(deployment, "b")]


def test_thread_mode_delivers_the_tagged_hook_dag_exactly_once(
    deployment: Deployment, alation: Configure, fake_alation: FakeAlation, token: str
) -> None:
    # The tasks run in the scheduler's LocalExecutor workers, so the scheduler's config is theirs.
    with deployment.scheduler_config({"AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True"}):
        assert deployment.scheduler_environ()["AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD"] == "True"
        result = deployment.trigger("deploy_hook_tagged")["deploy_hook_tagged"]
        report(result)
    assert_clean(deployment, result, token)
    assert [e["job"]["name"] for e in fake_alation.events] == ["deploy_hook_tagged.copy_a_to_b.query.1"]
    (event,) = fake_alation.events
    assert names(event["inputs"]) == [table(deployment, "a")]
    assert names(event["outputs"]) == [table(deployment, "b")]
    assert event["run"]["facets"]["parent"]["job"]["name"] == "deploy_hook_tagged.copy_a_to_b"
