"""The Airflow plugin.

- When a scheduler, DAG processor or triggerer starts it logs, once per process and with no network
  call, whether the OpenLineage provider is pointed at ``AlationTransport``, so a missing
  ``[openlineage] transport`` line shows in that component's log instead of as missing lineage.
  Airflow also calls ``on_starting`` in every task process (with a ``TaskRunnerMarker``): the line is
  kept out of task logs. (The API server calls no ``on_starting``.)
- In each task process, when the task succeeds and before the OpenLineage provider forks the
  child that emits the task's events, it records the task's DAG tags and has the transport read
  its settings here (see :mod:`airflow_provider_alation.integration.task_context`): the forked child then
  reads no connection, and per-query events of SQL run through a hook are opted in by the DAG's
  tag like the task's own event.
- In Airflow 3's API server, the relay (``POST /alation-relay/api/v1/lineage``) for OpenLineage
  senders outside Airflow, when ``ALATION_RELAY_CONFIG`` is set (see
  :mod:`airflow_provider_alation.relay.mount`: nothing is imported until a request reaches it).
- In Airflow 3's API server, a middleware makes the Connections list's Test button answer for
  Alation connections (see :mod:`airflow_provider_alation.integration.ui_test_button`).
- In Airflow 3's API server, the "Alation lineage" page (``/alation-lineage``, an item of the UI's
  navigation): the check's answers for users allowed to read connections (see
  :mod:`airflow_provider_alation.ui`: nothing is imported until a request reaches it).

Loading the plugin also imports the transport once per Airflow process (about 13 ms with byte
code), so the provider's per-event forked children do not each pay it."""

from __future__ import annotations

import logging
import os
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

# Imported with the plugin, so each task process has the transport before the OpenLineage provider
# forks the child that emits an event: the children inherit it instead of importing it per event.
import airflow_provider_alation.transport  # noqa: F401
from airflow_provider_alation.integration import task_context
from airflow_provider_alation.integration.configuration import transport_status
from airflow_provider_alation.integration.ui_test_button import AlationTestButtonMiddleware
from airflow_provider_alation.relay.mount import URL_PREFIX, RelayMount
from airflow_provider_alation.ui.mount import EXTERNAL_VIEW, PAGE_NAME, PageMount
from airflow_provider_alation.ui.mount import URL_PREFIX as PAGE_PREFIX

log = logging.getLogger(__name__)


#: The process that logged the start-up line (a forked child logs its own once).
_announced_in: int | None = None


def _is_task_process(component: Any) -> bool:
    """Airflow's task runner passes a ``TaskRunnerMarker``; jobs (scheduler, DAG processor, triggerer)
    pass their ``Job``."""
    return type(component).__name__ == "TaskRunnerMarker"


class StartupCheck:
    @hookimpl
    def on_starting(self, component: Any) -> None:
        global _announced_in
        if _is_task_process(component) or _announced_in == os.getpid():
            return
        _announced_in = os.getpid()
        try:
            ok, message = transport_status()
        except Exception:
            log.debug("Alation: could not read the OpenLineage configuration", exc_info=True)
            return
        log.log(logging.INFO if ok else logging.WARNING, "Alation lineage: %s", message)


def _alation_transports() -> list[Any]:
    """The AlationTransport instances of the client the OpenLineage provider emits with, built here
    (no I/O: transports read nothing when constructed) so that the forked child inherits them.

    Only when the configuration may name AlationTransport: other transports are not built here,
    since some are not fork-safe when built before the fork (Kafka's producer)."""
    from airflow.providers.openlineage import conf as ol_conf

    from airflow_provider_alation.integration.configuration import alation_transports, may_use_alation

    if ol_conf.is_disabled() or not may_use_alation():
        return []
    from airflow.providers.openlineage.plugins.listener import get_openlineage_listener

    client = get_openlineage_listener().adapter.get_or_create_openlineage_client()
    return alation_transports(client.transport)


def _prepare(task_instance: Any) -> None:
    # The API server calls these hooks too (a task marked by hand): not a task process.
    if type(task_instance).__name__ != "RuntimeTaskInstance":
        return
    try:
        task = getattr(task_instance, "task", None)
        dag = getattr(task, "dag", None)
        task_context.set_current(task_instance.dag_id, task_instance.task_id, getattr(dag, "tags", ()))
        for transport in _alation_transports():
            transport.prepare()
    except Exception:  # never let lineage touch the task
        log.warning("Alation lineage: could not prepare the transport in the task process", exc_info=True)


class TaskContextRecorder:
    """Runs first among the listeners of a task's end, in the task's own process, before the
    OpenLineage provider forks the child that emits the task's events (COMPLETE for a successful
    task, and for a task that skipped itself, with its per-query events either way)."""

    @hookimpl(tryfirst=True)
    def on_task_instance_success(self, previous_state: Any, task_instance: Any, *args: Any) -> None:
        _prepare(task_instance)

    @hookimpl(tryfirst=True)
    def on_task_instance_skipped(self, previous_state: Any, task_instance: Any, *args: Any) -> None:
        _prepare(task_instance)


class AlationPlugin(AirflowPlugin):
    name = "alation"
    listeners = [StartupCheck(), TaskContextRecorder()]
    # Airflow 3's API server: the relay for OpenLineage senders outside Airflow (configured by
    # ALATION_RELAY_CONFIG; a 404 saying so otherwise).
    fastapi_apps = [
        {"app": RelayMount(), "url_prefix": URL_PREFIX, "name": "Alation OpenLineage relay"},
        # The "Alation lineage" page and its JSON API (Airflow's authentication: reading connections).
        {"app": PageMount(), "url_prefix": PAGE_PREFIX, "name": PAGE_NAME},
    ]
    # Airflow 3.1+: the page in the UI's navigation (shown in a frame).
    external_views = [EXTERNAL_VIEW]
    # Airflow 3's API server: the Connections list's Test button answers for Alation connections
    # (Airflow 3.3.2 sends port 0 and gets "Bad Request"), naming the user's connection id.
    fastapi_root_middlewares = [
        {
            "middleware": AlationTestButtonMiddleware,
            "args": [],
            "kwargs": {},
            "name": "Alation connection Test button",
        }
    ]
