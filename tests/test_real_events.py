"""Every real OpenLineage event of ../shared/real-events through AlationTransport, table-driven.

The corpus (593 events from Spark, Airflow, dbt-ol, Flink, Debezium, Marquez and the spec's examples)
is fed in emission order, one transport per directory, configured inline as a plain
openlineage-python producer would, to the HTTPS stand-in for Alation, which rejects (400) any event
that is not valid against the OpenLineage JSON Schema. Expectations come from a plain reading of
each event's JSON (tests/support/real_events.py), never from the code under test, and the totals are
pinned in EXPECTED_COUNTS below.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_alation.alation.delivery import Outcome
from airflow_provider_alation.outbox.store import LocalOutbox
from airflow_provider_alation.testing.fake_alation import FakeAlation
from airflow_provider_alation.transport import AlationConfig, AlationTransport
from tests.support.real_events import (
    CorpusEvent,
    all_namespaces,
    by_directory,
    expected_reason,
    load_corpus,
    matched_by,
    mentions,
    namespace_mismatches,
    not_applicable,
    selected,
    transport_settings,
)
from tests.support.spec import SPEC_DIR, validate_event

CORPUS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "real-events"

if not CORPUS_DIR.is_dir():
    pytest.skip(
        f"real-events corpus not found at {CORPUS_DIR}: these tests need ../shared/real-events beside the "
        "repository",
        allow_module_level=True,
    )
if not (SPEC_DIR / "OpenLineage.json").is_file():
    pytest.skip(
        f"OpenLineage schemas not found at {SPEC_DIR}: the stand-in validates every event against them",
        allow_module_level=True,
    )

EVENTS: tuple[CorpusEvent, ...] = load_corpus(CORPUS_DIR)
DIRECTORIES: dict[str, list[CorpusEvent]] = by_directory(EVENTS)
EXPECTED_SENT: tuple[CorpusEvent, ...] = tuple(e for e in EVENTS if expected_reason(e.event) is None)

SENT = "sent"

#: Per directory: how many events Alation gets (``sent``) and why the others are dropped. Filled by
#: reading the corpus by hand (jq / python one-offs) and checked against its README:
#: - compat-CLL: application START/COMPLETE have no datasets, the CTAS runs START, RUNNING x2, then one
#:   COMPLETE with 2 inputs, 1 output and column lineage (sent); two CREATE TABLE COMPLETEs have no input;
#: - compat-airflow: 3 DAG runs (START and COMPLETE of DAG "BQ", "dag", "gcs_hook"), task STARTs, task
#:   COMPLETEs that upload/delete (only an output or only an input), 8 task COMPLETEs with both;
#: - Dataproc: one COMPLETE reads BigQuery and writes files, one inserts into a Hive table (hdfs);
#: - datahub: Flink START, Debezium RUNNING, Glue START and Databricks MERGE START are not COMPLETE (the
#:   Flink START is a streaming candidate: it now reaches the settings, and with the default
#:   stream_as_complete=false is still skipped as not_complete; with it on, 5 are sent, see
#:   tests/test_symlinks_streaming.py. Debezium's RUNNING has no input, so it never qualifies);
#: - symlink_tables (default on) changes no decision and, without a namespace_map rule or discovery
#:   for hive:// or Glue namespaces (none here), no dataset identity;
#: - dbt-local: no parent job (dbt-ol's wrapper was not run); tests read a table and write nothing
#:   (no_outputs), seeds and models without refs write without reading (no_inputs);
#: - dbt-structured: the ``dbt-run-jaffle_shop`` job and its SQL statements have no datasets (no_inputs),
#:   seeds write without reading (no_inputs), tests write ``*_dbt_test__audit`` (job_type_skipped);
#: - examples and marquez: a DatasetEvent and a JobEvent each, marquez's required-only events without
#:   eventType, and the spec's full example with ``inputs: []``.
EXPECTED_COUNTS: dict[str, dict[str, int]] = {
    "compat-CLL": {SENT: 1, "no_inputs": 3, "not_complete": 5},
    "compat-airflow": {SENT: 8, "dag_event": 3, "no_inputs": 3, "no_outputs": 2, "not_complete": 16},
    "compat-spark_dataproc_bigquery_shakespare": {
        SENT: 1,
        "no_inputs": 1,
        "no_outputs": 1,
        "not_complete": 9,
    },
    "compat-spark_dataproc_simple_producer_test_complete": {SENT: 1, "no_inputs": 6, "not_complete": 9},
    "datahub": {SENT: 4, "not_complete": 4},
    "dbt-local": {SENT: 16, "no_inputs": 15, "no_outputs": 13, "not_complete": 54},
    "dbt-structured": {SENT: 14, "job_type_skipped": 17, "no_inputs": 159, "not_complete": 210},
    "examples": {SENT: 2, "dataset_event": 1, "job_event": 1, "no_inputs": 1, "not_complete": 1},
    "marquez": {SENT: 5, "dataset_event": 1, "job_event": 1, "not_complete": 5},
}
EXPECTED_TOTAL = 593

#: Single events whose decision is worth stating on its own, with why.
PINNED: list[tuple[str, str, str]] = [
    (
        "dbt-structured/postgres-test-test_logs.jsonl:13",
        "job_type_skipped",
        "dbt data test (jobType TEST): reads customers, writes a *_dbt_test__audit table",
    ),
    ("compat-CLL/08.json:1", SENT, "Spark CTAS COMPLETE, 2 inputs, 1 output, columnLineage"),
    ("compat-CLL/05.json:1", "not_complete", "the same CTAS's START"),
    ("datahub/flink_job_test.json:1", "not_complete", "Flink streaming job: only a START"),
    ("datahub/debezium_event.json:1", "not_complete", "Debezium connector: RUNNING"),
    ("marquez/event_required_only.json:1", "not_complete", "required fields only: no eventType"),
    ("marquez/event_dataset_event.json:1", "dataset_event", "static DatasetEvent: dataset, no run/job"),
    ("marquez/event_job_event.json:1", "job_event", "JobEvent with eventType COMPLETE and datasets, no run"),
    ("examples/client_python_serde_example_job_event.json:1", "job_event", "JobEvent: job, no run"),
    ("examples/spec_example_full_event.json:1", "no_inputs", "RunEvent with a stray 'dataset' key"),
    ("compat-airflow/line_08.json:1", "dag_event", "Airflow DAG COMPLETE (jobType DAG)"),
    ("compat-airflow/line_31.json:1", SENT, "Airflow GCS compose: 4 gs:// inputs, 1 output"),
    ("compat-airflow/line_20.json:1", "no_outputs", "GCS delete: an input, nothing written"),
    ("dbt-local/test.jsonl:6", "no_outputs", "dbt-local test event: reads a table, no output"),
    ("marquez/event_large.json:1", SENT, "153 KB compact, below the default 1 MiB cap"),
]

#: Reasons the transport may give, by name (the gate's stable strings).
REASONS = {
    "not_run_event",
    "dataset_event",
    "job_event",
    "not_complete",
    "dag_event",
    "no_inputs",
    "no_outputs",
    "job_type_skipped",
    "dag_excluded",
    "dag_not_opted_in",
}

ADDITIONAL_CONNECTIONS = "Additional Datasource Connections"


# -- running the corpus -------------------------------------------------------------------------------


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def provider_logs() -> Iterator[list[logging.LogRecord]]:
    """Every record of ``airflow_provider_alation`` at DEBUG and above (what ``alation_logs`` sees;
    caplog is per test, and the corpus runs once per module)."""
    logger = logging.getLogger("airflow_provider_alation")
    handler, level = _ListHandler(), logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@dataclass
class Emitted:
    """What happened to one corpus event."""

    item: CorpusEvent
    outcome: Outcome | None = None
    raised: str | None = None
    received: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    records: list[logging.LogRecord] = field(default_factory=list)

    @property
    def decision(self) -> tuple[str, str | None]:
        """("sent", None), ("skipped", reason), or what else came back, for readable failures."""
        if self.outcome is None:
            return ("None returned", self.raised)
        if self.outcome.kind == SENT:
            return (SENT, None)
        return (self.outcome.kind, self.outcome.detail)

    def expected_decision(self) -> tuple[str, str | None]:
        reason = expected_reason(self.item.event)
        return (SENT, None) if reason is None else ("skipped", reason)


def inline_config(fake: FakeAlation, token: str, spool: Path, **overrides: Any) -> AlationConfig:
    """The transport as a plain openlineage-python producer configures it: inline settings."""
    return AlationConfig.from_dict(transport_settings(fake, token, spool, **overrides))


def feed(
    transport: AlationTransport, fake: FakeAlation, items: list[CorpusEvent], records: list[logging.LogRecord]
) -> list[Emitted]:
    """Emit ``items`` in order, noting what the stand-in received and what was logged for each."""
    results = []
    for item in items:
        seen_events, seen_requests, seen_records = len(fake.events), len(fake.requests), len(records)
        emitted = Emitted(item)
        try:
            emitted.outcome = transport.emit(item.event)
        except Exception as exc:  # noqa: BLE001 - emit must never raise; report it per event
            emitted.raised = f"{type(exc).__name__}: {exc}"
        emitted.received = list(fake.events[seen_events:])
        posts = [r for r in fake.requests[seen_requests:] if r.path == fake.endpoint]
        emitted.statuses, emitted.bodies = [r.status for r in posts], [r.body for r in posts]
        emitted.records = list(records[seen_records:])
        results.append(emitted)
    return results


@dataclass
class CorpusRun:
    by_id: dict[str, Emitted]
    records: dict[str, list[logging.LogRecord]]  # per directory
    received: dict[str, int]  # events the stand-in accepted, per directory


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorpusRun]:
    """The whole corpus, once: one stand-in, one transport per directory, events in emission order."""
    tmp = tmp_path_factory.mktemp("real-events")
    token = "alation-test-token-" + secrets.token_hex(12)
    run = CorpusRun({}, {}, {})
    with (
        FakeAlation(token, tls_dir=tmp / "tls", validator=validate_event) as fake,
        provider_logs() as records,
    ):
        for directory, items in DIRECTORIES.items():
            first_record, first_event = len(records), len(fake.events)
            transport = AlationTransport(inline_config(fake, token, tmp / directory))
            try:
                for emitted in feed(transport, fake, items, records):
                    run.by_id[emitted.item.id] = emitted
            finally:
                transport.close()
            run.records[directory] = list(records[first_record:])
            run.received[directory] = len(fake.events) - first_event
        yield run


def describe(emitted: Emitted) -> str:
    lines = [f"{emitted.item.id}: got {emitted.decision}, expected {emitted.expected_decision()}"]
    if emitted.raised:
        lines.append(f"emit raised {emitted.raised}")
    lines += [f"  {r.levelname} {r.getMessage()[:300]}" for r in emitted.records if r.levelno >= logging.INFO]
    return "\n".join(lines)


# -- 1. the table -------------------------------------------------------------------------------------


def test_corpus_is_complete_and_the_table_covers_it() -> None:
    assert len(EVENTS) == EXPECTED_TOTAL
    assert set(DIRECTORIES) == set(EXPECTED_COUNTS)
    assert len({e.id for e in EVENTS}) == len(EVENTS)
    for directory, counts in EXPECTED_COUNTS.items():
        assert sum(counts.values()) == len(DIRECTORIES[directory]), directory
        assert set(counts) <= REASONS | {SENT}, directory


@pytest.mark.parametrize("directory", sorted(EXPECTED_COUNTS))
def test_plain_reading_matches_the_pinned_counts(directory: str) -> None:
    # The helper's reading of the JSON against the hand-made table: a change of either shows here.
    counts = Counter(expected_reason(item.event) or SENT for item in DIRECTORIES[directory])
    assert dict(counts) == EXPECTED_COUNTS[directory]


@pytest.mark.parametrize("item", EVENTS, ids=lambda e: e.id)
def test_decision(corpus_run: CorpusRun, item: CorpusEvent) -> None:
    emitted = corpus_run.by_id[item.id]
    assert emitted.raised is None, describe(emitted)
    assert emitted.decision == emitted.expected_decision(), describe(emitted)
    if emitted.decision == (SENT, None):
        # 2. received once, accepted by the stand-in (which answers 400 to an event invalid per the spec)
        assert emitted.statuses == [200], describe(emitted)
        assert len(emitted.received) == 1, describe(emitted)
    else:
        assert emitted.outcome is not None and emitted.outcome.status is None, describe(emitted)
        assert emitted.statuses == [] and emitted.received == [], describe(emitted)


@pytest.mark.parametrize("directory", sorted(EXPECTED_COUNTS))
def test_counts_per_directory(corpus_run: CorpusRun, directory: str) -> None:
    got = Counter(
        SENT if d[0] == SENT else str(d[1]) if d[0] == "skipped" else f"{d[0]}:{d[1]}"
        for d in (corpus_run.by_id[item.id].decision for item in DIRECTORIES[directory])
    )
    assert dict(got) == EXPECTED_COUNTS[directory]
    assert corpus_run.received[directory] == EXPECTED_COUNTS[directory][SENT]


def test_every_request_accepted_and_totals(corpus_run: CorpusRun) -> None:
    statuses = Counter(s for emitted in corpus_run.by_id.values() for s in emitted.statuses)
    sent = sum(counts[SENT] for counts in EXPECTED_COUNTS.values())
    assert statuses == Counter({200: sent})
    assert sum(corpus_run.received.values()) == sent == len(EXPECTED_SENT)


@pytest.mark.parametrize(("event_id", "reason", "why"), PINNED, ids=[p[0] for p in PINNED])
def test_pinned_event(corpus_run: CorpusRun, event_id: str, reason: str, why: str) -> None:
    item = next(e for e in EVENTS if e.id == event_id)
    assert (expected_reason(item.event) or SENT) == reason, why
    emitted = corpus_run.by_id[event_id]
    expected = (SENT, None) if reason == SENT else ("skipped", reason)
    assert emitted.decision == expected, f"{why}\n{describe(emitted)}"


# -- 3. namespaces ----------------------------------------------------------------------------------


@pytest.mark.parametrize("item", EXPECTED_SENT, ids=lambda e: e.id)
def test_namespaces_rewritten_consistently(corpus_run: CorpusRun, item: CorpusEvent) -> None:
    emitted = corpus_run.by_id[item.id]
    assert len(emitted.received) == 1, describe(emitted)
    original, sent = item.event, emitted.received[0]
    assert namespace_mismatches(original, sent) == []
    # Not-applicable namespaces are sent exactly as emitted.
    sent_namespaces = all_namespaces(sent)
    for namespace in all_namespaces(original):
        if not_applicable(namespace):
            assert namespace in sent_namespaces, f"{namespace!r} was rewritten"


# -- 4. logs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("item", EVENTS, ids=lambda e: e.id)
def test_no_error_and_no_misleading_warning(corpus_run: CorpusRun, item: CorpusEvent) -> None:
    emitted = corpus_run.by_id[item.id]
    errors = [r.getMessage() for r in emitted.records if r.levelno >= logging.ERROR]
    assert errors == []
    inapplicable = {ns for ns in all_namespaces(item.event) if not_applicable(ns)}
    misleading = [
        r.getMessage()
        for r in emitted.records
        if r.levelno >= logging.WARNING
        and ADDITIONAL_CONNECTIONS in r.getMessage()
        and any(mentions(r.getMessage(), ns) for ns in inapplicable)
    ]
    assert misleading == []


def info_once_problems(records: list[logging.LogRecord], namespaces: set[str]) -> dict[str, list[str]]:
    """Not-applicable namespaces not named in exactly one record, at INFO (with the levels found)."""
    shown = [r for r in records if r.levelno >= logging.INFO]
    problems = {}
    for namespace in sorted(namespaces):
        levels = [r.levelname for r in shown if mentions(r.getMessage(), namespace)]
        if levels != ["INFO"]:
            problems[namespace] = levels
    return problems


def inapplicable_in(items: list[CorpusEvent]) -> set[str]:
    return {ns for item in items for ns in all_namespaces(item.event) if not_applicable(ns)}


@pytest.mark.parametrize("directory", sorted(EXPECTED_COUNTS))
def test_not_applicable_namespaces_logged_once_at_info(corpus_run: CorpusRun, directory: str) -> None:
    namespaces = inapplicable_in([e for e in DIRECTORIES[directory] if expected_reason(e.event) is None])
    # Every directory sends some: bigquery, file, gs://, hdfs://, s3://, a hive:// or file: symlink.
    assert namespaces
    assert info_once_problems(corpus_run.records[directory], namespaces) == {}


#: The events that would be sent if they were COMPLETE and no job type were skipped: streaming
#: STARTs/RUNNINGs (Flink on Kafka), Databricks on dbfs, Glue on s3, dbt tests on DuckDB, Spark
#: STARTs. Their COMPLETE twins are not in the corpus; these carry the namespaces only they have.
AS_COMPLETE: list[CorpusEvent] = [
    e
    for e in EVENTS
    if expected_reason(e.event) is not None
    and expected_reason({**e.event, "eventType": "COMPLETE"}, skip_job_types=()) is None
]


def test_namespaces_only_in_dropped_events_as_if_complete(
    fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    namespaces = inapplicable_in(AS_COMPLETE)
    assert {"kafka://kafka-prod", "dbfs", "s3://my-bucket-test", "duckdb://duckdb.db"} <= namespaces
    assert "aws:glue:us-west-2:123456789012" in namespaces  # a Glue table's symlink

    transport = AlationTransport(inline_config(fake_alation, token, tmp_path, skip_job_types=[]))
    with provider_logs() as records:
        for item in AS_COMPLETE:
            event = {**item.event, "eventType": "COMPLETE"}
            outcome = transport.emit(event)
            assert outcome is not None and outcome.kind == SENT, (item.id, outcome)
            assert namespace_mismatches(event, fake_alation.events[-1]) == [], item.id
    transport.close()

    assert [r.status for r in fake_alation.requests] == [200] * len(AS_COMPLETE)
    assert [r.getMessage() for r in records if r.levelno >= logging.ERROR] == []
    assert info_once_problems(records, namespaces) == {}


# -- 5. selection outside Airflow ----------------------------------------------------------------------

#: (pattern, which name it selects by): a dbt project's run job, a Spark application, a root job only.
SELECTIONS: list[tuple[str, str]] = [
    ("dbt-run-jaffle_shop", "parent"),  # dbt-structured: parent of model/snapshot runs, root of all
    ("open_lineage_integration_create_table", "parent"),  # compat-CLL Spark application
    ("cl_i_test_*", "parent"),  # Dataproc Spark application, by glob
    ("SimpleAppParquetDemo", "root"),  # datahub: the root job; the parent is simple_app_parquet_demo
    ("myjob.buggy_task*", "job"),  # marquez: no parent facet, the job's own (unicode) name
]

#: Events that reach DAG selection (plus dbt tests, which stay job_type_skipped whatever is selected).
SELECTION_EVENTS: list[CorpusEvent] = [
    e for e in EVENTS if expected_reason(e.event) in (None, "job_type_skipped")
]


@pytest.mark.parametrize("mode", ["include", "exclude"])
@pytest.mark.parametrize(("pattern", "via"), SELECTIONS, ids=[s[0] for s in SELECTIONS])
def test_selection_outside_airflow(
    fake_alation: FakeAlation,
    token: str,
    tmp_path: Path,
    alation_logs: pytest.LogCaptureFixture,
    pattern: str,
    via: str,
    mode: str,
) -> None:
    chosen = [e for e in SELECTION_EVENTS if expected_reason(e.event) is None and selected(e.event, pattern)]
    others = [
        e for e in SELECTION_EVENTS if expected_reason(e.event) is None and not selected(e.event, pattern)
    ]
    assert chosen and others, "the case must select some events and leave others"
    assert any(via in matched_by(e.event, pattern) for e in chosen)

    dags = {"include": [pattern]} if mode == "include" else {"include": ["*"], "exclude": [pattern]}
    transport = AlationTransport(inline_config(fake_alation, token, tmp_path, dags=dags))
    results = feed(transport, fake_alation, SELECTION_EVENTS, [])
    transport.close()

    def expected(item: CorpusEvent) -> tuple[str, str | None]:
        base = expected_reason(item.event)
        if base is not None:
            return ("skipped", base)
        if mode == "include":
            return (SENT, None) if selected(item.event, pattern) else ("skipped", "dag_not_opted_in")
        return ("skipped", "dag_excluded") if selected(item.event, pattern) else (SENT, None)

    wrong = {r.item.id: (r.decision, expected(r.item)) for r in results if r.decision != expected(r.item)}
    assert wrong == {}
    assert len(fake_alation.events) == sum(expected(e) == (SENT, None) for e in SELECTION_EVENTS)
    assert all(r.status == 200 for r in fake_alation.requests)
    assert not [r for r in alation_logs.records if r.levelno >= logging.ERROR]


# -- size cap ---------------------------------------------------------------------------------------

#: The smallest max_event_bytes the settings accept.
SMALLEST_CAP = 1024


def compact_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def without_facets(event: dict[str, Any]) -> dict[str, Any]:
    """What no trimming may remove: the envelope, the job and run ids, the datasets' names."""
    bare = json.loads(json.dumps(event))
    for key in ("run", "job"):
        bare[key].pop("facets", None)
    for key in ("inputs", "outputs"):
        for dataset in bare.get(key) or ():
            for facets in ("facets", "inputFacets", "outputFacets"):
                dataset.pop(facets, None)
    return bare


