"""The gate: which events Alation turns into lineage, and which jobs the user opted in.

Pure and cheap: it reads a handful of attributes of the event object the OpenLineage client hands
to the transport (or of the same event as a dict) and never serialises it, so an event that is
dropped costs microseconds. It runs in two steps so that events dropped by the first never make
the transport read its settings (the Airflow connection):

1. :func:`lineage_reason` - a COMPLETE run event with at least one input and one output (or a
   streaming candidate, see below);
2. :func:`selection_reason` - its job type is not skipped (``skip_job_types``), and it is opted in
   (tag, helper, ``dags.include``) and not excluded (``dags.exclude``).

Selection by pattern: for Airflow events a pattern matches the event's own dag_id (the ``airflow``
run facet's; for the per-query jobs of SQL run through a hook, ``<dag_id>.<task_id>.query.<n>``,
which carry no airflow facet, the DAG of the task the emitting process runs). For events from
outside Airflow it matches the job's own name, its parent job's name or its root job's name (the
run's ``parent`` facet), so ``dbt-run-<project>`` or a Spark application's name selects all of its
jobs.

Streaming jobs (Flink, Debezium) carry their lineage only on START and RUNNING. A START or RUNNING
event that is a :func:`streaming_candidate` (``processingType`` STREAMING, or a streaming
integration without a processingType, with at least one input and one output) passes the first
step too; the pipeline, which has the settings, then forwards it once per run as a COMPLETE
(``stream_as_complete``) or skips it as ``not_complete``. Every other START or RUNNING is dropped by
the first step, without the settings being read.

Each returns ``None`` when the event passes, else a short reason used in logs, metrics and the
transport's :class:`~airflow_provider_alation.alation.delivery.Outcome`.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterable
from fnmatch import fnmatchcase
from typing import Any

from airflow_provider_alation.settings import DagSelection

# Reasons (stable: they are metric tags, log words and Outcome details).
NOT_RUN_EVENT = "not_run_event"
DATASET_EVENT = "dataset_event"
JOB_EVENT = "job_event"
NOT_COMPLETE = "not_complete"
NO_INPUTS = "no_inputs"
NO_OUTPUTS = "no_outputs"
DAG_EVENT = "dag_event"
JOB_TYPE_SKIPPED = "job_type_skipped"
NOT_OPTED_IN = "dag_not_opted_in"
EXCLUDED = "dag_excluded"

#: Reasons of the first step, in the order they are checked.
LINEAGE_REASONS = (NOT_RUN_EVENT, DATASET_EVENT, JOB_EVENT, NOT_COMPLETE, DAG_EVENT, NO_INPUTS, NO_OUTPUTS)
#: Reasons of the second step (after the settings are read).
SELECTION_REASONS = (JOB_TYPE_SKIPPED, EXCLUDED, NOT_OPTED_IN)

#: Integrations whose jobs are streaming when their jobType facet has no ``processingType``.
STREAMING_INTEGRATIONS = frozenset({"FLINK", "DEBEZIUM"})
#: The run states a streaming job's lineage arrives on.
STREAMING_STATES = frozenset({"START", "RUNNING"})

# Bounds on what the gate reads of one event, so that a pathological event costs microseconds too.
_MAX_NAME = 1000
_MAX_TAGS = 200
_MAX_TAGS_TEXT = 20_000


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


def event_state(event: Any) -> str | None:
    """The run event's ``eventType``, uppercased (``COMPLETE``, ``START``, ...); None if absent."""
    return _state(event)


def _job_type_facet_field(event: Any, name: str) -> str:
    facets = _get(_get(event, "job"), "facets")
    if not isinstance(facets, dict) and not hasattr(facets, "get"):
        facets = {}
    value = _get(_get(facets, "jobType"), name)
    return str(value).upper() if isinstance(value, str) else ""


def job_type(event: Any) -> str:
    """The job facet's ``jobType`` (``TASK``, ``QUERY``, ``DAG``, ``TEST``, ...), uppercased; "" if none."""
    return _job_type_facet_field(event, "jobType")


def is_streaming_job(event: Any) -> bool:
    """The jobType facet says STREAMING, or names a streaming integration (Flink, Debezium) and
    gives no processingType (an explicit BATCH, such as a Flink batch job, is not streaming)."""
    processing = _job_type_facet_field(event, "processingType")
    if processing:
        return processing == "STREAMING"
    return _job_type_facet_field(event, "integration") in STREAMING_INTEGRATIONS


def streaming_candidate(event: Any) -> bool:
    """A START or RUNNING run event of a streaming job with at least one input and one output (not
    a DAG event): the only non-COMPLETE events :func:`lineage_reason` lets through."""
    return (
        _get(event, "run") is not None
        and _get(event, "job") is not None
        and _state(event) in STREAMING_STATES
        and job_type(event) != "DAG"
        and is_streaming_job(event)
        and bool(_get(event, "inputs"))
        and bool(_get(event, "outputs"))
    )


def run_id(event: Any) -> str:
    """The run's ``runId`` as text ("" when absent)."""
    value = _get(_get(event, "run"), "runId")
    return str(value)[:_MAX_NAME] if value is not None else ""


def lineage_reason(event: Any) -> str | None:
    """Why Alation would not make lineage of this event, or None when it would."""
    run, job = _get(event, "run"), _get(event, "job")
    if run is None:
        if _get(event, "dataset") is not None:
            return DATASET_EVENT
        return JOB_EVENT if job is not None else NOT_RUN_EVENT
    if job is None:
        return NOT_RUN_EVENT
    if _state(event) != "COMPLETE":
        # A streaming job's START/RUNNING goes on to the pipeline, which knows stream_as_complete.
        return None if streaming_candidate(event) else NOT_COMPLETE
    if job_type(event) == "DAG":
        return DAG_EVENT
    if not _get(event, "inputs"):
        return NO_INPUTS
    if not _get(event, "outputs"):
        return NO_OUTPUTS
    return None


