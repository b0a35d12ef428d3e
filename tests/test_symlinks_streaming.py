"""Table identity from symlinks (``symlink_tables``) and streaming jobs forwarded once per run as a
COMPLETE (``stream_as_complete``), on real corpus events (../shared/real-events) and synthetic runs,
through the transport to the HTTPS stand-in (which validates every event against the spec)."""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_alation.lineage import gate
from airflow_provider_alation.lineage.resolution import NamespaceResolver
from airflow_provider_alation.lineage.shaping import shape_event
from airflow_provider_alation.outbox.disk import create_marker, prune_markers
from airflow_provider_alation.outbox.streaming import ForwardedRuns
from airflow_provider_alation.settings import AlationSettings
from airflow_provider_alation.testing.fake_alation import FakeAlation
from airflow_provider_alation.transport import AlationConfig, AlationTransport
from tests.support.real_events import CORPUS, expected_reason, load_corpus, transport_settings
from tests.support.spec import SPEC_DIR

HAVE_CORPUS = CORPUS.is_dir() and (SPEC_DIR / "OpenLineage.json").is_file()
needs_corpus = pytest.mark.skipif(not HAVE_CORPUS, reason=f"real-events corpus or schemas missing ({CORPUS})")

DATAPROC = "compat-spark_dataproc_simple_producer_test_complete"
HIVE_METASTORE = "hive://dataproc-producer-test-m:9083"
GLUE = "aws:glue:us-west-2:123456789012"
#: The metastore's thrift port is not HiveServer2's, which an Alation Hive data source's URI holds.
RULES = {
    "dataproc-producer-test-m:9083": "hive-prod.example.com:10000",
    GLUE: "hive://glue-catalog.example.com:10000",
}


def corpus_event(event_id: str) -> dict[str, Any]:
    return next(e for e in load_corpus(CORPUS) if e.id == event_id).event


def datasets(event: dict[str, Any]) -> list[dict[str, Any]]:
    return list(event.get("inputs") or []) + list(event.get("outputs") or [])


def identity(event: dict[str, Any]) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in datasets(event)]


def transport(fake: FakeAlation, token: str, tmp: Path, **overrides: Any) -> AlationTransport:
    return AlationTransport(AlationConfig.from_dict(transport_settings(fake, token, tmp, **overrides)))


# -- 1. table identity from symlinks: pure shaping ------------------------------------------------------


@needs_corpus
def test_hive_tables_named_from_symlinks_with_a_rule() -> None:
    event = corpus_event(f"{DATAPROC}/14.json:1")  # INSERT INTO t2 SELECT FROM t1, column lineage
    before = copy.deepcopy(event)
    shaped = shape_event(event, NamespaceResolver.from_map(RULES).resolve, 10**6)
    sent = shaped.event
    assert identity(sent) == [
        ("hive://hive-prod.example.com:10000", "default.t1"),
        ("hive://hive-prod.example.com:10000", "default.t2"),
    ]
    # The storage path stays discoverable, as a LOCATION symlink.
    for dataset, original in zip(datasets(sent), datasets(before), strict=True):
        assert dataset["facets"]["symlinks"]["identifiers"] == [
            {"namespace": original["namespace"], "name": original["name"], "type": "LOCATION"}
        ]
    # Column lineage follows the input to its table name.
    fields = sent["outputs"][0]["facets"]["columnLineage"]["fields"]
    inputs = {(f["namespace"], f["name"]) for column in fields.values() for f in column["inputFields"]}
    assert inputs == {("hive://hive-prod.example.com:10000", "default.t1")}
    assert event == before  # shaping copies


@needs_corpus
def test_glue_table_named_with_an_exact_rule_and_the_s3_table_symlink_left_alone() -> None:
    event = corpus_event("datahub/sample_glue.json:1")
    sent = shape_event(event, NamespaceResolver.from_map(RULES).resolve, 10**6).event
    # The input's symlink is a Glue table (mapped); the output's is a warehouse path (s3): no data source.
    assert identity(sent) == [
        ("hive://glue-catalog.example.com:10000", "my_glue_database.my_glue_table"),
        ("s3://my-bucket-test", "mydata _output"),
    ]
    assert sent["inputs"][0]["facets"]["symlinks"]["identifiers"] == [
        {"namespace": "s3://my-bucket-test", "name": "/sample_data/input_data.parquet", "type": "LOCATION"}
    ]
    assert sent["outputs"][0]["facets"]["symlinks"] == event["outputs"][0]["facets"]["symlinks"]


