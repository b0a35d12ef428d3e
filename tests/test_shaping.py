from __future__ import annotations

from typing import Any

from airflow_provider_alation.resolution import NamespaceResolver
from airflow_provider_alation.shaping import shape_event
from tests.support.spec import validate_event

NS = "postgres://10.0.0.5:6432"
TARGET = "postgres://prod-db.example.com:5432"
SCHEMA = "https://openlineage.io/spec/facets/1-0-1/"


def event() -> dict[str, Any]:
    return {
        "eventType": "COMPLETE",
        "eventTime": "2024-01-01T00:00:00+00:00",
        "producer": "https://example.com/p",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {
            "runId": "01a20e9b-db9b-7a99-961f-3cdaa03368a6",
            "facets": {
                "unknownSourceAttribute": {"_producer": "p", "_schemaURL": "u", "unknownItems": [{"x": 1}]},
                "processing_engine": {"_producer": "p", "_schemaURL": "u", "name": "Airflow", "version": "3"},
            },
        },
        "job": {
            "namespace": "default",
            "name": "dag.task",
            "facets": {
                "sourceCode": {
                    "_producer": "p",
                    "_schemaURL": SCHEMA + "SourceCodeJobFacet.json#/$defs/SourceCodeJobFacet",
                    "language": "python",
                    "sourceCode": "x" * 5000,
                },
                "jobType": {
                    "_producer": "p",
                    "_schemaURL": "u",
                    "processingType": "BATCH",
                    "integration": "AIRFLOW",
                    "jobType": "TASK",
                },
            },
        },
        "inputs": [
            {
                "namespace": NS,
                "name": "sales.public.orders",
                "facets": {
                    "symlinks": {
                        "_producer": "p",
                        "_schemaURL": "u",
                        "identifiers": [{"namespace": NS, "name": "sales.public.v_orders", "type": "VIEW"}],
                    },
                    "dataSource": {"_producer": "p", "_schemaURL": "u", "name": NS, "uri": NS + "/sales"},
                },
            }
        ],
        "outputs": [
            {
                "namespace": NS,
                "name": "sales.public.orders_daily",
                "facets": {
                    "columnLineage": {
                        "_producer": "p",
                        "_schemaURL": "u",
                        "fields": {
                            "day": {
                                "inputFields": [
                                    {"namespace": NS, "name": "sales.public.orders", "field": "ordered_on"}
                                ]
                            }
                        },
                    }
                },
            }
        ],
    }


def resolver():
    return NamespaceResolver.from_map({"10.0.0.5:6432": "prod-db.example.com:5432"}).resolve


def test_namespaces_rewritten_everywhere() -> None:
    original = event()
    shaped = shape_event(original, resolver(), 1_048_576).event
    assert shaped["inputs"][0]["namespace"] == TARGET
    assert shaped["outputs"][0]["namespace"] == TARGET
    facets = shaped["inputs"][0]["facets"]
    assert facets["symlinks"]["identifiers"][0]["namespace"] == TARGET
    assert facets["dataSource"]["name"] == TARGET
    assert facets["dataSource"]["uri"] == TARGET + "/sales"
    field = shaped["outputs"][0]["facets"]["columnLineage"]["fields"]["day"]["inputFields"][0]
    assert field["namespace"] == TARGET
    assert NS not in str(shaped)
    assert original["inputs"][0]["namespace"] == NS  # the input event is not modified


def test_noise_dropped_and_shown_facets_kept() -> None:
    shaped = shape_event(event(), resolver(), 1_048_576)
    run_facets = shaped.event["run"]["facets"]
    assert "unknownSourceAttribute" not in run_facets
    assert "processing_engine" in run_facets
    assert "jobType" in shaped.event["job"]["facets"]
    assert shaped.trimmed == []


def test_size_cap_trims_optional_facets_never_datasets() -> None:
    shaped = shape_event(event(), resolver(), 2048)
    assert shaped.trimmed[0] == "job.sourceCode"
    assert shaped.size <= 2048
    assert [d["name"] for d in shaped.event["inputs"]] == ["sales.public.orders"]
    assert [d["name"] for d in shaped.event["outputs"]] == ["sales.public.orders_daily"]
    assert shaped.event["run"]["runId"] and shaped.event["job"]["name"] == "dag.task"
    assert "jobType" in shaped.event["job"]["facets"]


def test_shaped_event_is_valid_openlineage() -> None:
    shaped = shape_event(event(), resolver(), 1_048_576).event
    assert validate_event(shaped) == []


def test_body_is_the_shaped_event_serialised_once_and_in_place_skips_the_copy() -> None:
    import json

    original = event()
    shaped = shape_event(original, resolver(), 1_048_576)
    assert json.loads(shaped.body) == shaped.event and shaped.size == len(shaped.body)
    assert original["inputs"][0]["namespace"] == NS
    owned = event()
    in_place = shape_event(owned, resolver(), 1_048_576, in_place=True)
    assert in_place.event is owned and owned["inputs"][0]["namespace"] == TARGET
    assert in_place.body == shaped.body


def test_emitting_an_event_object_leaves_it_unchanged(tmp_path) -> None:
    """The transport shapes the dict Serde.to_dict made, never the caller's RunEvent."""
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.serde import Serde

    from airflow_provider_alation.transport import AlationConfig, AlationTransport

    run_event = RunEvent(
        eventType=RunState.COMPLETE,
        eventTime="2024-01-01T00:00:00Z",
        run=Run(runId="01890e1c-6a3b-7d8e-9f00-000000000001"),
        job=Job(namespace="airflow", name="dag.task"),
        producer="https://example.com/producer",
        inputs=[InputDataset(namespace=NS, name="sales.public.orders")],
        outputs=[OutputDataset(namespace=NS, name="sales.public.orders_daily")],
    )
    before = Serde.to_json(run_event)
    transport = AlationTransport(
        AlationConfig.from_dict(
            {
                "url": "http://127.0.0.1:9",
                "token": "t0ken-abcdef",
                "allow_http": True,
                "dry_run": True,
                "dags": {"include": ["*"]},
                "namespace_map": {"10.0.0.5:6432": "prod-db.example.com:5432"},
                "spool_dir": str(tmp_path / "spool"),
                "cache_dir": str(tmp_path / "cache"),
            }
        )
    )
    transport.emit(run_event)
    assert Serde.to_json(run_event) == before
