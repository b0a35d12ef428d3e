"""Event shaping: name tables from symlinks, rewrite namespaces everywhere they occur, drop what
Alation never reads, cap size.

Pure: works on the event as a plain dict (``Serde.to_dict``) and returns a new dict. A dataset whose
namespace is a storage location (``hdfs://``, ``s3://``, ``dbfs``) is named by its ``TABLE``
symlink when that symlink's namespace is a catalogued data source (:func:`name_tables`). The job, the
run id and the datasets are never removed. Above ``max_event_bytes`` facets go in tiers:

1. facets known to be heavy and never read by a catalog (Spark logical plans, unknown-source,
   debug, environment and property facets, source code, extraction errors);
2. every other facet a catalog does not show (custom facets, documentation, data quality, the
   Airflow facet's operator details), largest first;
3. last, the facets Alation shows, in this order: ``columnLineage``, ``sql``, ``schema``,
   ``symlinks``, ``dataSource``, then ``airflow``, ``processing_engine``, ``nominalTime``,
   ``parent``, ``tags``, ``jobType``.

An event still above the cap with all of them gone is reported as such (:attr:`Shaped.size`); the
transport then does not POST it. Odd structures (a facet that is a string or a list, ``symlinks``
that is not an object) are passed over, never an error.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_alation.lineage.namespaces import strip_userinfo
from airflow_provider_alation.lineage.resolution import Resolution

#: Facets that carry nothing Alation reads and can be large: removed from every event.
DROPPED_RUN_FACETS = frozenset({"unknownSourceAttribute", "debug", "airflow_debug"})

#: Tier 1: heavy facets no catalog reads, by where they sit.
NEVER_READ = {
    "run": frozenset(
        {
            "spark.logicalPlan",
            "spark_unknown",
            "unknownSourceAttribute",
            "debug",
            "airflow_debug",
            "environment-properties",
            "spark_properties",
            "extractionError",
            "errorMessage",
        }
    ),
    "job": frozenset({"sourceCode", "sourceCodeLocation"}),
    "dataset": frozenset(),
}

#: Tier 3: the facets a catalog shows, removed last and in this order.
SHOWN_LAST: tuple[tuple[str, str], ...] = (
    ("dataset", "columnLineage"),
    ("job", "sql"),
    ("dataset", "schema"),
    ("dataset", "symlinks"),
    ("dataset", "dataSource"),
    ("run", "airflow"),
    ("run", "processing_engine"),
    ("run", "nominalTime"),
    ("run", "parent"),
    ("job", "tags"),
    ("job", "jobType"),
)
_SHOWN_RANK = {item: rank for rank, item in enumerate(SHOWN_LAST)}

Resolve = Callable[[str], Resolution]

#: Symlink identifier types (SymlinksDatasetFacet): a table's name, a storage location.
TABLE = "TABLE"
LOCATION = "LOCATION"


@dataclass
class Shaped:
    event: dict[str, Any]
    resolutions: list[Resolution] = field(default_factory=list)
    #: What the size cap removed, in order (``run.spark.logicalPlan``, ``dataset.schema``, ...).
    trimmed: list[str] = field(default_factory=list)
    #: The event as sent: compact UTF-8 JSON, serialised once (the size check needs it anyway).
    body: bytes = b""

    @property
    def size(self) -> int:
        return len(self.body)


def _dicts(items: Any) -> Iterator[dict[str, Any]]:
    if isinstance(items, list):
        yield from (item for item in items if isinstance(item, dict))


def _datasets(event: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for key in ("inputs", "outputs"):
        yield from _dicts(event.get(key))


def _facets(owner: Any, key: str = "facets") -> dict[str, Any]:
    facets = owner.get(key) if isinstance(owner, dict) else None
    return facets if isinstance(facets, dict) else {}


class _Rewriter:
    def __init__(self, resolve: Resolve) -> None:
        self._resolve = resolve
        self.seen: dict[str, Resolution] = {}
        #: Namespaces seen as a dataset's own (or a column's input): the others are symlinks' only.
        self.of_datasets: set[str] = set()
        #: Whether :meth:`put` changed the event (a value rewritten, or a key added).
        self.changed = False

    def put(self, holder: dict[str, Any], key: str, value: Any) -> None:
        """``holder[key] = value``, noting whether that changed anything."""
        if not self.changed and (key not in holder or holder[key] != value):
            self.changed = True
        holder[key] = value

    def __call__(self, namespace: Any, symlink: bool = False) -> Any:
        if not isinstance(namespace, str) or not namespace:
            return namespace
        namespace = strip_userinfo(namespace)  # credentials never reach a log, the outbox or Alation
        if not symlink:
            self.of_datasets.add(namespace)
        hit = self.seen.get(namespace)
        if hit is None:
            hit = self.seen[namespace] = self._resolve(namespace)
        if symlink and namespace not in self.of_datasets and not _rule_applied(hit):
            return namespace  # a metastore's or catalog's namespace: left as emitted
        return hit.namespace

    def resolution(self, namespace: str) -> Resolution:
        """What ``namespace`` resolves to (memoised), without counting it as a dataset's own."""
        hit = self.seen.get(namespace)
        if hit is None:
            hit = self.seen[namespace] = self._resolve(namespace)
        return hit

    def rewrite_uri(self, uri: Any) -> Any:
        """A dataSource ``uri`` such as ``postgres://10.0.0.5:6432/sales``: rewrite its authority."""
        if not isinstance(uri, str) or "://" not in uri:
            return uri
        uri = strip_userinfo(uri)
        scheme, _, tail = uri.partition("://")
        authority, slash, path = tail.partition("/")
        new = self(f"{scheme}://{authority}")
        return f"{new}{slash}{path}" if new != f"{scheme}://{authority}" else uri

    def resolutions(self) -> list[Resolution]:
        """What each namespace became; a namespace met only in symlinks that no rule or data source
        places is reported as not applicable (no data source fix can help it)."""
        out = []
        for namespace, hit in self.seen.items():
            if namespace not in self.of_datasets and not _rule_applied(hit) and hit.rule != "not_applicable":
                hit = Resolution(
                    namespace,
                    namespace,
                    "not_applicable",
                    "named only in a symlink (a metastore or catalog, such as Hive's or Glue's); Alation "
                    "links a dataset by its own namespace, so this one is sent as emitted",
                )
            out.append(hit)
        return out


