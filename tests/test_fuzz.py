"""Property-based fuzzing of the transport's promises over events and settings (Hypothesis).

Whatever the event: ``emit`` never raises, returns within ``time_budget`` plus a small margin, never
loses an event that passed the gate (it is received by the stand-in, or waiting in the outbox, or
in the dead letters with a reason) and never writes or logs the token. Whatever the settings:
validation fails only with a :class:`SettingsError` that names fields and never holds the token.

CI runs the ``ci`` profile; ``HYPOTHESIS_PROFILE=long`` runs many more examples locally.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_event
from hypothesis import strategies as st

from airflow_provider_alation.lineage import gate
from airflow_provider_alation.outbox.store import LocalOutbox
from airflow_provider_alation.settings import EXTRA_KEYS, SettingsError, build_settings
from airflow_provider_alation.testing.fake_alation import FakeAlation
from airflow_provider_alation.transport import AlationConfig, AlationTransport
from tests.support.spec import validate_event

settings.register_profile("ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "long", max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

TOKEN = "fuzz-token-" + uuid.uuid4().hex
TIME_BUDGET = 2.0
MARGIN = 1.0

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
namespaces = st.one_of(
    st.sampled_from(
        [
            "postgres://10.0.0.5:5432",
            "postgres://user:pa/ss@db.internal:5432",
            "s3://key:secret@bucket",
            "snowflake://org-acct",
            "bigquery",
            "duckdb://duckdb.db",
            "hive://metastore:9083",
            "file:/tmp/x",
            "mysql://[::1]:3306",
        ]
    ),
    st.text(max_size=40),
)
META = {"_producer": "https://example.com/fuzz", "_schemaURL": "https://example.com/fuzz#/$defs/F"}
#: Mostly well-formed facets (an object with _producer/_schemaURL and any fields), sometimes anything.
facet_values = st.one_of(
    st.dictionaries(st.text(max_size=8), json_values, max_size=3).map(lambda d: {**d, **META}),
    st.dictionaries(st.text(max_size=8), json_values, max_size=3).map(
        lambda d: {**d, **META, "payload": "x" * 3000}
    ),
)
odd_facet_values = facet_values | json_values


@st.composite
def facet_maps(draw: st.DrawFn) -> dict[str, Any]:
    values = odd_facet_values if draw(st.booleans()) and draw(st.booleans()) else facet_values
    return draw(st.dictionaries(facet_names, values, max_size=4))


facet_names = (
    st.sampled_from(["spark.logicalPlan", "custom", "my_facet", "environment-properties"])
    | st.sampled_from(["schema", "symlinks", "columnLineage", "dataSource", "sql", "tags"])
    | st.text(max_size=10)
)


@st.composite
def datasets(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)  # not even a dict
    dataset: dict[str, Any] = {"namespace": draw(namespaces), "name": draw(st.text(max_size=30))}
    if draw(st.booleans()):
        dataset["facets"] = draw(facet_maps())
    if draw(st.booleans()):
        namespace = draw(namespaces)
        dataset.setdefault("facets", {})["symlinks"] = {
            **META,
            "identifiers": [{"namespace": namespace, "name": "t", "type": "TABLE"}],
        }
    return dataset


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {
        # mostly COMPLETE (Hypothesis leans to False, the value it shrinks to)
        "eventType": draw(st.sampled_from(["START", "complete", "json"]))
        if draw(st.booleans()) and draw(st.booleans())
        else "COMPLETE",
        "eventTime": "2024-01-01T00:00:00+00:00",
        "producer": "https://example.com/fuzz",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": str(uuid.uuid4()), "facets": draw(facet_maps())},
        "job": {"namespace": "fuzz", "name": draw(st.text(max_size=60)), "facets": draw(facet_maps())},
        "inputs": draw(
            st.lists(datasets(), min_size=0 if draw(st.booleans()) and draw(st.booleans()) else 1, max_size=4)
        ),
        "outputs": draw(
            st.lists(datasets(), min_size=0 if draw(st.booleans()) and draw(st.booleans()) else 1, max_size=4)
        ),
    }
    if event["eventType"] == "json":
        event["eventType"] = draw(json_values)
    if draw(st.integers(0, 9)) == 0:  # odd containers where objects are expected
        where = draw(st.sampled_from(["run.facets", "job.facets", "inputs", "outputs", "job"]))
        head, _, tail = where.partition(".")
        value = draw(json_values)
        if tail:
            event[head][tail] = value
        else:
            event[head] = value
    return event


@pytest.fixture(scope="module")
def stand_in() -> Iterator[FakeAlation]:
    with (
        tempfile.TemporaryDirectory() as tls,
        FakeAlation(TOKEN, tls_dir=tls, validator=validate_event) as fake,
    ):
        yield fake


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage() + (self.format(record) if record.exc_info else ""))


@pytest.fixture(scope="module")
def records() -> Iterator[_Records]:
    handler = _Records()
    logger = logging.getLogger("airflow_provider_alation")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def _where(run_id: str, spool: Path, fake: FakeAlation) -> list[str]:
    """Every place the event with this runId is: received, or an outbox state."""
    places = [
        "received" for e in fake.events if isinstance(e.get("run"), dict) and e["run"].get("runId") == run_id
    ]
    for state in ("pending", "claimed", "dead"):
        for path in (spool / state).glob("*.json"):
            if not path.name.endswith(".reason.json") and run_id.encode() in path.read_bytes():
                places.append(state)
    assert len(LocalOutbox(str(spool)).list()) == len(places) - places.count("received")
    return places


@given(event=events())
def test_emit_keeps_its_promises_whatever_the_event(stand_in: FakeAlation, records: _Records, event) -> None:
    spool = Path(tempfile.mkdtemp(prefix="fuzz-spool-"))
    transport = AlationTransport(
        AlationConfig.from_dict(
            {
                "url": stand_in.url,
                "token": TOKEN,
                "verify": str(stand_in.cert_path),
                "spool_dir": str(spool),
                "time_budget": TIME_BUDGET,
                "timeout": 1,
                "dags": {"include": ["*"]},
                "skip_job_types": [],
                "max_event_bytes": 2048,
            }
        )
    )
    run_id = event["run"]["runId"] if isinstance(event.get("run"), dict) else None
    started = time.monotonic()
    outcome = transport.emit(event)  # never raises: an exception fails the example
    assert time.monotonic() - started < TIME_BUDGET + MARGIN
    assert outcome is not None
    note_event(f"{outcome.kind} {outcome.detail if outcome.kind == 'skipped' else ''}".strip())
    if outcome.kind == "skipped":
        assert outcome.detail in gate.LINEAGE_REASONS + gate.SELECTION_REASONS
        assert run_id is None or _where(run_id, spool, stand_in) == []
    else:  # passed the gate: delivered, or kept where a replay finds it
        assert run_id is not None
        places = _where(run_id, spool, stand_in)
        expected = {"sent": ["received"], "rejected": ["dead"], "retry": ["pending", "claimed"]}
        assert len(places) == 1 and places[0] in expected.get(outcome.kind, ["dead"]), (outcome, places)
    assert not any(TOKEN in m for m in records.messages)
    for path in spool.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


extra_values = st.fixed_dictionaries(
    {},
    optional={key: json_values | st.text(max_size=30) for key in EXTRA_KEYS},
)


@given(extra=extra_values, host=st.text(max_size=40) | st.just("https://acme.alationcloud.com"))
def test_any_settings_give_settings_or_one_clear_error(extra, host) -> None:
    values = {"url": host, "token": TOKEN, **extra}
    try:
        build_settings(values, "the transport configuration", inline=True)
    except SettingsError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        assert TOKEN not in str(exc)
        assert all(":" in p for p in exc.problems)  # each names its field
    # never another exception type: one would fail this example


@given(extra=extra_values)
@settings(max_examples=60)
def test_emit_never_raises_whatever_the_settings(records: _Records, extra) -> None:
    config = {"url": "https://127.0.0.1:9", "token": TOKEN, "time_budget": 1, "timeout": 0.5, **extra}
    # never let a fuzzed path make the outbox or cache write somewhere real
    config["spool_dir"] = tempfile.mkdtemp(prefix="fuzz-spool-")
    config["cache_dir"] = tempfile.mkdtemp(prefix="fuzz-cache-")
    transport = AlationTransport(AlationConfig.from_dict(json.loads(json.dumps(config, default=str))))
    event = {
        "eventType": "COMPLETE",
        "eventTime": "2024-01-01T00:00:00+00:00",
        "producer": "p",
        "schemaURL": "s",
        "run": {"runId": str(uuid.uuid4())},
        "job": {"namespace": "n", "name": "j"},
        "inputs": [{"namespace": "postgres://h:5432", "name": "a"}],
        "outputs": [{"namespace": "postgres://h:5432", "name": "b"}],
    }
    started = time.monotonic()
    transport.emit(event)
    assert time.monotonic() - started < 60  # a budget from the settings; never unbounded
    assert not any(TOKEN in m for m in records.messages)
