"""End to end: a real Airflow 3 with the real OpenLineage provider runs real DAGs (``airflow dags
test``), configured as a user would (``AIRFLOW__OPENLINEAGE__TRANSPORT`` naming the transport, the
connection from ``AIRFLOW_CONN_ALATION_DEFAULT``); the HTTPS stand-in for Alation checks the
contract and records what it receives."""

from __future__ import annotations

import json
import re
import tempfile
import time

import pytest

from tests.support.airflow_home import AirflowHome, connection_json, dag_run_succeeded

pytestmark = pytest.mark.airflow

TARGET = "postgres://prod-db.example.com:5432"


def alation_env(fake, token: str, **extra) -> dict[str, str]:
    # Each run its own outbox, so that nothing one test leaves behind is drained into another.
    settings = {
        "verify": str(fake.cert_path),
        "spool_dir": tempfile.mkdtemp(prefix="alation-spool-"),
        **extra,
    }
    return {"AIRFLOW_CONN_ALATION_DEFAULT": connection_json(fake.url, token, settings)}


def names(datasets: list[dict]) -> list[str]:
    return sorted(d["name"] for d in datasets)


def assert_clean_run(result, dag_id: str, token: str) -> None:
    output = result.stdout + result.stderr
    assert dag_run_succeeded(result, dag_id), output[-5000:]
    assert token not in output


@pytest.mark.postgres
def test_postgres_dag_sends_exactly_the_lineage_bearing_event(
    airflow_home: AirflowHome, postgres, fake_alation, token
) -> None:
    import psycopg2

    postgres.create_database("sales")
    env = alation_env(
        fake_alation, token, namespace_map={f"127.0.0.1:{postgres.port}": "prod-db.example.com:5432"}
    )
    env["AIRFLOW_CONN_POSTGRES_ALATION_EXAMPLE"] = postgres.conn_uri("sales")

    result = airflow_home.dags_test("alation_postgres", env)
    assert_clean_run(result, "alation_postgres", token)

    # The SQL really ran against the real server.
    conn = psycopg2.connect(host="127.0.0.1", port=postgres.port, user=postgres.user, dbname="sales")
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM public.orders_daily")
            assert cursor.fetchone()[0] == 2
    finally:
        conn.close()

    # Exactly one event: create_tables and seed_orders have no input table, START and DAG events are
    # never sent. Every request carried the token and passed the stand-in's checks (schema included).
    assert [r.status for r in fake_alation.requests] == [200]
    (request,) = fake_alation.requests
    assert request.headers["authorization"] == f"Bearer {token}"
    (event,) = fake_alation.events
    assert event["eventType"] == "COMPLETE"
    assert event["job"]["name"] == "alation_postgres.build_orders_daily"
    assert names(event["inputs"]) == ["sales.public.orders"]
    assert names(event["outputs"]) == ["sales.public.orders_daily"]
    assert {d["namespace"] for d in event["inputs"] + event["outputs"]} == {TARGET}
    # The facets Alation shows are kept.
    assert {"airflow", "processing_engine", "nominalTime", "parent"} <= set(event["run"]["facets"])
    assert event["job"]["facets"]["jobType"]["jobType"] == "TASK"


def test_quickstart_dag_rewrites_ip_and_pgbouncer(airflow_home: AirflowHome, fake_alation, token) -> None:
    env = alation_env(
        fake_alation,
        token,
        namespace_map={
            "postgres://10.0.0.5:5432": TARGET,
            "pgbouncer.internal:6432": "prod-db.example.com:5432",
        },
    )
    result = airflow_home.dags_test("alation_quickstart", env)
    assert_clean_run(result, "alation_quickstart", token)
    events = {e["job"]["name"]: e for e in fake_alation.events}
    assert sorted(events) == ["alation_quickstart.clean_orders", "alation_quickstart.daily_revenue"]
    assert all(e["eventType"] == "COMPLETE" for e in events.values())
    daily = events["alation_quickstart.daily_revenue"]
    assert names(daily["inputs"]) == ["sales.public.customers", "sales.staging.orders_clean"]
    assert names(daily["outputs"]) == ["sales.marts.daily_revenue"]
    for event in events.values():
        assert {d["namespace"] for d in event["inputs"] + event["outputs"]} == {TARGET}
    assert (
        "namespace postgres://pgbouncer.internal:6432 -> postgres://prod-db.example.com:5432" in result.stdout
    )