def _rule_applied(resolution: Resolution) -> bool:
    """A user rule or a discovered data source placed it (not just the canonical spelling)."""
    return resolution.matched or resolution.rule not in ("unchanged", "normaliser", "not_applicable")


def _rewrite(rewrite: _Rewriter, event: dict[str, Any]) -> None:
    # A dataset dict held twice in a caller's event is rewritten once, not resolved again.
    datasets = list({id(d): d for d in _datasets(event)}.values())
    symlinks: list[dict[str, Any]] = []
    put = rewrite.put
    for dataset in datasets:  # every namespace but the symlinks' first: they decide for the symlinks
        put(dataset, "namespace", rewrite(dataset.get("namespace")))
        facets = _facets(dataset)
        for column in _dicts(list(_facets(_facets(facets, "columnLineage"), "fields").values())):
            for input_field in _dicts(column.get("inputFields")):
                put(input_field, "namespace", rewrite(input_field.get("namespace")))
        for input_field in _dicts(_facets(facets, "columnLineage").get("dataset")):
            put(input_field, "namespace", rewrite(input_field.get("namespace")))
        source = facets.get("dataSource")
        if isinstance(source, dict):
            if isinstance(source.get("name"), str) and "://" in source["name"]:
                put(source, "name", rewrite(source["name"]))
            put(source, "uri", rewrite.rewrite_uri(source.get("uri")))
        symlinks.extend(_dicts(_facets(facets, "symlinks").get("identifiers")))
    for identifier in {id(i): i for i in symlinks}.values():
        put(identifier, "namespace", rewrite(identifier.get("namespace"), symlink=True))


def _table_symlink(rewrite: _Rewriter, identifiers: list[Any]) -> int | None:
    """The index of the first TABLE symlink whose namespace a user rule or a data source places."""
    for index, identifier in enumerate(identifiers):
        if not isinstance(identifier, dict) or str(identifier.get("type") or "").upper() != TABLE:
            continue
        namespace, name = identifier.get("namespace"), identifier.get("name")
        if not isinstance(namespace, str) or not namespace or not isinstance(name, str) or not name:
            continue
        hit = rewrite.resolution(strip_userinfo(namespace))
        if hit.rule != "not_applicable" and _rule_applied(hit):
            return index
    return None


