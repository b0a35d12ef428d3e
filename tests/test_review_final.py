"""Final reading of issue 17's review fixes (b21f12d, 4336857): each test reproduces a defect found
while trying to break them, and fails until it is fixed."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from openlineage.client.serde import Serde

from airflow_provider_alation.alation.datasource_store import StoredIndex, write_store
from airflow_provider_alation.alation.discovery import _MEMO, PARSER_VERSION, DiscoveryCache
from airflow_provider_alation.lineage.datasources import DataSource
from airflow_provider_alation.outbox.disk import dir_key
from airflow_provider_alation.outbox.store import LocalOutbox
from airflow_provider_alation.testing.fake_alation import FakeAlation
from airflow_provider_alation.transport import AlationConfig, AlationTransport
from tests.support.emitter import stand_in_config
from tests.test_gate import make_event

URL = "https://acme.alationcloud.com"

SOURCES = [
    DataSource(1, "zero", "", "postgresql", endpoints=(("pg-0.db.example.com", 5432),)),
    DataSource(2, "one", "", "postgresql", endpoints=(("pg-1.db.example.com", 5432),)),
]


class _FlakyConnection:
    """An open store whose listing of every data source hits a passing I/O error (EIO, a network
    file system hiccup): what ``StoredIndex._query`` now answers with None, leaving the file alone."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        if "FROM sources ORDER BY id" in sql:
            raise sqlite3.OperationalError("disk I/O error")
        return self._db.execute(sql, args)


# -- 1. a passing error while re-parsing a cache of another parser version empties it -------------------
def test_a_passing_error_re_parsing_an_older_cache_does_not_rewrite_it_as_an_empty_fresh_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """b21f12d made ``StoredIndex.sources`` answer ``()`` *without* refusing the file on a passing
    error, and made read() give up only when the store is ``broken``. A cache of another parser
    version whose listing hits such an error is then rebuilt from zero data sources and written back
    with the current parser version and the old fetched_at: every process resolves against an empty,
    fresh-looking cache until discovery_ttl runs out (the defect b21f12d fixed for a bad row, back
    through its own "not readable now" path)."""
    cache = DiscoveryCache(tmp_path, URL)
    key = dir_key(tmp_path, "cache")
    write_store(cache.path, key, URL, PARSER_VERSION - 1, SOURCES, time.time())
    connect = StoredIndex._connect
    monkeypatch.setattr(StoredIndex, "_connect", lambda self: _FlakyConnection(connect(self)))
    _MEMO.clear()
    try:
        first = cache.read()
        monkeypatch.setattr(StoredIndex, "_connect", connect)  # the I/O error has passed
        _MEMO.clear()
        again = cache.read()
        assert again is not None, "the file was refused, yet it is good"
        assert len(again[1]) == len(SOURCES), (
            f"a passing I/O error left a fresh cache of {len(again[1])} data sources in place of "
            f"{len(SOURCES)} (this process was answered from {len(first[1]) if first else None})"
        )
    finally:
        _MEMO.clear()


# -- 2. a caps check that raised keeps the previous send's "nothing waiting" --------------------------
def test_a_caps_check_that_fails_does_not_skip_the_drain_on_a_previous_sends_count(
    fake_alation: FakeAlation, token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``_waiting_seen`` is "entries waiting ... at the last caps check" and the drain is skipped only
    when "the caps check during this send saw nothing waiting". When this send's caps check raises
    (OSError listing the outbox), ``_enforce_caps`` returns without resetting it, so the count of an
    earlier send (0) skips the drain although an event is waiting in pending/."""
    spool = tmp_path / "spool"
    config = stand_in_config(fake_alation, token, tmp_path, discover_datasources=False)
    transport = AlationTransport(AlationConfig.from_dict(config))
    first = transport.emit(Serde.to_dict(make_event()))  # its caps check sees nothing waiting
    assert first is not None and first.kind == "sent"

    outbox = LocalOutbox(spool)
    waiting = Serde.to_dict(make_event())
    waiting["run"]["runId"] = str(uuid.uuid4())
    claim = outbox.put(json.dumps(waiting).encode())
    outbox.settle(claim, "retry")  # in pending/, for the next successful send to drain
    assert [entry.state for entry in outbox.list()] == ["pending"]

    def listing_fails(self: LocalOutbox) -> Any:
        raise OSError("EIO while listing the outbox")

    monkeypatch.setattr(LocalOutbox, "enforce_caps", listing_fails)
    second = transport.emit(Serde.to_dict(make_event()))
    assert second is not None and second.kind == "sent"
    runs = {event["run"]["runId"] for event in fake_alation.events}
    assert waiting["run"]["runId"] in runs, (
        "the drain was skipped on the previous send's caps check: the waiting event stays in pending/"
    )