@needs_corpus
@pytest.mark.parametrize(
    ("rules", "declared", "symlink_tables"),
    [({}, (), True), (RULES, (), False)],
    ids=["no rule: the metastore is not a known data source", "symlink_tables off"],
)
def test_paths_kept_without_a_data_source_or_with_the_setting_off(
    rules: dict[str, str], declared: tuple[str, ...], symlink_tables: bool
) -> None:
    event = corpus_event(f"{DATAPROC}/14.json:1")
    resolver = NamespaceResolver.from_map(rules, declared=declared)
    sent = shape_event(event, resolver.resolve, 10**6, symlink_tables=symlink_tables).event
    assert identity(sent) == identity(event)
    assert json.dumps(sent["outputs"][0]["facets"]["columnLineage"]) == json.dumps(
        event["outputs"][0]["facets"]["columnLineage"]
    )


@needs_corpus
def test_a_declared_datasource_connection_counts_as_catalogued() -> None:
    event = corpus_event(f"{DATAPROC}/14.json:1")
    resolver = NamespaceResolver.from_map({}, declared=["dataproc-producer-test-m:9083"])
    sent = shape_event(event, resolver.resolve, 10**6).event
    assert identity(sent) == [(HIVE_METASTORE, "default.t1"), (HIVE_METASTORE, "default.t2")]


@needs_corpus
def test_shaping_twice_changes_nothing() -> None:
    resolve = NamespaceResolver.from_map(RULES).resolve
    once = shape_event(corpus_event(f"{DATAPROC}/14.json:1"), resolve, 10**6).event
    assert shape_event(once, resolve, 10**6).event == once


def test_glue_rule_must_name_a_full_namespace() -> None:
    with pytest.raises(ValueError, match="must be a full namespace"):
        AlationSettings(url="https://x.example.com", token="t", namespace_map={GLUE: "host:10000"})


# -- 1b. through the transport, on the corpus ---------------------------------------------------------


def _as_complete(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**e, "eventType": "COMPLETE"} for e in items]


@needs_corpus
@pytest.mark.parametrize("symlink_tables", [True, False])
def test_transport_sends_table_names_for_the_dataproc_run(
    fake_alation: FakeAlation, token: str, tmp_path: Path, symlink_tables: bool
) -> None:
    items = [e.event for e in load_corpus(CORPUS) if e.directory == DATAPROC]
    t = transport(
        fake_alation, token, tmp_path, namespace_map=RULES, symlink_tables=symlink_tables, skip_job_types=[]
    )
    outcomes = [t.emit(event) for event in items]
    t.close()
    # Decisions are the same as without the feature: one Hive INSERT ... SELECT COMPLETE is sent.
    assert [o.kind for o in outcomes if o is not None].count("sent") == 1
    assert [r.status for r in fake_alation.requests] == [200]
    (sent,) = fake_alation.events
    names = {name for _, name in identity(sent)}
    assert names == (
        {"default.t1", "default.t2"}
        if symlink_tables
        else {"/user/hive/warehouse/t1", "/user/hive/warehouse/t2"}
    )


@needs_corpus
def test_corpus_figures_identity_changes_with_rules() -> None:
    """How many corpus events get table names, as if each were COMPLETE (their COMPLETE twins are not
    all in the corpus): the Dataproc Hive inserts and CTAS, and the Glue input. Databricks' symlink
    is a ``dbfs:`` path and the Glue output's an ``s3://`` warehouse: not data sources, unchanged."""
    resolve = NamespaceResolver.from_map(RULES).resolve
    changed: Counter[str] = Counter()
    for item in load_corpus(CORPUS):
        event = item.event
        if expected_reason({**event, "eventType": "COMPLETE"}, skip_job_types=()) is not None:
            continue
        names = [name for _, name in identity(shape_event(event, resolve, 10**6).event)]
        if names != [name for _, name in identity(event)]:  # namespaces change by normalisers too
            changed[item.directory] += 1
    # Dataproc: the 4 events of the t1 -> t2 insert (START, RUNNING x2, COMPLETE) have inputs and outputs.
    assert dict(changed) == {DATAPROC: 4, "datahub": 1}