def name_tables(rewrite: _Rewriter, event: dict[str, Any]) -> dict[tuple[str, str], tuple[str, str]]:
    """Name storage-path datasets by their table, in place; ``{(namespace, name): (new namespace,
    new name)}`` of the datasets renamed (namespaces as emitted, credentials stripped).

    A dataset is renamed when its own namespace names no database host:port (``hdfs://``, ``s3://``,
    ``dbfs``, ``file``: resolution ``not_applicable``) and one of its ``symlinks`` identifiers of type
    ``TABLE`` has a namespace that a ``namespace_map`` rule places or that matches a catalogued data
    source (discovery, ``additional_datasource_connections``): the first such identifier becomes the
    dataset's namespace and name, and takes the storage path's place in the symlinks as type
    ``LOCATION``. Column-lineage input fields naming the storage path follow.
    """
    renamed: dict[tuple[str, str], tuple[str, str]] = {}
    for dataset in {id(d): d for d in _datasets(event)}.values():
        namespace, name = dataset.get("namespace"), dataset.get("name")
        if not isinstance(namespace, str) or not isinstance(name, str):
            continue
        namespace = strip_userinfo(namespace)
        if rewrite.resolution(namespace).rule != "not_applicable":
            continue
        identifiers = _facets(dataset).get("symlinks")
        identifiers = identifiers.get("identifiers") if isinstance(identifiers, dict) else None
        if not isinstance(identifiers, list):
            continue
        index = _table_symlink(rewrite, identifiers)
        if index is None:
            continue
        table = identifiers[index]
        identifiers[index] = {"namespace": namespace, "name": name, "type": LOCATION}
        dataset["namespace"], dataset["name"] = strip_userinfo(table["namespace"]), table["name"]
        renamed[(namespace, name)] = (dataset["namespace"], dataset["name"])
    if renamed:
        for dataset in {id(d): d for d in _datasets(event)}.values():
            lineage = _facets(_facets(dataset), "columnLineage")
            columns = _dicts(list(_facets(lineage, "fields").values()))
            fields = [f for column in columns for f in _dicts(column.get("inputFields"))]
            for input_field in fields + list(_dicts(lineage.get("dataset"))):
                ns, field_name = input_field.get("namespace"), input_field.get("name")
                if isinstance(ns, str) and isinstance(field_name, str):
                    target = renamed.get((strip_userinfo(ns), field_name))
                    if target is not None:
                        input_field["namespace"], input_field["name"] = target
    return renamed


def rewrite_namespaces(
    event: dict[str, Any], resolve: Resolve, *, symlink_tables: bool = True
) -> list[Resolution]:
    """Rewrite, in place, every dataset namespace in ``event`` (datasets and the facets repeating it);
    with ``symlink_tables``, name storage-path datasets by their table first (:func:`name_tables`)."""
    return _rewrite_namespaces(event, resolve, symlink_tables)[0]


def _rewrite_namespaces(
    event: dict[str, Any], resolve: Resolve, symlink_tables: bool
) -> tuple[list[Resolution], bool]:
    """:func:`rewrite_namespaces`, and whether the event changed."""
    rewrite = _Rewriter(resolve)
    renamed = name_tables(rewrite, event) if symlink_tables else {}
    _rewrite(rewrite, event)
    return rewrite.resolutions(), bool(renamed) or rewrite.changed


