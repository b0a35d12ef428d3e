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
    if transport.get("type") == TRANSPORT_PATH:
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


def may_use_alation() -> bool:
    """False only when the OpenLineage configuration certainly does not name AlationTransport
    (a transport JSON without it and no config file or connection that could)."""
    from airflow.configuration import conf

    if conf.get("openlineage", "config_path", fallback="") or os.environ.get("OPENLINEAGE_CONFIG"):
        return True
    if conf.get("openlineage", "config_conn_id", fallback=""):
        return True
    raw = conf.get("openlineage", "transport", fallback="") or ""
    return TRANSPORT_PATH in raw


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


def alation_transports(transport: Any) -> list[Any]:
    """Every AlationTransport instance in a built transport (also inside composites)."""
    from airflow_provider_alation.transport import AlationTransport

    if isinstance(transport, AlationTransport):
        return [transport]
    return [
        found for child in getattr(transport, "transports", None) or () for found in alation_transports(child)
    ]


def _find_transport(transport: Any) -> Any:
    """The first AlationTransport instance in a built transport, or None."""
    return next(iter(alation_transports(transport)), None)


def built_transport_status() -> tuple[bool, str, Any]:
    """(ok, message, the AlationTransport or None), from the client the OpenLineage provider builds.

    Reads the configuration the way the provider does (``config_conn_id``, then ``config_path``,
    then ``transport``, then the client's own environment variables), so it also covers the cases
    :func:`transport_status` can only guess at.
    """
    ok, message = transport_status()
    if not ok and "disabled" in message:
        return False, message, None
    try:
        from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter

        transport = OpenLineageAdapter().get_or_create_openlineage_client().transport
    except Exception as exc:  # noqa: BLE001 - reported as the check's line
        return (
            False,
            (
                f"the OpenLineage provider cannot build its client ({type(exc).__name__}: {str(exc)[:200]}); "
                f"set {TRANSPORT_LINE}"
            ),
            None,
        )
    found = _find_transport(transport)
    if found is not None:
        where = "" if found is transport else f" (inside the {type(transport).__name__})"
        return True, f"OpenLineage transport is AlationTransport{where}.", found
    return (
        False,
        (
            f"OpenLineage is not sending to Alation (its transport is {type(transport).__name__}); "
            f"set {TRANSPORT_LINE}"
        ),
        None,
    )
