"""What each dataset namespace becomes, by which rule, and whether Alation knows its host:port.

Pure: no I/O, no Airflow. Order (``../shared/design.md``):

1. the user's ``namespace_map``: exact namespace, host alias, ``re:`` expressions;
2. built-in normalisers (Snowflake account -> ``<account>.snowflakecomputing.com:443``; a
   missing default port filled in);
3. discovered Alation data sources (exact host:port, then Redshift cluster, Snowflake account
   and unique short-host matches), when an index is given;
4. otherwise unchanged.

Every :class:`Resolution` says whether the result matches a known data source (only knowable
with discovery) and, when it does not, the exact fix: the ``host:port`` to paste into Alation's
"Additional Datasource Connections" field, or the ``namespace_map`` entry to add.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_alation.lineage.datasources import EndpointIndex, Match
from airflow_provider_alation.lineage.namespaces import Namespace, NamespaceRules, parse_namespace
from airflow_provider_alation.lineage.normalisers import is_unresolvable, normalise

if TYPE_CHECKING:
    from airflow_provider_alation.settings import AlationSettings

_CACHE_LIMIT = 100_000


@dataclass(frozen=True)
class Resolution:
    """What a namespace becomes and why."""

    original: str
    namespace: str
    rule: str
    detail: str = ""
    #: The Alation data source whose host:port the result matches (discovery only), else None.
    datasource: str | None = None
    #: What to do when the result is not known to match a data source; "" when nothing to do.
    fix: str = ""

    @property
    def changed(self) -> bool:
        return self.namespace != self.original

    @property
    def matched(self) -> bool:
        return self.datasource is not None

    def status(self, discovery: bool) -> str:
        """``matched``, ``not applicable``, ``no match`` (known only with discovery) or ``not checked``."""
        if self.rule == "not_applicable":
            return "not applicable"
        if self.matched:
            return "matched"
        return "no match" if discovery else "not checked"

    @property
    def host_port(self) -> str | None:
        return parse_namespace(self.namespace).host_port

    def as_row(self, discovery: bool) -> dict[str, Any]:
        """What ``airflow-alation resolve --json`` and the UI page show for it."""
        status = self.status(discovery)
        return {
            "namespace": self.original,
            "sent_as": self.namespace,
            "rule": self.rule,
            "detail": self.detail,
            "status": status,
            "datasource": self.datasource,
            "fix": self.fix if status != "matched" else "",
        }


def _emitted_scheme(original: str) -> str:
    text = original.strip()
    if text.lower().startswith("jdbc:"):
        text = text[5:]
    return text.partition("://")[0].lower()


def _kind(parsed: Namespace) -> str:
    """``a bigquery namespace``; for schemes that are not one word (``file:/tmp/x``), ``this namespace``."""
    scheme = parsed.scheme
    return f"a {scheme} namespace" if scheme.replace("+", "").isalnum() else "this namespace"


def _spell(scheme: str, host: str, port: int | None, rest: str) -> str:
    return f"{scheme}://{host}:{port}{rest}" if port else f"{scheme}://{host}{rest}"


def _fix(parsed: Namespace, discovery: bool) -> str:
    """The exact change that makes Alation link a namespace that matched nothing."""
    host_port = parsed.host_port
    if parsed.port is None:
        return (
            f'{parsed} has no port; add a namespace_map entry "{parsed.host}": '
            '"<host>:<port> of the Alation data source\'s JDBC URI"'
        )
    labels = (parsed.host or "").split(".")
    if parsed.scheme == "redshift" and len(labels) == 2:
        cluster, region = labels
        endpoint = f"{cluster}.<id>.{region}.redshift.amazonaws.com:{parsed.port}"
        return (
            f'add the namespace_map entry "{host_port}": "{endpoint}" (the cluster endpoint your Alation '
            f"Redshift data source uses), or add {host_port} to that data source's "
            "'Additional Datasource Connections' field"
            + ("" if discovery else ", or set discover_datasources to true")
        )
    return (
        f"add {host_port} to the 'Additional Datasource Connections' field of the Alation data source "
        f'it belongs to (and to "additional_datasource_connections" in the extra, since no API shows that '
        f'field), or add the namespace_map entry "{host_port}": "<host>:<port> of that data '
        "source's JDBC URI\""
        + ("" if discovery else " (discover_datasources: true checks this against Alation)")
    )


@dataclass
class NamespaceResolver:
    """Resolves namespaces with the user's rules, the normalisers and an optional discovered index.

    Build one per settings (and index); :meth:`resolve` is memoised per namespace.
    """

    rules: NamespaceRules = field(default_factory=NamespaceRules)
    index: EndpointIndex | None = None
    #: host:port values the user added to Alation's "Additional Datasource Connections" field (no
    #: API shows that field, so they are taken as matching on the user's word).
    declared: frozenset[str] = frozenset()
    _cache: dict[str, Resolution] = field(default_factory=dict, repr=False)

    @classmethod
    def from_map(
        cls,
        namespace_map: dict[str, str],
        index: EndpointIndex | None = None,
        declared: Iterable[str] = (),
    ) -> NamespaceResolver:
        return cls(NamespaceRules.from_map(namespace_map), index, frozenset(declared))

    @classmethod
    def for_settings(cls, settings: AlationSettings, index: EndpointIndex | None = None) -> NamespaceResolver:
        return cls.from_map(settings.namespace_map, index, settings.additional_datasource_connections)

    def resolve(self, namespace: str) -> Resolution:
        hit = self._cache.get(namespace)
        if hit is None:
            hit = self.resolve_uncached(namespace)
            if len(self._cache) < _CACHE_LIMIT:
                self._cache[namespace] = hit
        return hit

    def resolve_uncached(self, namespace: str) -> Resolution:
        resolution = self._resolve(namespace)
        if not resolution.matched and resolution.rule != "not_applicable" and self.declared:
            host_port = resolution.host_port
            if host_port in self.declared:
                return dataclasses.replace(
                    resolution, datasource=f"{host_port} (additional_datasource_connections)", fix=""
                )
        return resolution

    def _resolve(self, namespace: str) -> Resolution:
        parsed = parse_namespace(namespace)
        discovery = self.index is not None
        if is_unresolvable(parsed):
            # Only an exact rule to a full namespace applies (a Glue catalog mapped to its data source).
            ruled = self.rules.apply_exact(parsed)
            if ruled is None:
                return Resolution(
                    namespace,
                    namespace,
                    "not_applicable",
                    f"{_kind(parsed)} names no database host:port (a path, bucket, project or stream); "
                    "Alation cannot link it to a data source, so it is sent as emitted",
                )
        else:
            ruled = self.rules.apply(parsed)
        if ruled is not None:
            target = parse_namespace(ruled.namespace)
            sources = self.index.lookup(target.host or "", target.port) if self.index else ()
            label = sources[0].label if sources else None
            fix = ""
            if discovery and not sources:
                fix = (
                    f"no Alation data source has {target.host_port}: check the namespace_map entry "
                    f"{ruled.detail!r}, or add {target.host_port} to the data source's "
                    "'Additional Datasource Connections' field"
                )
            return Resolution(namespace, ruled.namespace, ruled.rule, ruled.detail, label, fix)

        scheme = _emitted_scheme(namespace) or parsed.scheme
        normalised = normalise(parsed)
        candidate, rule, detail = parsed, "unchanged", ""
        if normalised is not None:
            candidate, detail = normalised
            rule = "normaliser"
        sent = _spell(scheme, candidate.host or "", candidate.port, candidate.rest)
        if rule == "unchanged" and sent != namespace:
            rule, detail = "normaliser", "canonical form (default port, lowercase host)"

        if self.index is not None:
            match: Match | None = self.index.match(candidate)
            if match is None and candidate != parsed:
                match = self.index.match(parsed)
            if match is not None:
                return Resolution(
                    namespace,
                    _spell(scheme, match.host, match.port, candidate.rest),
                    "datasource",
                    match.how if rule == "unchanged" else f"{detail}, then {match.how}",
                    match.label,
                )
        if rule == "unchanged":
            sent = namespace
        return Resolution(namespace, sent, rule, detail, None, _fix(candidate, discovery))
