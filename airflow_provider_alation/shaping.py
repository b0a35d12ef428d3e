"""Event shaping: rewrite namespaces everywhere they occur, drop what Alation never reads, cap size.

Pure: works on the event as a plain dict (``Serde.to_dict``) and returns a new dict. The job,
the run ids, the datasets and the facets Alation shows (``airflow``, ``processing_engine``,
``jobType``, ``nominalTime``, ``parent``, ...) are always kept.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_alation.resolution import Resolution

#: Facets that carry nothing Alation reads and can be large: removed from every event.
DROPPED_RUN_FACETS = frozenset({"unknownSourceAttribute", "debug", "airflow_debug"})

#: Optional facets removed, in this order, while an event is above ``max_event_bytes``.
TRIM_ORDER: tuple[tuple[str, str], ...] = (
    ("job", "sourceCode"),
    ("run", "extractionError"),
    ("dataset", "columnLineage"),
    ("dataset", "schema"),
    ("job", "sql"),
    ("run", "errorMessage"),
    ("job", "documentation"),
    ("dataset", "*"),
    ("run", "airflow.task"),
)

Resolve = Callable[[str], Resolution]


@dataclass
class Shaped:
    event: dict[str, Any]
    resolutions: list[Resolution] = field(default_factory=list)
    trimmed: list[str] = field(default_factory=list)
    #: The event as sent: compact UTF-8 JSON, serialised once (the size check needs it anyway).
    body: bytes = b""

    @property
    def size(self) -> int:
        return len(self.body)


def _datasets(event: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for key in ("inputs", "outputs"):
        yield from event.get(key) or ()


class _Rewriter:
    def __init__(self, resolve: Resolve) -> None:
        self._resolve = resolve
        self.seen: dict[str, Resolution] = {}

    def __call__(self, namespace: Any) -> Any:
        if not isinstance(namespace, str) or not namespace:
            return namespace
        hit = self.seen.get(namespace)
        if hit is None:
            hit = self.seen[namespace] = self._resolve(namespace)
        return hit.namespace

    def rewrite_uri(self, uri: Any) -> Any:
        """A dataSource ``uri`` such as ``postgres://10.0.0.5:6432/sales``: rewrite its authority."""
        if not isinstance(uri, str) or "://" not in uri:
            return uri
        scheme, _, tail = uri.partition("://")
        authority, slash, path = tail.partition("/")
        new = self(f"{scheme}://{authority}")
        return f"{new}{slash}{path}" if new != f"{scheme}://{authority}" else uri


def rewrite_namespaces(event: dict[str, Any], resolve: Resolve) -> list[Resolution]:
    """Rewrite, in place, every dataset namespace in ``event`` (datasets and the facets repeating it)."""
    rewrite = _Rewriter(resolve)
    for dataset in _datasets(event):
        dataset["namespace"] = rewrite(dataset.get("namespace"))
        facets = dataset.get("facets") or {}
        for identifier in (facets.get("symlinks") or {}).get("identifiers") or ():
            identifier["namespace"] = rewrite(identifier.get("namespace"))
        source = facets.get("dataSource")
        if isinstance(source, dict):
            if isinstance(source.get("name"), str) and "://" in source["name"]:
                source["name"] = rewrite(source["name"])
            source["uri"] = rewrite.rewrite_uri(source.get("uri"))
        column_lineage = facets.get("columnLineage") or {}
        for column in (column_lineage.get("fields") or {}).values():
            for input_field in column.get("inputFields") or ():
                input_field["namespace"] = rewrite(input_field.get("namespace"))
        for input_field in column_lineage.get("dataset") or ():
            input_field["namespace"] = rewrite(input_field.get("namespace"))
    return list(rewrite.seen.values())


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _remove(event: dict[str, Any], where: str, name: str) -> bool:
    removed = False
    if where == "dataset":
        for dataset in _datasets(event):
            facets = dataset.get("facets") or {}
            for key in list(facets) if name == "*" else [name]:
                if key in facets:
                    del facets[key]
                    removed = True
            for key in ("inputFacets", "outputFacets"):
                if name == "*" and dataset.get(key):
                    dataset[key] = {}
                    removed = True
        return removed
    facets = (event.get(where) or {}).get("facets") or {}
    head, _, sub = name.partition(".")
    if sub:
        inner = facets.get(head)
        if isinstance(inner, dict) and sub in inner:
            del inner[sub]
            return True
        return False
    if head in facets:
        del facets[head]
        return True
    return False


def shape_event(
    event: dict[str, Any], resolve: Resolve, max_event_bytes: int, *, in_place: bool = False
) -> Shaped:
    """The event Alation should receive: namespaces resolved, noise dropped, size capped.

    ``event`` is copied first unless ``in_place`` (the caller made the dict for this call, as
    ``Serde.to_dict`` does, so nothing else sees it change and the deep copy can be saved).
    """
    shaped = event if in_place else copy.deepcopy(event)
    run_facets = (shaped.get("run") or {}).get("facets") or {}
    for name in DROPPED_RUN_FACETS.intersection(run_facets):
        del run_facets[name]
    resolutions = rewrite_namespaces(shaped, resolve)
    body = encode(shaped)
    trimmed: list[str] = []
    for where, name in TRIM_ORDER:
        if len(body) <= max_event_bytes:
            break
        if _remove(shaped, where, name):
            trimmed.append(f"{where}.{name}")
            body = encode(shaped)
    return Shaped(event=shaped, resolutions=resolutions, trimmed=trimmed, body=body)
