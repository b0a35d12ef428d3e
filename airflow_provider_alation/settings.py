"""One validated settings object for everything the provider does.

Pure: no Airflow import, no I/O. The Airflow connection is mapped onto these fields in
``connection.py``; the transport's inline configuration (for producers outside Airflow) uses the
same keys. Every validation error becomes one :class:`SettingsError` whose message names each
bad field and how to fix it, and never contains the token.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from airflow_provider_alation.lineage.namespaces import (
    CATALOG_PREFIXES,
    INVALID_PORT,
    ExpressionError,
    canonical_scheme,
    check_template,
    compile_expression,
    has_invalid_port,
    literal_scheme,
    normalise_host,
    parse_port,
    split_host_port,
)

DEFAULT_CONN_ID = "alation_default"
DEFAULT_ENDPOINT = "open_lineage_event/"
DEFAULT_OPT_IN_TAG = "alation"
DEFAULT_SKIP_JOB_TYPES = ("TEST",)
#: Below this an event could not even be written ahead and sent once on a fast network.
MIN_TIME_BUDGET = 0.5


def _alation_home() -> str:
    home = os.environ.get("AIRFLOW_HOME") or os.path.join(os.path.expanduser("~"), "airflow")
    return os.path.join(home, "alation")


def default_spool_dir() -> str:
    return os.path.join(_alation_home(), "spool")


def default_cache_dir() -> str:
    return os.path.join(_alation_home(), "cache")


class SettingsError(ValueError):
    """Settings that cannot be used; the message says which field is wrong and how to fix it."""

    def __init__(self, problems: list[str], source: str = "settings") -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"Invalid Alation settings in {source}:\n{lines}")


class DagSelection(BaseModel):
    """Which DAGs are sent, by ``fnmatch`` glob on the dag_id (``["*"]`` sends every DAG)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @field_validator("include", "exclude", mode="before")
    @classmethod
    def _patterns(cls, value: Any) -> Any:
        if isinstance(value, str):
            return (value,)
        return value


