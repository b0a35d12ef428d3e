"""Validation of events against the OpenLineage JSON Schemas in ../shared/openlineage-spec."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SPEC_DIR = Path(__file__).resolve().parents[3] / "shared" / "openlineage-spec"


@cache
def _registry() -> tuple[Registry, dict[str, Any], dict[str, str]]:
    if not (SPEC_DIR / "OpenLineage.json").is_file():
        raise FileNotFoundError(
            f"OpenLineage schemas not found at {SPEC_DIR}: the repository expects ../shared beside it"
        )
    resources = []
    by_file: dict[str, str] = {}
    main = json.loads((SPEC_DIR / "OpenLineage.json").read_text())
    resources.append((main["$id"], Resource.from_contents(main)))
    for path in sorted((SPEC_DIR / "facets").glob("*.json")):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
        by_file[path.name] = schema["$id"]
    return Registry().with_resources(resources), main, by_file


def validate_event(event: dict[str, Any]) -> list[str]:
    """Errors (empty when valid): the envelope, then every facet whose schema file is in the spec."""
    registry, main, by_file = _registry()
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in Draft202012Validator(main, registry=registry).iter_errors(event)
    ]
    for where, facets in _facets(event):
        if not isinstance(facets, dict):
            continue  # the envelope's errors above already name it
        for name, facet in facets.items():
            url = facet.get("_schemaURL", "") if isinstance(facet, dict) else ""
            file_name, _, fragment = url.rpartition("/")[2].partition("#")
            if file_name not in by_file or not fragment:
                continue
            schema = {"$ref": f"{by_file[file_name]}#{fragment.lstrip('#')}"}
            for e in Draft202012Validator(schema, registry=registry).iter_errors(facet):
                errors.append(f"{where}.{name}/{'/'.join(map(str, e.absolute_path))}: {e.message}")
    return errors


def _facets(event: dict[str, Any]):
    for key in ("run", "job"):
        owner = event.get(key)
        yield f"{key}.facets", (owner.get("facets") if isinstance(owner, dict) else None) or {}
    for key in ("inputs", "outputs"):
        datasets = event.get(key)
        for i, dataset in enumerate(datasets if isinstance(datasets, list) else ()):
            if not isinstance(dataset, dict):
                continue
            yield f"{key}[{i}].facets", dataset.get("facets") or {}
            for extra in ("inputFacets", "outputFacets"):
                yield f"{key}[{i}].{extra}", dataset.get(extra) or {}
