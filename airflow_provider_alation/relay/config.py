"""The relay's configuration: which senders may post, with which token, to which Alation settings.

A JSON (or YAML) file, or the same JSON in the ``ALATION_RELAY_CONFIG`` environment variable::

    {
      "senders": [
        {"name": "spark", "token_env": "RELAY_TOKEN_SPARK",
         "alation": {"url": "https://acme.alationcloud.com", "token_env": "ALATION_TOKEN",
                     "namespace_map": {"pgbouncer.internal:6432": "prod-db.example.com:5432"}}},
        {"name": "dbt", "token_env": "RELAY_TOKEN_DBT", "conn_id": "alation_default",
         "dags": {"include": ["dbt-run-*"]}, "skip_job_types": ["TEST"]}
      ],
      "max_body_bytes": 8388608
    }

Each sender has its own relay token (``token`` or ``token_env``; never an Alation token) and its
Alation settings: inline (``alation``: ``url``, ``token`` or ``token_env``, and any extra key of the
connection) or an Airflow connection (``conn_id``). ``dags``, ``skip_job_types``, ``namespace_map``
and ``spool_dir`` on the sender override those settings. Validated once, at start: every problem is
named in one :class:`RelayConfigError`, never with a token in it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from airflow_provider_alation.settings import AlationSettings, DagSelection, build_settings

#: The environment variable naming the configuration: a file path, or the JSON itself.
CONFIG_ENV = "ALATION_RELAY_CONFIG"
#: The standalone server's connection limits for the protocol in its workers (relay/protocol.py).
LIMITS_ENV = "ALATION_RELAY_CONNECTION_LIMITS"
#: Where the relay's outboxes go by default: ``$AIRFLOW_HOME/alation/relay/<sender name>``.
RELAY_DIR = "relay"


class RelayConfigError(ValueError):
    """A relay configuration that cannot be used; the message names each problem and its fix."""


def _default_spool_root() -> str:
    home = os.environ.get("AIRFLOW_HOME") or os.path.join(os.path.expanduser("~"), "airflow")
    return os.path.join(home, "alation", RELAY_DIR)


class SenderConfig(BaseModel):
    """One OpenLineage sender (a Spark cluster, a dbt project, a Dagster deployment...)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Shown in logs; names its outbox")
    token: SecretStr | None = Field(default=None, description="The relay token this sender presents")
    token_env: str | None = Field(default=None, description="Environment variable holding that token")
    alation: dict[str, Any] | None = Field(
        default=None, description="Inline Alation settings: url, token (or token_env), extra keys"
    )
    conn_id: str | None = Field(default=None, description="Or: the Airflow connection with them")
    dags: DagSelection | None = None
    skip_job_types: tuple[str, ...] | None = None
    namespace_map: dict[str, str] | None = None
    spool_dir: str | None = None

    @model_validator(mode="after")
    def _one_of_each(self) -> SenderConfig:
        if (self.token is None) == (self.token_env is None):
            raise ValueError(f"sender {self.name!r}: give exactly one of token and token_env")
        if (self.alation is None) == (self.conn_id is None):
            raise ValueError(
                f"sender {self.name!r}: give exactly one of alation (inline settings) and conn_id"
            )
        return self

    def secret(self) -> str:
        """The sender's relay token (from ``token_env`` when set); raises :class:`RelayConfigError`."""
        if self.token is not None:
            value = self.token.get_secret_value()
        else:
            value = os.environ.get(self.token_env or "", "")
            if not value:
                raise RelayConfigError(
                    f"sender {self.name!r}: environment variable {self.token_env} (token_env) is not set "
                    "or empty; set it to the token this sender presents as 'Authorization: Bearer <token>'"
                )
        value = value.strip()
        if len(value) < 16 or not re.fullmatch(r"[\x21-\x7e]+", value):
            raise RelayConfigError(
                f"sender {self.name!r}: its relay token must be at least 16 printable characters without "
                "spaces (generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    def overrides(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if self.dags is not None:
            values["dags"] = self.dags.model_dump()
        if self.skip_job_types is not None:
            values["skip_job_types"] = list(self.skip_job_types)
        if self.spool_dir is not None:
            values["spool_dir"] = self.spool_dir
        return values


class RelayConfig(BaseModel):
    """The relay: its senders and its limits (the defaults suit events up to a few MB)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    senders: tuple[SenderConfig, ...] = Field(min_length=1)
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="Largest request body, as sent (compressed or not)"
    )
    max_decompressed_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="Largest body once gzip is undone (gzip bombs)"
    )
    delivery_threads: int = Field(default=4, ge=1, le=64, description="Delivery threads per process")
    queue_size: int = Field(
        default=1000, ge=1, description="Events waiting for a delivery thread; beyond, they wait for replay"
    )
    replay_interval: float = Field(default=30.0, gt=0, description="Seconds between outbox replays")
    retry_after: int = Field(default=30, ge=1, description="Retry-After (seconds) of a 503")
    header_timeout: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Seconds a connection has to send a request's headers (else it is closed; standalone)",
    )
    body_timeout: float = Field(
        default=30.0, gt=0, le=600, description="Seconds a sender has to send its whole body (else 408)"
    )
    max_connections: int = Field(
        default=256, ge=8, description="Open connections per worker; beyond, new ones get 503 at once"
    )
    spool_root: str = Field(
        default_factory=_default_spool_root, description="Default outbox root: <spool_root>/<sender name>"
    )

    @model_validator(mode="after")
    def _unique(self) -> RelayConfig:
        names = [s.name for s in self.senders]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"sender names must be unique; repeated: {', '.join(duplicates)}")
        return self


def _problems(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in error.get("loc", ())) or "config"
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return problems


def parse_config(text: str, source: str) -> RelayConfig:
    """The configuration from JSON (or YAML, when the text is not JSON and PyYAML is installed)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        try:
            import yaml
        except ImportError:
            raise RelayConfigError(f"{source}: not valid JSON ({exc})") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            # Only where and what: the YAML error's own text quotes the line, token and all.
            mark = getattr(error, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "somewhere"
            problem = getattr(error, "problem", None) or type(error).__name__
            raise RelayConfigError(
                f"{source}: neither valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}) nor "
                f"YAML ({where}: {problem})"
            ) from None
    if not isinstance(data, dict):
        raise RelayConfigError(f'{source}: give an object with a "senders" list')
    try:
        config = RelayConfig.model_validate(data)
    except ValidationError as exc:
        lines = "\n".join(f"  - {p}" for p in _problems(exc))
        raise RelayConfigError(f"Invalid relay configuration in {source}:\n{lines}") from None
    spools = [
        os.path.realpath(str(sender.spool_dir or (sender.alation or {}).get("spool_dir")))
        for sender in config.senders
        if sender.spool_dir or (sender.alation or {}).get("spool_dir")
    ]
    if len(set(spools)) != len(spools):
        raise RelayConfigError(
            f"{source}: two senders name the same spool_dir; give each sender its own (a replay shapes and "
            "sends an outbox's events with its one sender's settings and token)"
        )
    tokens = [sender.secret() for sender in config.senders]
    if len(set(tokens)) != len(tokens):
        raise RelayConfigError(f"{source}: two senders share a relay token; give each its own")
    return config


def load_config(location: str | None = None) -> RelayConfig:
    """From a file path, or from ``ALATION_RELAY_CONFIG`` (a path, or the JSON itself)."""
    value = location if location is not None else os.environ.get(CONFIG_ENV, "")
    if not value.strip():
        raise RelayConfigError(
            f"the relay is not configured: set {CONFIG_ENV} to the path of a relay configuration file "
            "(or to its JSON), or pass --config"
        )
    if value.lstrip().startswith("{"):
        return parse_config(value, f"${CONFIG_ENV}")
    path = Path(value).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RelayConfigError(f"cannot read the relay configuration {path}: {exc.strerror or exc}") from None
    return parse_config(text, str(path))


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def find_sender(digests: list[tuple[bytes, SenderConfig]], presented: str) -> SenderConfig | None:
    """The sender whose token is ``presented``: every token compared, in constant time."""
    wanted = token_digest(presented)
    found = None
    for digest, sender in digests:
        if hmac.compare_digest(digest, wanted):
            found = sender
    return found


def sender_settings(sender: SenderConfig, config: RelayConfig) -> AlationSettings:
    """The sender's Alation settings with its overrides; raises :class:`SettingsError`.

    Relay events carry no DAG tags, so a selection without ``include`` patterns selects every job
    (``["*"]``) rather than none; an outbox per sender (``<spool_root>/<name>``) unless a
    ``spool_dir`` is set, so a replay shapes each event with its own sender's rules.
    """
    if sender.alation is not None:
        values = dict(sender.alation)
        token_env = values.pop("token_env", None)
        if token_env is not None and "token" not in values:
            values["token"] = os.environ.get(str(token_env), "")
        base = build_settings(values, f"relay sender {sender.name!r}", inline=True)
    else:
        from airflow_provider_alation.integration.connection import load_settings

        base = load_settings(sender.conn_id or "")
    merged: dict[str, Any] = base.model_dump()
    merged.update(sender.overrides())
    if sender.namespace_map:
        merged["namespace_map"] = {**base.namespace_map, **sender.namespace_map}
    if not merged["dags"]["include"]:
        merged["dags"] = {**merged["dags"], "include": ["*"]}
    if sender.spool_dir is None and "spool_dir" not in base.model_fields_set:
        merged["spool_dir"] = os.path.join(config.spool_root, sender.name)
    return build_settings(merged, f"relay sender {sender.name!r}", inline=True)
