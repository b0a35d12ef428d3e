"""Per-DAG opt-in: ``enable_alation_lineage(dag)``."""

from __future__ import annotations

from typing import Any, TypeVar

from airflow_provider_alation.settings import DEFAULT_OPT_IN_TAG

D = TypeVar("D")


def enable_alation_lineage(dag: D, tag: str = DEFAULT_OPT_IN_TAG) -> D:
    """Opt ``dag`` in to Alation lineage by giving it the opt-in tag; returns the DAG.

    Pass ``tag`` when the connection's ``opt_in_tag`` is not the default ``alation``.
    """
    tags: Any = getattr(dag, "tags", None)
    if tags is None:
        dag.tags = [tag]  # type: ignore[attr-defined]
    elif isinstance(tags, (set, frozenset)) or hasattr(tags, "add"):
        tags.add(tag)
    elif tag not in tags:
        tags.append(tag)
    return dag