# -- 2. streaming jobs ---------------------------------------------------------------------------------


def streaming_event(
    state: str, run_id: str, *, processing: str = "STREAMING", inputs: int = 1
) -> dict[str, Any]:
    return {
        "eventType": state,
        "eventTime": "2025-01-01T00:00:00Z",
        "producer": "https://github.com/OpenLineage/OpenLineage/tree/1.35.0/integration/flink",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": run_id},
        "job": {
            "namespace": "flink-jobs",
            "name": "orders-enrichment",
            "facets": {
                "jobType": {
                    "_producer": "https://github.com/OpenLineage/OpenLineage/tree/1.35.0/integration/flink",
                    "_schemaURL": "https://openlineage.io/spec/facets/2-0-3/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
                    "processingType": processing,
                    "integration": "FLINK",
                    "jobType": "JOB",
                }
            },
        },
        "inputs": [{"namespace": "kafka://kafka-prod:9092", "name": f"orders{i}"} for i in range(inputs)],
        "outputs": [{"namespace": "postgres://db.example.com:5432", "name": "shop.public.orders"}],
    }


def test_gate_lets_only_streaming_candidates_through() -> None:
    run = str(uuid.uuid4())
    assert gate.lineage_reason(streaming_event("START", run)) is None
    assert gate.lineage_reason(streaming_event("RUNNING", run)) is None
    assert gate.lineage_reason(streaming_event("FAIL", run)) == gate.NOT_COMPLETE
    assert gate.lineage_reason(streaming_event("START", run, processing="BATCH")) == gate.NOT_COMPLETE
    assert gate.lineage_reason(streaming_event("START", run, inputs=0)) == gate.NOT_COMPLETE
    no_processing = streaming_event("START", run)
    del no_processing["job"]["facets"]["jobType"]["processingType"]
    assert gate.lineage_reason(no_processing) is None  # Flink without a processingType


def _sent_runs(fake: FakeAlation) -> Counter[tuple[str, str]]:
    return Counter((e["eventType"], e["run"]["runId"]) for e in fake.events)


