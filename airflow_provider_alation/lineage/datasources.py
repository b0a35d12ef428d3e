"""Alation data sources as a host:port index, and the matches a human would accept.

Pure: no I/O, no Airflow. Alation links a dataset to a data source when the host:port of the
dataset's namespace equals the host:port of the data source's JDBC URI. This module parses every
URI form Alation stores (with or without ``jdbc:``, Oracle thin including ``DESCRIPTION=``
blocks, SQL Server ``;`` properties and ``\\instance``, Teradata ``DBS_PORT``, several hosts,
query strings) into endpoints, indexes them, and matches a parsed namespace against them:

1. exactly, by host:port (the scheme is not compared, as in Alation);
2. a Redshift ``cluster.region`` (what the OpenLineage provider emits) against the full endpoint
   host ``cluster.<id>.region.redshift[-serverless].amazonaws.com``;
3. a Snowflake account (``org-account`` or ``locator.region.cloud``) against its full host
   ``....snowflakecomputing.com``, privatelink and legacy region spellings included;
4. a short host name (``proddb``) against the one catalogued host whose first label it is, on
   the same port, when exactly one such host exists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_alation.lineage.namespaces import (
    INVALID_PORT,
    Namespace,
    canonical_scheme,
    default_port,
    normalise_host,
    parse_port,
    split_host_port,
)
from airflow_provider_alation.lineage.normalisers import SNOWFLAKE_SUFFIXES

Endpoint = tuple[str, int]

_SCHEME_RE = re.compile(
    r"^(?P<scheme>[a-z][a-z0-9+.\-]*(?::[a-z][a-z0-9+.\-]*)?)://(?P<rest>.*)$", re.I | re.S
)
_ORACLE_RE = re.compile(r"^oracle:(?:thin|oci8?):(?P<rest>.*)$", re.I | re.S)
_DESCRIPTION_ADDRESS_RE = re.compile(r"\(\s*ADDRESS\s*=(?P<body>(?:\s*\([^()]*\))+)\s*\)", re.I)
_DESCRIPTION_KEY_RE = re.compile(r"\(\s*(HOST|PORT)\s*=\s*([^()\s]+)\s*\)", re.I)
_REDSHIFT_HOST_RE = re.compile(
    r"^(?P<cluster>[a-z0-9-]+)\.[a-z0-9-]+\.(?P<region>[a-z0-9-]+)\.redshift(?:-serverless)?\.amazonaws\.com(?:\.cn)?$"
)
#: Snowflake hosts the account locator on ``<locator>.snowflakecomputing.com`` in AWS US West
#: (Oregon); OpenLineage spells that account ``<locator>.us-west-1.aws`` (sic) or ``.us-west-2.aws``.
_SNOWFLAKE_DEFAULT_REGIONS = ("us-west-2.aws", "us-west-1.aws")


@dataclass(frozen=True)
class DataSource:
    """One Alation data source: what the API returned, and the endpoints parsed from it."""

    id: int | str
    title: str
    uri: str
    dbtype: str = ""
    api: str = "v1"
    endpoints: tuple[Endpoint, ...] = ()

    @property
    def label(self) -> str:
        return f"#{self.id} {self.title}".strip() if self.title else f"#{self.id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "uri": self.uri,
            "dbtype": self.dbtype,
            "api": self.api,
            "endpoints": [f"{host}:{port}" for host, port in self.endpoints],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataSource:
        endpoints = []
        for text in data.get("endpoints") or ():
            host, _, port = str(text).rpartition(":")
            if host and port.isdigit():
                endpoints.append((host, int(port)))
        return cls(
            id=data.get("id", "?"),
            title=str(data.get("title") or ""),
            uri=str(data.get("uri") or ""),
            dbtype=str(data.get("dbtype") or ""),
            api=str(data.get("api") or "v1"),
            endpoints=tuple(endpoints),
        )

    @classmethod
    def from_api(cls, item: Mapping[str, Any], api: str) -> DataSource:
        """An item of ``/integration/v1/datasource/`` or ``/integration/v2/datasource/``."""
        uri = str(item.get("uri") or "")
        dbtype = str(item.get("dbtype") or item.get("connector_name") or "")
        endpoints = list(parse_datasource_uri(uri, dbtype))
        # v1 items also carry host/port fields; keep them as an extra way in.
        host, port = item.get("host"), item.get("port")
        if isinstance(host, str) and host.strip():
            scheme = canonical_scheme(dbtype) if dbtype else ""
            number = _port(port, default_port(scheme) if scheme else None)
            if number:
                endpoints.append((normalise_host(host), number))
        unique = tuple(dict.fromkeys(endpoints))
        return cls(
            id=item.get("id", "?"),
            title=str(item.get("title") or ""),
            uri=uri,
            dbtype=dbtype,
            api=api,
            endpoints=unique,
        )


def _port(value: Any, default: int | None) -> int | None:
    """The port: the default when none is given, None when one is given but invalid."""
    port = parse_port(str(value).strip() if value is not None else "")
    if port is None:
        return default or None
    return None if port == INVALID_PORT else port


def _endpoint(part: str, default: int | None) -> Endpoint | None:
    host, port_text = split_host_port(part)
    port = _port(port_text, default)
    if not host or not port or "=" in host or "(" in host:
        return None
    return normalise_host(host), port


def _split_authority(authority: str, default: int | None) -> list[Endpoint]:
    """``h1:1,h2:2`` or ``[::1]:5432`` (user info dropped) into endpoints; invalid ones skipped."""
    endpoints = []
    for part in authority.rsplit("@", 1)[-1].split(","):
        endpoint = _endpoint(part, default) if part.strip() else None
        if endpoint:
            endpoints.append(endpoint)
    return endpoints


def _mysql_address_form(rest: str, default: int | None) -> list[Endpoint]:
    """``mysql://address=(host=h1)(port=3307),address=(host=h2)/db``."""
    endpoints = []
    for block in re.finditer(r"address=((?:\([^()]*\))+)", rest, re.I):
        keys = dict(re.findall(r"\(\s*(\w+)\s*=\s*([^()]*?)\s*\)", block[1]))
        keys = {k.lower(): v for k, v in keys.items()}
        port = _port(keys.get("port"), default)
        if keys.get("host") and port:
            endpoints.append((normalise_host(keys["host"]), port))
    return endpoints


