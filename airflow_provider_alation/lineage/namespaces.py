"""Dataset namespaces: canonical form and the ``namespace_map`` rewrite rules.

Pure: no I/O, no Airflow. Alation matches a dataset to a data source by the host and port of its
namespace, so every rule works on a canonical form (lowercase scheme and host, scheme aliases,
default port filled in) and produces a canonical namespace.

Rule order (``../shared/design.md``): exact namespace, then host alias, then ``re:`` expressions in
the order given. What happens after the user's rules (built-in normalisers, discovered data
sources) is in ``resolution.py``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

#: Scheme spellings seen in JDBC URIs and OpenLineage namespaces, mapped to the OpenLineage name.
SCHEME_ALIASES: dict[str, str] = {
    "postgresql": "postgres",
    "pgsql": "postgres",
    "sqlserver": "mssql",
    "microsoft:sqlserver": "mssql",
    "mariadb": "mysql",
    "awsathena": "awsathena",
    "oracle:thin": "oracle",
    "db2": "db2",
    "hive2": "hive",
}

#: Default port per canonical scheme, as Airflow's hooks and OpenLineage fill it in.
DEFAULT_PORTS: dict[str, int] = {
    "postgres": 5432,
    "mysql": 3306,
    "mssql": 1433,
    "oracle": 1521,
    "redshift": 5439,
    "trino": 8080,
    "presto": 8080,
    "teradata": 1025,
    "db2": 50000,
    "hive": 10000,
    "vertica": 5433,
    "clickhouse": 8123,
    "snowflake": 443,
    "databricks": 443,
    "awsathena": 443,
    "sqlite": 0,
}

_NAMESPACE_RE = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.\-:]*?)://(?P<authority>[^/?#;]*)(?P<rest>.*)$", re.I)


@dataclass(frozen=True)
class Namespace:
    """A parsed namespace. ``host`` is None for host-less namespaces such as ``bigquery``."""

    scheme: str
    host: str | None
    port: int | None
    rest: str = ""

    @property
    def host_port(self) -> str | None:
        if not self.host:
            return None
        return f"{self.host}:{self.port}" if self.port else self.host

    def __str__(self) -> str:
        if self.host is None:
            return self.scheme + self.rest
        return f"{self.scheme}://{self.host_port}{self.rest}"


def default_port(scheme: str) -> int | None:
    """The scheme's default port; ``mysql:loadbalance`` and ``redshift:iam`` fall back to ``mysql``
    and ``redshift``."""
    port = DEFAULT_PORTS.get(scheme)
    if port is None and ":" in scheme:
        port = DEFAULT_PORTS.get(canonical_scheme(scheme.split(":", 1)[0]))
    return port or None


def canonical_scheme(scheme: str) -> str:
    scheme = scheme.lower()
    if scheme.startswith("jdbc:"):
        scheme = scheme[5:]
    return SCHEME_ALIASES.get(scheme, scheme)


_ASCII_PORT_RE = re.compile(r"^[0-9]{1,5}$")
INVALID_PORT = -1


def parse_port(text: str) -> int | None:
    """``None`` when no port is given, :data:`INVALID_PORT` when one is given but is not 1-65535."""
    if not text:
        return None
    if not _ASCII_PORT_RE.match(text) or not 0 < int(text) < 65536:
        return INVALID_PORT
    return int(text)


def normalise_host(host: str) -> str:
    """Lowercase, no trailing dot; IPv6 literals compressed and in brackets."""
    host = host.strip().lower().rstrip(".")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" in bare:
        with contextlib.suppress(ValueError):
            bare = ipaddress.ip_address(bare).compressed
        return f"[{bare}]"
    return host


def split_host_port(part: str) -> tuple[str, str]:
    """``[user:pw@]host[:port[:more]]`` into the host and the raw port text (``""`` if none).

    A bare IPv6 literal is a host without a port; ``host:1521:SID`` keeps the first port.
    """
    part = part.strip().rsplit("@", 1)[-1]
    if part.startswith("["):
        end = part.find("]")
        if end < 0:
            return part, ""
        tail = part[end + 1 :]
        return part[: end + 1], tail[1:].split(":")[0] if tail.startswith(":") else ""
    if part.count(":") >= 2:
        try:
            ipaddress.ip_address(part)
        except ValueError:
            pass
        else:
            return part, ""
    host, _, port_text = part.partition(":")
    return host, port_text.split(":")[0]


def has_invalid_port(text: str) -> bool:
    """True when a namespace or ``host:port`` names a port that is not 1-65535."""
    authority = text.strip()
    if "://" in authority:
        authority = re.split(r"[/?#;]", authority.split("://", 1)[1], maxsplit=1)[0]
    return parse_port(split_host_port(authority)[1]) == INVALID_PORT


def _split_host_port(authority: str, scheme: str = "") -> tuple[str, int | None]:
    if "," in authority:  # several hosts: no single host:port to match
        return "", None
    host, port_text = split_host_port(authority)
    if scheme == "mssql" and "\\" in host:  # host\instance: Alation's URI side drops the instance too
        host = host.split("\\", 1)[0]
    return normalise_host(host), parse_port(port_text)


@lru_cache(maxsize=65536)
def parse_namespace(text: str) -> Namespace:
    """Parse and canonicalise a namespace (``jdbc:`` prefix, scheme alias, default port)."""
    raw = text.strip()
    if raw.lower().startswith("jdbc:"):
        raw = raw[5:]
    match = _NAMESPACE_RE.match(raw)
    if not match:
        return Namespace(scheme=raw.lower() if raw.isalpha() else raw, host=None, port=None)
    scheme = canonical_scheme(match["scheme"])
    host, port = _split_host_port(match["authority"], scheme)
    if not host:
        return Namespace(scheme=scheme, host=None, port=None, rest="://" + match["rest"])
    if port is None:
        port = default_port(scheme)
    elif port == INVALID_PORT:
        port = None
    rest = match["rest"]
    if rest in ("/", ""):
        rest = ""
    return Namespace(scheme=scheme, host=host, port=port, rest=rest)


def _userinfo_end(text: str) -> tuple[int, int]:
    """(start, end) of a ``user[:password]`` part after ``scheme://`` (end is the ``@``), else (-1, -1).

    The password may hold ``/``, ``?`` or ``#``, so the last ``@`` counts; the part before it is
    taken as credentials when it has a ``:`` (``user:password``) or no ``/`` (``user``), so that an
    ``@`` in a path (``s3://bucket/2024@x``) is left alone.
    """
    start = text.find("://")
    if start < 0 or "@" not in text:
        return -1, -1
    start += 3
    at = text.rfind("@")
    if at < start:
        return -1, -1
    userinfo = text[start:at]
    if ":" in userinfo or "/" not in userinfo:
        return start, at
    return -1, -1


def redact(text: str) -> str:
    """A namespace or URI fit for a log line: any ``user:password@`` replaced by ``***@``."""
    start, at = _userinfo_end(text)
    return text if start < 0 else f"{text[:start]}***{text[at:]}"


def strip_userinfo(text: str) -> str:
    """A namespace or URI without its ``user:password@``: what is resolved, logged, kept and sent."""
    start, at = _userinfo_end(text)
    return text if start < 0 else text[:start] + text[at + 1 :]


def canonical(text: str) -> str:
    """The canonical spelling of a namespace, as rules match it and as it is sent."""
    return str(parse_namespace(text))


def parse_host_port(text: str) -> tuple[str, int | None]:
    """Parse a bare ``host`` or ``host:port`` (the key or value of a host-alias rule)."""
    host, port = _split_host_port(text.strip())
    return host, None if port == INVALID_PORT else port


class ExpressionError(ValueError):
    """A ``re:`` rule the linear-time engine does not accept; the message says why."""


def _re2_options() -> Any:
    import re2

    options = re2.Options()
    options.log_errors = False  # the message goes into the settings error, not to stderr
    options.max_mem = 8 << 20  # bytes of automaton per expression: a bound on pathological ones
    return options


_COMPILED: dict[str, Any] = {}


def compile_expression(pattern: str) -> Any:
    """Compile a ``re:`` rule with RE2 (Google's linear-time engine), cached per process: no rule
    can backtrack for seconds on a crafted host name, as Python's ``re`` would on
    ``([a-z0-9-]+\\.?)+\\.prod``. Raises :class:`ExpressionError` for what RE2 does not accept
    (backreferences, lookaround). Settings validation and the rules share one compilation."""
    compiled = _COMPILED.get(pattern)
    if compiled is None:
        import re2

        try:
            compiled = re2.compile(pattern, options=_re2_options())
        except re2.error as exc:
            reason = exc.args[0] if exc.args else exc
            reason = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
            raise ExpressionError(reason) from None
        _COMPILED[pattern] = compiled
    return compiled


def check_template(pattern: Any, template: str) -> None:
    """Raise :class:`ExpressionError` when ``template`` refers to a group ``pattern`` lacks or has a
    bad escape. RE2 only looks at a template when it substitutes, so it is checked the way Python's
    ``re`` parses templates, against an empty pattern with the same groups."""
    names = {index: name for name, index in pattern.groupindex.items()}
    groups = "".join(f"(?P<{names[i]}>)" if i in names else "()" for i in range(1, pattern.groups + 1))
    try:
        re.compile(groups).sub(template, "")
    except (re.error, IndexError) as exc:
        raise ExpressionError(str(exc)) from None


def _apply_target(source: Namespace, target: str) -> str:
    """A rule's value: a full namespace replaces; a bare host[:port] keeps the source's scheme."""
    if "://" in target:
        return canonical(target)
    host, port = parse_host_port(target)
    if port is None:
        port = source.port
    return str(Namespace(scheme=source.scheme, host=host, port=port, rest=source.rest))


#: ``re:^postgres://...``: an expression that can only match one scheme is tried only for it.
_LITERAL_SCHEME_RE = re.compile(r"^\^([a-z][a-z0-9+\-]*)(?:://|:\\?/\\?/)")


def literal_scheme(pattern: str) -> str | None:
    """The scheme an expression starts with literally (``^postgres://...``), if any."""
    literal = _LITERAL_SCHEME_RE.match(pattern)
    return literal[1] if literal else None


#: Namespaces of table catalogs without ``://`` (Spark's Glue symlinks: ``aws:glue:<region>:<account>``,
#: ``arn:aws:glue:<region>:<account>``): a ``namespace_map`` key starting so is an exact rule.
CATALOG_PREFIXES = ("aws:glue:", "arn:aws:glue:")


@dataclass(frozen=True)
class RuleHit:
    namespace: str
    rule: str  # "exact", "host", "regex"
    detail: str  # the key that matched


#: Characters that stand for themselves in an expression (outside a class), and escaped characters
#: that do (``\.``): what :func:`literal_prefix` may take as literal text.
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-:/@,=%~<>!'\"&; ")
_ESCAPED = frozenset(".-/:@,=%~#&!'\"<>;_ ")


def literal_prefix(pattern: str) -> str:
    """The text every match of ``pattern`` (searched in a namespace) must start with: the literal
    characters after a leading ``^``, but the last one, up to the first character that is not
    literal (``^ab?c`` and ``^ab(x)`` give ``a``: what follows may quantify ``b``). ``""`` when there
    is none, or when a ``|`` could start another branch. Conservative: it may give less than is
    required, never more.
    """
    if not pattern.startswith("^") or "|" in pattern:
        return ""
    chars: list[str] = []
    i = 1
    while i < len(pattern):
        char = pattern[i]
        if char in _PLAIN:
            chars.append(char)
            i += 1
        elif char == "\\" and i + 1 < len(pattern) and pattern[i + 1] in _ESCAPED:
            chars.append(pattern[i + 1])
            i += 2
        else:
            # What follows may quantify the last literal: a quantifier, or one after zero-width syntax
            # (``^ab(?i)?``, ``^ab\\Q\\E?`` make the ``b`` optional in RE2). Dropped at any stop.
            return "".join(chars[:-1])
    return "".join(chars)


Expression = tuple[int, Any, str, str]  # (order in namespace_map, compiled, template, key)


@dataclass
class NamespaceRules:
    """The user's ``namespace_map``: exact namespaces, then host aliases, then ``re:`` expressions.

    Exact and host rules are dictionary lookups. Expressions are tried in the order given, but only
    those that can match: one that starts with literal text (``^postgres://rx-12-``) is found by
    the prefixes of the namespace, so ten thousand rules cost a namespace a few dictionary lookups
    and the searches of the few expressions that could match it.
    """

    exact: dict[str, str] = field(default_factory=dict)
    hosts: dict[tuple[str, int | None], str] = field(default_factory=dict)
    expressions: list[Expression] = field(default_factory=list)
    #: Expressions by their literal prefix; those without one are tried for every namespace.
    _by_prefix: dict[str, list[Expression]] = field(default_factory=dict, repr=False)
    _prefix_lengths: tuple[int, ...] = field(default=(), repr=False)
    _always: list[Expression] = field(default_factory=list, repr=False)

    @classmethod
    def from_map(cls, namespace_map: dict[str, str]) -> NamespaceRules:
        rules = cls()
        for order, (key, target) in enumerate(namespace_map.items()):
            if key.startswith("re:"):
                expression = (order, compile_expression(key[3:]), target, key)
                rules.expressions.append(expression)
                prefix = literal_prefix(key[3:])
                if prefix:
                    rules._by_prefix.setdefault(prefix, []).append(expression)
                else:
                    rules._always.append(expression)
            elif "://" in key or key.lower().startswith(CATALOG_PREFIXES):
                rules.exact[canonical(key)] = target
            else:
                rules.hosts[parse_host_port(key)] = target
        rules._prefix_lengths = tuple(sorted({len(prefix) for prefix in rules._by_prefix}))
        return rules

    def __len__(self) -> int:
        return len(self.exact) + len(self.hosts) + len(self.expressions)

    def warm(self) -> None:
        """Run each expression tried for every namespace once: RE2 sets up its matcher at the first
        search, and a process forked afterwards then finds it set up."""
        for _, pattern, _, _ in self._always:
            pattern.search("")

    def candidates(self, text: str) -> list[Expression]:
        """The expressions that can match ``text``, in ``namespace_map`` order."""
        found = [
            expression
            for length in self._prefix_lengths
            if length <= len(text)
            for expression in self._by_prefix.get(text[:length], ())
        ]
        if not found:
            return self._always
        found.extend(self._always)
        found.sort(key=lambda expression: expression[0])
        return found

    def apply_exact(self, parsed: Namespace) -> RuleHit | None:
        """The exact rule for a namespace without a host:port (a Glue catalog's, a bucket), whose
        value is a full namespace; the only rules such a namespace gets (see :func:`apply`)."""
        canon = str(parsed)
        target = self.exact.get(canon)
        if target is None or "://" not in target:
            return None
        return RuleHit(canonical(target), "exact", canon)

    def apply(self, parsed: Namespace) -> RuleHit | None:
        canon = str(parsed)
        target = self.exact.get(canon)
        if target is not None:
            return RuleHit(_apply_target(parsed, target), "exact", canon)
        if parsed.host is not None:
            for key in ((parsed.host, parsed.port), (parsed.host, None)):
                target = self.hosts.get(key)
                if target is not None:
                    label = f"{key[0]}:{key[1]}" if key[1] else key[0]
                    return RuleHit(_apply_target(parsed, target), "host", label)
        if self.expressions:
            for _, pattern, template, key in self.candidates(canon):
                match = pattern.search(canon)
                if match:
                    try:
                        expanded = match.expand(template)
                    except (IndexError, ValueError):  # validated already; never lose an event on it
                        continue
                    return RuleHit(_apply_target(parsed, expanded), "regex", key)
        return None