def encode(event: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON; text that is not valid Unicode (a lone surrogate) is sent as a JSON
    ``\\u`` escape instead of failing the event."""
    try:
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(event, separators=(",", ":")).encode("ascii")


def _size(name: str, value: Any) -> int:
    """Bytes that removing ``"name": value,`` from a compact JSON object saves."""
    return len(encode({name: value})) - 1


@dataclass
class _Candidate:
    label: str
    tier: int
    rank: float
    size: int
    holders: list[tuple[dict[str, Any], str]]

    def remove(self) -> None:
        for holder, name in self.holders:
            holder.pop(name, None)


def _tier(where: str, name: str) -> tuple[int, float]:
    shown = _SHOWN_RANK.get((where, name))
    if shown is not None:
        return 3, shown
    return (1, 0) if name in NEVER_READ[where] else (2, 0)


def _candidates(event: dict[str, Any]) -> list[_Candidate]:
    """Every removable facet (a dataset facet once for all datasets), in the order they go."""
    found: dict[str, _Candidate] = {}

    def add(label: str, tier: tuple[int, float], holder: dict[str, Any], name: str) -> None:
        candidate = found.get(label)
        if candidate is None:
            candidate = found[label] = _Candidate(label, tier[0], tier[1], 0, [])
        candidate.size += _size(name, holder[name])
        candidate.holders.append((holder, name))

    for where in ("run", "job"):
        facets = _facets(event.get(where))
        for name in list(facets):
            airflow = facets[name]
            if where == "run" and name == "airflow" and isinstance(airflow, dict) and "task" in airflow:
                add("run.airflow.task", (2, 0), airflow, "task")  # operator details, before the rest
            add(f"{where}.{name}", _tier(where, name), facets, name)
    for dataset in _datasets(event):
        facets = _facets(dataset)
        for name in list(facets):
            add(f"dataset.{name}", _tier("dataset", name), facets, name)
        for key in ("inputFacets", "outputFacets"):
            extra = _facets(dataset, key)
            for name in list(extra):
                add(f"dataset.{key}.{name}", (2, 0), extra, name)
    return sorted(found.values(), key=lambda c: (c.tier, c.rank, -c.size, c.label))


def _trim(event: dict[str, Any], body: bytes, max_event_bytes: int) -> tuple[bytes, list[str]]:
    trimmed: list[str] = []
    size = len(body)
    pending = _candidates(event)
    while size > max_event_bytes and pending:
        # Remove by estimated size (one serialisation of each facet), then measure once.
        while size > max_event_bytes and pending:
            candidate = pending.pop(0)
            candidate.remove()
            trimmed.append(candidate.label)
            size -= candidate.size
        body = encode(event)
        size = len(body)
    return body, trimmed


def shape_event(
    event: dict[str, Any],
    resolve: Resolve,
    max_event_bytes: int,
    *,
    in_place: bool = False,
    symlink_tables: bool = True,
    encoded: bytes | None = None,
) -> Shaped:
    """The event Alation should receive: namespaces resolved, noise dropped, size capped.

    ``event`` is copied first unless ``in_place`` (the caller made the dict for this call, as
    ``Serde.to_dict`` does, so nothing else sees it change and the deep copy can be saved).
    ``encoded`` is :func:`encode` of ``event`` as given (the write-ahead's body, an outbox entry): it
    is the body when shaping changes nothing, instead of serialising the same event again.
    """
    shaped = event if in_place else copy.deepcopy(event)
    run_facets = _facets(shaped.get("run"))
    dropped = DROPPED_RUN_FACETS.intersection(run_facets)
    for name in dropped:
        del run_facets[name]
    resolutions, changed = _rewrite_namespaces(shaped, resolve, symlink_tables)
    body = encoded if encoded is not None and not changed and not dropped else encode(shaped)
    trimmed: list[str] = []
    if len(body) > max_event_bytes:
        body, trimmed = _trim(shaped, body, max_event_bytes)
    return Shaped(event=shaped, resolutions=resolutions, trimmed=trimmed, body=body)


def _keep(namespace: str) -> Resolution:
    return Resolution(namespace, namespace, "unchanged")


def strip_credentials(event: dict[str, Any]) -> None:
    """Remove ``user:password@`` from every namespace and dataSource uri of ``event``, in place:
    what the outbox keeps before anything else is done with the event."""
    _rewrite(_Rewriter(_keep), event)


class NotSendable(ValueError):
    """An outbox entry that cannot be sent as it is: ``problem`` is ``unshapeable`` or ``too_large``."""

    def __init__(self, problem: str, detail: str) -> None:
        super().__init__(detail)
        self.problem = problem
        self.detail = detail


def body_shaper(
    resolve: Resolve, max_event_bytes: int, *, symlink_tables: bool = True
) -> Callable[[bytes], bytes]:
    """Shapes an entry of the outbox (kept as written ahead: credentials stripped, namespaces as
    emitted) right before it is sent, with the settings of the sender; raises :class:`NotSendable`.
    Shaping an already shaped entry (written by an earlier version) changes nothing."""

    def shape(body: bytes) -> bytes:
        try:
            event = json.loads(body)
        except ValueError as exc:
            raise NotSendable("unshapeable", f"is not JSON ({str(exc)[:200]})") from None
        if not isinstance(event, dict):
            raise NotSendable("unshapeable", f"is a JSON {type(event).__name__}, not an event")
        try:
            shaped = shape_event(
                event, resolve, max_event_bytes, in_place=True, symlink_tables=symlink_tables, encoded=body
            )
        except Exception as exc:  # noqa: BLE001 - any structure: the reason is kept with the entry
            raise NotSendable(
                "unshapeable", f"could not be shaped ({type(exc).__name__}: {str(exc)[:200]})"
            ) from None
        if shaped.size > max_event_bytes:
            raise NotSendable(
                "too_large",
                f"is {shaped.size} bytes after removing {', '.join(shaped.trimmed) or 'nothing removable'}, "
                f"above max_event_bytes={max_event_bytes}",
            )
        return shaped.body

    return shape