def _properties(text: str, separators: str) -> dict[str, str]:
    props: dict[str, str] = {}
    for piece in re.split(f"[{re.escape(separators)}]", text):
        key, eq, value = piece.partition("=")
        if eq:
            props[key.strip().lower()] = value.strip()
    return props


def _oracle(rest: str) -> list[Endpoint]:
    """``@host:1521:SID``, ``@host:1521/svc``, ``@//host:1521/svc``, ``@(DESCRIPTION=...)``."""
    if "@" in rest:
        rest = rest.split("@", 1)[1]
    rest = rest.strip()
    if rest.startswith("("):
        endpoints = []
        for address in _DESCRIPTION_ADDRESS_RE.finditer(rest):
            keys = {k.upper(): v for k, v in _DESCRIPTION_KEY_RE.findall(address["body"])}
            port = _port(keys.get("PORT"), 1521)
            if keys.get("HOST") and port:
                endpoints.append((normalise_host(keys["HOST"]), port))
        return endpoints
    lowered = rest.lower()
    if lowered.startswith(("ldap://", "ldaps://")):
        return []  # the directory server, not the database
    for prefix in ("tcp://", "tcps://"):  # EZConnect Plus
        if lowered.startswith(prefix):
            rest = rest[len(prefix) :]
    head = re.split(r"[/?]", rest.removeprefix("//"), maxsplit=1)[0]
    if ":" not in head and "." not in head:
        return []  # a TNS alias: its host is in tnsnames.ora, not in the URI
    return _split_authority(head, 1521)  # host:port:SID -> the SID is dropped


