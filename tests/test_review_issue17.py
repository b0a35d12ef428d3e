"""Second reading of issue 17 (the SQLite data-source store, the expression prefilter, the overlapped
write-ahead fsync, the drain skip): each test here reproduces a defect a reviewer found while trying
to break them; each failed before its fix."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import pytest
from openlineage.client.serde import Serde

from airflow_provider_alation.alation.datasource_store import open_store, write_store
from airflow_provider_alation.alation.discovery import _MEMO, PARSER_VERSION, DiscoveryCache
from airflow_provider_alation.lineage.datasources import DataSource, DataSourceIndex
from airflow_provider_alation.lineage.namespaces import (
    NamespaceRules,
    compile_expression,
    literal_prefix,
    parse_namespace,
)
from airflow_provider_alation.outbox.disk import dir_key
from airflow_provider_alation.outbox.store import LocalOutbox
from airflow_provider_alation.testing.catalog import synthetic_datasources
from airflow_provider_alation.testing.fake_alation import FakeAlation, Fault
from airflow_provider_alation.transport import AlationConfig, AlationTransport
from tests.support.emitter import stand_in_config
from tests.test_discovery import load, settings_for
from tests.test_gate import make_event

URL = "https://acme.alationcloud.com"

SOURCES = [
    DataSource(1, "zero", "", "postgresql", endpoints=(("pg-0.db.example.com", 5432),)),
    DataSource(2, "one", "", "postgresql", endpoints=(("pg-1.db.example.com", 5432),)),
]


# -- 1. a namespace the database cannot bind is taken for a corrupt file ------------------------------
def test_a_namespace_with_a_lone_surrogate_does_not_destroy_the_cache(tmp_path: Path) -> None:
    """Events may carry text that is not valid Unicode (``encode`` sends a lone surrogate as ``\\u``
    on purpose). The in-memory index answers nothing for such a host; the stored index hits a
    UnicodeEncodeError binding it, treats it as a row that does not verify, deletes the (good) cache
    file and stops answering for every later namespace of the process (the relay: of every event)."""
    key = dir_key(tmp_path, "test cache")
    path = tmp_path / "datasources.sqlite"
    write_store(path, key, URL, PARSER_VERSION, SOURCES, time.time())
    disk, memory = open_store(path, key, URL), DataSourceIndex.build(SOURCES)

    odd = parse_namespace("postgres://pg-1\udcff.db.example.com:5432")
    assert memory.match(odd) is None
    assert disk.match(odd) is None  # the same answer...

    good = parse_namespace("postgres://pg-0.db.example.com:5432")
    assert memory.match(good) is not None
    assert not disk.broken, f"a namespace the file cannot hold is not a corrupt file: {disk.broken}"
    assert path.exists(), "a good cache file was deleted because of an event's namespace"
    assert disk.match(good) is not None  # ...and the next namespace still resolves


# -- 2. the expression prefilter: a quantifier after a flag group applies to the character before --
@pytest.mark.parametrize(
    ("pattern", "text"),
    [("^a(?i)?b", "b"), ("^a(?s)*b", "b"), ("^a(?i)(?s){0}b", "b"), ("^ab\\Q\\E?", "a"), ("^a(?-i)?b", "b")],
)
def test_literal_prefix_drops_the_character_a_quantifier_after_zero_width_syntax_applies_to(
    pattern: str, text: str
) -> None:
    """In RE2 a flag group ``(?i)`` or an empty quote ``\\Q\\E`` is not an atom: in ``^a(?i)?b`` the
    ``?`` makes ``a`` optional, so it matches ``b``. literal_prefix stops at ``(`` (or ``\\Q``) and
    keeps ``a``: the expression is never tried on namespaces it matches."""
    assert compile_expression(pattern).search(text)
    assert text.startswith(literal_prefix(pattern)), literal_prefix(pattern)


def test_rules_never_skip_an_expression_whose_flag_group_is_quantified() -> None:
    expression = r"^postgres://x(?s)?db\.example\.com:5432$"
    assert compile_expression(expression).search("postgres://db.example.com:5432")
    rules = NamespaceRules.from_map({f"re:{expression}": "postgres://prod.example.com:5432"})
    hit = rules.apply(parse_namespace("postgres://db.example.com:5432"))
    assert hit is not None and hit.namespace == "postgres://prod.example.com:5432"


# -- 3. a cache of another parser version with a bad row becomes an empty, fresh cache ------------------
def test_a_bad_row_in_a_cache_of_another_parser_version_is_not_rewritten_as_an_empty_fresh_cache(
    tmp_path: Path,
) -> None:
    """The log says the file is removed "and Alation's data sources are read again at the next load";
    instead read() rewrites it with no data sources and the old fetched_at, so every load until
    discovery_ttl runs out finds a *fresh* cache that matches nothing."""
    cache = DiscoveryCache(tmp_path, URL)
    key = dir_key(tmp_path, "cache")
    write_store(cache.path, key, URL, PARSER_VERSION - 1, SOURCES, time.time())
    with sqlite3.connect(cache.path) as db:
        db.execute("UPDATE sources SET body = replace(body, 'pg-1.db', 'evil.db') WHERE id = 2")
    _MEMO.clear()
    try:
        cache.read()
        _MEMO.clear()
        again = cache.read()
        assert again is None or len(again[1]) == len(SOURCES), (
            f"a fresh cache of {len(again[1])} data sources was left in place of the refused file"
        )
    finally:
        _MEMO.clear()


# -- 4. the drain skip: claims of killed emitters are no longer put back --------------------------------
def test_a_successful_send_still_puts_back_the_claim_of_a_killed_emitter(
    fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    """README, "Drain and replay" / "Once only": after a successful send, waiting events go too, and a
    claim whose process died is put back after its lease. The drain is what puts it back
    (replay -> reclaim_stale); it is now skipped when nothing is in pending/, so an emitter killed
    mid-send (the OpenLineage provider's timeout) leaves its event claimed until someone runs a
    replay by hand or the maintenance DAG, however many events are sent meanwhile."""
    spool = tmp_path / "spool"
    config = stand_in_config(fake_alation, token, tmp_path, discover_datasources=False)
    outbox = LocalOutbox(spool)
    killed = Serde.to_dict(make_event())
    killed["run"]["runId"] = str(uuid.uuid4())
    orphan = outbox.put(json.dumps(killed).encode())  # claimed by an emitter that was then killed
    long_ago = time.time() - 3600
    os.utime(orphan.path, (long_ago, long_ago))

    outcome = AlationTransport(AlationConfig.from_dict(config)).emit(Serde.to_dict(make_event()))
    assert outcome is not None and outcome.kind == "sent"
    runs = {event["run"]["runId"] for event in fake_alation.events}
    assert killed["run"]["runId"] in runs, "the killed emitter's event was neither put back nor drained"
    assert outbox.list() == []


# -- 5. a fork while another thread looks a namespace up: the child waits on a lock forever ------------
def test_a_child_forked_while_another_thread_looks_up_does_not_hang(tmp_path: Path) -> None:
    """StoredIndex is "safe to use from several threads; in a forked child it opens the file again",
    but its lock is inherited: forked while another thread is inside a lookup (holding the lock), the
    child blocks on it forever (its connection is reopened only once the lock is taken). The JSON
    index this replaced had no lock. Here the lookup in flight is a thread holding the lock."""
    key = dir_key(tmp_path, "test cache")
    path = tmp_path / "datasources.sqlite"
    write_store(path, key, URL, PARSER_VERSION, SOURCES, time.time())
    index = open_store(path, key, URL)
    in_lookup, release = threading.Event(), threading.Event()

    def lookup_in_flight() -> None:
        with index._lock:  # as _query holds it during a query
            in_lookup.set()
            release.wait(10)

    thread = threading.Thread(target=lookup_in_flight)
    thread.start()
    in_lookup.wait(5)
    pid = os.fork()
    if pid == 0:  # the emitting child
        try:
            found = index.match(parse_namespace("postgres://pg-0.db.example.com:5432"))
            os._exit(0 if found is not None else 1)
        finally:
            os._exit(2)
    try:
        deadline = time.monotonic() + 5
        status = None
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("the forked child hung on the lock of a lookup in flight at fork time")
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        release.set()
        thread.join()


# -- 6. a refresh killed while it writes leaves its temporary file behind, for good --------------------
def test_a_refresh_killed_while_writing_leaves_no_temporary_file_for_good(
    fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    """The new store is written page by page into ``.datasources-<key>.sqlite.XXXX.tmp`` for the whole
    refresh (seconds against a big tenant, where the JSON file used to exist only for the final
    write). A refresh killed meanwhile (the OpenLineage provider's timeout, OOM) leaves that file;
    nothing in cache_dir ever removes it (the outbox sweeps its own after the lease), so each killed
    refresh leaves up to a catalogue's worth of bytes."""
    fake_alation.datasources.update(synthetic_datasources(1_500))
    cache_dir = tmp_path / "cache"
    settings = settings_for(fake_alation, token, cache_dir)
    fake_alation.fail_api_next(Fault(status=200, delay=60))  # Alation's answer hangs

    pid = os.fork()
    if pid == 0:  # an emitting child refreshing the data sources
        try:
            load(settings, refresh=True, budget=30.0)
        finally:
            os._exit(0)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not list(cache_dir.glob(".*.tmp")):
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)  # killed mid-refresh
    os.waitpid(pid, 0)
    assert list(cache_dir.glob(".*.tmp")), "the killed refresh had started writing"

    fake_alation.reset()
    fake_alation.datasources.update(synthetic_datasources(1_500))
    later = load(settings, refresh=True)  # later refreshes succeed...
    assert later.state == "refreshed"
    leftovers = [p.name for p in cache_dir.glob(".*.tmp")]
    assert leftovers == [], f"...and the killed one's temporary file stays: {leftovers}"
