"""Second reader's findings on the hook-lineage / task-context / size-cap changes (ef54c56..HEAD).

Each finding's test asserts the behaviour the change promises (they failed before the fixes that
followed the review); the ``held`` tests pin what was checked and held. Nothing of this package is
mocked; the Airflow side uses the real listener manager, the real OpenLineage provider's event
builders and a real ``RuntimeTaskInstance`` (built with ``model_construct``)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_alation.integration import task_context
from airflow_provider_alation.lineage import gate
from airflow_provider_alation.lineage.resolution import NamespaceResolver
from airflow_provider_alation.lineage.shaping import _candidates, encode, shape_event
from airflow_provider_alation.settings import DagSelection
from airflow_provider_alation.transport import SETTINGS_TTL_SECONDS, AlationConfig, AlationTransport

ALATION = "airflow_provider_alation.transport.AlationTransport"
RUN_ID = "01890000-0000-7000-8000-000000000001"


@pytest.fixture(autouse=True)
def _clean_task_context():
    task_context.clear()
    yield
    task_context.clear()


@pytest.fixture
def ol_client_reset():
    """The OpenLineage listener is a process-wide singleton caching its client: reset it after."""
    from airflow.providers.openlineage.plugins.listener import get_openlineage_listener

    adapter = get_openlineage_listener().adapter
    saved = adapter._client
    adapter._client = None
    yield adapter
    adapter._client = saved


def inline_transport(**settings: Any) -> AlationTransport:
    config = {"type": ALATION, "url": "https://alation.example.com", "token": "t0k3n-review", "dry_run": True}
    return AlationTransport(AlationConfig.from_dict({**config, **settings}))


class _TI:
    """What the OpenLineage provider's macros read of a task instance (dag_run.conf among them)."""

    def __init__(self, dag_id: str, task_id: str, conf: dict | None = None) -> None:
        self.dag_id, self.task_id, self.try_number, self.map_index = dag_id, task_id, 1, -1
        self.dag_run = SimpleNamespace(
            conf=conf or {},
            clear_number=0,
            logical_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
            run_after=None,
        )

    def get_template_context(self) -> dict:
        return {"dag_run": self.dag_run}


def _injected_conf(upstream_dag: str, upstream_task: str) -> dict:
    """The ``openlineage`` section TriggerDagRunOperator (openlineage_inject_parent_info=True, the
    default) writes into the triggered run's conf, from the real provider code."""
    from airflow.providers.standard.utils.openlineage import _get_openlineage_parent_info

    return {"openlineage": _get_openlineage_parent_info(_TI(upstream_dag, upstream_task))}


def _per_query_event(dag_id: str, task_id: str, conf: dict | None = None):
    """The COMPLETE per-query event the OpenLineage provider emits for SQL run through a hook."""
    from airflow.providers.openlineage.utils.sql_hook_lineage import _create_ol_event_pair
    from openlineage.client.event_v2 import Dataset

    _, complete = _create_ol_event_pair(
        task_instance=_TI(dag_id, task_id, conf),
        job_name=f"{dag_id}.{task_id}.query.1",
        is_successful=True,
        inputs=[Dataset("postgres://db:5432", "d.s.a")],
        outputs=[Dataset("postgres://db:5432", "d.s.b")],
    )
    return complete


def _task_event(dag_id: str, task_id: str, conf: dict | None = None, tags: tuple[str, ...] = ()) -> dict:
    """A task's COMPLETE event with the parent facet the provider builds for it."""
    from airflow.providers.openlineage.utils.utils import get_task_parent_run_facet
    from openlineage.client.serde import Serde

    parent = Serde.to_dict(
        get_task_parent_run_facet(parent_run_id=RUN_ID, parent_job_name=dag_id, dr_conf=conf or {})["parent"]
    )
    meta = {"_producer": "https://example.com/p", "_schemaURL": "https://example.com/s"}
    return {
        "eventType": "COMPLETE",
        "eventTime": "2024-01-01T00:00:00+00:00",
        "producer": "https://example.com/p",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": RUN_ID, "facets": {"parent": parent}},
        "job": {
            "namespace": "default",
            "name": f"{dag_id}.{task_id}",
            "facets": {
                "jobType": {**meta, "jobType": "TASK", "integration": "AIRFLOW", "processingType": "BATCH"},
                "tags": {**meta, "tags": [{"key": t, "value": t, "source": "AIRFLOW"} for t in tags]},
            },
        },
        "inputs": [{"namespace": "postgres://db:5432", "name": "d.s.a"}],
        "outputs": [{"namespace": "postgres://db:5432", "name": "d.s.b"}],
    }


