from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_alation.example_dags import FOLDER as EXAMPLE_DAGS
from airflow_provider_alation.testing.catalog import reference_datasources
from airflow_provider_alation.testing.fake_alation import FakeAlation
from tests.support.airflow_home import REPO, AirflowHome
from tests.support.postgres import PostgresServer
from tests.support.spec import (
    REQUIRE_SHARED_ENV,
    missing_shared,
    shared_required,
    validate_event,
    validation_note,
)


def pytest_configure(config: pytest.Config) -> None:
    """CI (``ALATION_REQUIRE_SHARED=1``) fails at once without ../shared instead of falling back."""
    if shared_required() and (missing := missing_shared()):
        raise pytest.UsageError(
            f"{REQUIRE_SHARED_ENV} is set but ../shared is incomplete, missing "
            f"{', '.join(map(str, missing))}: check out the shared folder (OpenLineage JSON Schemas, "
            "real events) beside this repository"
        )


def pytest_report_header(config: pytest.Config) -> list[str]:
    note = validation_note()
    return [note] if note else []


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Under ``-q`` (no header) the validation note goes at the end instead: once per run either way."""
    note = validation_note()
    if note and (config.get_verbosity() < 0 or config.option.no_header):
        terminalreporter.write_line(note, yellow=True)


@pytest.fixture(autouse=True)
def isolated_airflow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Default spool_dir and cache_dir ($AIRFLOW_HOME/alation/...) inside the test's tmp_path."""
    home = tmp_path / "airflow-home"
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    return home


@pytest.fixture
def token() -> str:
    return "alation-test-token-" + secrets.token_hex(12)


@pytest.fixture
def fake_alation(tmp_path: Path, token: str) -> Iterator[FakeAlation]:
    """HTTPS stand-in for Alation, validating every event against the OpenLineage schema."""
    with FakeAlation(token, tls_dir=tmp_path / "tls", validator=validate_event) as fake:
        yield fake


@pytest.fixture
def catalogued(fake_alation: FakeAlation) -> FakeAlation:
    """The stand-in serving the reference data sources of every kind."""
    fake_alation.datasources.update(reference_datasources())
    return fake_alation


@pytest.fixture(scope="session")
def airflow_home() -> Iterator[AirflowHome]:
    home = AirflowHome.create([EXAMPLE_DAGS, REPO / "tests" / "dags"])
    yield home
    home.cleanup()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer.start()
    yield server
    server.stop()


@pytest.fixture
def alation_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="airflow_provider_alation")
    return caplog
