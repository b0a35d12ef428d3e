"""The connection test behind the hook's Test button (and the check command's connection lines).

It posts a START event that names no dataset: Alation accepts it (proving URL, path, token and TLS)
and makes no lineage of it, since only COMPLETE events with inputs and outputs are processed.
"""

from __future__ import annotations

import json
import uuid
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


def verdict(outcome: Outcome, settings: AlationSettings) -> tuple[bool, str]:
    """Turn a probe outcome into the Test button's (ok, message)."""
    where = settings.endpoint_url
    if outcome.kind == "sent":
        return (
            True,
            f"OK: Alation accepted a test event at {where} (HTTP {outcome.status}); the token is valid.",
        )
    labels = {
        "auth": "Token rejected",
        "not_found": "Endpoint not found",
        "unreachable": "Network unreachable",
        "tls": "TLS failure",
        "timeout": "No answer in time",
        "server": "Alation error",
    }
    label = labels.get(outcome.problem, "Refused")
    return False, f"{label}: {outcome.detail} (POST {where})"


def test_alation_connection(settings: AlationSettings) -> tuple[bool, str]:
    sender = sender_for(settings)
    try:
        outcome = sender.post_blocking(probe_event(), deadline=_deadline(settings.timeout))
    except TokenError as exc:
        return False, f"Token rejected: {exc}"
    finally:
        sender.close()
    return verdict(outcome, settings)


def _deadline(timeout: float) -> float:
    import time

    return time.monotonic() + timeout