class AlationSettings(BaseModel):
    """Validated settings. Field names match the connection's ``extra`` keys (see README)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    url: str = Field(description="Tenant base URL, e.g. https://acme.alationcloud.com")
    token: SecretStr = Field(description="Alation API token (or refresh token), never logged")
    user_id: int | None = Field(default=None, description="Alation user id; needed only for a refresh token")
    endpoint: str = Field(default=DEFAULT_ENDPOINT, description="Path of the ingestion endpoint")
    token_type: Literal["api_token", "refresh_token"] = Field(
        default="api_token",
        description="api_token: sent as 'Authorization: Bearer'; "
        "refresh_token: exchanged for an access token",
    )
    namespace_map: dict[str, str] = Field(
        default_factory=dict,
        description="Rewrite rules from the namespace Airflow reports to the one Alation knows, as a JSON "
        'object, e.g. {"pgbouncer.internal:6432": "prod-db.example.com:5432"}',
    )
    additional_datasource_connections: tuple[str, ...] = Field(
        default=(),
        description="host:port values you added to data sources' 'Additional Datasource Connections' field",
    )
    dags: DagSelection = Field(
        default_factory=DagSelection,
        description="Glob patterns matched against each event's job, parent job and root job name "
        '(for Airflow: the dag_id), e.g. {"include": ["etl_*"], "exclude": ["etl_tmp*"]}',
    )
    skip_job_types: tuple[str, ...] = Field(
        default=DEFAULT_SKIP_JOB_TYPES,
        description="Job types (the jobType facet) never sent: they move no data, so Alation would draw "
        "lineage that does not exist (dbt data tests: TEST)",
    )
    opt_in_tag: str = Field(default=DEFAULT_OPT_IN_TAG, description="A DAG carrying this tag is sent")
    discover_datasources: bool = Field(
        default=False, description="Read Alation's data sources to resolve namespaces automatically"
    )
    discovery_ttl: float = Field(
        default=3600.0,
        gt=0,
        le=7 * 24 * 3600,
        description="Seconds the discovered data sources are reused before Alation is asked again",
    )
    cache_dir: str = Field(
        default_factory=default_cache_dir,
        description="Directory of the discovered data sources and the encrypted access token",
    )
    timeout: float = Field(default=5.0, gt=0, le=300, description="Seconds per HTTP request")
    time_budget: float = Field(
        default=8.0, ge=MIN_TIME_BUDGET, le=3600, description="Seconds for one event, retries included"
    )
    verify: bool | str = Field(default=True, description="TLS verification, or a CA bundle path")
    spool_dir: str = Field(default_factory=default_spool_dir, description="Durable outbox directory")
    outbox_max_events: int = Field(
        default=10_000,
        ge=1,
        description="Outbox cap on events; the oldest are dropped (counted) above it",
    )
    outbox_max_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024, description="Outbox cap on bytes; the oldest are dropped above it"
    )
    drain_max_events: int = Field(
        default=5, ge=0, le=100, description="Outbox events sent after each successful send (0: replay only)"
    )
    max_event_bytes: int = Field(
        default=1_048_576, ge=1024, description="Events above this size are trimmed (facets, never datasets)"
    )
    symlink_tables: bool = Field(
        default=True,
        description="Name a storage-path dataset (hdfs://, s3://, dbfs, file) by its table symlink when "
        "the symlink's namespace is a catalogued data source (a namespace_map rule or discovery)",
    )
    stream_as_complete: bool = Field(
        default=False,
        description="Forward a streaming job's START/RUNNING lineage once per run as a COMPLETE event "
        "(Flink, Debezium: their lineage never arrives on a COMPLETE)",
    )
    dry_run: bool = Field(default=False, description="Do everything but the POST; log the final event")
    allow_http: bool = Field(
        default=False, description="Accept a plain http:// tenant URL (local testing only)"
    )
    #: The Airflow connection these settings were read from (set by ``connection.py``; not a key).
    _conn_id: str | None = PrivateAttr(default=None)

    @property
    def conn_id(self) -> str | None:
        """The id of the Airflow connection these settings come from; None for inline settings."""
        return self._conn_id

    @field_validator("url", mode="before")
    @classmethod
    def _url(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(
                "is empty; set the connection's host to your tenant URL, e.g. https://acme.alationcloud.com"
            )
        text = value.strip()
        if "://" not in text:
            text = "https://" + text
        parts = urlsplit(text)
        host = parts.hostname or ""
        if (
            parts.scheme not in ("http", "https")
            or not host
            or not re.fullmatch(r"[A-Za-z0-9.\-_\[\]:]+", host)
            or " " in text
        ):
            raise ValueError(
                f"{_shown(value)} is not a tenant URL; set it like https://acme.alationcloud.com"
            )
        if "." not in host and host != "localhost" and not host.startswith("["):
            raise ValueError(
                f"{_shown(value)} has no domain (a tenant host looks like acme.alationcloud.com); set the "
                "connection's host to your tenant URL and the token in its password field"
            )
        if "@" in parts.netloc:
            raise ValueError(
                "contains a user name or password before '@'; remove it: the token goes in the "
                "connection's password field"
            )
        try:
            parts.port  # noqa: B018 - raises on a non-numeric port
        except ValueError:
            raise ValueError(
                f"{_shown(value)} has an invalid port; set it like https://acme.alationcloud.com"
            ) from None
        path = parts.path.rstrip("/")
        return f"{parts.scheme}://{parts.netloc}{path}"

    @field_validator("token", mode="before")
    @classmethod
    def _token(cls, value: Any) -> Any:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(raw, str) or not raw.strip():
            raise ValueError("is empty; put the Alation API token in the connection's password field")
        raw = raw.strip()
        if not re.fullmatch(r"[\x21-\x7e]+", raw):
            raise ValueError(
                "contains spaces, line breaks or other characters a token cannot have (a wrapped "
                "paste?); paste the token again as one line"
            )
        return raw

    @field_validator("spool_dir", "cache_dir", mode="before")
    @classmethod
    def _directory(cls, value: Any, info: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if not text:
            raise ValueError(
                f"is empty, which would put the {'outbox' if info.field_name == 'spool_dir' else 'cache'} in "
                "each process's working directory; remove the key for the default or give an absolute path"
            )
        if "\0" in text:
            raise ValueError("contains a NUL character; give an absolute directory path")
        text = os.path.expanduser(text)
        if not os.path.isabs(text):
            raise ValueError(
                f"{text!r} is a relative path, which each process would resolve against its own working "
                "directory; give an absolute path"
            )
        return text

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        value = value.strip()
        if not value or "://" in value or " " in value:
            raise ValueError(
                f"{value!r} is not a path; "
                "use a path relative to the tenant URL such as 'open_lineage_event/'"
            )
        return value.lstrip("/")

    @field_validator("additional_datasource_connections", mode="before")
    @classmethod
    def _host_ports(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            return value
        for item in value:
            host, port = split_host_port(str(item))
            if not host or parse_port(port) in (None, INVALID_PORT) or "/" in str(item):
                raise ValueError(
                    f'{item!r} is not a host:port; write it as in Alation\'s field, e.g. "10.0.0.5:5432"'
                )
        pairs = (split_host_port(str(item)) for item in value)
        return tuple(f"{normalise_host(host)}:{parse_port(port)}" for host, port in pairs)

    @field_validator("namespace_map")
    @classmethod
    def _namespace_map(cls, value: dict[str, str]) -> dict[str, str]:
        for key, target in value.items():
            if not key.strip() or not str(target).strip():
                raise ValueError(f"entry {key!r}: {target!r} has an empty side; both sides must be set")
            if key.startswith("re:"):
                try:
                    pattern = compile_expression(key[3:])
                except ExpressionError as exc:
                    raise ValueError(
                        f"expression {key!r} is not accepted ({exc}); rules run on RE2, a linear-time "
                        "engine without backreferences or lookarounds: rewrite it without them"
                    ) from None
                literal = literal_scheme(key[3:])
                if literal and canonical_scheme(literal) != literal:
                    raise ValueError(
                        f"expression {key!r} starts with scheme {literal!r}, but expressions match the "
                        f"canonical namespace; write ^{canonical_scheme(literal)}:// instead"
                    )
                try:
                    check_template(pattern, target)
                except ExpressionError as exc:
                    raise ValueError(
                        f"entry {key!r}: the value {target!r} is not a valid replacement ({exc}); "
                        f"the expression has {pattern.groups} group(s), referenced as \\1, \\2, ..."
                    ) from None
                continue
            if key.lower().startswith(CATALOG_PREFIXES):  # a Glue catalog: no host:port of its own
                if "://" not in str(target):
                    raise ValueError(
                        f"entry {key!r}: {target!r} must be a full namespace such as "
                        '"hive://metastore.example.com:10000" (a catalog has no host:port to keep)'
                    )
                sides: tuple[str, ...] = (str(target),)
            else:
                sides = (key, str(target))
            for side in sides:
                if has_invalid_port(side):
                    raise ValueError(
                        f"entry {key!r}: {side!r} has an invalid port; use a port from 1 to 65535"
                    )
        return value

    @field_validator("skip_job_types", mode="before")
    @classmethod
    def _job_types(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            return value
        types = []
        for item in value:
            if not isinstance(item, str) or not item.strip():
                raise ValueError(
                    f'{item!r} is not a job type; list jobType values such as ["TEST"] ([] sends every type)'
                )
            types.append(item.strip().upper())
        if "DAG" in types:
            types.remove("DAG")  # DAG events are always dropped; listing DAG is harmless
        return tuple(dict.fromkeys(types))

    @field_validator("opt_in_tag")
    @classmethod
    def _tag(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty; use a DAG tag such as 'alation'")
        return value.strip()

    @field_validator("verify")
    @classmethod
    def _verify(cls, value: bool | str) -> bool | str:
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("true", "false"):
                return lowered == "true"
            if not Path(value).is_file():
                raise ValueError(
                    f"CA bundle {value!r} does not exist; give the path of a PEM file, or true/false"
                )
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> AlationSettings:
        if self.url.startswith("http://") and not self.allow_http:
            raise ValueError(
                "url: plain http:// sends the token unencrypted; use https://, or set "
                '"allow_http": true in the extra for local testing only'
            )
        if self.token_type == "refresh_token" and self.user_id is None:
            raise ValueError(
                "user_id: token_type 'refresh_token' needs the Alation user id (the connection's login field)"
            )
        if self.timeout > self.time_budget:
            raise ValueError(
                f"timeout: {self.timeout}s per request exceeds time_budget {self.time_budget}s; "
                "lower timeout or raise time_budget"
            )
        return self

    @property
    def outbox_lease(self) -> float:
        """Seconds after which a claim is presumed dead (its process was killed) and replayed."""
        return max(120.0, 12 * self.time_budget)

    @property
    def endpoint_url(self) -> str:
        return f"{self.url}/{self.endpoint}"

    @property
    def verify_arg(self) -> bool | str:
        """The value for ``requests``' ``verify``."""
        return self.verify

    def __repr__(self) -> str:  # SecretStr already hides the token; keep the repr short too.
        return f"AlationSettings(url={self.url!r}, endpoint={self.endpoint!r}, dry_run={self.dry_run})"

    __str__ = __repr__


