from __future__ import annotations

from typing import Any

import pytest
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import job_type_job, parent_run, tags_job

from airflow_provider_alation.lineage import gate
from airflow_provider_alation.settings import DagSelection

RUN_ID = "01a20e9b-db9b-7a99-961f-3cdaa03368a6"


def make_event(
    state: RunState = RunState.COMPLETE,
    inputs: int = 1,
    outputs: int = 1,
    tags: tuple[str, ...] = ("alation",),
    job_name: str = "my_dag.my_task",
    job_type: str = "TASK",
) -> RunEvent:
    facets: dict[str, Any] = {
        "jobType": job_type_job.JobTypeJobFacet(
            processingType="BATCH", integration="AIRFLOW", jobType=job_type
        )
    }
    if tags:
        facets["tags"] = tags_job.TagsJobFacet(
            tags=[tags_job.TagsJobFacetFields(key=t, value=t, source="AIRFLOW") for t in tags]
        )
    return RunEvent(
        eventType=state,
        eventTime="2024-01-01T00:00:00+00:00",
        run=Run(
            runId=RUN_ID,
            facets={
                "parent": parent_run.ParentRunFacet(
                    run=parent_run.Run(runId=RUN_ID), job=parent_run.Job(namespace="default", name="my_dag")
                )
            },
        ),
        job=Job(namespace="default", name=job_name, facets=facets),
        producer="https://example.com/producer",
        inputs=[InputDataset("postgres://db:5432", f"db.s.in{i}") for i in range(inputs)],
        outputs=[OutputDataset("postgres://db:5432", f"db.s.out{i}") for i in range(outputs)],
    )


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (make_event(), None),
        (make_event(RunState.START), gate.NOT_COMPLETE),
        (make_event(RunState.RUNNING), gate.NOT_COMPLETE),
        (make_event(RunState.FAIL), gate.NOT_COMPLETE),
        (make_event(RunState.ABORT), gate.NOT_COMPLETE),
        (make_event(inputs=0), gate.NO_INPUTS),
        (make_event(outputs=0), gate.NO_OUTPUTS),
        (make_event(job_type="DAG", job_name="my_dag"), gate.DAG_EVENT),
    ],
)
def test_lineage_reason(event: RunEvent, reason: str | None) -> None:
    assert gate.lineage_reason(event) == reason


def test_lineage_reason_reads_dicts_too() -> None:
    from openlineage.client.serde import Serde

    assert gate.lineage_reason(Serde.to_dict(make_event())) is None
    assert gate.lineage_reason(Serde.to_dict(make_event(RunState.START))) == gate.NOT_COMPLETE
    assert gate.lineage_reason({"eventType": "COMPLETE"}) == gate.NOT_RUN_EVENT


def test_dag_opt_in_by_tag_include_and_exclude() -> None:
    tagged, untagged = make_event(), make_event(tags=())
    none = DagSelection()
    assert gate.selection_reason(tagged, none, "alation") is None
    assert gate.selection_reason(untagged, none, "alation") == gate.NOT_OPTED_IN
    assert gate.selection_reason(tagged, none, "lineage") == gate.NOT_OPTED_IN
    assert gate.selection_reason(untagged, DagSelection(include=("my_*",)), "alation") is None
    assert gate.selection_reason(untagged, DagSelection(include=("*",)), "alation") is None
    # exclude wins over the tag and over include
    assert (
        gate.selection_reason(tagged, DagSelection(include=("*",), exclude=("my_dag",)), "alation")
        == gate.EXCLUDED
    )


def test_dag_id_from_airflow_facet_then_job_name() -> None:
    event = {
        "job": {"name": "etl.load"},
        "run": {"facets": {"airflow": {"dag": {"dag_id": "etl", "tags": "['alation', 'x']"}}}},
    }
    assert gate.dag_id_of(event) == "etl"
    assert gate.tags_of(event) == {"alation", "x"}
    assert gate.dag_id_of({"job": {"name": "plain_job"}, "run": {}}) == "plain_job"


def _child(job: str = "etl.load.query.1", parent: str = "etl.load", root: str | None = "etl") -> dict:
    """A per-query event as the OpenLineage provider emits for SQL run through a hook: no tags,
    no airflow facet; the task is the parent, the DAG the root."""
    meta = {"_producer": "https://example.com/producer", "_schemaURL": "https://example.com/facet"}
    facet: dict[str, Any] = {
        **meta,
        "run": {"runId": RUN_ID},
        "job": {"namespace": "default", "name": parent},
    }
    if root is not None:
        facet["root"] = {"run": {"runId": RUN_ID}, "job": {"namespace": "default", "name": root}}
    return {
        "eventType": "COMPLETE",
        "eventTime": "2024-01-01T00:00:00+00:00",
        "producer": "https://example.com/producer",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": RUN_ID, "facets": {"parent": facet}},
        "job": {
            "namespace": "default",
            "name": job,
            "facets": {
                "jobType": {**meta, "jobType": "QUERY", "integration": "AIRFLOW", "processingType": "BATCH"}
            },
        },
        "inputs": [{"namespace": "postgres://db:5432", "name": "db.s.a"}],
        "outputs": [{"namespace": "postgres://db:5432", "name": "db.s.b"}],
    }


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        (("etl",), (), None),  # the DAG is the root
        (("etl.load",), (), None),  # the task is the parent
        (("etl.load.query.*",), (), None),  # the job itself
        (("other",), (), gate.NOT_OPTED_IN),
        (("*",), ("etl",), gate.EXCLUDED),  # excluding the DAG excludes its per-query jobs
        (("*",), ("etl.load",), gate.EXCLUDED),
        (("etl",), ("*.query.2",), None),
    ],
)
def test_patterns_match_the_job_its_parent_and_its_root(include, exclude, expected) -> None:
    selection = DagSelection(include=include, exclude=exclude)
    assert gate.selection_reason(_child(), selection, "alation") == expected


