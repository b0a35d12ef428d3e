"""The "Alation lineage" page in Airflow 3's UI, driven by a real browser (headless Debian chromium
via Playwright) against a real ``airflow api-server`` with SimpleAuthManager users (not all-admins):
an admin reaches the page from the navigation and sees every database connection's line, the tenant
verdict on demand and the outbox; a viewer (no access to connections) gets neither the page nor its
API. The DAGs and tags come from the metadata database (``airflow dags reserialize``), never from
parsing DAG files in the api-server.

Screenshots are kept in ``test-artifacts/ui-page/`` (ignored by git).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_alation.outbox.store import LocalOutbox
from airflow_provider_alation.testing.catalog import (
    REFERENCE_SOURCES,
    reference_datasources,
    synthetic_datasources,
)
from tests.support.airflow_home import REPO, AirflowHome
from tests.support.airflow_home import api_server as start_api_server
from tests.test_browser import browser  # noqa: F401 - the module-scoped chromium fixture

pytestmark = [pytest.mark.browser, pytest.mark.airflow]

ARTIFACTS = REPO / "test-artifacts" / "ui-page"
PASSWORDS = {"admin": "admin-password-ui", "viewer": "viewer-password-ui"}
DAG_COUNT = 500

DAG_FILE = f'''
"""{DAG_COUNT} DAGs for the Alation lineage page's tests: every 10th tagged alation."""
from datetime import datetime

from airflow.sdk import DAG, Asset
from airflow.providers.standard.operators.empty import EmptyOperator

for n in range({DAG_COUNT}):
    dag_id = f"ui_dag_{{n:03d}}"
    tags = ["alation"] if n % 10 == 0 else []
    with DAG(dag_id, schedule=None, start_date=datetime(2024, 1, 1), tags=tags) as dag:
        outlets = []
        if n == 0:
            outlets = [Asset("s3://ui-bucket/orders.parquet"), Asset("x-internal-report")]
        EmptyOperator(task_id="work", outlets=outlets)
    globals()[dag_id] = dag
