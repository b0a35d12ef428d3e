from __future__ import annotations

from typing import Any

import pytest
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import job_type_job, parent_run, tags_job

from airflow_provider_alation import gate
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
    assert gate.dag_reason(tagged, none, "alation") is None
    assert gate.dag_reason(untagged, none, "alation") == gate.NOT_OPTED_IN
    assert gate.dag_reason(tagged, none, "lineage") == gate.NOT_OPTED_IN
    assert gate.dag_reason(untagged, DagSelection(include=("my_*",)), "alation") is None
    assert gate.dag_reason(untagged, DagSelection(include=("*",)), "alation") is None
    # exclude wins over the tag and over include
    assert (
        gate.dag_reason(tagged, DagSelection(include=("*",), exclude=("my_dag",)), "alation") == gate.EXCLUDED
    )


def test_dag_id_from_airflow_facet_then_job_name() -> None:
    event = {
        "job": {"name": "etl.load"},
        "run": {"facets": {"airflow": {"dag": {"dag_id": "etl", "tags": "['alation', 'x']"}}}},
    }
    assert gate.dag_id_of(event) == "etl"
    assert gate.tags_of(event) == {"alation", "x"}
    assert gate.dag_id_of({"job": {"name": "plain_job"}, "run": {}}) == "plain_job"