def test_outside_airflow_a_parent_name_selects_all_its_jobs() -> None:
    dbt_model = _child(job="jaffle.model.orders", parent="dbt-run-jaffle", root=None)
    assert gate.selection_reason(dbt_model, DagSelection(include=("dbt-run-*",)), "alation") is None
    assert gate.selection_reason(dbt_model, DagSelection(exclude=("dbt-run-jaffle",)), "x") == gate.EXCLUDED
    assert gate.dag_id_of(dbt_model) == "dbt-run-jaffle"


def test_untagged_child_is_opted_in_by_its_dags_tags_from_the_task_context() -> None:
    none = DagSelection()
    task = ("etl", "load", frozenset({"alation"}))
    assert gate.selection_reason(_child(), none, "alation") == gate.NOT_OPTED_IN
    assert gate.selection_reason(_child(), none, "alation", task=task) is None
    # exclude still wins
    assert (
        gate.selection_reason(_child(), DagSelection(exclude=("etl",)), "alation", task=task) == gate.EXCLUDED
    )
    # another task's process says nothing about this event
    assert gate.selection_reason(_child(), none, "alation", task=("etl", "other", {"alation"})) == (
        gate.NOT_OPTED_IN
    )


def test_a_dag_triggered_by_another_is_selected_by_its_own_id_and_tags() -> None:
    """TriggerDagRunOperator puts the triggering DAG into the run's conf, so the triggered DAG's
    events name it as root: patterns on the triggering DAG must not select or exclude them."""
    child = _child(job="child.load.query.1", parent="child.load", root="upstream")
    task = ("child", "load", frozenset({"alation"}))
    assert gate.selection_reason(child, DagSelection(), "alation", task=task) is None
    assert gate.selection_reason(child, DagSelection(exclude=("upstream",)), "alation", task=task) is None
    untagged = ("child", "load", frozenset())
    assert gate.selection_reason(child, DagSelection(include=("upstream",)), "a", task=untagged) == (
        gate.NOT_OPTED_IN
    )
    assert gate.selection_reason(child, DagSelection(include=("child",)), "a", task=untagged) is None
    # a task event: its airflow facet names its DAG
    task_event = _child(job="child.load", parent="child", root="upstream")
    task_event["run"]["facets"]["airflow"] = {"dag": {"dag_id": "child", "tags": "['alation']"}}
    assert gate.selection_reason(task_event, DagSelection(exclude=("upstream",)), "alation") is None


def test_a_dag_id_pattern_does_not_match_task_names() -> None:
    event = _child(job="etl.load_test", parent="etl", root="etl")
    event["run"]["facets"]["airflow"] = {"dag": {"dag_id": "etl", "tags": "['alation']"}}
    assert gate.selection_reason(event, DagSelection(exclude=("*_test",)), "alation") is None
    assert gate.selection_reason(event, DagSelection(include=("*_test",)), "other") == gate.NOT_OPTED_IN


@pytest.mark.parametrize(
    ("job_type", "skip", "expected"),
    [
        ("TEST", ("TEST",), gate.JOB_TYPE_SKIPPED),
        ("test", ("TEST",), gate.JOB_TYPE_SKIPPED),
        ("MODEL", ("TEST",), None),
        ("TEST", (), None),
    ],
)
def test_job_types_skipped(job_type, skip, expected) -> None:
    event = _child()
    event["job"]["facets"]["jobType"]["jobType"] = job_type
    assert gate.selection_reason(event, DagSelection(include=("*",)), "alation", skip) == expected


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"eventTime": "t", "dataset": {"namespace": "n", "name": "d"}}, gate.DATASET_EVENT),
        ({"eventTime": "t", "job": {"namespace": "n", "name": "j"}}, gate.JOB_EVENT),
        ({"eventTime": "t"}, gate.NOT_RUN_EVENT),
        ({"eventType": "COMPLETE", "run": {"runId": RUN_ID}}, gate.NOT_RUN_EVENT),
    ],
)
def test_static_lineage_is_dropped_with_its_own_reason(event, reason) -> None:
    assert gate.lineage_reason(event) == reason


def test_pathological_tags_cost_little() -> None:
    event = {
        "job": {"name": "j"},
        "run": {"facets": {"airflow": {"dag": {"tags": "[" + "'a'," * 2_000_000}}}},
    }
    assert gate.tags_of(event) == set()  # too long to parse: not read, never an error
    weird = {"job": {"facets": {"tags": {"tags": "x"}, "jobType": ["TEST"]}}, "run": {"facets": []}}
    assert gate.tags_of(weird) == set()
    assert gate.job_type(weird) == ""
