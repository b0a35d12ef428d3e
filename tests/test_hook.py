"""The connection type: form, provider registration, and the Test button's verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_alation.hooks.alation import AlationHook
from airflow_provider_alation.testing.fake_alation import FakeAlation
from tests.support.airflow_home import connection_json
from tests.support.network import refused_port


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
    hostport = fake_alation.url.split("://")[1]
    assert message == (
        f"OK: Alation at {hostport} accepted a test event (HTTP 200); the token is valid "
        "(connection 'alation_default')."
    )
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
    port = refused_port()
    ok, message = use_connection(
        f"https://127.0.0.1:{port}", token, {"timeout": 1, "time_budget": 2}
    ).test_connection()
    assert not ok
    assert message.startswith(f"Network unreachable: 127.0.0.1:{port} refused the connection")
    assert f"to 127.0.0.1:{port} (firewall" in message and "TCP 443" not in message
    assert "Errno" not in message and "urllib3" not in message and "Max retries" not in message
    assert message.count("Network unreachable") == 1 and "(connection 'alation_default')" in message


def test_tls_failure(fake_alation, token, use_connection) -> None:
    ok, message = use_connection(fake_alation.url, token).test_connection()
    assert not ok
    assert message.startswith("TLS failure: the certificate of ")
    assert "CA bundle" in message and message.count("TLS failure") == 1
    assert "SSLError" not in message and "CERTIFICATE_VERIFY_FAILED" not in message


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
    assert behaviour["hidden_fields"] == ["schema"]  # Port is shown: see ui_test_button
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


def test_settings_error_names_the_users_connection_not_airflows_temporary_one(token, monkeypatch) -> None:
    """Airflow's test endpoint saves the connection under a random id; the middleware records the
    id of the request, and the verdict names it."""
    from airflow_provider_alation.integration import ui_test_button

    monkeypatch.setenv(
        "AIRFLOW_CONN_X7RANDOM", connection_json("https://acme.alationcloud.com", token, {"timout": 3})
    )
    token_var = ui_test_button._requested.set("alation_prod")
    try:
        ok, message = AlationHook("x7random").test_connection()
    finally:
        ui_test_button._requested.reset(token_var)
    assert not ok
    assert message.startswith("Settings invalid in connection 'alation_prod': extra.timout: unknown key.")
    assert message.endswith(
        "Fix: edit connection 'alation_prod': each item names the field and what to write."
    )
    assert "x7random" not in message.lower() and token not in message


@pytest.mark.parametrize(
    ("body", "expected", "conn_id"),
    [
        (
            {"connection_id": "a", "conn_type": "alation", "port": 0},
            {"connection_id": "a", "conn_type": "alation"},
            "a",
        ),
        ({"connection_id": "a", "conn_type": "alation", "port": 443}, None, "a"),
        ({"connection_id": "p", "conn_type": "postgres", "port": 0}, None, None),
    ],
)
def test_test_button_body_rewrite(body, expected, conn_id) -> None:
    from airflow_provider_alation.integration.ui_test_button import rewrite_body

    raw = json.dumps(body).encode()
    rewritten, found = rewrite_body(raw)
    assert found == conn_id
    assert json.loads(rewritten) == (expected or body)
    assert rewrite_body(b"not json") == (b"not json", None)


def test_conn_fields_cover_every_extra_key_and_match_airflows_schema() -> None:
    import jsonschema

    from airflow_provider_alation.get_provider_info import get_provider_info
    from airflow_provider_alation.integration.connection import conn_fields
    from airflow_provider_alation.settings import EXTRA_KEYS

    fields = conn_fields()
    assert list(fields) == list(EXTRA_KEYS)
    import airflow

    schema_path = Path(airflow.__file__).with_name("provider.yaml.schema.json")
    if schema_path.exists():  # Airflow 3.2+: the schema of conn-fields
        root = json.loads(schema_path.read_text())
        conn_type = root["properties"]["connection-types"]["items"]
        jsonschema.validate(fields, conn_type["properties"]["conn-fields"])
    info = get_provider_info()["connection-types"][0]
    assert info["conn-fields"] == fields and "ui-field-behaviour" in info
    kinds = {name: field["schema"]["type"][0] for name, field in fields.items()}
    assert kinds["dry_run"] == "boolean" and kinds["timeout"] == "number"
    assert kinds["outbox_max_events"] == "integer" and kinds["namespace_map"] == kinds["dags"] == "object"
    assert fields["token_type"]["schema"]["enum"] == ["api_token", "refresh_token"]
    assert "default" not in fields["token_type"]["schema"]  # Airflow would mask it to "***"
    for name, field in fields.items():
        assert field["label"] and field["description"].endswith(f"[extra key: {name}]")


def test_what_an_untouched_form_writes_gives_the_defaults(token) -> None:
    """The form writes every field: its default, or null / "" for a field without one."""
    from airflow_provider_alation.integration.connection import conn_fields, settings_from_fields
    from airflow_provider_alation.settings import build_settings

    written = {name: field["schema"].get("default") for name, field in conn_fields().items()}
    written["cache_dir"] = ""
    written["spool_dir"] = "  "
    from_form = settings_from_fields(host="https://acme.alationcloud.com", password=token, extra=written)
    defaults = build_settings({"url": "https://acme.alationcloud.com", "token": token})
    assert from_form.model_dump() == defaults.model_dump()
    as_json = settings_from_fields(
        host="acme.alationcloud.com", password=token, port=0, extra=json.dumps(written), conn_id="c"
    )
    assert as_json.model_dump() == defaults.model_dump() and as_json.conn_id == "c"


def test_port_field() -> None:
    from airflow_provider_alation.integration.connection import settings_from_fields

    settings = settings_from_fields(host="https://127.0.0.1", password="t0ken-abc", port=8443)
    assert settings.url == "https://127.0.0.1:8443"
