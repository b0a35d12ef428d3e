"""The gate: which events Alation turns into lineage, and which DAGs the user opted in.

Pure and cheap: it reads a handful of attributes of the event object the OpenLineage client hands
to the transport (or of the same event as a dict) and never serialises it, so an event that is
dropped costs microseconds. It runs in two steps so that events dropped by the first never make
the transport read its settings (the Airflow connection):

1. :func:`lineage_reason` - a COMPLETE run event with at least one input and one output;
2. :func:`dag_reason` - the DAG is opted in (tag, helper, ``dags.include``) and not excluded.

Each returns ``None`` when the event passes, else a short reason used in logs and metrics.
"""

from __future__ import annotations

import ast
from fnmatch import fnmatchcase
from typing import Any

from airflow_provider_alation.settings import DagSelection

# Reasons (stable: they are metric tags and log words).
NOT_RUN_EVENT = "not_run_event"
NOT_COMPLETE = "not_complete"
NO_INPUTS = "no_inputs"
NO_OUTPUTS = "no_outputs"
DAG_EVENT = "dag_event"
NOT_OPTED_IN = "dag_not_opted_in"
EXCLUDED = "dag_excluded"


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _state(event: Any) -> str | None:
    state = _get(event, "eventType")
    if state is None:
        return None
    return str(getattr(state, "value", state)).upper()


def lineage_reason(event: Any) -> str | None:
    """Why Alation would not make lineage of this event, or None when it would."""
    if _get(event, "run") is None or _get(event, "job") is None:
        return NOT_RUN_EVENT
    if _state(event) != "COMPLETE":
        return NOT_COMPLETE
    job_type = _get(_get(_get(event, "job"), "facets") or {}, "jobType")
    if str(_get(job_type, "jobType") or "").upper() == "DAG":
        return DAG_EVENT
    if not _get(event, "inputs"):
        return NO_INPUTS
    if not _get(event, "outputs"):
        return NO_OUTPUTS
    return None


def dag_id_of(event: Any) -> str:
    """The Airflow dag_id of a task event; for events from outside Airflow, the job name."""
    run_facets = _get(_get(event, "run"), "facets") or {}
    airflow = _get(run_facets, "airflow")
    dag_id = _get(_get(airflow, "dag"), "dag_id")
    if dag_id:
        return str(dag_id)
    parent_job = _get(_get(run_facets, "parent"), "job")
    if parent_job is not None and _get(parent_job, "name"):
        return str(_get(parent_job, "name"))
    return str(_get(_get(event, "job"), "name") or "")


def tags_of(event: Any) -> set[str]:
    """DAG tags: the job's ``tags`` facet (Airflow puts DAG tags there), else the airflow facet."""
    tags: set[str] = set()
    for facets in (_get(_get(event, "job"), "facets"), _get(_get(event, "run"), "facets")):
        for tag in _get(_get(facets or {}, "tags"), "tags") or ():
            key, value = _get(tag, "key"), _get(tag, "value")
            tags.add(str(key))
            if value is not None and value != key:
                tags.add(f"{key}:{value}")
    if not tags:
        raw = _get(_get(_get(_get(_get(event, "run"), "facets") or {}, "airflow"), "dag"), "tags")
        if isinstance(raw, str):  # the airflow facet stringifies the list: "['a', 'b']"
            try:
                raw = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                raw = []
        if isinstance(raw, (list, tuple, set)):
            tags.update(str(t) for t in raw)
    return tags


def dag_reason(event: Any, dags: DagSelection, opt_in_tag: str) -> str | None:
    """Why this event's DAG is not sent, or None when it is opted in and not excluded."""
    return dag_selection_reason(dag_id_of(event), tags_of(event), dags, opt_in_tag)


def dag_selection_reason(dag_id: str, tags: Any, dags: DagSelection, opt_in_tag: str) -> str | None:
    """Why the DAG ``dag_id`` with these tags is not sent, or None when it is opted in and not excluded."""
    if any(fnmatchcase(dag_id, pattern) for pattern in dags.exclude):
        return EXCLUDED
    if opt_in_tag in tags:
        return None
    if any(fnmatchcase(dag_id, pattern) for pattern in dags.include):
        return None
    return NOT_OPTED_IN
