"""Reading the OpenLineage provider's configuration: is it pointed at ``AlationTransport``?"""

from __future__ import annotations

import json
import os
from typing import Any

from airflow_provider_alation.settings import DEFAULT_CONN_ID

TRANSPORT_PATH = "airflow_provider_alation.transport.AlationTransport"
TRANSPORT_LINE = f'AIRFLOW__OPENLINEAGE__TRANSPORT=\'{{"type": "{TRANSPORT_PATH}"}}\''


def _alation_transport(transport: Any) -> dict[str, Any] | None:
    """The AlationTransport entry of a transport config (also inside a ``composite``), or None."""
    if not isinstance(transport, dict):
        return None
    if transport.get("type") in (TRANSPORT_PATH, "alation"):
        return transport
    children = transport.get("transports") or []
    if isinstance(children, dict):
        children = list(children.values())
    return next((found for child in children if (found := _alation_transport(child)) is not None), None)


def _uses_alation(transport: Any) -> bool:
    return _alation_transport(transport) is not None


def _transport_config() -> Any:
    from airflow.configuration import conf

    raw = conf.get("openlineage", "transport", fallback="") or ""
    return json.loads(raw) if raw.strip() else {}


def transport_conn_id() -> str:
    """The Alation connection the configured transport reads (``alation_default`` unless set)."""
    try:
        found = _alation_transport(_transport_config())
    except ValueError:
        found = None
    return str((found or {}).get("conn_id") or DEFAULT_CONN_ID)


def selective_enable() -> bool:
    """``[openlineage] selective_enable``: only DAGs passed to OpenLineage's ``enable_lineage`` emit."""
    from airflow.configuration import conf

    return conf.getboolean("openlineage", "selective_enable", fallback=False)


def transport_status() -> tuple[bool, str]:
    """(ok, message): whether OpenLineage is enabled and its transport is ``AlationTransport``."""
    from airflow.configuration import conf

    if conf.getboolean("openlineage", "disabled", fallback=False):
        return False, (
            "OpenLineage is disabled ([openlineage] disabled = True); no lineage is sent. "
            "Unset AIRFLOW__OPENLINEAGE__DISABLED."
        )
    if os.environ.get("OPENLINEAGE_DISABLED", "").strip().lower() in ("true", "1", "t"):
        return False, "OpenLineage is disabled (OPENLINEAGE_DISABLED is set); no lineage is sent. Unset it."
    try:
        transport = _transport_config()
    except ValueError:
        return False, f"[openlineage] transport is not valid JSON; set {TRANSPORT_LINE}"
    if _uses_alation(transport):
        return True, "OpenLineage transport is AlationTransport."
    if conf.get("openlineage", "config_path", fallback="") or os.environ.get("OPENLINEAGE_CONFIG"):
        return False, (
            "[openlineage] config_path is set; make sure its transport is AlationTransport, or unset it and "
            f"set {TRANSPORT_LINE}"
        )
    kind = transport.get("type") if isinstance(transport, dict) else None
    now = f"it is {kind!r}" if kind else "no transport is configured"
    return False, f"OpenLineage is not sending to Alation ({now}); set {TRANSPORT_LINE}"