def test_every_sendable_event_trimmed_to_the_smallest_cap_is_still_valid(
    fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    # No real event is above 1 KiB once its facets are gone (the largest, dbt-local/large.jsonl:10, a
    # Snowflake model with four datasets, is ~740 bytes, ~860 with its namespaces resolved), so at the
    # smallest cap every one is trimmed and sent, never dead-lettered: no corpus event fits the
    # "still above the cap" case. The stand-in checks the trimmed events against the spec.
    assert all(compact_size(without_facets(e.event)) < SMALLEST_CAP for e in EXPECTED_SENT)
    trimmed = [e for e in EXPECTED_SENT if compact_size(e.event) > SMALLEST_CAP]
    assert trimmed, "the case must make the transport trim"

    config = inline_config(fake_alation, token, tmp_path, max_event_bytes=SMALLEST_CAP)
    transport = AlationTransport(config)
    results = feed(transport, fake_alation, list(EXPECTED_SENT), [])
    transport.close()

    not_sent = {r.item.id: r.decision for r in results if r.decision != (SENT, None) or r.statuses != [200]}
    assert not_sent == {}
    for emitted in results:
        assert len(emitted.bodies[0]) <= SMALLEST_CAP, emitted.item.id
        original, sent = emitted.item.event, emitted.received[0]
        assert sent["run"]["runId"] == original["run"]["runId"]
        assert sent["job"]["name"] == original["job"]["name"]
        assert namespace_mismatches(original, sent, removed_ok=True) == [], emitted.item.id
    assert LocalOutbox(tmp_path / "spool").list("dead") == []
