"""Reading the OpenLineage provider's configuration: is it pointed at ``AlationTransport``?"""

from __future__ import annotations

import json
from typing import Any

TRANSPORT_PATH = "airflow_provider_alation.transport.AlationTransport"
TRANSPORT_LINE = f'AIRFLOW__OPENLINEAGE__TRANSPORT=\'{{"type": "{TRANSPORT_PATH}"}}\''


def _uses_alation(transport: Any) -> bool:
    if not isinstance(transport, dict):
        return False
    if transport.get("type") in (TRANSPORT_PATH, "alation"):
        return True
    children = transport.get("transports") or []
    if isinstance(children, dict):
        children = list(children.values())
    return any(_uses_alation(child) for child in children)


def transport_status() -> tuple[bool, str]:
    """(ok, message): whether OpenLineage is enabled and its transport is ``AlationTransport``."""
    from airflow.configuration import conf

    if conf.getboolean("openlineage", "disabled", fallback=False):
        return False, "OpenLineage is disabled ([openlineage] disabled = True); no lineage is sent."
    raw = conf.get("openlineage", "transport", fallback="") or ""
    try:
        transport = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return False, f"[openlineage] transport is not valid JSON; set {TRANSPORT_LINE}"
    if _uses_alation(transport):
        return True, "OpenLineage transport is AlationTransport."
    if conf.get("openlineage", "config_path", fallback=""):
        return False, (
            "[openlineage] config_path is set; make sure its transport is AlationTransport, or unset it and "
            f"set {TRANSPORT_LINE}"
        )
    kind = transport.get("type") if isinstance(transport, dict) else None
    now = f"it is {kind!r}" if kind else "no transport is configured"
    return False, f"OpenLineage is not sending to Alation ({now}); set {TRANSPORT_LINE}"
