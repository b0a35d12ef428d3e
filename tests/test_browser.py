"""The Alation connection in Airflow 3's UI, driven by a real browser (headless Debian chromium via
Playwright) against a real ``airflow api-server``: Admin > Connections > Add, type Alation, fill the
form, save, then the Test icon in the Connections list gives the verdict in a toast.

Screenshots are kept in ``test-artifacts/browser/`` (ignored by git); the path is printed.
Without chromium or Playwright the tests are skipped, except in CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.airflow_home import REPO, AirflowHome
from tests.support.airflow_home import api_server as start_api_server
from tests.support.network import refused_port

pytestmark = [pytest.mark.browser, pytest.mark.airflow]

ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


def chromium_path() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        _missing("Debian's chromium is not installed: apt-get install -y chromium (scripts/test.sh does)")
    return str(path)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed: pip install -e '.[test]'")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def api_server(airflow_home: AirflowHome) -> Iterator[str]:
    env = {
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
    }
    with start_api_server(airflow_home, env, "browser-api-server.log") as url:
        yield url


def add_connection(page: Any, server: str, conn_id: str, fields: dict[str, str], shots: str) -> None:
    """Admin > Connections > Add Connection, type Alation, fill the form and save."""
    page.goto(f"{server}/connections", wait_until="networkidle")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.locator("input[name=connection_id]").fill(conn_id)
    dialog.get_by_role("combobox").fill("Alation")
    page.keyboard.press("Enter")
    dialog.locator("input[name=host]").wait_for()
    for name in ("host", "password", "port"):
        if name in fields:
            dialog.locator(f"input[name={name}]").fill(fields[name])
    dialog.get_by_text("Extra Fields", exact=True).click()
    for name, value in fields.items():
        if name not in ("host", "password", "port"):
            dialog.locator(f"input[name=element_{name}]").fill(value)
    page.screenshot(path=str(ARTIFACTS / f"{shots}-1-form.png"), full_page=True)
    with page.expect_response(re.compile(r"/api/v2/connections$")) as saved:
        dialog.get_by_role("button", name="Save").click()
    assert saved.value.status == 201, saved.value.text()
    dialog.wait_for(state="detached")
    page.get_by_role("row").filter(has_text=conn_id).wait_for()


def press_test(page: Any, conn_id: str, shots: str) -> dict[str, Any]:
    """The Test icon of the connection's row in the list; returns the verdict once shown."""
    row = page.get_by_role("row").filter(has_text=conn_id)
    with page.expect_response(re.compile(r"/api/v2/connections/test$"), timeout=60_000) as answer:
        row.get_by_role("button", name="Test Connection").click()
    assert answer.value.status == 200, (
        f"the Test button got HTTP {answer.value.status}: {answer.value.text()}"
    )
    verdict = answer.value.json()
    toast = page.get_by_text(verdict["message"][:60])
    toast.wait_for()
    page.wait_for_timeout(1200)  # the toast's entry animation
    page.screenshot(path=str(ARTIFACTS / f"{shots}-2-verdict.png"))
    return verdict


@pytest.mark.parametrize("case", ["good", "wrong_token", "closed_port"])
def test_test_button_in_the_connections_list(browser, api_server, fake_alation, token, case) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {ARTIFACTS}")
    conn_id = f"alation_ui_{case}"
    secret = "wrong-" + token if case == "wrong_token" else token
    fields = {"host": fake_alation.url, "password": secret, "verify": str(fake_alation.cert_path)}
    if case == "closed_port":  # the Port field, with a port nothing listens on
        port = refused_port()
        fields.update(host="https://127.0.0.1", port=str(port), timeout="1", time_budget="2")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        add_connection(page, api_server, conn_id, fields, case)
        html = page.content()
        i = html.find(secret)
        assert i < 0, html[max(0, i - 600) : i + 100]
        verdict = press_test(page, conn_id, case)
        html = page.content()
    finally:
        page.close()
    message = verdict["message"]
    assert verdict["status"] is (case == "good"), message
    assert f"connection {conn_id!r}" in message  # the user's id, not Airflow's temporary one
    if case == "good":
        assert message.startswith(f"OK: Alation at {fake_alation.url.split('://')[1]} accepted a test event")
        assert [event["eventType"] for event in fake_alation.events] == ["START"]
    elif case == "wrong_token":
        assert message.startswith("Token rejected: HTTP 401 from ") and "API Access Tokens" in message
    else:
        assert message.startswith(f"Network unreachable: 127.0.0.1:{port} refused the connection")
        assert f"allow outbound HTTPS from the scheduler and workers to 127.0.0.1:{port}" in message
    assert "urllib3" not in message and "Errno" not in message and "Max retries" not in message
    assert secret not in html and token not in html


def test_form_has_typed_fields_and_no_bare_json(browser, api_server) -> None:
    """The Extra Fields section lists every setting with its label, typed widget and default."""
    from airflow_provider_alation.settings import EXTRA_KEYS

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 3000})
    try:
        page.goto(f"{api_server}/connections", wait_until="networkidle")
        page.get_by_role("button", name="Add Connection").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_role("combobox").fill("Alation")
        page.keyboard.press("Enter")
        dialog.get_by_text("Extra Fields", exact=True).click()
        dialog.get_by_text("Verify TLS").wait_for()
        page.screenshot(path=str(ARTIFACTS / "form-extra-fields.png"), full_page=True)
        for label in (
            "Tenant URL",
            "API token",
            "Port",
            "Token type",
            "Dry run",
            "Timeout (seconds per request)",
        ):
            assert dialog.get_by_text(label, exact=True).count() >= 1, label
        assert dialog.locator("input[name=element_timeout]").input_value() == "5"
        assert dialog.locator("input[name=element_opt_in_tag]").input_value() == "alation"
        for key in EXTRA_KEYS:
            assert dialog.get_by_text(f"[extra key: {key}]").count() == 1, key
    finally:
        page.close()