# --- 1. the listener: order, process, RuntimeTaskInstance, inheritance by the forked emitter -----


def test_held_our_success_listener_is_called_before_openlineages(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__TRANSPORT", json.dumps({"type": ALATION}))
    from airflow.sdk.listener import get_listener_manager

    impls = get_listener_manager().pm.hook.on_task_instance_success.get_hookimpls()
    order = [type(i.plugin).__name__ for i in reversed(impls)]  # pluggy calls the list back to front
    assert "TaskContextRecorder" in order and "OpenLineageListener" in order
    assert order.index("TaskContextRecorder") < order.index("OpenLineageListener")


def _runtime_ti(dag_id: str, task_id: str, tags: list[str]):
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    with DAG(dag_id, schedule=None, tags=tags):
        task = EmptyOperator(task_id=task_id)
    return RuntimeTaskInstance.model_construct(
        dag_id=dag_id, task_id=task_id, task=task, map_index=-1, try_number=1
    )


def test_held_forked_emitter_inherits_the_client_context_and_settings(monkeypatch, ol_client_reset) -> None:
    from airflow_provider_alation.plugins.alation import TaskContextRecorder

    transport = {
        "type": ALATION,
        "url": "https://alation.example.com",
        "token": "t0k3n-review",
        "dry_run": True,
    }
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__TRANSPORT", json.dumps(transport))
    TaskContextRecorder().on_task_instance_success(
        previous_state=None, task_instance=_runtime_ti("d", "t", ["alation"])
    )
    client = ol_client_reset._client
    assert client is not None and isinstance(client.transport, AlationTransport)
    assert task_context.current().tags == frozenset({"alation"})
    ours = client.transport
    read_in_parent = ours._loaded_at
    assert read_in_parent > float("-inf")

    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the emitter: what it inherited, and that a stale TTL does not re-read
        try:
            ours._loaded_at -= SETTINGS_TTL_SECONDS * 10
            ours.read_settings = lambda: (_ for _ in ()).throw(AssertionError("read in the child"))
            ok = (
                ol_client_reset._client is client
                and task_context.in_forked_emitter()
                and ours.settings() is not None
            )
            os.write(writer, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(writer)
    os.waitpid(pid, 0)
    assert os.read(reader, 1) == b"1"


def test_a_task_without_lineage_of_a_dag_not_opted_in_logs_no_alation_error(
    monkeypatch, ol_client_reset, caplog
) -> None:
    """Before this change an EmptyOperator's events (no datasets) never made the transport read its
    connection. Now the plugin reads it in every successful task, and a missing or invalid
    connection is an ERROR in the log of every task of every DAG (during a roll-out, step 1 before
    step 2 of the README, that is every task in the deployment)."""
    from airflow_provider_alation.plugins.alation import TaskContextRecorder

    monkeypatch.setenv(
        "AIRFLOW__OPENLINEAGE__TRANSPORT", json.dumps({"type": ALATION, "conn_id": "not_created_yet"})
    )
    caplog.set_level(logging.DEBUG, logger="airflow_provider_alation")
    TaskContextRecorder().on_task_instance_success(
        previous_state=None, task_instance=_runtime_ti("unrelated_dag", "noop", ["not-alation"])
    )
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


# --- 3. gate: hook lineage of triggered DAGs, pattern semantics ---------------------------------


def test_per_query_event_names_the_triggering_dag_as_root() -> None:
    """The premise of the next two findings, from the provider's own code."""
    event = _per_query_event("child", "load", _injected_conf("upstream", "trigger_child"))
    assert gate.job_names(event) == ("child.load.query.1", "child.load", "upstream")
    assert gate.job_names(_per_query_event("child", "load")) == ("child.load.query.1", "child.load", "child")


def test_hook_lineage_of_a_dag_triggered_by_another_is_opted_in_by_its_tag() -> None:
    conf = _injected_conf("upstream", "trigger_child")
    task_context.set_current("child", "load", {"alation"})
    outcome = inline_transport().emit(_per_query_event("child", "load", conf))
    assert outcome is not None and outcome.kind == "sent", outcome


@pytest.mark.parametrize("which", ["task", "per-query"])
def test_including_the_triggering_dag_does_not_send_the_triggered_dags_events(which) -> None:
    conf = _injected_conf("upstream", "trigger_child")
    if which == "task":  # a task event names its DAG in its airflow facet
        event: Any = _task_event("child", "load", conf)
        event["run"]["facets"]["airflow"] = {"dag": {"dag_id": "child", "tags": "[]"}}
    else:  # a per-query event is emitted by the process of the task that ran the SQL
        event = _per_query_event("child", "load", conf)
        task_context.set_current("child", "load", [])
    task = task_context.current_task()
    assert (
        gate.selection_reason(event, DagSelection(include=("upstream",)), "a", task=task) == gate.NOT_OPTED_IN
    )
    assert gate.selection_reason(event, DagSelection(include=("child",)), "a", task=task) is None


def test_excluding_the_triggering_dag_keeps_the_triggered_tagged_dag() -> None:
    event = _task_event("child", "load", _injected_conf("upstream", "trigger_child"), tags=("alation",))
    event["run"]["facets"]["airflow"] = {"dag": {"dag_id": "child", "tags": "['alation']"}}
    assert gate.selection_reason(event, DagSelection(exclude=("upstream",)), "alation") is None


def test_dag_id_patterns_do_not_match_task_names_of_other_dags() -> None:
    """``exclude: ["*_test"]`` does not drop task ``load_test`` of an opted-in DAG, and
    ``include: ["*_daily"]`` does not send task ``agg_daily`` of a DAG nobody opted in: for Airflow
    events patterns match the dag_id, as check's opted-in list does."""
    tagged = _task_event("sales", "load_test", tags=("alation",))
    tagged["run"]["facets"]["airflow"] = {"dag": {"dag_id": "sales", "tags": "['alation']"}}
    assert gate.selection_reason(tagged, DagSelection(exclude=("*_test",)), "alation") is None
    untagged = _task_event("finance", "agg_daily")
    untagged["run"]["facets"]["airflow"] = {"dag": {"dag_id": "finance", "tags": "[]"}}
    assert gate.selection_reason(untagged, DagSelection(include=("*_daily",)), "alation") == gate.NOT_OPTED_IN
    assert gate.dag_selection_reason("finance", set(), DagSelection(include=("*_daily",)), "alation") == (
        gate.NOT_OPTED_IN
    )


def _random_value(rnd: random.Random, depth: int = 0) -> Any:
    choice = rnd.random()
    if depth > 3 or choice < 0.35:
        return rnd.choice(
            [None, 0, 1.5, True, "", "x" * rnd.randint(0, 2000), "COMPLETE", [], {}, "['a', 'b']"]
        )
    if choice < 0.6:
        return [_random_value(rnd, depth + 1) for _ in range(rnd.randint(0, 3))]
    keys = [
        "run",
        "job",
        "facets",
        "parent",
        "root",
        "name",
        "tags",
        "key",
        "value",
        "jobType",
        "airflow",
        "dag",
    ]
    return {rnd.choice(keys): _random_value(rnd, depth + 1) for _ in range(rnd.randint(0, 4))}


def test_held_gate_never_raises_nor_lingers_on_random_events() -> None:
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import parent_run, tags_job

    rnd = random.Random(20240601)
    events: list[Any] = []
    for _ in range(3000):
        events.append(
            _random_value(rnd)
            if rnd.random() < 0.3
            else {
                "eventType": rnd.choice(["COMPLETE", "complete", None, 1, []]),
                **{k: _random_value(rnd) for k in ("run", "job", "inputs", "outputs", "dataset")},
            }
        )
    tags = tags_job.TagsJobFacet(
        tags=[tags_job.TagsJobFacetFields(key="alation", value="x", source="AIRFLOW")]
    )
    parent = parent_run.ParentRunFacet(
        run=parent_run.Run(runId=RUN_ID),
        job=parent_run.Job(namespace="n", name="p" * 5000),
        root=parent_run.Root(
            run=parent_run.RootRun(runId=RUN_ID), job=parent_run.RootJob(namespace="n", name="r")
        ),
    )
    events.append(
        RunEvent(
            eventType=RunState.COMPLETE,
            eventTime="2024-01-01T00:00:00Z",
            run=Run(runId=RUN_ID, facets={"parent": parent}),
            job=Job(namespace="n", name="j", facets={"tags": tags}),
        )
    )
    selection = DagSelection(include=("*a*b*c*d*e*",), exclude=("*x*y*z*",))
    started = time.perf_counter()
    for event in events:
        gate.lineage_reason(event)
        gate.job_names(event)
        gate.tags_of(event)
        gate.job_type(event)
        gate.dag_id_of(event)
        gate.selection_reason(event, selection, "alation", ("TEST",), ("x", "y", ("z",)))
    assert time.perf_counter() - started < 10
    assert gate.tags_of(events[-1]) == {"alation", "alation:x"}


# --- 4. shaping: the trim, namespace rewriting ----------------------------------------------------


_FACET_NAMES = [
    "schema",
    "symlinks",
    "columnLineage",
    "dataSource",
    "documentation",
    "custom",
    "sql",
    "airflow",
    "parent",
    "jobType",
    "spark.logicalPlan",
    "debug",
    "nominalTime",
    "é-ü",
]


def _random_shaped_input(rnd: random.Random) -> dict:
    """A random event whose facet dicts are sometimes one object held twice (a caller's dict:
    deepcopy keeps the sharing)."""
    made: list[dict] = []

    def facets() -> dict:
        if made and rnd.random() < 0.3:
            return made[0]
        new = {n: _random_value(rnd) for n in rnd.sample(_FACET_NAMES, rnd.randint(0, 6))}
        made.append(new)
        return new

    def dataset() -> dict:
        namespace = rnd.choice(["postgres://h", "s3://b", ""])
        return {"namespace": namespace, "name": "n", "facets": facets(), "inputFacets": facets()}

    return {
        "eventType": "COMPLETE",
        "run": {"runId": RUN_ID, "facets": facets()},
        "job": {"namespace": "n", "name": "j", "facets": facets()},
        "inputs": [dataset() for _ in range(rnd.randint(0, 3))],
        "outputs": [dataset() for _ in range(rnd.randint(0, 3))],
    }


def test_held_trim_ends_keeps_job_run_and_datasets_and_stops_only_when_nothing_is_left() -> None:
    rnd = random.Random(7)
    resolve = NamespaceResolver().resolve
    for _ in range(400):
        event = _random_shaped_input(rnd)
        cap = rnd.randint(50, len(encode(event)) + 10)
        started = time.perf_counter()
        shaped = shape_event(event, resolve, cap)
        assert time.perf_counter() - started < 1
        assert shaped.event["run"]["runId"] == RUN_ID and shaped.event["job"]["name"] == "j"
        assert len(shaped.event["inputs"]) == len(event["inputs"])
        assert len(shaped.event["outputs"]) == len(event["outputs"])
        assert shaped.body == encode(shaped.event)
        if shaped.size > cap:
            assert _candidates(shaped.event) == []


def _symlinked(first_symlinks: bool) -> dict:
    symlinks = {"identifiers": [{"namespace": "postgres://b", "name": "x", "type": "TABLE"}]}
    columns = {"fields": {"c": {"inputFields": [{"namespace": "postgres://b", "name": "x", "field": "c"}]}}}
    with_symlink = {"namespace": "postgres://a:5432", "name": "d.s.t", "facets": {"symlinks": symlinks}}
    with_columns = {"namespace": "postgres://a:5432", "name": "d.s.u", "facets": {"columnLineage": columns}}
    first, second = (with_symlink, with_columns) if first_symlinks else (with_columns, with_symlink)
    job = {"namespace": "n", "name": "j"}
    return {
        "eventType": "COMPLETE",
        "run": {"runId": RUN_ID},
        "job": job,
        "inputs": [first],
        "outputs": [second],
    }


def _symlink_namespace(shaped_event: dict) -> str:
    for dataset in shaped_event["inputs"] + shaped_event["outputs"]:
        symlinks = dataset["facets"].get("symlinks")
        if symlinks:
            return symlinks["identifiers"][0]["namespace"]
    raise AssertionError("no symlink")


def test_a_symlink_namespace_is_rewritten_the_same_whatever_the_dataset_order() -> None:
    resolve = NamespaceResolver().resolve
    symlink_first = _symlink_namespace(shape_event(_symlinked(True), resolve, 10**6).event)
    columns_first = _symlink_namespace(shape_event(_symlinked(False), resolve, 10**6).event)
    assert symlink_first == columns_first  # today: "postgres://b" vs "postgres://b:5432"


def test_a_dataset_dict_held_twice_is_resolved_once() -> None:
    dataset = {"namespace": "postgres://b", "name": "d.s.t"}
    event = {"eventType": "COMPLETE", "run": {"runId": RUN_ID}, "job": {"namespace": "n", "name": "j"},
             "inputs": [dataset], "outputs": [dataset]}  # fmt: skip
    shaped = shape_event(event, NamespaceResolver().resolve, 10**6)
    assert [r.original for r in shaped.resolutions] == ["postgres://b"]  # today also "postgres://b:5432"


# --- 5. transport: too large -----------------------------------------------------------------------


def _large_event() -> dict:
    event = _task_event("d", "t", tags=("alation",))
    event["inputs"] = [
        {"namespace": "postgres://db:5432", "name": f"d.s.{i:05d}" + "x" * 200} for i in range(40)
    ]
    return event


def test_held_too_large_is_dead_lettered_once_never_posted_and_logged_once(tmp_path, caplog) -> None:
    from airflow_provider_alation.outbox.store import LocalOutbox

    caplog.set_level(logging.DEBUG, logger="airflow_provider_alation")
    spool = tmp_path / "spool"
    transport = inline_transport(
        dry_run=False, url="https://127.0.0.1:9", max_event_bytes=2000, spool_dir=str(spool)
    )
    outcome = transport.emit(_large_event())
    assert outcome is not None and outcome.kind == "too_large"
    counts = LocalOutbox(spool).counts()
    assert counts == {"pending": 0, "claimed": 0, "dead": 1}
    (info,) = LocalOutbox(spool).list("dead")
    assert info.reason["problem"] == "too_large"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "t0k3n-review" not in "\n".join(r.getMessage() for r in caplog.records)


def test_too_large_in_dry_run_does_not_advise_replay_dead(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="airflow_provider_alation")
    outcome = inline_transport(max_event_bytes=2000).emit(_large_event())
    assert outcome is not None and outcome.kind == "too_large"
    (error,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "replay --dead" not in error, error


# --- 1 (end to end). A skipped task: OpenLineage emits COMPLETE, the plugin prepares nothing -------

SKIPPED_DAG = """
import pendulum
from airflow.sdk import DAG, Asset
from airflow.providers.standard.operators.python import PythonOperator

try:
    from airflow.sdk.exceptions import AirflowSkipException
except ImportError:
    from airflow.exceptions import AirflowSkipException


def skip():
    raise AirflowSkipException("nothing new today")


with DAG("review_skipped", start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), schedule=None,
         catchup=False, tags=["alation"]):
    PythonOperator(task_id="skipped", python_callable=skip,
                   inlets=[Asset("postgres://db.example.com:5432/d/s/a")],
                   outlets=[Asset("postgres://db.example.com:5432/d/s/b")])
"""


@pytest.fixture(scope="module")
def skipped_home(tmp_path_factory):
    from tests.support.airflow_home import AirflowHome

    source = tmp_path_factory.mktemp("review-dags")
    (source / "review_skipped.py").write_text(textwrap.dedent(SKIPPED_DAG))
    home = AirflowHome.create([source])
    yield home
    home.cleanup()


@pytest.mark.airflow
def test_skipped_task_event_is_not_lost_to_a_connection_read_in_the_forked_child(
    skipped_home, fake_alation, token, tmp_path: Path
) -> None:
    """OpenLineage's on_task_instance_skipped emits a COMPLETE event (inputs and outputs from the
    task's inlets/outlets) from a forked child, like on success. The plugin only listens to success,
    so that child reads the connection itself: the very read this change moved out of children.
    Under ``airflow dags test`` with the connection in the metadata database it is never answered."""
    conn_id = "alation_review_ui"
    extra = json.dumps({"verify": str(fake_alation.cert_path), "spool_dir": str(tmp_path / "spool")})
    added = skipped_home.run(
        "connections", "add", conn_id, "--conn-type", "alation", "--conn-host", fake_alation.url,
        "--conn-password", token, "--conn-extra", extra, env={},
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    env = {"AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": ALATION, "conn_id": conn_id})}
    result = skipped_home.dags_test("review_skipped", env)
    output = result.stdout + result.stderr
    assert token not in output
    assert "expired and will be terminated" not in output, output[-3000:]
