"""A real, unmodified sender through the relay: ``dbt-ol build`` (openlineage-dbt, in its own venv)
over a small dbt project on PostgreSQL, ``OPENLINEAGE_URL`` at a standalone relay, the relay
delivering to the HTTPS stand-in for Alation.

Each model's lineage reaches the stand-in once, its namespaces resolved by the sender's
``namespace_map``. Of the 8 events openlineage-dbt 1.54 sends for this project, the relay answers
the 2 model COMPLETEs 202 and skips the rest with 200: the STARTs (``not_complete``), the data
test's COMPLETE (jobType TEST, with inputs and no outputs, so ``no_outputs`` at the first gate step,
before ``skip_job_types`` would drop it as ``job_type_skipped``) and the parent job's COMPLETE
(``dbt-run-<project>``, no datasets: ``no_inputs``). dbt-ol sends nothing for the seed.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from pathlib import Path

import pytest

from airflow_provider_alation.testing.fake_alation import FakeAlation
from tests.support.dbt import DbtProject, ensure_venv
from tests.support.postgres import PostgresServer
from tests.support.relay_process import RelayProcess, Sender, wait_outbox_empty

pytestmark = pytest.mark.postgres

RESOLVED = "postgres://prod-db.example.com:5432"
PROJECT = "alation_relay_test"
DATABASE = "shop"
SOURCE_SQL = """
create schema raw;
create table raw.orders (
    order_id int, customer_id int, ordered_at timestamp, amount numeric(10, 2), status_code text
);
insert into raw.orders values
    (1, 10, '2026-01-01 09:00', 12.50, 'P'),
    (2, 11, '2026-01-01 10:30', 7.00, 'S'),
    (3, 10, '2026-01-02 08:15', 30.25, 'S');
"""


def expected_models(db: str) -> dict[str, tuple[set[str], set[str]]]:
    """Job name -> (input, output) dataset names, as openlineage-dbt names them."""
    return {
        f"{db}.analytics.{PROJECT}.stg_orders.build.run": (
            {f"{db}.raw.orders"},
            {f"{db}.analytics.stg_orders"},
        ),
        f"{db}.analytics.{PROJECT}.orders_daily.build.run": (
            {f"{db}.analytics.stg_orders"},
            {f"{db}.analytics.orders_daily"},
        ),
    }


@pytest.fixture(scope="module")
def dbt_venv() -> None:
    ensure_venv()  # first use: a few minutes at most (pip), then reused


def _psql(server: PostgresServer, database: str, sql: str) -> None:
    server._run(
        str(server._bin / "psql"),
        "-h",
        "127.0.0.1",
        "-p",
        str(server.port),
        "-U",
        server.user,
        "-d",
        database,
        "-v",
        "ON_ERROR_STOP=1",
        "-q",
        "-c",
        sql,
    )


def _wait_for(fake: FakeAlation, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(fake.events) < count and time.monotonic() < deadline:
        time.sleep(0.1)


def test_dbt_ol_build_through_the_relay_sends_each_model_once_resolved(
    dbt_venv: None,
    postgres: PostgresServer,
    fake_alation: FakeAlation,
    token: str,
    tmp_path: Path,
) -> None:
    database = f"{DATABASE}_{secrets.token_hex(3)}"  # the session server is shared with other tests
    models = expected_models(database)
    postgres.create_database(database)
    _psql(postgres, database, SOURCE_SQL)
    spool = tmp_path / "spool"
    sender = Sender(
        name="dbt",
        token="relay-dbt-" + secrets.token_hex(16),
        alation={
            "url": fake_alation.url,
            "token": token,
            "verify": str(fake_alation.cert_path),
            "spool_dir": str(spool),
            "cache_dir": str(tmp_path / "cache"),
            "namespace_map": {f"127.0.0.1:{postgres.port}": "prod-db.example.com:5432"},
            "dags": {"include": [f"dbt-run-{PROJECT}"]},
        },
    )
    project = DbtProject.create(
        tmp_path, host="127.0.0.1", port=postgres.port, user=postgres.user, database=database
    )
    with RelayProcess(tmp_path / "relay", [sender], workers=2) as relay:
        done = project.dbt_ol("build", openlineage_url=relay.url, api_key=sender.token)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        assert "Emitted 8 OpenLineage events" in done.stdout + done.stderr, done.stdout[-4000:]
        _wait_for(fake_alation, len(models), timeout=60)
        left = wait_outbox_empty(spool, timeout=60)
        time.sleep(1.0)  # anything sent late (a duplicate) would arrive now
        log = relay.log_text()

    assert left == {"pending": 0, "claimed": 0, "dead": 0}, (left, log[-4000:])
    # Only the models' COMPLETE events, once each; no START, no TEST job, no parent job, no seed.
    events = list(fake_alation.events)
    names = Counter(e["job"]["name"] for e in events)
    assert names == Counter(dict.fromkeys(models, 1)), (names, log[-4000:])
    for event in events:
        assert event["eventType"] == "COMPLETE"
        assert event["job"]["facets"]["jobType"]["jobType"] == "MODEL"
        inputs, outputs = models[event["job"]["name"]]
        assert {(d["namespace"], d["name"]) for d in event["inputs"]} == {(RESOLVED, n) for n in inputs}
        assert {(d["namespace"], d["name"]) for d in event["outputs"]} == {(RESOLVED, n) for n in outputs}
        # Nothing still names the sender's own host:port (column lineage, dataSource facets, ...).
        assert f"127.0.0.1:{postgres.port}" not in str(event)
    # The relay's answers (uvicorn's access log): 202 for the models, 200 "skipped" for the others.
    answers = Counter(
        line.rsplit('HTTP/1.1" ', 1)[1].split()[0]
        for line in log.splitlines()
        if '"POST /api/v1/lineage' in line
    )
    assert answers == Counter({"202": len(models), "200": 8 - len(models)}), answers
    # The stand-in got each event in one POST, with Alation's token (never the relay's).
    posts = [r for r in fake_alation.requests if r.method == "POST" and r.path == fake_alation.endpoint]
    assert len(posts) == len(models)
    assert all(r.headers["authorization"] == f"Bearer {token}" for r in posts)
    assert sender.token not in log