def test_quickstart_dag_with_discovery_shares_the_cache_and_names_the_fix(
    airflow_home: AirflowHome, fake_alation, token, tmp_path
) -> None:
    from airflow_provider_alation.testing.catalog import reference_datasources

    fake_alation.datasources.update(reference_datasources())
    cache = tmp_path / "cache"
    # Only the IP is mapped: discovery confirms it, and cannot place the pgbouncer.
    env = alation_env(
        fake_alation,
        token,
        discover_datasources=True,
        cache_dir=str(cache),
        namespace_map={"postgres://10.0.0.5:5432": TARGET},
    )
    result = airflow_home.dags_test("alation_quickstart", env)
    assert_clean_run(result, "alation_quickstart", token)
    events = {e["job"]["name"]: e for e in fake_alation.events}
    assert sorted(events) == ["alation_quickstart.clean_orders", "alation_quickstart.daily_revenue"]
    clean = events["alation_quickstart.clean_orders"]
    assert {d["namespace"] for d in clean["inputs"] + clean["outputs"]} == {TARGET}
    daily = events["alation_quickstart.daily_revenue"]
    assert {d["namespace"] for d in daily["outputs"]} == {"postgres://pgbouncer.internal:6432"}
    # Two task processes, one read of Alation's data sources (one page of each API): the second
    # process used the file the first one wrote.
    assert [r.path.split("?")[0] for r in fake_alation.api_requests()] == [
        "/integration/v1/datasource/",
        "/integration/v2/datasource/",
    ]
    assert all(r.headers["token"] == token for r in fake_alation.api_requests())
    assert len(list(cache.glob("datasources-*.sqlite"))) == 1
    # The task log names the exact host:port to add in Alation, once.
    output = result.stdout + result.stderr
    fix = "add pgbouncer.internal:6432 to the 'Additional Datasource Connections' field"
    assert output.count(fix) == 1, output[-5000:]
    assert "matches no Alation data source" in output
    assert "Alation data source #1 Sales (Postgres)" in output


@pytest.mark.parametrize(
    ("dag_id", "extra", "expected_jobs"),
    [
        ("untagged_lineage", {}, []),
        ("untagged_lineage", {"dags": {"include": ["untagged_*"]}}, ["untagged_lineage.copy"]),
        ("alation_quickstart", {"dags": {"include": ["*"], "exclude": ["alation_quick*"]}}, []),
        ("alation_quickstart", {"opt_in_tag": "lineage"}, []),
    ],
)
def test_dag_opt_in(airflow_home: AirflowHome, fake_alation, token, dag_id, extra, expected_jobs) -> None:
    result = airflow_home.dags_test(dag_id, alation_env(fake_alation, token, **extra))
    assert_clean_run(result, dag_id, token)
    assert sorted(e["job"]["name"] for e in fake_alation.events) == expected_jobs
    assert len(fake_alation.requests) == len(expected_jobs)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("{not json", "extra: not valid JSON"),
        ({"timout": 3, "timeout": -1}, "extra.timout: unknown key. Did you mean 'timeout'?"),
    ],
)
def test_bad_settings_logged_in_task_log_and_task_succeeds(
    airflow_home, fake_alation, token, extra, expected
) -> None:
    env = {"AIRFLOW_CONN_ALATION_DEFAULT": connection_json(fake_alation.url, token, extra)}
    result = airflow_home.dags_test("alation_quickstart", env)
    assert_clean_run(result, "alation_quickstart", token)
    assert "Invalid Alation settings in Airflow connection 'alation_default'" in result.stdout
    assert expected in result.stdout
    assert fake_alation.requests == []


def test_non_url_host_logged_and_task_succeeds(airflow_home, fake_alation, token) -> None:
    env = {"AIRFLOW_CONN_ALATION_DEFAULT": connection_json("not a url", token)}
    result = airflow_home.dags_test("alation_quickstart", env)
    assert_clean_run(result, "alation_quickstart", token)
    assert "host: 'not a url' is not a tenant URL" in result.stdout


def _queued_outbox(spool: str, count: int) -> list[str]:
    """Events waiting in an outbox, as a failed delivery leaves them."""
    from airflow_provider_alation.outbox.store import LocalOutbox
    from tests.support.emitter import distinct_event

    outbox = LocalOutbox(spool)
    run_ids = []
    for _ in range(count):
        event = distinct_event()
        run_ids.append(event["run"]["runId"])
        outbox.settle(outbox.put(json.dumps(event).encode()), "retry")
    return run_ids


def test_outbox_replay_dag_sends_what_waits(airflow_home: AirflowHome, fake_alation, token, tmp_path) -> None:
    spool = str(tmp_path / "spool")
    run_ids = _queued_outbox(spool, 3)
    result = airflow_home.dags_test(
        "alation_outbox_replay", alation_env(fake_alation, token, spool_dir=spool)
    )
    assert_clean_run(result, "alation_outbox_replay", token)
    assert sorted(e["run"]["runId"] for e in fake_alation.events) == sorted(run_ids)
    assert "'sent': 3" in result.stdout + result.stderr


def test_outbox_replay_dag_fails_loudly_on_a_rejected_token(
    airflow_home: AirflowHome, fake_alation, token, tmp_path
) -> None:
    spool = str(tmp_path / "spool")
    _queued_outbox(spool, 2)
    result = airflow_home.dags_test(
        "alation_outbox_replay", alation_env(fake_alation, token + "-revoked", spool_dir=spool)
    )
    output = result.stdout + result.stderr
    assert not dag_run_succeeded(result, "alation_outbox_replay"), output[-3000:]
    assert "ReplayStopped" in output and "rejected the token" in output
    assert fake_alation.events == []
    from airflow_provider_alation.outbox.store import LocalOutbox

    assert LocalOutbox(spool).counts()["pending"] == 2  # still there for the next run