def parse_datasource_uri(uri: str, dbtype: str = "") -> list[Endpoint]:
    """Every host:port an Alation data source URI names, default ports filled in; [] if none."""
    text = (uri or "").strip()
    if text.lower().startswith("jdbc:"):
        text = text[5:]
    oracle = _ORACLE_RE.match(text)
    if oracle:
        return _oracle(oracle["rest"])
    match = _SCHEME_RE.match(text)
    if not match:
        return []
    scheme = canonical_scheme(match["scheme"])
    rest = match["rest"]
    inner = _SCHEME_RE.match(rest)
    if inner and inner["scheme"].lower() in ("http", "https"):
        # BigQuery's Simba URI: bigquery://https://www.googleapis.com/bigquery/v2:443/project
        rest = inner["rest"]
    default = default_port(scheme) or (default_port(canonical_scheme(dbtype)) if dbtype else None)
    if rest.lower().startswith("address="):
        return _mysql_address_form(rest, default)
    authority = re.split(r"[/?;#]", rest, maxsplit=1)[0]
    tail = rest[len(authority) :]
    if scheme == "mssql":
        props = _properties(tail, ";")
        host = (authority or props.get("servername") or props.get("server") or "").rsplit("@", 1)[-1]
        port_prop = props.get("portnumber") or props.get("port")
        if "\\" in host:  # host\instance[:port]: a named instance; its port is a property or :port
            host_part, _, instance = host.partition("\\")
            explicit = instance.split(":", 1)[1] if ":" in instance else None
            port = _port(explicit or port_prop, default)
            return [(normalise_host(host_part), port)] if host_part and port else []
        endpoints = _split_authority(host, default)
        if port_prop and endpoints and ":" not in host:
            port = _port(port_prop, None)
            endpoints = [(h, port) for h, _ in endpoints] if port else []
        return endpoints
    if scheme == "teradata":
        props = _properties(tail.lstrip("/"), ",/;?&")
        port = _port(props.get("dbs_port"), default)
        if ":" in authority:
            return _split_authority(authority, port)
        return [(normalise_host(authority), port)] if authority and port else []
    return _split_authority(authority, default)


_IPV4_RE = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")


def _is_ip(host: str) -> bool:
    """An IP literal (IPv6 literals keep their brackets here); cheaper than ``ipaddress``."""
    return host.startswith("[") or ":" in host or bool(_IPV4_RE.match(host))


def snowflake_account_keys(host: str) -> set[str]:
    """The spellings of a Snowflake account that name the same host.

    ``xy12345.us-east-1.privatelink.snowflakecomputing.com`` -> ``xy12345.us-east-1``,
    ``xy12345.us-east-1.aws``; ``xy12345.snowflakecomputing.com`` -> ``xy12345``,
    ``xy12345.us-west-2.aws``, ``xy12345.us-west-1.aws``; an OpenLineage namespace host
    (``org-account``, ``xy12345.us-east-1.aws``) gives the same keys, underscores as hyphens.
    """
    host = host.lower().rstrip(".").replace("_", "-")
    for suffix in SNOWFLAKE_SUFFIXES:
        if host.endswith(suffix):
            host = host[: -len(suffix)]
            break
    labels = [label for label in host.split(".") if label and label != "privatelink"]
    if not labels:
        return set()
    account = ".".join(labels)
    keys = {account}
    if len(labels) == 1 and "-" not in labels[0]:
        keys.update(f"{labels[0]}.{region}" for region in _SNOWFLAKE_DEFAULT_REGIONS)
    elif len(labels) == 2:
        keys.add(f"{account}.aws")
    elif len(labels) == 3 and labels[2] == "aws":
        keys.add(".".join(labels[:2]))
        if labels[1] + ".aws" in _SNOWFLAKE_DEFAULT_REGIONS:
            keys.add(labels[0])
    return keys


#: Names that are a container or the machine itself, never a catalogued server's short name.
_NOT_SHORT_NAMES = frozenset({"localhost", "host.docker.internal", "db", "database"})


def _same_kind(source: DataSource, scheme: str) -> bool:
    """The data source is of the namespace's kind (or its kind is unknown, as for OCF sources)."""
    return not source.dbtype or canonical_scheme(source.dbtype) == scheme


@dataclass(frozen=True)
class Match:
    """A namespace matched to catalogued endpoint(s)."""

    host: str
    port: int
    sources: tuple[DataSource, ...]
    how: str  # "host:port", "redshift cluster", "snowflake account", "short host name"

    @property
    def label(self) -> str:
        first = self.sources[0].label
        more = f" (+{len(self.sources) - 1} more)" if len(self.sources) > 1 else ""
        return first + more


#: Kinds of secondary keys: a Redshift ``(cluster, region)``, a Snowflake account spelling, a
#: first host label. Each maps ``(kind, key, port)`` to catalogued endpoints.
REDSHIFT, SNOWFLAKE, SHORT = "redshift", "snowflake", "short"


