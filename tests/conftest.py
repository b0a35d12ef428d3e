from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_alation.testing.catalog import reference_datasources
from airflow_provider_alation.testing.fake_alation import FakeAlation
from tests.support.airflow_home import REPO, AirflowHome
from tests.support.postgres import PostgresServer
from tests.support.spec import validate_event


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
    home = AirflowHome.create([REPO / "dags_examples", REPO / "tests" / "dags"])
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
