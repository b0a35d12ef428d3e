"""The connection test behind the hook's Test button (and the check command's connection lines).

It posts a START event that names no dataset: Alation accepts it (proving URL, path, token and TLS)
and makes no lineage of it, since only COMPLETE events with inputs and outputs are processed.

Every outcome gets one short verdict, the same in Airflow's UI, ``airflow connections test`` and
``airflow-alation check``: a label, the cause in plain words with the real ``host:port`` and the
user's connection id, then the fix. Library text (urllib3, OpenSSL) is read to pick the cause and
never shown.
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
from airflow_provider_alation.alation.advice import REFRESH_TOKEN_FIX, TOKEN_FIX, host_port
from airflow_provider_alation.alation.delivery import Outcome, sender_for
from airflow_provider_alation.alation.tokens import TokenError
from airflow_provider_alation.settings import AlationSettings, SettingsError

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
    """The Test button's answer.

    ``message`` is the whole verdict (``summary`` then ``Fix: fix``); ``problem`` is the delivery
    word (``""`` when ok, ``"settings"`` for invalid settings); ``summary`` and ``fix`` are its parts.
    """

    ok: bool
    message: str
    problem: str = ""
    summary: str = ""
    fix: str = ""


LABELS = {
    "auth": "Token rejected",
    "not_found": "Endpoint not found",
    "unreachable": "Network unreachable",
    "tls": "TLS failure",
    "timeout": "No answer in time",
    "server": "Alation error",
    "rejected": "Event refused",
    "settings": "Settings invalid",
}


def _of(conn_id: str | None) -> str:
    return f" (connection {conn_id!r})" if conn_id else ""


def _compose(ok: bool, label: str, cause: str, fix: str, problem: str, conn_id: str | None) -> Verdict:
    summary = f"{label}: {cause}{_of(conn_id)}."
    message = f"{summary} Fix: {fix}." if fix else summary
    return Verdict(ok, message, problem, summary, fix)


def _network_cause(detail: str, where: str) -> str:
    text = detail.lower()
    if any(
        word in text
        for word in ("name or service not known", "nodename nor servname", "getaddrinfo", "name resolution")
    ):
        return f"the name {where.rsplit(':', 1)[0]} does not resolve (DNS), so {where} cannot be reached"
    if "refused" in text:
        return f"{where} refused the connection: nothing listens on port {where.rsplit(':', 1)[1]} there"
    if "no route" in text or "unreachable" in text:
        return f"there is no network route from this Airflow component to {where}"
    if "proxy" in text:
        return f"the HTTPS proxy did not connect this Airflow component to {where}"
    return f"this Airflow component could not open a connection to {where}"


def _tls_cause(detail: str, where: str) -> str:
    text = detail.lower()
    if "hostname mismatch" in text or "doesn't match" in text or "not valid for" in text:
        return f"the certificate of {where} is for another host name"
    if "expired" in text:
        return f"the certificate of {where} has expired"
    if "self-signed" in text or "self signed" in text or "unable to get local issuer" in text:
        return f"the certificate of {where} is signed by a CA not trusted here, self-signed or private"
    if "no such file" in text or "could not find a suitable tls ca" in text:
        return "the CA bundle named in Verify TLS cannot be read"
    return f"the TLS handshake with {where} failed (certificate not verified)"


def verdict(outcome: Outcome, settings: AlationSettings, conn_id: str | None = None) -> Verdict:
    """Turn a probe outcome into the Test button's verdict."""
    conn_id = conn_id or settings.conn_id
    where = host_port(settings.url)
    status = f"HTTP {outcome.status} from {where}" if outcome.status else where
    if outcome.kind == "sent":
        return _compose(
            True,
            "OK",
            f"Alation at {where} accepted a test event (HTTP {outcome.status}); the token is valid",
            "",
            "",
            conn_id,
        )
    problem = outcome.problem or "rejected"
    label = LABELS.get(problem, "Event refused")
    refresh = settings.token_type == "refresh_token"
    if problem == "auth":
        cause = f"{status}: Alation does not accept the {'refresh' if refresh else 'API'} token"
        fix = REFRESH_TOKEN_FIX if refresh else TOKEN_FIX
    elif problem == "not_found":
        cause = f"{status}: there is no ingestion endpoint at /{settings.endpoint}"
        fix = (
            "check the Tenant URL and the Endpoint setting (Alation's is open_lineage_event/); "
            "the Tenant URL is the address you open Alation at"
        )
    elif problem == "unreachable":
        cause = _network_cause(outcome.detail, where)
        fix = (
            f"allow outbound HTTPS from the scheduler and workers to {where} "
            "(firewall, HTTPS_PROXY, DNS), then test again"
        )
    elif problem == "timeout":
        cause = f"{where} did not answer within {settings.timeout:g}s"
        fix = f"check that outbound HTTPS to {where} is allowed, or raise the Timeout setting"
    elif problem == "tls":
        cause = _tls_cause(outcome.detail, where)
        fix = "set Verify TLS (verify) to the path of your CA bundle (PEM file)"
    elif problem == "server":
        cause = f"{status}: Alation had a server-side problem"
        fix = "retry later; if it persists, send Alation support this message"
    elif outcome.status is not None and 300 <= outcome.status < 400:
        cause = f"{status}: a redirect, which would lose every event"
        fix = "set the Tenant URL to the final address (the one the browser ends on)"
    elif outcome.status == 413:
        cause = f"{status}: the event is too large for Alation"
        fix = "lower Max event bytes so heavy optional facets are trimmed"
    else:
        cause = f"{status}: Alation refused a valid OpenLineage test event"
        fix = "check the Tenant URL and Endpoint, then send Alation support this message"
    return _compose(False, label, cause, fix, problem, conn_id)


def token_verdict(exc: TokenError, settings: AlationSettings, conn_id: str | None = None) -> Verdict:
    """The verdict when no access token could be minted from a refresh token."""
    if exc.problem != "auth":
        return verdict(Outcome("retry", None, str(exc), problem=exc.problem), settings, conn_id)
    where = host_port(settings.url)
    cause = f"Alation at {where} refused to exchange the refresh token for an access token"
    return _compose(False, LABELS["auth"], cause, REFRESH_TOKEN_FIX, "auth", conn_id)


def settings_verdict(exc: SettingsError, conn_id: str) -> Verdict:
    """The verdict for settings that cannot be used (no request is made)."""
    cause = "; ".join(exc.problems)
    fix = f"edit connection {conn_id!r}: each item names the field and what to write"
    summary = f"{LABELS['settings']} in connection {conn_id!r}: {cause}"
    return Verdict(False, f"{summary} Fix: {fix}.", "settings", summary, fix)


def probe_connection(settings: AlationSettings, conn_id: str | None = None) -> Verdict:
    """Post the probe event with these settings (the Test button and ``airflow-alation check``).

    ``conn_id``: the connection named in the verdict; by default the one the settings were read
    from (:attr:`AlationSettings.conn_id`)."""
    sender = sender_for(settings)
    try:
        outcome = sender.post_blocking(probe_event(), deadline=time.monotonic() + settings.timeout)
    except TokenError as exc:
        return token_verdict(exc, settings, conn_id)
    finally:
        sender.close()
    return verdict(outcome, settings, conn_id)


def test_alation_connection(settings: AlationSettings, conn_id: str | None = None) -> tuple[bool, str]:
    result = probe_connection(settings, conn_id)
    return result.ok, result.message
