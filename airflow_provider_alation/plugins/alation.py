"""The Airflow plugin: when a scheduler, worker or API server starts it logs, once and with no
network call, whether the OpenLineage provider is pointed at ``AlationTransport``, so a missing
``[openlineage] transport`` line shows in that component's log instead of as missing lineage."""

from __future__ import annotations

import logging
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

from airflow_provider_alation.configuration import transport_status

log = logging.getLogger(__name__)


class StartupCheck:
    @hookimpl
    def on_starting(self, component: Any) -> None:
        try:
            ok, message = transport_status()
        except Exception:
            log.debug("Alation: could not read the OpenLineage configuration", exc_info=True)
            return
        log.log(logging.INFO if ok else logging.WARNING, "Alation lineage: %s", message)


class AlationPlugin(AirflowPlugin):
    name = "alation"
    listeners = [StartupCheck()]
