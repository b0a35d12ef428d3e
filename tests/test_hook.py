"""The connection type: form, provider registration, and the Test button's verdicts."""

from __future__ import annotations

import json

import pytest

from airflow_provider_alation.hooks.alation import AlationHook
from airflow_provider_alation.testing.fake_alation import FakeAlation
from tests.support.airflow_home import connection_json
from tests.support.network import free_port


@pytest.fixture
def use_connection(monkeypatch):
    def _use(host: str, token: str, extra=None, **fields) -> AlationHook:
        monkeypatch.setenv("AIRFLOW_CONN_ALATION_DEFAULT", connection_json(host, token, extra, **fields))
        return AlationHook()

    return _use


def test_ok_and_creates_no_lineage(fake_alation, token, use_connection) -> None:
    ok, message = use_connection(
        fake_alation.url, token, {"verify": str(fake_alation.cert_path)}
    ).test_connection()
    assert ok, message
    assert message.startswith("OK: Alation accepted a test event")
    (event,) = fake_alation.events
    # Alation processes only COMPLETE events with inputs and outputs: this one makes no lineage.
    assert event["eventType"] == "START" and event["inputs"] == [] and event["outputs"] == []
    assert token not in message


def test_token_rejected(fake_alation, use_connection) -> None:
    ok, message = use_connection(
        fake_alation.url, "not-the-token-xyz", {"verify": str(fake_alation.cert_path)}
    ).test_connection()
    assert not ok
    assert message.startswith("Token rejected: HTTP 401")
    assert "not-the-token-xyz" not in message


def test_endpoint_not_found(fake_alation, token, use_connection) -> None:
    ok, message = use_connection(
        fake_alation.url, token, {"verify": str(fake_alation.cert_path), "endpoint": "api/v1/open_lineage"}
    ).test_connection()
    assert not ok
    assert message.startswith("Endpoint not found: HTTP 404")


def test_network_unreachable(token, use_connection) -> None:
    port = free_port()
    ok, message = use_connection(
        f"https://127.0.0.1:{port}", token, {"timeout": 1, "time_budget": 2}
    ).test_connection()
    assert not ok
    assert message.startswith("Network unreachable")


def test_tls_failure(fake_alation, token, use_connection) -> None:
    ok, message = use_connection(fake_alation.url, token).test_connection()
    assert not ok
    assert message.startswith("TLS failure")
    assert "CA bundle" in message


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("{not json", "extra: not valid JSON"),
        ({"namespace_mapp": {}}, "extra.namespace_mapp: unknown key. Did you mean 'namespace_map'?"),
        ({"timeout": -3}, "extra.timeout: Input should be greater than 0"),
    ],
)
def test_bad_settings(token, use_connection, extra, expected) -> None:
    ok, message = use_connection("https://acme.alationcloud.com", token, extra).test_connection()
    assert not ok
    assert expected in message
    assert token not in message


def test_non_url_host(token, use_connection) -> None:
    ok, message = use_connection("not a url", token).test_connection()
    assert not ok and "host: 'not a url' is not a tenant URL" in message


def test_refresh_token_connection(tmp_path, token, use_connection) -> None:
    with FakeAlation("api-token-unused", tls_dir=tmp_path, refresh_token=token, user_id=12) as fake:
        hook = use_connection(
            fake.url, token, {"verify": str(fake.cert_path), "token_type": "refresh_token"}, login="12"
        )
        ok, message = hook.test_connection()
        assert ok, message
        bad = use_connection(
            fake.url, token, {"verify": str(fake.cert_path), "token_type": "refresh_token"}, login="13"
        )
        ok, message = bad.test_connection()
        assert not ok and message.startswith("Token rejected") and "refresh token" in message


def test_provider_registration() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-alation" in manager.providers
    behaviour = manager.field_behaviours["alation"]
    assert behaviour["hidden_fields"] == ["schema", "port"]
    assert behaviour["relabeling"]["password"] == "API token"
    assert behaviour["relabeling"]["host"] == "Tenant URL"
    info = manager.providers["airflow-provider-alation"].data
    assert (
        info["connection-types"][0]["hook-class-name"] == "airflow_provider_alation.hooks.alation.AlationHook"
    )
    assert AlationHook.default_conn_name == "alation_default" and AlationHook.conn_type == "alation"


def test_connection_json_roundtrip(monkeypatch, token) -> None:
    extra = {"namespace_map": {"a:1": "b:2"}, "dags": {"include": ["x*"]}}
    monkeypatch.setenv("AIRFLOW_CONN_ALATION_DEFAULT", connection_json("https://t.example.com", token, extra))
    settings = AlationHook().get_settings()
    assert settings.namespace_map == {"a:1": "b:2"}
    assert settings.dags.include == ("x*",)
    assert json.loads(connection_json("h", "t"))["conn_type"] == "alation"
