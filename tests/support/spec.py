"""Validation of events against the OpenLineage JSON Schemas in ../shared/openlineage-spec.

A clone with nothing beside it has no ``../shared``: events are then checked against the OpenLineage
client's own generated models instead (``openlineage.client.generated.base``: the envelope, its
required fields, types and enums, and the models' own field checks), which is weaker than the JSON
Schemas (no facet schemas). :func:`validation_note` says which one a run uses; CI sets
``ALATION_REQUIRE_SHARED=1``, under which a missing ``../shared`` is an error instead.
"""

from __future__ import annotations

import enum
import json
import os
import types
import typing
from collections.abc import Iterator
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

SHARED_DIR = Path(__file__).resolve().parents[3] / "shared"
SPEC_DIR = SHARED_DIR / "openlineage-spec"
REAL_EVENTS_DIR = SHARED_DIR / "real-events"
#: Set by CI (``.ci/run``): the shared folder must be there, no fall-back.
REQUIRE_SHARED_ENV = "ALATION_REQUIRE_SHARED"


def spec_available() -> bool:
    return (SPEC_DIR / "OpenLineage.json").is_file()


def shared_required() -> bool:
    return os.environ.get(REQUIRE_SHARED_ENV, "").strip().lower() in ("1", "true", "yes")


def missing_shared() -> list[Path]:
    """What of ../shared the tests use is missing (empty when everything is there)."""
    missing = [] if spec_available() else [SPEC_DIR]
    return missing + ([] if REAL_EVENTS_DIR.is_dir() else [REAL_EVENTS_DIR])


def validation_note() -> str | None:
    """One line for the run's output when events are not validated against the JSON Schemas."""
    if spec_available():
        return None
    return (
        f"../shared/openlineage-spec not found: events validated against openlineage-python "
        f"{version('openlineage-python')}'s generated models (openlineage.client.generated) instead of "
        "the OpenLineage JSON Schemas; tests that need ../shared/real-events are skipped "
        f"(CI sets {REQUIRE_SHARED_ENV}=1 and runs the full validation)"
    )


def validate_event(event: dict[str, Any]) -> list[str]:
    """Errors (empty when valid): the envelope, then every facet whose schema file is in the spec."""
    if spec_available():
        return _validate_with_schemas(event)
    if shared_required():
        raise FileNotFoundError(
            f"OpenLineage schemas not found at {SPEC_DIR} and {REQUIRE_SHARED_ENV} is set: "
            "check out the shared folder beside this repository"
        )
    return _validate_with_client_models(event)


# --- The JSON Schemas (CI, and any checkout with ../shared beside it) -----------------------------


@cache
def _registry():
    from referencing import Registry, Resource

    resources = []
    by_file: dict[str, str] = {}
    main = json.loads((SPEC_DIR / "OpenLineage.json").read_text())
    resources.append((main["$id"], Resource.from_contents(main)))
    for path in sorted((SPEC_DIR / "facets").glob("*.json")):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
        by_file[path.name] = schema["$id"]
    return Registry().with_resources(resources), main, by_file


def _validate_with_schemas(event: dict[str, Any]) -> list[str]:
    from jsonschema import Draft202012Validator

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


# --- The fall-back: openlineage-python's generated models -----------------------------------------


def _validate_with_client_models(event: dict[str, Any]) -> list[str]:
    """The event checked field by field against the client's attrs models (RunEvent, JobEvent or
    DatasetEvent, like the spec's ``oneOf``): required fields, JSON types, enum values and the models'
    own validators (``eventTime`` a date-time, ``runId`` a UUID). Unknown keys are allowed, as in the
    spec. ``producer``/``schemaURL`` (``_producer``/``_schemaURL`` in facets), which the client
    always fills in, count as required, as in the spec."""
    from openlineage.client.generated import base

    if not isinstance(event, dict):
        return [f": {event!r} is not of type 'object'"]
    if "run" in event:
        model = base.RunEvent
    elif "dataset" in event and "job" not in event:
        model = base.DatasetEvent
    else:
        model = base.JobEvent
    return list(_check_model(model, event, ""))


def _check_model(model: type, value: Any, where: str) -> Iterator[str]:
    import attr

    if not isinstance(value, dict):
        yield f"{where}: {value!r} is not of type 'object'"
        return
    always_filled = set(getattr(model, "_base_skip_redact", ()))
    for field in _fields(model):
        path = f"{where}/{field.name}" if where else field.name
        if field.name not in value:
            if field.default is attr.NOTHING or field.name in always_filled:
                yield f"{where}: '{field.name}' is a required property"
            continue
        errors = list(_check_type(field.type, value[field.name], path))
        yield from errors
        if not errors and field.validator is not None:
            try:
                field.validator(None, field, value[field.name])
            except Exception as exc:  # noqa: BLE001 - any failure of the model's own check is an error
                yield f"{path}: {value[field.name]!r} is invalid ({exc})"


def _check_type(hint: Any, value: Any, path: str) -> Iterator[str]:
    import attr

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        (hint,) = [a for a in args if a is not type(None)][:1]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return
    if origin is list:
        if not isinstance(value, list):
            yield f"{path}: {value!r} is not of type 'array'"
            return
        for i, item in enumerate(value):
            yield from _check_type(args[0], item, f"{path}/{i}")
    elif origin is dict:
        if not isinstance(value, dict):
            yield f"{path}: {value!r} is not of type 'object'"
            return
        for key, item in value.items():
            yield from _check_type(args[1], item, f"{path}/{key}")
    elif isinstance(hint, type) and issubclass(hint, enum.Enum):
        allowed = [member.value for member in hint]
        if value not in allowed:
            yield f"{path}: {value!r} is not one of {allowed}"
    elif isinstance(hint, type) and attr.has(hint):
        yield from _check_model(hint, value, path)
    elif hint in (bool, str) and not isinstance(value, hint):
        yield f"{path}: {value!r} is not of type '{'boolean' if hint is bool else 'string'}'"


@cache
def _fields(model: type) -> tuple[Any, ...]:
    import attr
    from openlineage.client.generated import base

    attr.resolve_types(model, globalns=vars(base))
    return tuple(attr.fields(model))
