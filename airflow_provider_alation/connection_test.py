"""The connection test behind the hook's Test button (and the check command's connection lines).

It posts a START event that names no dataset: Alation accepts it (proving URL, path, token and TLS)
and makes no lineage of it, since only COMPLETE events with inputs and outputs are processed.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.serde import Serde

from airflow_provider_alation import __version__
from airflow_provider_alation.delivery import Outcome, sender_for
from airflow_provider_alation.settings import AlationSettings
from airflow_provider_alation.tokens import TokenError

PRODUCER = f"https://pypi.org/project/airflow-provider-alation/{__version__}"
PROBE_JOB_NAMESPACE = "airflow-provider-alation"
PROBE_JOB_NAME = "connection_test"


def probe_event() -> bytes:
    event = RunEvent(
        eventType=RunState.START,
        eventTime=datetime.now(timezone.utc).isoformat(),
        run=Run(runId=str(uuid.uuid4())),
        job=Job(namespace=PROBE_JOB_NAMESPACE, name=PROBE_JOB_NAME),
        producer=PRODUCER,
        inputs=[],
        outputs=[],
    )
    return json.dumps(Serde.to_dict(event)).encode("utf-8")


@dataclass(frozen=True)
class Verdict:
    """The Test button's answer: ``ok``, its message, and the problem word (``""`` when ok)."""

    ok: bool
    message: str
    problem: str = ""


LABELS = {
    "auth": "Token rejected",
    "not_found": "Endpoint not found",
    "unreachable": "Network unreachable",
    "tls": "TLS failure",
    "timeout": "No answer in time",
    "server": "Alation error",
}


def verdict(outcome: Outcome, settings: AlationSettings) -> Verdict:
    """Turn a probe outcome into the Test button's verdict."""
    where = settings.endpoint_url
    if outcome.kind == "sent":
        return Verdict(
            True, f"OK: Alation accepted a test event at {where} (HTTP {outcome.status}); the token is valid."
        )
    problem = outcome.problem or "rejected"
    label = LABELS.get(problem, "Refused")
    return Verdict(False, f"{label}: {outcome.detail} (POST {where})", problem)


def probe_connection(settings: AlationSettings) -> Verdict:
    """Post the probe event with these settings (the Test button and ``airflow-alation check``)."""
    sender = sender_for(settings)
    try:
        outcome = sender.post_blocking(probe_event(), deadline=time.monotonic() + settings.timeout)
    except TokenError as exc:
        return Verdict(False, f"{LABELS.get(exc.problem, 'Token rejected')}: {exc}", exc.problem)
    finally:
        sender.close()
    return verdict(outcome, settings)


def test_alation_connection(settings: AlationSettings) -> tuple[bool, str]:
    result = probe_connection(settings)
    return result.ok, result.message