@needs_corpus
def test_flink_and_debezium_corpus_events_with_the_setting_on(
    fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    flink, debezium = (
        corpus_event("datahub/flink_job_test.json:1"),
        corpus_event("datahub/debezium_event.json:1"),
    )
    t = transport(fake_alation, token, tmp_path, stream_as_complete=True)
    first = t.emit(flink)
    again = t.emit(copy.deepcopy(flink))  # the same run emits again (RUNNING, checkpoints)
    dbz = t.emit(debezium)
    t.close()
    assert first is not None and first.kind == "sent"
    assert again is not None and (again.kind, again.detail) == ("skipped", gate.NOT_COMPLETE)
    # Debezium's RUNNING names only its Kafka topic (no input): nothing Alation can draw.
    assert dbz is not None and (dbz.kind, dbz.detail) == ("skipped", gate.NOT_COMPLETE)
    assert _sent_runs(fake_alation) == Counter({("COMPLETE", flink["run"]["runId"]): 1})
    (sent,) = fake_alation.events
    assert sent["eventTime"] == flink["eventTime"] and sent["job"] == flink["job"]
    assert [r.status for r in fake_alation.requests] == [200]


@needs_corpus
def test_corpus_counts_with_stream_as_complete(fake_alation: FakeAlation, token: str, tmp_path: Path) -> None:
    """The datahub directory with the setting on: the Flink START is sent as a COMPLETE, so Alation
    gets 5 events instead of 4 (tests/test_real_events.py pins 4 with the default, off)."""
    items = [e for e in load_corpus(CORPUS) if e.directory == "datahub"]
    t = transport(fake_alation, token, tmp_path, stream_as_complete=True)
    decisions = Counter()
    for item in items:
        outcome = t.emit(item.event)
        assert outcome is not None
        decisions["sent" if outcome.kind == "sent" else str(outcome.detail)] += 1
    t.close()
    assert dict(decisions) == {"sent": 5, "not_complete": 3}


def test_synthetic_streaming_run_sent_once(fake_alation: FakeAlation, token: str, tmp_path: Path) -> None:
    runs = [str(uuid.uuid4()), str(uuid.uuid4())]
    t = transport(fake_alation, token, tmp_path, stream_as_complete=True)
    for run in runs:
        for state in ("START", "RUNNING", "RUNNING"):
            t.emit(streaming_event(state, run))
    t.close()
    assert _sent_runs(fake_alation) == Counter({("COMPLETE", run): 1 for run in runs})


def test_two_transports_sharing_cache_dir_send_a_run_once(
    fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    run = str(uuid.uuid4())
    first, second = (transport(fake_alation, token, tmp_path, stream_as_complete=True) for _ in range(2))
    for state in ("START", "RUNNING", "RUNNING"):
        first.emit(streaming_event(state, run))
        second.emit(streaming_event(state, run))
    first.close()
    second.close()
    assert _sent_runs(fake_alation) == Counter({("COMPLETE", run): 1})


def _emit_in_child(config: dict[str, Any], run: str, go: Any) -> None:
    go.wait(10)
    t = AlationTransport(AlationConfig.from_dict(config))
    for state in ("START", "RUNNING", "RUNNING"):
        t.emit(streaming_event(state, run))
    t.close()
    os._exit(0)


def test_processes_racing_send_a_run_once(fake_alation: FakeAlation, token: str, tmp_path: Path) -> None:
    run = str(uuid.uuid4())
    config = transport_settings(fake_alation, token, tmp_path, stream_as_complete=True)
    context = multiprocessing.get_context("fork")
    go = context.Event()
    children = [context.Process(target=_emit_in_child, args=(config, run, go)) for _ in range(3)]
    for child in children:
        child.start()
    go.set()
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    assert _sent_runs(fake_alation) == Counter({("COMPLETE", run): 1})


def test_setting_off_sends_nothing(fake_alation: FakeAlation, token: str, tmp_path: Path) -> None:
    t = transport(fake_alation, token, tmp_path)
    outcomes = [t.emit(streaming_event(state, str(uuid.uuid4()))) for state in ("START", "RUNNING")]
    t.close()
    assert [(o.kind, o.detail) for o in outcomes if o is not None] == [("skipped", gate.NOT_COMPLETE)] * 2
    assert fake_alation.requests == []
    assert not (tmp_path / "cache" / "streaming").exists()


def test_a_batch_start_still_reads_no_settings(fake_alation: FakeAlation, token: str, tmp_path: Path) -> None:
    broken = transport(fake_alation, token, tmp_path, url="not a url", stream_as_complete=True)
    calls: list[bool] = []
    original = broken.settings
    broken.settings = lambda report=True: calls.append(report) or original(report)  # type: ignore[method-assign]
    outcome = broken.emit(streaming_event("START", str(uuid.uuid4()), processing="BATCH"))
    assert outcome is not None and (outcome.kind, outcome.detail) == ("skipped", gate.NOT_COMPLETE)
    assert calls == []
    broken.emit(streaming_event("START", str(uuid.uuid4())))  # a streaming candidate does read them
    assert calls == [True]
    assert fake_alation.requests == []


# -- markers ---------------------------------------------------------------------------------------


def test_markers_are_exclusive_and_bounded(tmp_path: Path) -> None:
    folder = tmp_path / "streaming"
    runs = ForwardedRuns(folder, scope="https://a.example.com")
    assert runs.first("r1") and not runs.first("r1")
    assert ForwardedRuns(folder, scope="https://b.example.com").first("r1")  # another tenant
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    for i in range(5):
        assert create_marker(folder / f"m{i}")
        os.utime(folder / f"m{i}", (time.time() - 100 + i, time.time() - 100 + i))
    assert prune_markers(folder, max_age=97.5, keep=1000, now=time.time()) == 3  # m0..m2 expired
    assert prune_markers(folder, max_age=10**6, keep=2, now=time.time()) == 2  # the oldest beyond 2
    assert len(list(folder.iterdir())) == 2
