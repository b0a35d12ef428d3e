from __future__ import annotations

import pytest

from airflow_provider_alation.integration.connection import settings_from_fields
from airflow_provider_alation.settings import SettingsError, build_settings

TOKEN = "settings-test-token-0123456789"


def from_conn(extra=None, host="https://acme.alationcloud.com", password=TOKEN, login=None):
    return settings_from_fields(
        host=host, password=password, login=login, extra=extra, conn_id="alation_default"
    )


def problems(excinfo: pytest.ExceptionInfo[SettingsError]) -> str:
    return str(excinfo.value)


def test_defaults() -> None:
    settings = from_conn()
    assert settings.endpoint_url == "https://acme.alationcloud.com/open_lineage_event/"
    assert settings.token_type == "api_token"
    assert settings.opt_in_tag == "alation"
    assert (settings.timeout, settings.time_budget, settings.max_event_bytes) == (5.0, 8.0, 1_048_576)
    assert settings.verify is True and settings.dry_run is False
    assert settings.spool_dir.endswith("alation/spool")


def test_bare_host_gets_https_and_endpoint_keeps_trailing_slash() -> None:
    settings = from_conn(host="acme.alationcloud.com/", extra={"endpoint": "/api/v1/open_lineage/"})
    assert settings.endpoint_url == "https://acme.alationcloud.com/api/v1/open_lineage/"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"extra": "{not json"}, "extra: not valid JSON"),
        ({"extra": "[1, 2]"}, "extra: must be a JSON object"),
        ({"extra": {"timout": 3}}, "extra.timout: unknown key. Did you mean 'timeout'?"),
        ({"extra": {"timeout": -1}}, "extra.timeout: Input should be greater than 0"),
        ({"extra": {"time_budget": 0}}, "extra.time_budget: Input should be greater than or equal to 0.5"),
        ({"extra": {"time_budget": 0.01}}, "extra.time_budget: Input should be greater than or equal to 0.5"),
        ({"extra": {"spool_dir": "spool"}}, "extra.spool_dir: 'spool' is a relative path"),
        ({"extra": {"cache_dir": "/tmp/a\x00b"}}, "extra.cache_dir: contains a NUL character"),
        ({"extra": {"verify": "/tmp/a\x00b"}}, "extra.verify: CA bundle"),
        ({"extra": {"skip_job_types": [""]}}, "extra.skip_job_types: '' is not a job type"),
        ({"extra": {"timeout": "soon"}}, "extra.timeout: Input should be a valid number"),
        ({"host": "not a url"}, "host: 'not a url' is not a tenant URL"),
        ({"host": ""}, "host: is empty"),
        ({"host": "ftp://acme.alationcloud.com"}, "is not a tenant URL"),
        ({"password": ""}, "password: is empty"),
        (
            {"extra": {"token_type": "oauth"}},
            "extra.token_type: Input should be 'api_token' or 'refresh_token'",
        ),
        (
            {"extra": {"token_type": "refresh_token"}},
            "login: token_type 'refresh_token' needs the Alation user id",
        ),
        (
            {"extra": {"dags": {"includes": ["*"]}}},
            "extra.dags.includes: unknown key. Did you mean 'include'?",
        ),
        ({"extra": {"namespace_map": {"re:(": "x"}}}, "expression 're:(' is not accepted (missing )"),
        (
            {"extra": {"namespace_map": {"re:^postgres://(a)\\1$": "x"}}},
            "rules run on RE2, a linear-time engine without backreferences",
        ),
        ({"extra": {"verify": "/no/such/ca.pem"}}, "CA bundle '/no/such/ca.pem' does not exist"),
        ({"extra": {"timeout": 10}}, "extra.timeout: 10.0s per request exceeds time_budget 8.0s"),
        ({"host": "http://acme.alationcloud.com"}, "host: plain http:// sends the token unencrypted"),
        ({"extra": {"token": "x"}}, "extra.token: set this in the connection's password field"),
    ],
)
def test_bad_settings_name_the_field_and_the_fix(kwargs, expected) -> None:
    with pytest.raises(SettingsError) as excinfo:
        from_conn(**kwargs)
    message = problems(excinfo)
    assert expected in message
    assert "Airflow connection 'alation_default'" in message
    assert TOKEN not in message


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as excinfo:
        from_conn(host="not a url", extra={"timeout": -1, "dry_rn": True})
    assert len(excinfo.value.problems) == 3


