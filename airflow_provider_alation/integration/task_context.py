"""What the task's own process knows about the task whose events are being emitted.

The OpenLineage provider emits a task's events from a child it forks off the task process (or from
a thread, with ``[openlineage] execute_in_thread``). Two things are only safe or only possible to
learn in the task process itself, before that fork, so the plugin's listener records them here:

- the DAG's tags, which per-query events (SQL run through a hook) do not carry, so that a tag
  opt-in covers them too;
- that the settings were read here: a forked child must not read the Airflow connection, because
  its request to the task supervisor can go unanswered (``airflow dags test``) and would otherwise
  be repeated by every child.

Pure: no Airflow import; the plugin fills it in.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class TaskContext:
    dag_id: str
    task_id: str
    tags: frozenset[str]
    #: The task process: a different ``os.getpid()`` means a child forked to emit.
    pid: int


_current: TaskContext | None = None


def set_current(dag_id: str, task_id: str, tags: Iterable[str]) -> TaskContext:
    """Record the task this process runs now (the listener calls it before the provider forks)."""
    global _current
    _current = TaskContext(str(dag_id), str(task_id), frozenset(str(t) for t in tags or ()), os.getpid())
    return _current


def current() -> TaskContext | None:
    return _current


def clear() -> None:
    global _current
    _current = None


def in_forked_emitter() -> bool:
    """True in a child forked off a task process to emit its events."""
    return _current is not None and _current.pid != os.getpid()


def current_task() -> tuple[str, str, frozenset[str]] | None:
    """(dag_id, task_id, DAG tags) of the task this process (or its parent) runs, for the gate."""
    return None if _current is None else (_current.dag_id, _current.task_id, _current.tags)