def secondary_keys(host: str) -> list[tuple[str, str]]:
    """The ``(kind, key)`` pairs under which a catalogued host is found by the fuzzy matches (the
    port is the endpoint's own). One definition for every index, in memory or stored."""
    keys: list[tuple[str, str]] = []
    redshift = _REDSHIFT_HOST_RE.match(host) if ".redshift" in host else None
    if redshift:
        keys.append((REDSHIFT, f"{redshift['cluster']}.{redshift['region']}"))
    if host.endswith(SNOWFLAKE_SUFFIXES):
        keys.extend((SNOWFLAKE, key) for key in sorted(snowflake_account_keys(host)))
    if "." in host and not _is_ip(host):
        keys.append((SHORT, host.split(".", 1)[0]))
    return keys


class EndpointIndex:
    """Discovered data sources as resolution asks for them: by endpoint, and by secondary key.

    The matching (:meth:`match`) is defined here once; an index only answers the two lookups, from
    memory (:class:`DataSourceIndex`) or from a file it looks rows up in without loading it
    (:class:`airflow_provider_alation.alation.datasource_store.StoredIndex`).
    """

    def sources_at(self, endpoint: Endpoint) -> tuple[DataSource, ...]:
        """The data sources whose URI names ``endpoint``."""
        raise NotImplementedError

    def endpoints_for(self, kind: str, key: str, port: int) -> frozenset[Endpoint]:
        """The catalogued endpoints on ``port`` whose host has the secondary ``(kind, key)``."""
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def sources(self) -> tuple[DataSource, ...]:
        """Every data source (for listings: a stored index reads them all)."""
        raise NotImplementedError

    def lookup(self, host: str, port: int | None) -> tuple[DataSource, ...]:
        if port is None:
            return ()
        return self.sources_at((host, port))

    def _single(self, candidates: frozenset[Endpoint] | set[Endpoint], how: str) -> Match | None:
        if len(candidates) != 1:
            return None
        host, port = next(iter(candidates))
        sources = self.sources_at((host, port))
        return Match(host, port, sources, how) if sources else None

    def match(self, namespace: Namespace) -> Match | None:
        """The catalogued endpoint this namespace names, exactly or by an unambiguous fuzzy rule."""
        host, port = namespace.host, namespace.port
        if not host or port is None:
            return None
        exact = self.sources_at((host, port))
        if exact:
            return Match(host, port, exact, "host:port")
        labels = host.split(".")
        if namespace.scheme in ("redshift", "postgres") and len(labels) == 2:
            hit = self._single(self.endpoints_for(REDSHIFT, host, port), "redshift cluster")
            if hit:
                return hit
        if namespace.scheme == "snowflake" or host.endswith(SNOWFLAKE_SUFFIXES):
            found: set[Endpoint] = set()
            for key in snowflake_account_keys(host):
                found |= self.endpoints_for(SNOWFLAKE, key, port)
            hit = self._single(found, "snowflake account")
            if hit:
                return hit
        if len(labels) == 1 and not _is_ip(host) and host not in _NOT_SHORT_NAMES:
            candidates = {
                endpoint
                for endpoint in self.endpoints_for(SHORT, host, port)
                if any(_same_kind(source, namespace.scheme) for source in self.sources_at(endpoint))
            }
            return self._single(candidates, "short host name")
        return None


@dataclass
class DataSourceIndex(EndpointIndex):
    """Data sources by host:port, with the secondary keys the fuzzy matches need, in memory."""

    all_sources: tuple[DataSource, ...] = ()
    by_endpoint: dict[Endpoint, list[DataSource]] = field(default_factory=dict)
    _secondary: dict[tuple[str, str, int], set[Endpoint]] = field(default_factory=dict)

    @classmethod
    def build(cls, sources: Iterable[DataSource]) -> DataSourceIndex:
        index = cls(all_sources=tuple(sources))
        for source in index.all_sources:
            for endpoint in source.endpoints:
                index.by_endpoint.setdefault(endpoint, []).append(source)
        for host, port in index.by_endpoint:
            for kind, key in secondary_keys(host):
                index._secondary.setdefault((kind, key, port), set()).add((host, port))
        return index

    def __len__(self) -> int:
        return len(self.all_sources)

    @property
    def sources(self) -> tuple[DataSource, ...]:
        return self.all_sources

    def sources_at(self, endpoint: Endpoint) -> tuple[DataSource, ...]:
        return tuple(self.by_endpoint.get(endpoint, ()))

    def endpoints_for(self, kind: str, key: str, port: int) -> frozenset[Endpoint]:
        return frozenset(self._secondary.get((kind, key, port), ()))
