"""The Airflow plugin.

- When a scheduler, worker or API server starts it logs, once and with no network call, whether
  the OpenLineage provider is pointed at ``AlationTransport``, so a missing ``[openlineage]
  transport`` line shows in that component's log instead of as missing lineage.
- In each task process, when the task succeeds and before the OpenLineage provider forks the
  child that emits the task's events, it records the task's DAG tags and has the transport read
  its settings here (see :mod:`airflow_provider_alation.task_context`): the forked child then
  reads no connection, and per-query events of SQL run through a hook are opted in by the DAG's
  tag like the task's own event.

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
from airflow_provider_alation import task_context
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


def _alation_transports() -> list[Any]:
    """The AlationTransport instances of the client the OpenLineage provider emits with, built here
    (no I/O: transports read nothing when constructed) so that the forked child inherits them.

    Only when the configuration may name AlationTransport: other transports are not built here,
    since some are not fork-safe when built before the fork (Kafka's producer)."""
    from airflow.providers.openlineage import conf as ol_conf

    from airflow_provider_alation.configuration import alation_transports, may_use_alation

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