#: Extra keys accepted in the connection; ``url``/``token``/``user_id`` come from host/password/login.
EXTRA_KEYS: tuple[str, ...] = tuple(
    name for name in AlationSettings.model_fields if name not in ("url", "token", "user_id")
)

#: How each settings field is called where a user sets it (connection form field or extra key).
_FIELD_LABELS = {"url": "host", "token": "password", "user_id": "login"}


def _shown(value: Any) -> str:
    """A value quoted in an error only when it cannot be a pasted secret (no long token-like run,
    no query, no user info), since settings errors reach task logs."""
    text = str(value)
    if len(text) > 120 or re.search(r"[A-Za-z0-9_\-+/=]{24,}|[?#@]", text):
        return "the value (not shown: it may contain a token)"
    return repr(text)


def _describe(loc: tuple[Any, ...], inline: bool) -> str:
    if not loc:
        return "settings"
    head = str(loc[0])
    label = head if inline else _FIELD_LABELS.get(head, head)
    rest = ".".join(str(p) for p in loc[1:])
    name = f"{label}.{rest}" if rest else label
    return name if inline or head in _FIELD_LABELS else f"extra.{name}"


def _problem(error: dict[str, Any], inline: bool) -> str:
    loc = tuple(error.get("loc", ()))
    kind = error.get("type", "")
    msg = str(error.get("msg", "")).removeprefix("Value error, ")
    where = _describe(loc, inline)
    fix_in = "the transport configuration" if inline else "the connection's extra"
    if kind == "extra_forbidden":
        valid = list(EXTRA_KEYS) if len(loc) == 1 else list(DagSelection.model_fields)
        unknown = str(loc[-1])
        close = difflib.get_close_matches(unknown, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"{where}: unknown key.{hint} Valid keys: {', '.join(valid)}"
    if not loc:  # model-level check: its message already starts with the field's name
        return msg if inline else _connection_words(msg)
    if kind in ("greater_than", "greater_than_equal", "less_than_equal", "less_than"):
        return f"{where}: {msg}; fix the value in {fix_in}"
    if kind.endswith("_parsing") or kind.endswith("_type"):
        return f"{where}: {msg}"
    return f"{where}: {msg}"


def _connection_words(message: str) -> str:
    head, sep, tail = message.partition(":")
    if not sep:
        return message
    if head in _FIELD_LABELS:
        return f"{_FIELD_LABELS[head]}:{tail}"
    if head in AlationSettings.model_fields:
        return f"extra.{head}:{tail}"
    return message


def build_settings(values: dict[str, Any], source: str = "settings", inline: bool = False) -> AlationSettings:
    """Validate ``values`` into settings, or raise one :class:`SettingsError` naming every problem.

    ``inline``: the values come from the transport configuration (keys ``url``, ``token``, ...)
    rather than from an Airflow connection (``host``, ``password``, ``extra.<key>``).
    """
    try:
        return AlationSettings.model_validate(values)
    except ValidationError as exc:
        problems = [_problem(e, inline) for e in exc.errors(include_input=False, include_url=False)]
        raise SettingsError(problems, source) from None
