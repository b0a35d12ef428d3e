"""The plugin's start-up check of the OpenLineage transport setting."""

from __future__ import annotations

import json
import logging

import pytest

from airflow_provider_alation.integration.configuration import TRANSPORT_LINE, transport_status
from airflow_provider_alation.plugins import alation as alation_plugin
from airflow_provider_alation.plugins.alation import AlationPlugin, StartupCheck

OURS = {"type": "airflow_provider_alation.transport.AlationTransport"}


@pytest.mark.parametrize(
    ("transport", "ok"),
    [
        (OURS, True),
        ({"type": "composite", "transports": [{"type": "console"}, OURS]}, True),
        ({"type": "http", "url": "https://acme.alationcloud.com"}, False),
        (None, False),
    ],
)
def test_transport_status(monkeypatch, transport, ok) -> None:
    monkeypatch.delenv("AIRFLOW__OPENLINEAGE__DISABLED", raising=False)
    if transport is None:
        monkeypatch.setenv("AIRFLOW__OPENLINEAGE__TRANSPORT", "")
    else:
        monkeypatch.setenv("AIRFLOW__OPENLINEAGE__TRANSPORT", json.dumps(transport))
    status, message = transport_status()
    assert status is ok
    if not ok:
        assert TRANSPORT_LINE in message


def test_disabled_openlineage_is_reported(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__TRANSPORT", json.dumps(OURS))
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__DISABLED", "True")
    status, message = transport_status()
    assert not status and "disabled" in message


def test_plugin_logs_a_warning_at_start_when_not_configured(monkeypatch, caplog) -> None:
    monkeypatch.setattr(alation_plugin, "_announced_in", None)
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__TRANSPORT", json.dumps({"type": "console"}))
    caplog.set_level(logging.INFO, logger="airflow_provider_alation")
    assert any(isinstance(listener, StartupCheck) for listener in AlationPlugin.listeners)
    StartupCheck().on_starting(component=None)
    (record,) = [r for r in caplog.records if r.name.startswith("airflow_provider_alation")]
    assert record.levelno == logging.WARNING
    assert "it is 'console'" in record.getMessage()


def test_start_up_line_once_per_component_and_never_in_a_task_log(monkeypatch, caplog) -> None:
    """Airflow calls on_starting in each task process too (with a TaskRunnerMarker): no line there;
    a job (scheduler, DAG processor, triggerer) logs it once per process."""
    from airflow.sdk.execution_time.task_runner import TaskRunnerMarker

    monkeypatch.setattr(alation_plugin, "_announced_in", None)
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__TRANSPORT", json.dumps(OURS))
    caplog.set_level(logging.INFO, logger="airflow_provider_alation")

    def ours() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name.startswith("airflow_provider_alation")]

    StartupCheck().on_starting(component=TaskRunnerMarker())
    assert ours() == []

    class Job:  # what Airflow's Job passes: itself, before its job_type is set
        job_type = None

    StartupCheck().on_starting(component=Job())
    StartupCheck().on_starting(component=Job())
    (record,) = ours()
    assert record.levelno == logging.INFO and "AlationTransport" in record.getMessage()
