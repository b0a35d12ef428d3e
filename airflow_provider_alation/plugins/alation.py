"""The Airflow plugin: when a scheduler, worker or API server starts it logs, once and with no
network call, whether the OpenLineage provider is pointed at ``AlationTransport``, so a missing
``[openlineage] transport`` line shows in that component's log instead of as missing lineage.

Loading the plugin also imports the transport once per Airflow process (about 13 ms with byte
code), so the provider's per-event forked children do not each pay it."""

from __future__ import annotations

import logging
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

# Imported with the plugin, so each task process has the transport before the OpenLineage provider
# forks the child that emits an event: the children inherit it instead of importing it per event.
import airflow_provider_alation.transport  # noqa: F401
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