'''

#: conn_id -> (REST body, the expected verdict, what the line's last cell says)
CONNECTIONS: dict[str, tuple[dict[str, Any], str, str]] = {
    "pg_sales": (
        {"conn_type": "postgres", "host": "prod-db.example.com", "port": 5432, "password": "pg-secret-1"},
        "pass",
        "#1 Sales (Postgres)",
    ),
    "pg_bouncer": (
        {"conn_type": "postgres", "host": "pgbouncer.internal", "port": 6432, "password": "pg-secret-2"},
        "pass",
        "#1 Sales (Postgres)",
    ),
    "pg_unknown": (
        {"conn_type": "postgres", "host": "10.9.9.9", "port": 5432},
        "fail",
        '"10.9.9.9:5432": "<host>:<port> of that data source',
    ),
    "mysql_shop": (
        {"conn_type": "mysql", "host": "mysql.example.com", "port": 3306},
        "pass",
        "#3 Shop (MySQL)",
    ),
    "snowflake_acct": (
        {"conn_type": "snowflake", "extra": json.dumps({"account": "myorg-myaccount"})},
        "pass",
        "#10 Snowflake (org-account)",
    ),
    "trino_lake": (
        {"conn_type": "trino", "host": "trino.example.com", "port": 8080},
        "pass",
        "#13 Lakehouse (Trino)",
    ),
}


@pytest.fixture(scope="module")
def ui_home() -> Iterator[AirflowHome]:
    """An Airflow home of its own: {DAG_COUNT} DAGs serialized into its metadata database."""
    home = AirflowHome.create([])
    (home.dags / "ui_page_dags.py").write_text(DAG_FILE)
    result = home.run("dags", "reserialize", env={}, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    yield home
    home.cleanup()


@pytest.fixture(scope="module")
def ui_server(ui_home: AirflowHome) -> Iterator[str]:
    passwords = ui_home.home / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    env = {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
    }
    with start_api_server(ui_home, env, "ui-api-server.log") as url:
        yield url


def jwt(server: str, user: str) -> str:
    answer = requests.post(
        f"{server}/auth/token", json={"username": user, "password": PASSWORDS[user]}, timeout=30
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["access_token"])


def put_connection(server: str, token: str, conn_id: str, body: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    requests.delete(f"{server}/api/v2/connections/{conn_id}", headers=headers, timeout=30)
    answer = requests.post(
        f"{server}/api/v2/connections", json={"connection_id": conn_id, **body}, headers=headers, timeout=30
    )
    assert answer.status_code == 201, answer.text


def alation_connection(fake: Any, token: str, spool: Path, **extra: Any) -> dict[str, Any]:
    settings = {
        "verify": str(fake.cert_path),
        "spool_dir": str(spool),
        "discover_datasources": True,
        "namespace_map": {"pgbouncer.internal:6432": "prod-db.example.com:5432"},
        **extra,
    }
    return {"conn_type": "alation", "host": fake.url, "password": token, "extra": json.dumps(settings)}


def logged_in_page(browser: Any, server: str, token: str) -> Any:  # noqa: F811
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    context.add_cookies([{"name": "_token", "value": token, "url": server}])
    return context.new_page()


def page_frame(page: Any) -> Any:
    page.locator("iframe").first.wait_for(timeout=60_000)
    frame = page.frame_locator("iframe").first
    return frame


def test_page_for_an_admin(browser, ui_server, fake_alation, token, tmp_path) -> None:  # noqa: F811
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {ARTIFACTS}")
    fake_alation.datasources.update(reference_datasources())
    admin = jwt(ui_server, "admin")
    spool = tmp_path / "spool"
    put_connection(ui_server, admin, "alation_default", alation_connection(fake_alation, token, spool))
    for conn_id, (body, _, _) in CONNECTIONS.items():
        put_connection(ui_server, admin, conn_id, body)
    # The data sources are read once, on demand (the refresh button's API); the page reads the cache.
    refreshed = requests.post(
        f"{ui_server}/alation-lineage/api/datasources/refresh",
        headers={"Authorization": f"Bearer {admin}", "X-Alation-Lineage": "1"},
        timeout=60,
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["count"] == len(REFERENCE_SOURCES), refreshed.text
    # The outbox: 3 waiting, 2 dead letters with their reasons.
    outbox = LocalOutbox(spool)
    for n in range(5):
        claim = outbox.put(json.dumps({"eventType": "COMPLETE", "n": n}).encode())
        if n >= 3:
            outbox.settle(claim, "dead", {"status": 400, "problem": "refused", "detail": f"bad event {n}"})
        else:
            outbox.settle(claim, "retry")
    requests_before = len(fake_alation.requests)

    page = logged_in_page(browser, ui_server, admin)
    try:
        page.goto(f"{ui_server}/", wait_until="networkidle")
        page.get_by_role("link", name="Alation lineage").first.click()
        page.wait_for_url(re.compile(r"/plugin/alation-lineage$"))
        frame = page_frame(page)
        frame.locator("#loaded[data-loaded]").wait_for(timeout=60_000)
        loaded = frame.locator("#loaded").text_content() or ""
        assert loaded.startswith("Loaded in"), loaded
        page.screenshot(path=str(ARTIFACTS / "admin-1-page.png"), full_page=True)
        assert len(fake_alation.requests) == requests_before  # the page load asked Alation nothing

        for conn_id, (_, status, shown) in CONNECTIONS.items():
            row = frame.locator(f'#ns-table tr[data-conn-id="{conn_id}"]')
            assert row.get_attribute("data-status") == status, row.text_content()
            assert shown in (row.text_content() or ""), row.text_content()
        unknown = frame.locator('#ns-table tr[data-conn-id="pg_unknown"]')
        assert unknown.get_by_role("button", name="Copy the fix for pg_unknown").count() == 1
        assert frame.locator("#ds-count").text_content() == str(len(REFERENCE_SOURCES))
        assert frame.locator("#ob-waiting").text_content() == "3"
        assert frame.locator("#ob-dead").text_content() == "2"
        assert frame.locator("#dead-table tbody tr").count() == 2
        assert "bad event 4" in (frame.locator("#dead-table").text_content() or "")
        dags = frame.locator("#dag-lines").text_content() or ""
        assert f"50 of {DAG_COUNT} DAGs" in dags, dags
        assert "s3://ui-bucket/orders.parquet" in dags  # no provider converts s3:// here
        assert frame.locator("#replay-button").is_visible()

        # The resolve box.
        frame.locator("#resolve-input").fill("postgres://pgbouncer.internal:6432")
        frame.get_by_role("button", name="Resolve").click()
        frame.locator("#resolve-result li").wait_for()
        resolved = frame.locator("#resolve-result").text_content() or ""
        assert "sent as postgres://prod-db.example.com:5432" in resolved and "Sales (Postgres)" in resolved

        # The tenant, on demand: accepted, then refused once the connection's token is wrong.
        frame.get_by_role("button", name="Test the tenant").click()
        accepted = frame.locator('#tenant-lines li[data-check="token accepted"]')
        accepted.wait_for(timeout=60_000)
        assert accepted.get_attribute("data-status") == "pass", accepted.text_content()
        page.screenshot(path=str(ARTIFACTS / "admin-2-tenant-ok.png"), full_page=True)
        wrong = alation_connection(fake_alation, "wrong-" + token, spool)
        put_connection(ui_server, admin, "alation_default", wrong)
        frame.get_by_role("button", name="Test the tenant").click()
        frame.locator('#tenant-lines li[data-check="token accepted"][data-status="fail"]').wait_for(
            timeout=60_000
        )
        refused = frame.locator('#tenant-lines li[data-check="token accepted"]').text_content() or ""
        assert "Token rejected: HTTP 401" in refused, refused
        page.screenshot(path=str(ARTIFACTS / "admin-3-tenant-401.png"), full_page=True)
        html = frame.locator("html").inner_html()
        status = requests.get(
            f"{ui_server}/alation-lineage/api/status",
            headers={"Authorization": f"Bearer {admin}"},
            timeout=60,
        ).text
    finally:
        page.context.close()
    for secret in (token, "wrong-" + token, "pg-secret-1", "pg-secret-2", admin):
        assert secret not in html and secret not in status


def test_no_page_and_no_data_without_connection_access(browser, ui_server) -> None:  # noqa: F811
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    viewer = jwt(ui_server, "viewer")
    for headers in ({}, {"Authorization": f"Bearer {viewer}"}):
        expected = 403 if headers else 401
        for method, path in (
            ("GET", "/alation-lineage/"),
            ("GET", "/alation-lineage/api/status"),
            ("GET", "/alation-lineage/api/resolve?namespace=postgres://x:5432"),
            ("POST", "/alation-lineage/api/tenant"),
            ("POST", "/alation-lineage/api/datasources/refresh"),
            ("POST", "/alation-lineage/api/replay"),
        ):
            answer = requests.request(
                method, ui_server + path, headers={**headers, "X-Alation-Lineage": "1"}, timeout=30
            )
            assert answer.status_code == expected, (method, path, answer.status_code, answer.text)
            assert "namespaces" not in answer.text and "spool_dir" not in answer.text
    page = logged_in_page(browser, ui_server, viewer)
    try:
        page.goto(f"{ui_server}/plugin/alation-lineage", wait_until="networkidle")
        frame = page_frame(page)
        alert = frame.get_by_role("alert")
        alert.wait_for(timeout=60_000)
        assert "not allowed" in (alert.text_content() or "")
        assert frame.locator("#ns-table").count() == 0
        page.screenshot(path=str(ARTIFACTS / "viewer-denied.png"), full_page=True)
    finally:
        page.context.close()


def test_load_with_a_large_deployment(browser, ui_server, fake_alation, token, tmp_path) -> None:  # noqa: F811
    """200 connections, {DAG_COUNT} DAGs and 5,000 data sources: the page loads without asking Alation.
    The time is printed (the benchmark figure), not asserted."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    fake_alation.datasources.update(synthetic_datasources(5000))
    admin = jwt(ui_server, "admin")
    put_connection(
        ui_server, admin, "alation_default", alation_connection(fake_alation, token, tmp_path / "s")
    )
    headers = {"Authorization": f"Bearer {admin}"}
    existing = requests.get(f"{ui_server}/api/v2/connections?limit=1000", headers=headers, timeout=30).json()
    missing = 201 - existing["total_entries"]  # 200 database connections and alation_default
    for n in range(missing):
        kind = ("postgres", "mysql", "trino", "snowflake")[n % 4]
        body: dict[str, Any] = {"conn_type": kind, "host": f"pg-{n}.db.example.com", "port": 5432}
        if kind == "snowflake":
            body = {"conn_type": kind, "extra": json.dumps({"account": f"org{n}-acct{n}"})}
        answer = requests.post(
            f"{ui_server}/api/v2/connections",
            json={"connection_id": f"load_{n:03d}", **body},
            headers=headers,
        )
        assert answer.status_code == 201, answer.text
    refreshed = requests.post(
        f"{ui_server}/alation-lineage/api/datasources/refresh",
        headers={**headers, "X-Alation-Lineage": "1"},
        timeout=120,
    )
    assert refreshed.json()["count"] == 5000, refreshed.text
    requests_before = len(fake_alation.requests)
    page = logged_in_page(browser, ui_server, admin)
    try:
        figures: list[int] = []
        texts: list[str] = []
        for _ in range(3):
            page.goto(f"{ui_server}/alation-lineage/", wait_until="commit")
            page.locator("#loaded[data-loaded]").wait_for(timeout=60_000)
            status = page.locator("#loaded")
            assert status.get_attribute("data-loaded") != "error", status.text_content()
            since_navigation = int(status.get_attribute("data-since-navigation") or 0)
            figures.append(since_navigation)
            texts.append(status.text_content() or "")
        page.screenshot(path=str(ARTIFACTS / "load-200-connections.png"))
        rows = page.locator("#ns-table tbody tr").count()
    finally:
        page.context.close()
    assert rows >= 200
    assert len(fake_alation.requests) == requests_before  # no request to Alation on page load
    print(
        f"\nUI page load, 200 connections / {DAG_COUNT} DAGs / 5,000 data sources, from navigation start "
        f"to 'Loaded': {figures} ms ({'; '.join(texts)})"
    )