def _name(job: Any) -> str:
    name = _get(job, "name")
    return name[:_MAX_NAME] if isinstance(name, str) else ""


def job_names(event: Any) -> tuple[str, ...]:
    """The names a pattern is matched against: the job's, its parent's and its root's (no blanks)."""
    parent = _get(_get(_get(event, "run"), "facets") or {}, "parent")
    names = (_name(_get(event, "job")), _name(_get(parent, "job")), _name(_get(_get(parent, "root"), "job")))
    return tuple(dict.fromkeys(n for n in names if n))


def dag_id_of(event: Any) -> str:
    """The Airflow dag_id of a task or per-query event; for events from outside Airflow, the name of
    the outermost job (root, else parent, else the job itself)."""
    run_facets = _get(_get(event, "run"), "facets") or {}
    dag_id = _get(_get(_get(run_facets, "airflow"), "dag"), "dag_id")
    if isinstance(dag_id, str) and dag_id:
        return dag_id[:_MAX_NAME]
    names = job_names(event)
    return names[-1] if names else ""


def tags_of(event: Any) -> set[str]:
    """DAG tags: the job's ``tags`` facet (Airflow puts DAG tags there), else the airflow facet."""
    tags: set[str] = set()
    for facets in (_get(_get(event, "job"), "facets"), _get(_get(event, "run"), "facets")):
        entries = _get(_get(facets or {}, "tags"), "tags")
        if not isinstance(entries, (list, tuple)):
            continue
        for tag in entries[:_MAX_TAGS]:
            key, value = _get(tag, "key"), _get(tag, "value")
            if not isinstance(key, str):
                continue
            tags.add(key[:_MAX_NAME])
            if isinstance(value, str) and value != key:
                tags.add(f"{key}:{value}"[:_MAX_NAME])
    if not tags:
        raw = _get(_get(_get(_get(_get(event, "run"), "facets") or {}, "airflow"), "dag"), "tags")
        if isinstance(raw, str):  # the airflow facet stringifies the list: "['a', 'b']"
            raw = _literal_list(raw)
        if isinstance(raw, (list, tuple, set)):
            tags.update(str(t)[:_MAX_NAME] for t in list(raw)[:_MAX_TAGS])
    return tags


def _literal_list(text: str) -> Any:
    if len(text) > _MAX_TAGS_TEXT:  # ast on megabytes of text would cost seconds
        return []
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return []


#: The task a task process runs, as the plugin recorded it: (dag_id, task_id, DAG tags).
TaskOfProcess = tuple[str, str, Collection[str]]


def _parent_name(event: Any) -> str:
    return _name(_get(_get(_get(_get(event, "run"), "facets") or {}, "parent"), "job"))


def airflow_dag_id(event: Any, task: TaskOfProcess | None = None) -> str | None:
    """The DAG an Airflow event belongs to: the ``airflow`` facet's dag_id (task events), else, for
    the per-query events of the task this process runs (job ``<dag>.<task>.query.<n>``, parent
    ``<dag>.<task>``), that task's DAG. None for events from outside Airflow."""
    dag_id = _get(_get(_get(_get(_get(event, "run"), "facets") or {}, "airflow"), "dag"), "dag_id")
    if isinstance(dag_id, str) and dag_id:
        return dag_id[:_MAX_NAME]
    if task is not None:
        own = f"{task[0]}.{task[1]}"
        if _parent_name(event) == own or _name(_get(event, "job")).startswith(own + ".query."):
            return task[0]
    return None


def selection_reason(
    event: Any,
    dags: DagSelection,
    opt_in_tag: str,
    skip_job_types: Collection[str] = (),
    task: TaskOfProcess | None = None,
) -> str | None:
    """Why this event is not sent although it carries lineage, or None when it is.

    An Airflow event is selected by its own DAG: patterns match the dag_id (not the root of a DAG
    another one triggered, nor a task's name), and the DAG's tags count, also for per-query events
    that carry none (``task`` supplies them). Other events are matched by job, parent and root name.
    """
    if skip_job_types and job_type(event) in skip_job_types:
        return JOB_TYPE_SKIPPED
    tags = tags_of(event)
    dag_id = airflow_dag_id(event, task)
    if dag_id is not None:
        if task is not None and task[0] == dag_id:
            tags.update(task[2])
        names: tuple[str, ...] = (dag_id,)
    else:
        names = job_names(event) or (dag_id_of(event),)
    return names_reason(names, tags, dags, opt_in_tag)


def names_reason(
    names: Iterable[str], tags: Collection[str], dags: DagSelection, opt_in_tag: str
) -> str | None:
    """Why a job with these names (job, parent, root) and tags is not sent, or None when it is."""
    names = tuple(names)
    if any(fnmatchcase(name, pattern) for pattern in dags.exclude for name in names):
        return EXCLUDED
    if opt_in_tag in tags:
        return None
    if any(fnmatchcase(name, pattern) for pattern in dags.include for name in names):
        return None
    return NOT_OPTED_IN


def warm_patterns(dags: DagSelection) -> None:
    """Compile every include/exclude pattern now (``fnmatch`` keeps them per process), so a child
    forked afterwards to emit finds them compiled."""
    for pattern in (*dags.include, *dags.exclude):
        fnmatchcase("", pattern)


def dag_selection_reason(dag_id: str, tags: Any, dags: DagSelection, opt_in_tag: str) -> str | None:
    """Why the DAG ``dag_id`` with these tags is not sent, or None when it is opted in and not excluded."""
    return names_reason((dag_id,), set(tags), dags, opt_in_tag)