@pytest.mark.postgres
def test_dags_test_with_a_connection_from_the_metadata_database_delivers_hook_lineage(
    airflow_home: AirflowHome, postgres, fake_alation, token, tmp_path
) -> None:
    """The README's step 2 creates the connection in the UI (the metadata database). The provider
    forks an emitter per event; under ``airflow dags test`` a connection read from that child is
    never answered and the child is killed after 10 s. The task process reads it instead."""
    postgres.create_database("hooks")
    conn_id = "alation_from_ui"
    extra = json.dumps({"verify": str(fake_alation.cert_path), "spool_dir": str(tmp_path / "spool")})
    added = airflow_home.run(
        "connections", "add", conn_id, "--conn-type", "alation", "--conn-host", fake_alation.url,
        "--conn-password", token, "--conn-extra", extra, env={},
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    try:
        env = {
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
                {"type": "airflow_provider_alation.transport.AlationTransport", "conn_id": conn_id}
            ),
            "AIRFLOW_CONN_HOOK_LINEAGE_PG": postgres.conn_uri("hooks"),
        }
        result = airflow_home.dags_test("hook_lineage", env)
    finally:
        airflow_home.run("connections", "delete", conn_id, env={})
    output = result.stdout + result.stderr
    assert_clean_run(result, "hook_lineage", token)
    assert "expired and will be terminated" not in output, output[-3000:]
    # Both statements' lineage, each once, as its own job; never a merged a -> c. (Under dags test
    # the hook-lineage collector is not reset between tasks, so the query numbers go on from
    # create_tables' statements: an Airflow artifact; their DDL events have no input and are dropped.)
    events = sorted(fake_alation.events, key=lambda e: int(e["job"]["name"].rsplit(".", 1)[1]))
    assert [re.sub(r"\d+$", "<n>", e["job"]["name"]) for e in events] == ["hook_lineage.load.query.<n>"] * 2
    assert [(names(e["inputs"]), names(e["outputs"])) for e in events] == [
        (["hooks.public.a"], ["hooks.public.b"]),
        (["hooks.public.b"], ["hooks.public.c"]),
    ]
    for event in fake_alation.events:
        parent = event["run"]["facets"]["parent"]
        assert parent["job"]["name"] == "hook_lineage.load"
        assert parent["root"]["job"]["name"] == "hook_lineage"
    assert [r.status for r in fake_alation.requests] == [200, 200]


def test_through_the_fork_path_a_hanging_discovery_holds_no_task_and_loses_nothing(
    airflow_home: AirflowHome, fake_alation, token, tmp_path
) -> None:
    """The provider's forked emitter used to be killed at 10 s while a data-source page trickled,
    with 0 POSTs and no outbox entry, and every following task repeated it."""
    from airflow_provider_alation.testing.catalog import reference_datasources
    from airflow_provider_alation.testing.fake_alation import Fault

    fake_alation.datasources.update(reference_datasources())
    fake_alation.fail_api_next(*[Fault(status=200, header_drip=1.0)] * 4)  # headers 1 byte a second
    env = alation_env(
        fake_alation,
        token,
        discover_datasources=True,
        cache_dir=str(tmp_path / "cache"),
        namespace_map={
            "postgres://10.0.0.5:5432": TARGET,
            "pgbouncer.internal:6432": "prod-db.example.com:5432",
        },
    )
    result = airflow_home.dags_test("alation_quickstart", env)
    output = result.stdout + result.stderr
    assert_clean_run(result, "alation_quickstart", token)
    assert "expired and will be terminated" not in output, output[-3000:]
    assert sorted(e["job"]["name"] for e in fake_alation.events) == [
        "alation_quickstart.clean_orders",
        "alation_quickstart.daily_revenue",
    ]
    # The first emitter gave up on the page within its share of the budget and recorded it; the
    # second did not start the same hanging fetch again.
    assert len(fake_alation.api_requests()) == 1, [r.path for r in fake_alation.api_requests()]
    assert "could not refresh Alation's data sources" in output


def test_through_the_fork_path_a_backtracking_rule_holds_no_task(
    airflow_home: AirflowHome, fake_alation, token
) -> None:
    """With Python's re this rule takes 4 s on a 16-letter label and a minute on 20 (26 here); the
    forked emitter was killed at 10 s and the event lost. On RE2 it is linear."""
    rule = r"re:^postgres://([a-z0-9-]+\.?)+\.prod\.internal:5432$"
    env = alation_env(fake_alation, token, namespace_map={rule: TARGET})
    started = time.monotonic()
    result = airflow_home.dags_test("long_host_lineage", env)
    output = result.stdout + result.stderr
    assert_clean_run(result, "long_host_lineage", token)
    assert "expired and will be terminated" not in output, output[-3000:]
    (event,) = fake_alation.events
    assert event["job"]["name"] == "long_host_lineage.copy"
    assert time.monotonic() - started < 120  # the whole dags test; with re it would not end for hours
