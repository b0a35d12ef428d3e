"""The discovered index kept in an SQLite file and looked up, not loaded (issue 17).

The stored index must answer exactly as the in-memory one does, for every namespace; refuse a file it
did not write or one altered since; survive a fork; and a refresh must leave either the old file or
a complete new one. The expression prefilter (``literal_prefix``) must never skip an expression that
matches.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_alation.alation.datasource_store import StoredIndex, open_store, write_store
from airflow_provider_alation.alation.discovery import _MEMO, PARSER_VERSION, DiscoveryCache, load_index
from airflow_provider_alation.lineage.datasources import DataSource, DataSourceIndex
from airflow_provider_alation.lineage.namespaces import (
    ExpressionError,
    NamespaceRules,
    compile_expression,
    literal_prefix,
    parse_namespace,
)
from airflow_provider_alation.lineage.resolution import NamespaceResolver
from airflow_provider_alation.outbox.disk import UntrustedFile, dir_key
from airflow_provider_alation.testing.catalog import (
    reference_datasources,
    synthetic_datasources,
    synthetic_namespaces,
)
from airflow_provider_alation.testing.fake_alation import Fault
from tests.test_discovery import load, settings_for

URL = "https://acme.alationcloud.com"


def api_sources(items: dict[str, list[dict]]) -> list[DataSource]:
    return [DataSource.from_api(item, api) for api in ("v1", "v2") for item in items[api]]


def stored(tmp_path: Path, sources: list[DataSource], url: str = URL) -> StoredIndex:
    key = dir_key(tmp_path, "test cache")
    path = tmp_path / "datasources.sqlite"
    write_store(path, key, url, PARSER_VERSION, sources, time.time())
    return open_store(path, key, url)


def answers(index, namespace: str) -> tuple:
    match = index.match(parse_namespace(namespace))
    parsed = parse_namespace(namespace)
    found = index.lookup(parsed.host or "", parsed.port)
    return (
        None if match is None else (match.host, match.port, match.how, [s.id for s in match.sources]),
        [s.id for s in found],
    )


# -- the stored index answers as the in-memory one ---------------------------------------------------
def test_reference_and_synthetic_catalogues_answer_the_same(tmp_path: Path) -> None:
    sources = api_sources(reference_datasources()) + api_sources(synthetic_datasources(2_000))
    memory, disk = DataSourceIndex.build(sources), stored(tmp_path, sources)
    namespaces = [
        *synthetic_namespaces(2_500),
        "postgres://pg-1.db.example.com", "redshift://rs-9.us-east-1:5439", "snowflake://org5-acct5",
        "postgres://pg-1:5432", "mysql://unknown.example.com:3306", "trino://trino-7:8080",
    ]  # fmt: skip
    assert len(disk) == len(memory) == len(sources)
    assert [s.to_dict() for s in disk.sources] == [s.to_dict() for s in memory.sources]
    matched = 0
    for namespace in namespaces:
        expected = answers(memory, namespace)
        assert answers(disk, namespace) == expected, namespace
        matched += expected[0] is not None
    assert matched > 2_000  # the comparison is about real matches, not two empty answers
    # And resolution on top of each gives the same Resolution for every namespace.
    rules = {"re:^postgres://pg-1([0-9])\\.db\\.example\\.com:5432$": "postgres://pg-\\1.db.example.com:5432"}
    via_memory = NamespaceResolver.from_map(rules, memory)
    via_disk = NamespaceResolver.from_map(rules, disk)
    assert all(via_memory.resolve(n) == via_disk.resolve(n) for n in namespaces)


hosts = st.sampled_from(
    [
        "pg-1.db.example.com", "pg-1.other.example.com", "pg-2.db.example.com", "db.example.com",
        "rs-1.c1x.us-east-1.redshift.amazonaws.com", "rs-1.c2x.us-east-1.redshift.amazonaws.com",
        "rs-1.c1x.us-east-1.redshift-serverless.amazonaws.com", "org1-acct1.snowflakecomputing.com",
        "xy12345.us-east-1.snowflakecomputing.com", "xy12345.snowflakecomputing.com", "10.0.0.1", "[::1]",
        "pg-1", "localhost", "xy12345.us-east-1.privatelink.snowflakecomputing.com",
    ]
)  # fmt: skip
ports = st.sampled_from([5432, 5439, 443, 3306, 1433])
kinds = st.sampled_from(["postgresql", "redshift", "snowflake", "mysql", "sqlserver", ""])


@st.composite
def catalogue(draw: st.DrawFn) -> list[DataSource]:
    count = draw(st.integers(0, 12))
    return [
        DataSource(
            id=n, title=f"source {n}", uri="", dbtype=draw(kinds),
            endpoints=tuple(dict.fromkeys(draw(st.lists(st.tuples(hosts, ports), max_size=3)))),
        )
        for n in range(count)
    ]  # fmt: skip


schemes = st.sampled_from(["postgres", "redshift", "snowflake", "mysql", "mssql"])
namespace_hosts = st.one_of(
    hosts, st.sampled_from(["pg-1", "rs-1.us-east-1", "xy12345", "org1-acct1", "xy12345.us-east-1.aws", "db"])
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sources=catalogue(), scheme=schemes, host=namespace_hosts, port=st.one_of(st.none(), ports))
def test_any_catalogue_answers_the_same_stored_or_in_memory(
    tmp_path: Path, sources, scheme, host, port
) -> None:
    namespace = f"{scheme}://{host}" + (f":{port}" if port else "")
    expected = answers(DataSourceIndex.build(sources), namespace)
    assert answers(stored(tmp_path, sources), namespace) == expected


def test_a_forked_child_looks_up_in_the_file_again(tmp_path: Path) -> None:
    disk = stored(tmp_path, api_sources(synthetic_datasources(300)))
    assert disk.match(parse_namespace("postgres://pg-0.db.example.com:5432")) is not None  # parent connected
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            match = disk.match(parse_namespace("mysql://mysql-1.db.example.com:3306"))
            os.write(write, json.dumps([match.label if match else None, disk.broken]).encode())
        finally:
            os._exit(0)
    os.close(write)
    reported = json.loads(os.read(read, 4096))
    os.close(read)
    os.waitpid(pid, 0)
    assert reported == ["#2 mysql source 1", ""]
    # The parent's own connection is untouched by the child's.
    assert disk.match(parse_namespace("trino://trino-7.db.example.com:8080")) is not None


# -- a file this provider did not write, or one altered since ----------------------------------------
def test_a_file_written_with_another_key_or_for_another_tenant_is_refused(tmp_path: Path) -> None:
    sources = api_sources(reference_datasources())
    key = dir_key(tmp_path, "test cache")
    path = tmp_path / "datasources.sqlite"
    write_store(path, b"k" * 32, URL, PARSER_VERSION, sources, time.time())
    with pytest.raises(UntrustedFile, match="does not verify"):
        open_store(path, key, URL)
    write_store(path, key, "https://other.alationcloud.com", PARSER_VERSION, sources, time.time())
    with pytest.raises(UntrustedFile, match="another tenant"):
        open_store(path, key, URL)
    path.write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)  # a header and nothing behind it
    with pytest.raises((sqlite3.DatabaseError, UntrustedFile)):
        open_store(path, key, URL)


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE sources SET body = replace(body, 'pg-1.db', 'evil.db') WHERE id = 2",
        "UPDATE keys SET source = 3 WHERE kind = 'endpoint' AND key = 'pg-1.db.example.com'",
        "INSERT INTO keys VALUES ('endpoint', 'evil.example.com', 5432, 'evil.example.com', 2)",
        "INSERT INTO keys VALUES ('short', 'pg-1', 5432, 'evil.example.com', 2)",
    ],
)
def test_an_altered_row_is_refused_and_the_file_removed(tmp_path: Path, tamper: str, caplog) -> None:
    sources = [
        DataSource(1, "zero", "", "postgresql", endpoints=(("pg-0.db.example.com", 5432),)),
        DataSource(2, "one", "", "postgresql", endpoints=(("pg-1.db.example.com", 5432),)),
        DataSource(3, "two", "", "postgresql", endpoints=(("pg-2.db.example.com", 5432),)),
    ]
    disk = stored(tmp_path, sources)
    with sqlite3.connect(disk.path) as db:
        db.execute(tamper)
    caplog.set_level(logging.WARNING, logger="airflow_provider_alation")
    fresh = open_store(disk.path, dir_key(tmp_path, "test cache"), URL)  # the meta row still verifies
    answers_after = [
        fresh.match(parse_namespace(n))
        for n in (
            "postgres://pg-1.db.example.com:5432",
            "postgres://evil.example.com:5432",
            "postgres://pg-1:5432",
        )
    ]
    assert all(
        match is None or match.sources[0].id != 2 or match.host == "pg-1.db.example.com"
        for match in answers_after
    )
    assert not any(match is not None and match.host == "evil.example.com" for match in answers_after)
    assert fresh.broken, "a tampered row must be noticed"
    assert not disk.path.exists(), "the altered file is removed so that the next load reads Alation"
    assert "not using the data-source cache" in caplog.text
    assert fresh.match(parse_namespace("postgres://pg-0.db.example.com:5432")) is None  # answers nothing more


def test_a_planted_database_in_the_cache_is_not_used(catalogued, token, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    settings = settings_for(catalogued, token, cache_dir)
    cache = DiscoveryCache(cache_dir, settings.url)
    dir_key(cache_dir, "cache")
    with sqlite3.connect(cache.path) as db:  # the right tables, rows without valid codes
        db.execute("CREATE TABLE meta (url TEXT, fetched_at REAL, parser INTEGER, count INTEGER, mac TEXT)")
        db.execute(
            "INSERT INTO meta VALUES (?, ?, ?, 1, ?)", (settings.url, time.time(), PARSER_VERSION, "0" * 64)
        )
    _MEMO.clear()
    assert cache.read() is None
    result = load(settings)
    assert result.state == "refreshed" and all(s.title != "Planted" for s in result.sources)
    assert catalogued.api_requests()


def test_a_cache_of_another_parser_version_is_parsed_again_and_rewritten(catalogued, token, tmp_path) -> None:
    settings = settings_for(catalogued, token, tmp_path)
    cache = DiscoveryCache(tmp_path, settings.url)
    sources = [DataSource(1, "old parse", "postgresql://pg.example.com:6543/db", "postgresql", endpoints=())]
    write_store(
        cache.path, dir_key(tmp_path, "cache"), settings.url, PARSER_VERSION - 1, sources, time.time()
    )
    _MEMO.clear()
    fetched_at, index = cache.read()
    assert index.match(parse_namespace("postgres://pg.example.com:6543")) is not None  # the URI parsed again
    _MEMO.clear()
    again = open_store(cache.path, dir_key(tmp_path, "cache"), settings.url)
    assert again.parser == PARSER_VERSION and again.fetched_at == fetched_at
    assert load(settings).state == "fresh" and not catalogued.api_requests()


# -- a refresh writes a complete new file or leaves the old one --------------------------------------
def test_a_refresh_that_fails_half_way_leaves_the_old_file_and_no_debris(
    fake_alation, token, tmp_path
) -> None:
    fake_alation.datasources.update(synthetic_datasources(3_500))
    settings = settings_for(fake_alation, token, tmp_path, discovery_ttl=60)
    first = load(settings, refresh=True)
    assert first.state == "refreshed" and first.count == 3_500
    before = {p.name: p.stat().st_ino for p in tmp_path.iterdir()}
    fake_alation.datasources.update(synthetic_datasources(4_000))
    requests_before = len(fake_alation.api_requests())
    # Pages 1 and 2 are read, then Alation fails for good (every retry too).
    fake_alation.fail_api_next(None, None, *[Fault(status=500)] * 10)
    failed = load(settings, refresh=True, budget=4.0)
    assert failed.state == "stale" and "HTTP 500" in failed.detail
    assert len(fake_alation.api_requests()) - requests_before >= 3
    assert failed.count == 3_500  # still the old file's index
    after = {p.name: p.stat().st_ino for p in tmp_path.iterdir()}
    assert {n for n in after if n.endswith(".tmp")} == set()
    cache = DiscoveryCache(tmp_path, settings.url)
    assert after[cache.path.name] == before[cache.path.name]
    fake_alation.reset()
    assert load(settings, refresh=True).count == 4_000


def test_memory_of_a_refresh_stays_at_about_a_page(fake_alation, token, tmp_path) -> None:
    """The sources of a refresh are written page by page: the peak of Python allocations with 12,000
    sources is about that of 2,000 (not six times it), however the pages add up."""
    import tracemalloc

    def peak(count: int) -> int:
        fake_alation.datasources.update(synthetic_datasources(count))
        settings = settings_for(fake_alation, token, tmp_path / str(count))
        tracemalloc.start()
        try:
            assert load_index(settings, 60.0, token=lambda: token, refresh=True).count == count
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(2_000), peak(12_000)
    assert large < small * 2, (small, large)


# -- the expression prefilter ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        (r"^postgres://rx-1-([a-z0-9]+)\.internal:(\d+)$", "postgres://rx-1"),
        (r"^postgres:\/\/a\.b", "postgres://a.b"),
        (r"^ab(?i)?c", "a"),
        (r"^ab\Q\E?c", "a"),
        (r"^ab?c", "a"),
        (r"^a\.?b", "a"),
        (r"^pg{2}", "p"),
        (r"^ab*", "a"),
        (r"^ab+", "a"),
        (r"(tunnel)\.corp", ""),
        (r"^x|^y", ""),
        (r"^(?i)pg", ""),
        (r"^\Qa.b\E", ""),
        (r"^[a-z]+", ""),
        (r"^.*", ""),
    ],
)
def test_literal_prefix(pattern: str, prefix: str) -> None:
    assert literal_prefix(pattern) == prefix


pattern_atoms = st.sampled_from(
    ["a", "b", "p", "g", ":", "/", ".", "-", "\\.", "\\/", "\\-", "?", "*", "+", "{1,2}", "(", ")", "[a-z]",
     "|", "$", "\\d", "(?i)", "0", "ab", "pg", "://"]
)  # fmt: skip
texts = st.text(alphabet="abpgPG:/.-0", max_size=12)


@settings(max_examples=400, deadline=None)
@given(body=st.lists(pattern_atoms, max_size=8), anchored=st.booleans(), text=texts)
def test_the_prefilter_never_skips_a_matching_expression(body: list[str], anchored: bool, text: str) -> None:
    pattern = ("^" if anchored else "") + "".join(body)
    try:
        compiled = compile_expression(pattern)
    except ExpressionError:
        return
    if compiled.search(text):
        assert text.startswith(literal_prefix(pattern)), (pattern, text)


def test_rules_try_only_the_expressions_that_can_match_in_order() -> None:
    namespace_map = {
        f"re:^postgres://rx-{n}-([a-z0-9]+)\\.internal:(\\d+)$": f"db{n}.example.com:\\2" for n in range(2000)
    }
    namespace_map["re:^postgres://rx-1"] = "first-wins.example.com"  # a shorter prefix, later in order
    namespace_map["re:(tunnel)\\.corp"] = "tunnel.example.com"  # no prefix: tried for every namespace
    rules = NamespaceRules.from_map(namespace_map)
    text = str(parse_namespace("postgres://rx-17-a.internal:6000"))
    assert [key for _, _, _, key in rules.candidates(text)] == [
        "re:^postgres://rx-1-([a-z0-9]+)\\.internal:(\\d+)$",  # prefix postgres://rx-1: tried, no match
        "re:^postgres://rx-17-([a-z0-9]+)\\.internal:(\\d+)$",
        "re:^postgres://rx-1",
        "re:(tunnel)\\.corp",
    ]
    assert (
        rules.apply(parse_namespace("postgres://rx-17-a.internal:6000")).namespace
        == "postgres://db17.example.com:6000"
    )
    assert (
        rules.apply(parse_namespace("postgres://rx-1x.internal:6000")).namespace
        == "postgres://first-wins.example.com:6000"
    )
    assert (
        rules.apply(parse_namespace("mysql://a.tunnel.corp:3306")).namespace
        == "mysql://tunnel.example.com:3306"
    )
    assert len(rules.candidates("mysql://nothing")) == 1
