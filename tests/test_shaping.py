from __future__ import annotations

from typing import Any

from airflow_provider_alation.lineage.resolution import NamespaceResolver
from airflow_provider_alation.lineage.shaping import shape_event
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


def test_the_write_ahead_body_is_reused_only_when_shaping_changes_nothing() -> None:
    """``encoded`` (the outbox entry's bytes) is the body when shaping changes nothing; any rewrite,
    dropped facet or added key makes a new one, the same as serialising the shaped event."""
    from airflow_provider_alation.lineage.shaping import encode, strip_credentials

    def as_written(e: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        strip_credentials(e)  # what the write-ahead keeps
        return e, encode(e)

    plain = event()
    del plain["run"]["facets"]["unknownSourceAttribute"]
    unmapped = NamespaceResolver.from_map({"elsewhere:1": "other:2"}).resolve
    raw, body = as_written(plain)
    kept = shape_event(raw, unmapped, 1_048_576, in_place=True, encoded=body)
    assert kept.body is body

    for change, resolve in (
        (lambda e: None, resolver()),  # namespaces rewritten
        (lambda e: e["run"]["facets"].update(debug={"x": 1}), unmapped),  # a facet always dropped
    ):
        changed = event()
        del changed["run"]["facets"]["unknownSourceAttribute"]
        change(changed)
        raw, body = as_written(changed)
        shaped = shape_event(raw, resolve, 1_048_576, in_place=True, encoded=body)
        assert shaped.body is not body and shaped.body == encode(shaped.event)
    # An entry without a namespace key gets one (null) from shaping: not the bytes it came with.
    missing = event()
    del missing["run"]["facets"]["unknownSourceAttribute"]
    del missing["inputs"][0]["facets"]["symlinks"]["identifiers"][0]["namespace"]
    body = encode(missing)
    shaped = shape_event(missing, unmapped, 1_048_576, in_place=True, encoded=body)
    assert shaped.body == encode(shaped.event) != body


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


def _facet(size: int) -> dict[str, Any]:
    return {"_producer": "p", "_schemaURL": "u", "payload": "x" * size}


def test_the_cap_removes_unread_heavy_facets_before_anything_a_catalog_shows() -> None:
    """A 12 KB Spark logical plan, source code and a custom facet go; schema, column lineage,
    symlinks and dataSource stay."""
    big = event()
    big["run"]["facets"]["spark.logicalPlan"] = _facet(12_000)
    big["run"]["facets"]["my_company_custom"] = _facet(3_000)
    schema = {
        "_producer": "p",
        "_schemaURL": "u",
        "fields": [{"name": f"c{i}", "type": "int"} for i in range(50)],
    }
    big["inputs"][0]["facets"]["schema"] = schema
    shown_only = event()
    del shown_only["job"]["facets"]["sourceCode"]
    shown_only["inputs"][0]["facets"]["schema"] = schema
    cap = len(shape_event(shown_only, resolver(), 10**9).body) + 10
    shaped = shape_event(big, resolver(), cap)
    assert shaped.trimmed == ["run.spark.logicalPlan", "job.sourceCode", "run.my_company_custom"]
    assert {"schema", "symlinks", "dataSource"} <= set(shaped.event["inputs"][0]["facets"])
    assert "columnLineage" in shaped.event["outputs"][0]["facets"]
    assert shaped.size <= cap


def test_the_shown_facets_go_last_in_their_documented_order() -> None:
    shaped = shape_event(event(), resolver(), 500)
    assert shaped.trimmed == [
        "job.sourceCode",
        "dataset.columnLineage",
        "dataset.symlinks",
        "dataset.dataSource",
        "run.processing_engine",
        "job.jobType",
    ]
    # never the datasets, the job or the run id
    assert shaped.event["inputs"][0]["name"] == "sales.public.orders"
    assert shaped.event["job"]["name"] == "dag.task" and shaped.event["run"]["runId"]


def test_an_event_above_the_cap_with_nothing_left_to_remove_says_so() -> None:
    huge = event()
    huge["inputs"] = [{"namespace": NS, "name": f"sales.public.t{i}"} for i in range(200)]
    shaped = shape_event(huge, resolver(), 2048)
    assert shaped.size > 2048  # the transport dead-letters it instead of posting it
    assert len(shaped.event["inputs"]) == 200


def test_a_symlinks_own_namespace_is_not_applicable_and_left_as_emitted() -> None:
    """Spark on Hive: the dataset is an hdfs path; its table is named in a Hive metastore symlink,
    whose host:port no Alation data source has. No 'Additional Datasource Connections' advice."""
    spark = event()
    spark["inputs"][0]["namespace"] = "hdfs://cluster-m"
    spark["inputs"][0]["facets"]["symlinks"]["identifiers"] = [
        {"namespace": "hive://cluster-m:9083", "name": "default.orders", "type": "TABLE"}
    ]
    shaped = shape_event(spark, resolver(), 1_048_576)
    identifier = shaped.event["inputs"][0]["facets"]["symlinks"]["identifiers"][0]
    assert identifier["namespace"] == "hive://cluster-m:9083"
    by_namespace = {r.original: r for r in shaped.resolutions}
    assert by_namespace["hive://cluster-m:9083"].rule == "not_applicable"
    assert by_namespace["hive://cluster-m:9083"].fix == ""
    assert by_namespace["hdfs://cluster-m"].rule == "not_applicable"
    # a symlink naming the dataset's own (mapped) namespace is rewritten with it
    assert shaped.event["outputs"][0]["namespace"] == TARGET


def test_file_like_namespaces_are_not_applicable() -> None:
    resolve = resolver()
    for namespace in ("duckdb://duckdb.db", "duckdb:///database/jaffle_shop.duckdb", "sqlite:///tmp/x.db"):
        assert resolve(namespace).rule == "not_applicable", namespace
        assert resolve(namespace).fix == ""


def test_odd_structures_are_passed_over_not_an_error() -> None:
    odd = event()
    odd["inputs"][0]["facets"]["symlinks"] = "x"
    odd["inputs"][0]["facets"]["columnLineage"] = ["not", "an", "object"]
    odd["run"]["facets"]["weird"] = "a string facet"
    odd["job"]["facets"] = ["a", "list"]
    odd["outputs"] = [None, "x", {"namespace": NS, "name": "sales.public.orders_daily"}]
    shaped = shape_event(odd, resolver(), 1024)
    assert shaped.event["inputs"][0]["namespace"] == TARGET
    assert shaped.event["outputs"][2]["namespace"] == TARGET


def test_credentials_in_any_namespace_form_are_stripped_before_anything_sees_them() -> None:
    leaky = event()
    leaky["inputs"][0]["namespace"] = "postgres://etl:pa/ss?w#rd@10.0.0.5:6432"
    leaky["inputs"][0]["facets"]["dataSource"]["uri"] = "postgres://etl:pa/ss?w#rd@10.0.0.5:6432/sales"
    leaky["outputs"][0]["namespace"] = "s3://AKIAKEY:se/cret@bucket"
    shaped = shape_event(leaky, resolver(), 1_048_576)
    assert "pa/ss" not in shaped.body.decode() and "se/cret" not in shaped.body.decode()
    assert shaped.event["inputs"][0]["namespace"] == TARGET
    assert shaped.event["inputs"][0]["facets"]["dataSource"]["uri"] == TARGET + "/sales"
    assert shaped.event["outputs"][0]["namespace"] == "s3://bucket"
    assert all("pa/ss" not in r.original and "se/cret" not in r.original for r in shaped.resolutions)


def test_an_at_sign_in_a_path_is_not_taken_for_credentials() -> None:
    from airflow_provider_alation.lineage.namespaces import redact, strip_userinfo

    assert strip_userinfo("s3://bucket/logs/2024@eu/x") == "s3://bucket/logs/2024@eu/x"
    assert strip_userinfo("postgres://user@db:5432") == "postgres://db:5432"
    assert redact("mysql://u:p#w/d@db:3306/x") == "mysql://***@db:3306/x"