def test_http_allowed_only_when_asked() -> None:
    assert from_conn(host="http://localhost:8080", extra={"allow_http": True}).url == "http://localhost:8080"


def test_inline_settings_use_inline_names() -> None:
    with pytest.raises(SettingsError) as excinfo:
        build_settings(
            {"url": "nope nope", "token": TOKEN, "timeout": 0}, "the transport configuration", inline=True
        )
    message = str(excinfo.value)
    assert "url: 'nope nope'" in message and "timeout: Input should be greater than 0" in message
    assert "extra." not in message


def test_token_never_in_repr_or_dump() -> None:
    settings = from_conn()
    assert TOKEN not in repr(settings)
    assert TOKEN not in str(settings)
    assert TOKEN not in settings.model_dump_json()
    assert settings.token.get_secret_value() == TOKEN


def test_user_id_from_login() -> None:
    settings = from_conn(login="42", extra={"token_type": "refresh_token"})
    assert settings.user_id == 42


@pytest.mark.parametrize(
    ("namespace_map", "message"),
    [
        ({"re:^postgres://([a-z]+):6432$": "\\2"}, "not a valid replacement (invalid group reference 2"),
        ({"re:^postgres://(x)$": "C:\\dir"}, "not a valid replacement"),
        ({"re:^postgresql://x$": "postgres://y:5432"}, "write ^postgres:// instead"),
        ({"db.internal:99999": "db.example.com:5432"}, "has an invalid port"),
        ({"postgres://db.internal:5432": "postgres://db.example.com:abc"}, "has an invalid port"),
    ],
)
def test_namespace_map_entries_are_checked(namespace_map: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        build_settings({"url": "https://acme.alationcloud.com", "token": "t", "namespace_map": namespace_map})
    assert "extra.namespace_map" in str(raised.value)
    assert message in str(raised.value)


def test_url_with_credentials_is_refused_without_echoing_them() -> None:
    with pytest.raises(SettingsError) as raised:
        build_settings({"url": "https://admin:hunter2@acme.alationcloud.com", "token": "t"})
    assert "host:" in str(raised.value) and "user name or password" in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_token_with_a_line_break_is_refused_without_echoing_it() -> None:
    with pytest.raises(SettingsError) as raised:
        build_settings({"url": "https://acme.alationcloud.com", "token": "abc123\ndef456"})
    assert "password: contains spaces, line breaks" in str(raised.value)
    assert "abc123" not in str(raised.value)


@pytest.mark.parametrize(
    "host",
    [
        "Zk3" * 12 + " ",  # the token pasted instead of the URL
        "https://acme.alationcloud.com?token=" + "Zk3" * 12 + " x",
        "https://" + "Zk3" * 12 + ".alationcloud.com:99999",
    ],
)
def test_a_token_pasted_into_the_host_is_never_echoed(host) -> None:
    with pytest.raises(SettingsError) as excinfo:
        from_conn(host=host)
    assert "host: the value (not shown: it may contain a token)" in str(excinfo.value)
    assert "Zk3Zk3Zk3" not in str(excinfo.value)


def test_blank_extra_values_are_unset_in_a_connection_but_not_inline() -> None:
    """Airflow 3.2+'s form writes null or "" for the fields left untouched: they keep the default.
    The transport's inline settings have no form: there an empty directory is still an error."""
    settings = from_conn(extra={"spool_dir": "", "cache_dir": None, "opt_in_tag": " ", "timeout": None})
    assert settings.spool_dir.endswith("/alation/spool") and settings.opt_in_tag == "alation"
    assert settings.timeout == 5.0
    with pytest.raises(SettingsError, match="is empty, which would put the outbox"):
        build_settings({"url": "https://acme.alationcloud.com", "token": TOKEN, "spool_dir": ""}, inline=True)
