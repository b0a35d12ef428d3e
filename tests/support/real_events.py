"""The real OpenLineage events in ../shared/real-events, and a plain reading of what Alation gets.

The expectations here are written from the OpenLineage JSON alone (eventType, which of run/job/
dataset are present, jobType, how many inputs and outputs, parent and root job names). They never
call the code under test, so the transport is checked against an independent reading.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "real-events"

#: The default of the ``skip_job_types`` setting (dbt data tests).
DEFAULT_SKIP_JOB_TYPES = ("TEST",)


@dataclass(frozen=True)
class CorpusEvent:
    directory: str
    file: str
    line: int  # 1 for a .json file; the line number in a .jsonl file
    text: str

    @property
    def id(self) -> str:
        return f"{self.directory}/{self.file}:{self.line}"

    @property
    def event(self) -> dict[str, Any]:
        """A fresh copy each time (the transport may shape what it is given)."""
        return json.loads(self.text)

    @property
    def size(self) -> int:
        return len(self.text.encode("utf-8"))


@cache
def load_corpus(root: Path = CORPUS) -> tuple[CorpusEvent, ...]:
    """Every event, in emission order: directories by name, file-name order, line order."""
    events: list[CorpusEvent] = []
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(p for p in directory.iterdir() if p.suffix in (".json", ".jsonl")):
            text = path.read_text(encoding="utf-8")
            if path.suffix == ".json":
                events.append(CorpusEvent(directory.name, path.name, 1, text))
                continue
            for number, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    events.append(CorpusEvent(directory.name, path.name, number, line))
    return tuple(events)


def by_directory(events: tuple[CorpusEvent, ...]) -> dict[str, list[CorpusEvent]]:
    grouped: dict[str, list[CorpusEvent]] = {}
    for item in events:
        grouped.setdefault(item.directory, []).append(item)
    return grouped


def job_type(event: dict[str, Any]) -> str:
    facet = ((event.get("job") or {}).get("facets") or {}).get("jobType") or {}
    return str(facet.get("jobType") or "")


def expected_reason(
    event: dict[str, Any], skip_job_types: tuple[str, ...] = DEFAULT_SKIP_JOB_TYPES
) -> str | None:
    """Why Alation gets nothing from this event (the gate's reason), or None when it is sent.

    Written from the contract, in its order; DAG selection is left to the caller.
    """
    if "run" not in event:
        if "dataset" in event and "job" not in event:
            return "dataset_event"
        if "job" in event:
            return "job_event"
        return "not_run_event"
    if "job" not in event:
        return "not_run_event"
    if str(event.get("eventType") or "").upper() != "COMPLETE":
        return "not_complete"
    if job_type(event).upper() == "DAG":
        return "dag_event"
    if not event.get("inputs"):
        return "no_inputs"
    if not event.get("outputs"):
        return "no_outputs"
    if job_type(event).upper() in {t.upper() for t in skip_job_types}:
        return "job_type_skipped"
    return None


def selection_names(event: dict[str, Any]) -> dict[str, str]:
    """The names DAG selection matches, by role: the job's own, its parent job's, its root job's."""
    parent = ((event.get("run") or {}).get("facets") or {}).get("parent") or {}
    names = {
        "job": (event.get("job") or {}).get("name"),
        "parent": (parent.get("job") or {}).get("name"),
        "root": ((parent.get("root") or {}).get("job") or {}).get("name"),
    }
    return {role: name for role, name in names.items() if isinstance(name, str) and name}


def matched_by(event: dict[str, Any], pattern: str) -> set[str]:
    """Which of the job's own, parent and root names match the glob ``pattern``."""
    return {role for role, name in selection_names(event).items() if fnmatchcase(name, pattern)}


def selected(event: dict[str, Any], pattern: str) -> bool:
    return bool(matched_by(event, pattern))


def _datasets(event: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("inputs", "outputs"):
        yield from event.get(key) or ()


def facet_namespaces(dataset: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(where, value) for every place a dataset's facets repeat a namespace."""
    facets = dataset.get("facets") or {}
    for i, identifier in enumerate((facets.get("symlinks") or {}).get("identifiers") or ()):
        yield f"symlinks.identifiers[{i}].namespace", identifier.get("namespace")
    source = facets.get("dataSource")
    if isinstance(source, dict):
        yield "dataSource.name", source.get("name")
        yield "dataSource.uri", source.get("uri")
    column_lineage = facets.get("columnLineage") or {}
    for column, spec in sorted((column_lineage.get("fields") or {}).items()):
        for i, field in enumerate(spec.get("inputFields") or ()):
            yield f"columnLineage.fields.{column}.inputFields[{i}].namespace", field.get("namespace")
    for i, field in enumerate(column_lineage.get("dataset") or ()):
        yield f"columnLineage.dataset[{i}].namespace", field.get("namespace")


def namespace_mismatches(
    original: dict[str, Any], sent: dict[str, Any], *, removed_ok: bool = False
) -> list[str]:
    """Places where a namespace repeated in a facet was not rewritten like the dataset it names.

    From the original event, each dataset namespace maps to the namespace sent for that dataset;
    every facet value (symlinks, dataSource, columnLineage) equal to an original dataset namespace
    must equal what that namespace became. ``removed_ok``: a facet the size cap removed is no mismatch.
    """
    problems: list[str] = []
    became: dict[str, str] = {}
    pairs = list(zip(_datasets(original), _datasets(sent), strict=False))
    if len(pairs) != len(list(_datasets(original))) or len(pairs) != len(list(_datasets(sent))):
        return ["the sent event does not have the original's datasets"]
    for before, after in pairs:
        ns_before, ns_after = before.get("namespace"), after.get("namespace")
        if before.get("name") != after.get("name"):
            problems.append(f"dataset {before.get('name')!r} became {after.get('name')!r}")
        if became.setdefault(ns_before, ns_after) != ns_after:
            problems.append(f"{ns_before!r} sent as both {became[ns_before]!r} and {ns_after!r}")
    for (i, before), after in zip(enumerate(_datasets(original)), _datasets(sent), strict=True):
        sent_values = dict(facet_namespaces(after))
        for where, value in facet_namespaces(before):
            if removed_ok and where not in sent_values:
                continue
            if value in became and sent_values.get(where) != became[value]:
                problems.append(
                    f"dataset #{i} {where}: {value!r} sent as {sent_values.get(where)!r}, "
                    f"but the dataset namespace {value!r} was sent as {became[value]!r}"
                )
    return problems


#: Namespaces no Alation data source can match (no database host:port): sent as emitted, INFO once.
_NOT_APPLICABLE = re.compile(
    r"^(bigquery|file|dbfs|aws:glue:.*|(s3|s3a|gs|gcs|hdfs|file|dbfs|kafka|duckdb|sqlite|hive)[:/].*)$"
)


def not_applicable(namespace: str) -> bool:
    return bool(_NOT_APPLICABLE.match(namespace))


def all_namespaces(event: dict[str, Any]) -> set[str]:
    """Dataset namespaces and symlink namespaces (the ones a resolver sees)."""
    found: set[str] = set()
    for dataset in _datasets(event):
        if isinstance(dataset.get("namespace"), str):
            found.add(dataset["namespace"])
        for where, value in facet_namespaces(dataset):
            if where.startswith("symlinks") and isinstance(value, str):
                found.add(value)
    return found


def mentions(message: str, namespace: str) -> bool:
    """``namespace`` appears in ``message`` as a whole token (so ``file`` is not ``file:/tmp``)."""
    return re.search(rf"(?<![\w:/.-]){re.escape(namespace)}(?![\w/-]|[.:][\w/])", message) is not None


def transport_settings(fake: Any, token: str, folder: Path, **overrides: Any) -> dict[str, Any]:
    """The transport's inline configuration, as a plain openlineage-python producer gives it:
    pointed at the stand-in ``fake``, its outbox and cache under ``folder``, every job selected."""
    return {
        "type": "airflow_provider_alation.transport.AlationTransport",
        "url": fake.url,
        "token": token,
        "verify": str(fake.cert_path),
        "spool_dir": str(folder / "spool"),
        "cache_dir": str(folder / "cache"),
        "dags": {"include": ["*"]},
        **overrides,
    }
