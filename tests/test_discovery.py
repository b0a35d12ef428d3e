"""Discovery against the HTTPS stand-in serving thousands of data sources over several pages."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from openlineage.client.serde import Serde

from airflow_provider_alation.alation.discovery import (
    FAILURE_BACKOFF_SECONDS,
    PAGE_SIZE,
    IndexLoad,
    load_index,
)
from airflow_provider_alation.alation.tokens import BearerToken, TokenError
from airflow_provider_alation.settings import AlationSettings, build_settings
from airflow_provider_alation.testing.catalog import (
    reference_datasources,
    synthetic_datasources,
    synthetic_namespaces,
)
from airflow_provider_alation.testing.fake_alation import FakeAlation, Fault
from airflow_provider_alation.transport import AlationConfig, AlationTransport
from tests.test_gate import make_event

SOURCES = 3_700  # about 3,330 native (v1) and 370 OCF (v2) sources: four pages and one page


@pytest.fixture
def catalog(fake_alation: FakeAlation) -> dict[str, list[dict[str, Any]]]:
    items = synthetic_datasources(SOURCES)
    fake_alation.datasources.update(items)
    return items


def discovery_config(fake: FakeAlation, secret: str, cache_dir: Path, **extra: Any) -> dict[str, Any]:
    """Inline settings with discovery on, against the stand-in (for settings and transports)."""
    return {
        "url": fake.url,
        "token": secret,
        "verify": str(fake.cert_path),
        "discover_datasources": True,
        "cache_dir": str(cache_dir),
        **extra,
    }


def settings_for(fake: FakeAlation, secret: str, cache_dir: Path, **extra: Any) -> AlationSettings:
    return build_settings(
        discovery_config(fake, secret, cache_dir, **{"discovery_ttl": 600, **extra}), inline=True
    )


def load(settings: AlationSettings, **kwargs: Any) -> IndexLoad:
    kwargs.setdefault("budget", 10.0)
    return load_index(settings, token=BearerToken(settings), **kwargs)


def pages(count: int) -> int:
    return max(1, math.ceil(count / PAGE_SIZE))


def test_every_page_read_once_with_the_token_header(fake_alation, token, catalog, tmp_path) -> None:
    result = load(settings_for(fake_alation, token, tmp_path))
    assert result.state == "refreshed"
    assert len(result.sources) == SOURCES
    v1, v2 = fake_alation.api_requests("v1"), fake_alation.api_requests("v2")
    assert (len(v1), len(v2)) == (pages(len(catalog["v1"])), pages(len(catalog["v2"])))
    assert len({request.path for request in v1}) == len(v1)  # one request per page, none repeated
    assert all(request.headers["token"] == token for request in v1 + v2)
    assert all(request.status == 200 for request in v1 + v2)
    # Every synthetic namespace resolves to its own data source.
    index = result.index
    assert index is not None
    from airflow_provider_alation.lineage.resolution import NamespaceResolver

    resolver = NamespaceResolver.from_map({}, index)
    resolved = [resolver.resolve(ns) for ns in synthetic_namespaces(SOURCES)]
    assert sum(r.matched for r in resolved) == SOURCES


def test_skip_pagination_without_next_page_header(fake_alation, token, catalog, tmp_path) -> None:
    fake_alation.next_page_header = False
    result = load(settings_for(fake_alation, token, tmp_path))
    assert len(result.sources) == SOURCES
    v1 = fake_alation.api_requests("v1")
    # Full pages are followed by skip; the short last page ends it.
    assert len(v1) == math.ceil((len(catalog["v1"]) + 1) / PAGE_SIZE)
    assert [r.path.rsplit("skip=", 1)[1] for r in v1] == [str(PAGE_SIZE * i) for i in range(len(v1))]


def test_cache_reused_by_another_process(fake_alation, token, catalog, tmp_path) -> None:
    settings = settings_for(fake_alation, token, tmp_path)
    assert load(settings).state == "refreshed"
    before = len(fake_alation.api_requests())
    script = (
        "import json, sys\n"
        "from airflow_provider_alation.settings import build_settings\n"
        "from airflow_provider_alation.alation.discovery import load_index\n"
        "s = build_settings(json.loads(sys.argv[1]), inline=True)\n"
        "r = load_index(s, 5.0, token=lambda: 'unused')\n"
        "print(json.dumps({'state': r.state, 'sources': len(r.sources), 'requests': r.requests}))\n"
    )
    values = discovery_config(fake_alation, token, tmp_path, discovery_ttl=600)
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(values)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"state": "fresh", "sources": SOURCES, "requests": 0}
    assert len(fake_alation.api_requests()) == before
    # The file holds the index, not the token, and only its owner can read it.
    cache_files = [p for p in tmp_path.iterdir() if p.name.endswith(".sqlite")]
    assert cache_files and all(p.stat().st_mode & 0o777 == 0o600 for p in cache_files)
    assert all(token.encode() not in p.read_bytes() for p in tmp_path.iterdir() if p.is_file())


def test_ttl_honoured(fake_alation, token, catalog, tmp_path) -> None:
    settings = settings_for(fake_alation, token, tmp_path, discovery_ttl=120)
    first = load(settings)
    assert first.state == "refreshed"
    requests_after_first = len(fake_alation.api_requests())
    start = first.fetched_at or 0.0
    assert load(settings, now=lambda: start + 119).state == "fresh"
    assert len(fake_alation.api_requests()) == requests_after_first
    later = load(settings, now=lambda: start + 121)
    assert later.state == "refreshed"
    assert len(fake_alation.api_requests()) == 2 * requests_after_first


def test_stale_cache_used_when_the_api_fails(fake_alation, token, catalog, tmp_path) -> None:
    settings = settings_for(fake_alation, token, tmp_path, discovery_ttl=60)
    start = load(settings).fetched_at or 0.0
    fake_alation.api_down = True
    stale = load(settings, budget=2.0, now=lambda: start + 61)
    assert stale.state == "stale"
    assert len(stale.sources) == SOURCES
    assert "HTTP 503" in stale.detail
    # The failure is remembered: for a while nobody spends their time budget on the API again.
    failed_requests = len(fake_alation.api_requests())
    again = load(settings, budget=2.0, now=lambda: start + 62)
    assert (again.state, len(again.sources)) == ("stale", SOURCES)
    assert "last refresh failed" in again.detail
    assert len(fake_alation.api_requests()) == failed_requests
    # Once the back-off has passed and the API is back, the next load refreshes.
    fake_alation.api_down = False
    back = load(settings, now=lambda: start + 62 + FAILURE_BACKOFF_SECONDS)
    assert back.state == "refreshed"


def test_no_cache_and_api_down_means_no_index_not_an_error(fake_alation, token, tmp_path) -> None:
    fake_alation.api_down = True
    result = load(settings_for(fake_alation, token, tmp_path), budget=1.5)
    assert (result.state, result.index) == ("unavailable", None)
    assert "503" in result.detail


def test_429_with_retry_after_is_retried(fake_alation, token, catalog, tmp_path) -> None:
    fake_alation.fail_api_next(Fault(429, b'{"detail": "slow down"}', {"Retry-After": "1"}))
    started = time.monotonic()
    result = load(settings_for(fake_alation, token, tmp_path))
    assert result.state == "refreshed" and len(result.sources) == SOURCES
    assert time.monotonic() - started >= 1.0
    statuses = [r.status for r in fake_alation.api_requests()]
    assert statuses[0] == 429 and statuses.count(429) == 1


def test_rejected_token_is_explained_without_the_token(
    fake_alation, token, catalog, tmp_path, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    result = load(settings_for(fake_alation, token + "-wrong", tmp_path))
    assert result.state == "unavailable"
    assert "refused the token" in result.detail and "TOKEN" in result.detail
    assert len(fake_alation.api_requests()) == 1  # 401 is not retried
    assert token not in result.detail and token not in caplog.text


def test_one_process_refreshes_while_others_wait(fake_alation, token, catalog, tmp_path) -> None:
    fake_alation.api_delay = 0.2
    settings = settings_for(fake_alation, token, tmp_path)
    results: list[IndexLoad] = []

    def worker() -> None:
        results.append(load(settings))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.state for r in results) == ["fresh", "fresh", "fresh", "refreshed"]
    assert all(len(r.sources) == SOURCES for r in results)
    assert len(fake_alation.api_requests()) == pages(len(catalog["v1"])) + pages(len(catalog["v2"]))


def test_refresh_token_minted_once_and_cached_encrypted(tmp_path) -> None:
    refresh = "refresh-" + "x" * 20
    with FakeAlation("api-token-unused", tls_dir=tmp_path / "tls", refresh_token=refresh, user_id=42) as fake:
        fake.datasources.update(reference_datasources())
        settings = settings_for(fake, refresh, tmp_path / "cache", token_type="refresh_token", user_id=42)
        first = BearerToken(settings)
        access = first()
        assert load_index(settings, 10.0, token=first).state == "refreshed"
        # A second process (a fresh BearerToken) reads the access token from disk.
        second = BearerToken(settings)
        assert second() == access and second.minted == 0
        mints = [r for r in fake.requests if r.path.endswith("createAPIAccessToken/")]
        assert len(mints) == 1
        assert {r.headers["token"] for r in fake.api_requests()} == {access}
        token_files = list((tmp_path / "cache").glob("access-token-*.bin"))
        assert len(token_files) == 1
        blob = token_files[0].read_bytes()
        assert access.encode() not in blob and refresh.encode() not in blob
        assert token_files[0].stat().st_mode & 0o777 == 0o600
        # A different refresh token cannot read the file: it mints (and is refused) instead.
        other = settings_for(
            fake, refresh + "-other", tmp_path / "cache", token_type="refresh_token", user_id=42
        )
        with pytest.raises(TokenError) as refused:
            BearerToken(other)()
        assert "refused to mint" in str(refused.value) and refresh not in str(refused.value)


def redshift_event() -> dict[str, Any]:
    event = Serde.to_dict(make_event())
    event["inputs"][0]["namespace"] = "redshift://analytics.us-east-1:5439"
    event["outputs"][0]["namespace"] = "postgres://pgbouncer.internal:6432"
    return event


def test_transport_resolves_with_discovery_and_warns_once(
    fake_alation, token, tmp_path, alation_logs
) -> None:
    fake_alation.datasources.update(reference_datasources())
    config = discovery_config(fake_alation, token, tmp_path / "cache", time_budget=5, timeout=2)
    transport = AlationTransport(AlationConfig.from_dict(config))
    for _ in range(2):
        outcome = transport.emit(redshift_event())
        assert outcome is not None and outcome.kind == "sent"
    sent = fake_alation.events
    assert len(sent) == 2
    assert (
        sent[0]["inputs"][0]["namespace"]
        == "redshift://analytics.c9xyz1abc.us-east-1.redshift.amazonaws.com:5439"
    )
    assert sent[0]["outputs"][0]["namespace"] == "postgres://pgbouncer.internal:6432"
    warnings = [r.getMessage() for r in alation_logs.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "postgres://pgbouncer.internal:6432" in warnings[0]
    assert "add pgbouncer.internal:6432 to the 'Additional Datasource Connections' field" in warnings[0]
    # Read once for both events (one process): pages of v1 and v2.
    assert len(fake_alation.api_requests()) == 2
    assert token not in alation_logs.text


def test_transport_uses_stale_cache_when_alation_api_is_down(
    fake_alation, token, tmp_path, alation_logs
) -> None:
    fake_alation.datasources.update(reference_datasources())
    cache = tmp_path / "cache"
    settings = settings_for(fake_alation, token, cache, discovery_ttl=1)
    assert load(settings).state == "refreshed"
    time.sleep(1.1)  # the cache is now past its TTL
    fake_alation.api_down = True
    config = discovery_config(fake_alation, token, cache, discovery_ttl=1, time_budget=4, timeout=1)
    started = time.monotonic()
    outcome = AlationTransport(AlationConfig.from_dict(config)).emit(redshift_event())
    assert time.monotonic() - started < 4.5
    assert outcome is not None and outcome.kind == "sent"
    assert fake_alation.events[0]["inputs"][0]["namespace"].endswith(".us-east-1.redshift.amazonaws.com:5439")
    assert "could not refresh Alation's data sources" in alation_logs.text
    assert "HTTP 503" in alation_logs.text


def test_next_page_outside_the_tenant_is_not_followed(fake_alation, token, tmp_path) -> None:
    page = json.dumps(
        [{"id": 1, "dbtype": "postgresql", "uri": "postgresql://a.example.com:5432/x"}]
    ).encode()
    fake_alation.fail_api_next(
        Fault(200, page, {"X-Next-Page": "https://collector.example.net/steal?skip=1"})
    )
    result = load(settings_for(fake_alation, token, tmp_path), budget=3.0)
    assert result.state == "unavailable"
    assert "X-Next-Page points outside" in result.detail and "collector.example.net" not in result.detail
    assert len(fake_alation.api_requests()) == 1


def test_server_ignoring_skip_is_detected_not_looped(fake_alation, token, catalog, tmp_path) -> None:
    fake_alation.next_page_header = False
    fake_alation.ignore_skip = True
    result = load(settings_for(fake_alation, token, tmp_path), budget=5.0)
    assert result.state == "unavailable" and "ignores skip" in result.detail
    assert len(fake_alation.api_requests()) == 2


@pytest.mark.parametrize("content", [b"[]", b'{"url": 1}', b'{"datasources": ["x"]}', b"\xff\xfe", b""])
def test_corrupt_cache_and_status_files_are_ignored(fake_alation, token, catalog, tmp_path, content) -> None:
    settings = settings_for(fake_alation, token, tmp_path)
    assert load(settings).state == "refreshed"
    from airflow_provider_alation.alation.discovery import _MEMO, DiscoveryCache

    cache = DiscoveryCache(tmp_path, settings.url)
    cache.path.write_bytes(content)
    cache.status_path.write_bytes(b'{"failed_at": "yesterday"}' if content else b"[1]")
    _MEMO.clear()
    result = load(settings)
    assert result.state == "refreshed" and len(result.sources) == SOURCES


def test_unusable_cache_dir_still_resolves(fake_alation, token, catalog, tmp_path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    result = load(settings_for(fake_alation, token, blocker / "cache"))
    assert result.state == "refreshed" and len(result.sources) == SOURCES


def test_revoked_access_token_is_dropped_and_minted_again(tmp_path) -> None:
    refresh = "refresh-" + "y" * 20
    with FakeAlation("api-token-unused", tls_dir=tmp_path / "tls", refresh_token=refresh, user_id=7) as fake:
        fake.datasources.update(reference_datasources())
        config = discovery_config(
            fake, refresh, tmp_path / "cache", user_id=7, token_type="refresh_token", time_budget=5, timeout=2
        )
        assert AlationTransport(AlationConfig.from_dict(config)).emit(redshift_event()).kind == "sent"
        fake.access_tokens.clear()  # Alation revokes every access token
        # A new process finds the revoked token in the disk cache; delivery is refused, mints anew.
        second = AlationTransport(AlationConfig.from_dict({**config, "discover_datasources": False}))
        outcome = second.emit(redshift_event())
        assert outcome is not None and outcome.kind == "sent"
        # Discovery does the same: revoked again, the data-source API refuses it, a new one is minted.
        fake.access_tokens.clear()
        settings = settings_for(
            fake, refresh, tmp_path / "cache", token_type="refresh_token", user_id=7, discovery_ttl=1
        )
        assert load(settings, refresh=True).state == "refreshed"
        mints = [r for r in fake.requests if r.path.endswith("createAPIAccessToken/")]
        assert len(mints) == 3
        assert len(fake.events) == 2
        assert [r.status for r in fake.requests if r.path == "/open_lineage_event/"] == [200, 401, 200]


def test_short_host_match_is_sent_but_flagged_and_credentials_redacted(
    fake_alation, token, tmp_path, alation_logs
) -> None:
    fake_alation.datasources.update(reference_datasources())
    event = redshift_event()
    event["outputs"][0]["namespace"] = "postgres://etl:s3cr3t-pw@pgprod:5432"
    config = discovery_config(fake_alation, token, tmp_path / "cache")
    assert AlationTransport(AlationConfig.from_dict(config)).emit(event).kind == "sent"
    assert fake_alation.events[0]["outputs"][0]["namespace"] == "postgres://pgprod.corp.example.com:5432"
    warnings = [r.getMessage() for r in alation_logs.records if r.levelno == logging.WARNING]
    assert any("by its short host name only" in w and '"pgprod:5432"' in w for w in warnings), warnings
    assert "s3cr3t-pw" not in alation_logs.text
    # the credentials are stripped before resolution: the log names the namespace without them
    assert "namespace postgres://pgprod:5432 -> postgres://pgprod.corp.example.com:5432" in alation_logs.text
    assert "s3cr3t-pw" not in json.dumps(fake_alation.events)
