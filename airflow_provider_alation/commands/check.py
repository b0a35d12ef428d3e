"""``airflow-alation check`` and the preflight DAG: everything that decides whether lineage will
appear in Alation, each as a pass / warn / fail line with the fix.

Sections, in order (each maps to an item of Alation's troubleshooting list, see the README):

- ``versions``     Airflow, the OpenLineage provider and openlineage-python against what this
                   package requires (read from its own metadata, so it cannot drift);
- ``openlineage``  OpenLineage enabled and its transport set to ``AlationTransport``;
- ``connection``   the Alation connection exists and its settings are valid;
- ``tenant``       the tenant answers over HTTPS, the endpoint takes events, the token is accepted
                   (the probe of the connection's Test button, same verdict, same message);
- ``datasources``  Alation's data sources can be read (``discover_datasources``);
- ``dags``         which DAGs are opted in, and whether the assets their tasks declare as inlets and
                   outlets become OpenLineage datasets here (a provider converts their scheme);
- ``namespaces``   for each database connection, the namespace OpenLineage emits, what it is sent
                   as, and whether an Alation data source has that host:port;
- ``outbox``       events waiting for a replay or refused for good.

The lines are data (:class:`CheckLine`); rendering them is the command's or the DAG's business.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from airflow_provider_alation.alation.advice import REFRESH_TOKEN_FIX, TOKEN_FIX, host_port
from airflow_provider_alation.settings import AlationSettings, SettingsError

Status = Literal["pass", "warn", "fail", "info"]
SECTIONS = ("versions", "openlineage", "connection", "tenant", "datasources", "dags", "namespaces", "outbox")
DISTRIBUTION = "airflow-provider-alation"
#: The versions the tests ran with (README, "Install into Airflow").
TESTED = {
    "apache-airflow": "3.3.2",
    "apache-airflow-providers-openlineage": "2.20.3",
    "openlineage-python": "1.54.0",
}


@dataclass(frozen=True)
class CheckLine:
    section: str
    check: str
    status: Status
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Report:
    lines: list[CheckLine] = field(default_factory=list)

    @property
    def failed(self) -> list[CheckLine]:
        return [line for line in self.lines if line.status == "fail"]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def counts(self) -> dict[str, int]:
        return {status: sum(line.status == status for line in self.lines) for status in Status.__args__}

    def as_dict(self) -> dict[str, Any]:
        return {"ok": not self.failed, "counts": self.counts(), "lines": [x.as_dict() for x in self.lines]}

    def as_text(self) -> str:
        """One line per check (the preflight DAG's task log)."""
        return "\n".join(
            f"{x.status.upper():4}  {x.section} / {x.check}: {x.message}"
            + (f"\n      Fix: {x.fix}" if x.fix else "")
            for x in self.lines
        )


# --- versions ---------------------------------------------------------------------------------


def _requirements() -> dict[str, str]:
    """{distribution: specifier} of this package's own dependencies."""
    from packaging.requirements import Requirement

    wanted: dict[str, str] = {}
    for text in metadata.requires(DISTRIBUTION) or ():
        requirement = Requirement(text)
        if requirement.marker is None and requirement.name in TESTED:
            wanted[requirement.name] = str(requirement.specifier)
    return wanted


def version_line(package: str, installed: str | None, specifier: str) -> CheckLine:
    """Pure: one version against the supported range."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    tested = TESTED.get(package, "")
    if installed is None:
        return CheckLine(
            "versions", package, "fail", f"{package} is not installed", f"pip install '{package}{specifier}'"
        )
    if not SpecifierSet(specifier).contains(Version(installed), prereleases=True):
        return CheckLine(
            "versions",
            package,
            "fail",
            f"{package} {installed} is older than this provider supports ({specifier})",
            f"pip install --upgrade '{package}{specifier}'",
        )
    note = "the version the tests ran with" if installed == tested else f"tested with {tested}"
    return CheckLine("versions", package, "pass", f"{installed} (supported: {specifier}; {note})")


def check_versions() -> list[CheckLine]:
    lines = []
    for package, specifier in sorted(_requirements().items()):
        try:
            installed: str | None = metadata.version(package)
        except metadata.PackageNotFoundError:
            installed = None
        lines.append(version_line(package, installed, specifier))
    return lines


# --- OpenLineage ------------------------------------------------------------------------------


def check_openlineage(transport_state: Callable[[], tuple[bool, str, Any]] | None = None) -> list[CheckLine]:
    from airflow.configuration import conf

    from airflow_provider_alation.integration.configuration import (
        built_transport_status,
        selective_enable,
    )

    ok, message, _ = (transport_state or built_transport_status)()
    fix = ""
    if not ok:
        message, fix = split_instruction(message)
    lines = [CheckLine("openlineage", "transport", "pass" if ok else "fail", message, fix)]
    lines.extend(emission_policy_lines())
    if selective_enable():
        lines.append(
            CheckLine(
                "openlineage",
                "selective_enable",
                "warn",
                "[openlineage] selective_enable is on: only DAGs and tasks passed to OpenLineage's "
                "enable_lineage() emit events, whatever the Alation opt-in says",
                "call airflow.providers.openlineage.utils.selective_enable.enable_lineage(dag) on each "
                "opted-in DAG, or set AIRFLOW__OPENLINEAGE__SELECTIVE_ENABLE=False",
            )
        )
    disabled_for = [x for x in conf.get("openlineage", "disabled_for_operators", fallback="").split(";") if x]
    if disabled_for:
        lines.append(
            CheckLine(
                "openlineage",
                "disabled_for_operators",
                "warn",
                f"OpenLineage sends nothing for tasks of these operators: {', '.join(disabled_for)}",
                "remove the operators whose lineage Alation should show from "
                "AIRFLOW__OPENLINEAGE__DISABLED_FOR_OPERATORS",
            )
        )
    return lines


def split_instruction(message: str) -> tuple[str, str]:
    """(what is wrong, the fix) of a transport status message, so that the line says its instruction
    once: in the fix."""
    from airflow_provider_alation.integration.configuration import TRANSPORT_LINE

    everywhere = " on every scheduler and worker, then restart them"
    for marker in (f"; set {TRANSPORT_LINE}", f", or unset it and set {TRANSPORT_LINE}"):
        if message.endswith(marker):
            head = message[: -len(marker)]
            if marker.startswith(", or"):  # config_path: "make sure its transport is ..."
                head, _, advice = head.partition("; ")
                return head, f"{advice}, or unset it and set {TRANSPORT_LINE}{everywhere}"
            return head, f"set {TRANSPORT_LINE}{everywhere}"
    head, dot, advice = message.rpartition(". ")
    if dot and advice.startswith("Unset"):  # OpenLineage disabled
        return head + ".", advice.rstrip(".") + everywhere
    return message, f"set {TRANSPORT_LINE}{everywhere}"


def emission_policy_lines() -> list[CheckLine]:
    """``[openlineage] emission_policy`` (provider 2.19+): a value the provider cannot read is ignored
    (every event emitted with the defaults), and so is each rule it cannot parse."""
    try:
        from airflow.providers.openlineage import conf as ol_conf
        from airflow.providers.openlineage.utils import emission_policy as policy
    except ImportError:  # providers before emission_policy
        return []
    fix = (
        "write AIRFLOW__OPENLINEAGE__EMISSION_POLICY as a JSON array of rules such as "
        '[{"scope": {"dag_id": "my_dag"}, "controls": {"emit": false}}]'
    )
    try:
        raw = ol_conf.emission_policy()
    except Exception as exc:  # noqa: BLE001 - the provider logs this and emits with its defaults
        message = f"[openlineage] emission_policy cannot be read, so the provider ignores it: {_error(exc)}"
        return [CheckLine("openlineage", "emission_policy", "warn", message, fix)]
    if not raw:
        return []
    parse = getattr(policy, "_parse_rule", None)  # the provider's own validation of one rule
    with _quiet_emission_policy():
        skipped = [rule for rule in raw if parse is not None and parse(rule) is None]
    if skipped:
        message = (
            f"{len(skipped)} of the {len(raw)} [openlineage] emission_policy rules are not valid, so the "
            f"provider ignores them: {', '.join(json_text(rule) for rule in skipped[:3])}"
        )
        return [CheckLine("openlineage", "emission_policy", "warn", message, fix)]
    message = f"{len(raw)} [openlineage] emission_policy rules (the dags section checks the opted-in DAGs)"
    return [CheckLine("openlineage", "emission_policy", "info", message)]


def json_text(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))[:200]


@contextlib.contextmanager
def _quiet_emission_policy() -> Iterator[None]:
    """The provider's resolution logs each non-default field (INFO) and warns of legacy options and
    invalid rules: the check reports them as lines instead."""
    import logging
    import warnings

    logger = logging.getLogger("airflow.providers.openlineage.utils.emission_policy")
    level, logger.level = logger.level, logging.ERROR
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.level = level


def emission_problems(dags: dict[str, Any]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """({dag_id: silenced tasks}, {dag_id: tasks without hook lineage}) by the OpenLineage provider's
    own resolution of ``emission_policy`` (and of the legacy options it translates into rules).

    A DAG whose DAG-run events are switched off with all its task events lists ``"*"`` as silenced.
    """
    try:
        from airflow.providers.openlineage.utils.emission_policy import (
            resolve_dag_emission_policy,
            resolve_task_emission_policy,
        )
    except ImportError:  # providers before emission_policy
        return {}, {}
    silenced: dict[str, list[str]] = {}
    no_hooks: dict[str, list[str]] = {}
    with _quiet_emission_policy():
        for dag_id, dag in sorted(dags.items()):
            tasks = list(getattr(dag, "tasks", None) or ()) if dag is not None else []
            quiet, blind = [], []
            for task in tasks:
                resolved = resolve_task_emission_policy(task, dag_id, task.task_id)
                if not resolved.emit:
                    quiet.append(task.task_id)
                elif not (resolved.hook_lineage and resolved.extract_operator_metadata):
                    blind.append(task.task_id)
            dag_emits = resolve_dag_emission_policy(dag_id, dag).emit
            if (tasks and len(quiet) == len(tasks) and not dag_emits) or (not tasks and not dag_emits):
                silenced[dag_id] = ["*"]
            elif quiet:
                silenced[dag_id] = quiet
            if blind:
                no_hooks[dag_id] = blind
    return silenced, no_hooks


def emission_lines(silenced: dict[str, list[str]], no_hooks: dict[str, list[str]]) -> list[CheckLine]:
    """Pure: the dags lines for opted-in DAGs that ``emission_policy`` silences or leaves without
    hook lineage."""
    lines = []
    where = "AIRFLOW__OPENLINEAGE__EMISSION_POLICY (and extend_global_openlineage_emission_policy calls)"
    for dag_id, tasks in sorted(silenced.items()):
        what = "all its events" if tasks == ["*"] else f"the events of its tasks {_listed(tasks)}"
        lines.append(
            CheckLine(
                "dags",
                f"emission policy of {dag_id}",
                "warn",
                f"opted in, but OpenLineage's emission_policy switches off {what} (emit false), so Alation "
                "gets no lineage from them",
                f'remove or narrow the rule with "emit": false that matches {dag_id} in {where}',
            )
        )
    for dag_id, tasks in sorted(no_hooks.items()):
        lines.append(
            CheckLine(
                "dags",
                f"hook lineage of {dag_id}",
                "warn",
                f"opted in, but OpenLineage's emission_policy switches off hook lineage (hook_lineage or "
                f"extract_operator_metadata false) for its tasks {_listed(tasks)}: SQL run through a hook "
                "sends no datasets",
                f'remove the rule with "hook_lineage": false (or "extract_operator_metadata": false) that '
                f"matches {dag_id} in {where}",
            )
        )
    return lines


def execution_timeout_lines(
    settings: AlationSettings, execution_timeout: float | None = None
) -> list[CheckLine]:
    """``time_budget`` against ``[openlineage] execution_timeout``: the provider stops the process (or
    abandons the thread) that emits an event at that timeout, so a budget as long is cut short."""
    if execution_timeout is None:
        try:
            from airflow.providers.openlineage import conf as ol_conf

            execution_timeout = float(ol_conf.execution_timeout())
        except Exception:  # noqa: BLE001 - an unreadable option is the provider's own default
            execution_timeout = 10.0
    if settings.time_budget < execution_timeout:
        return [
            CheckLine(
                "connection",
                "time_budget",
                "pass",
                f"time_budget {settings.time_budget:g}s is below [openlineage] execution_timeout "
                f"{execution_timeout:g}s",
            )
        ]
    return [
        CheckLine(
            "connection",
            "time_budget",
            "warn",
            f"time_budget {settings.time_budget:g}s is not below [openlineage] execution_timeout "
            f"{execution_timeout:g}s: the OpenLineage provider stops the emitting process at that timeout, "
            "so a slow send is cut off before the transport can keep the event for a replay",
            f'lower "time_budget" to {max(execution_timeout - 2, 0.5):g} or less, or raise '
            f"AIRFLOW__OPENLINEAGE__EXECUTION_TIMEOUT above {settings.time_budget:g}",
        )
    ]


# --- the Alation connection -------------------------------------------------------------------


def check_connection(conn_id: str) -> tuple[list[CheckLine], AlationSettings | None]:
    from airflow_provider_alation.integration.connection import (
        get_connection,
        missing_connection_fix,
        settings_from_connection,
    )

    name = f"connection {conn_id}"
    try:
        conn = get_connection(conn_id)
    except Exception as exc:  # noqa: BLE001 - a secrets backend's error, reported as a line
        message = f"could not read connection {conn_id!r}: {_error(exc)}"
        return [CheckLine("connection", name, "fail", message)], None
    variable = f"AIRFLOW_CONN_{conn_id.upper()}"
    if conn is None and os.environ.get(variable, "").strip():
        return [
            CheckLine(
                "connection",
                name,
                "fail",
                f"{variable} is set but Airflow cannot read it as a connection",
                'write it as JSON: {"conn_type": "alation", "host": "https://acme.alationcloud.com", '
                '"password": "<API token>", "extra": {...}}',
            )
        ], None
    if conn is None:
        return [
            CheckLine(
                "connection",
                name,
                "fail",
                f"connection {conn_id!r} does not exist",
                missing_connection_fix(conn_id),
            )
        ], None
    lines = []
    if (conn.conn_type or "") != "alation":
        lines.append(
            CheckLine(
                "connection",
                f"{name} type",
                "warn",
                f"connection {conn_id!r} has type {conn.conn_type!r}, so its form and Test button are not "
                "Alation's",
                "set its connection type to 'alation'",
            )
        )
    try:
        settings = settings_from_connection(conn, conn_id)
    except SettingsError as exc:
        return [
            *lines,
            CheckLine(
                "connection",
                f"{name} settings",
                "fail",
                "; ".join(exc.problems),
                f"edit connection {conn_id!r}: each item names the field and what to write",
            ),
        ], None
    lines.append(
        CheckLine(
            "connection",
            f"{name} settings",
            "pass",
            f"valid: tenant {settings.url}, endpoint {settings.endpoint}, {settings.token_type}",
        )
    )
    return lines, settings


# --- the tenant (the Test button's probe) ------------------------------------------------------

NETWORK_FIXES = {
    "unreachable": "check that every scheduler and worker resolves and reaches {host} (DNS, firewall, "
    "proxy: HTTPS_PROXY); this is Alation's 'Max retries exceeded' case",
    "timeout": "allow outbound connections from every scheduler and worker to {host}, or raise "
    '"timeout" if the tenant is slow to answer',
    "tls": 'set "verify" in the connection\'s extra to the path of your CA bundle (PEM)',
}


def tenant_lines(
    settings: AlationSettings, ok: bool, message: str, problem: str, fix: str = ""
) -> list[CheckLine]:
    """Pure: the tenant lines for the Test button's verdict (``ok``, ``message``, ``problem``); the
    verdict's own ``fix``, when given, is the line's fix (the message then holds only the summary)."""
    host = settings.url.split("://", 1)[-1]
    lines = []
    if settings.url.startswith("http://"):
        lines.append(
            CheckLine(
                "tenant",
                "HTTPS",
                "warn",
                f"the tenant URL {settings.url} is plain HTTP (allow_http): the token travels unencrypted",
                "use the tenant's https:// URL and remove allow_http",
            )
        )
    elif settings.verify is False:
        lines.append(
            CheckLine(
                "tenant",
                "HTTPS",
                "warn",
                f"{settings.url} is HTTPS, but certificates are not verified (verify=false)",
                'set "verify" to true, or to the path of your CA bundle (PEM)',
            )
        )
    else:
        lines.append(
            CheckLine("tenant", "HTTPS", "pass", f"{settings.url} is HTTPS, verify={settings.verify}")
        )
    if problem in NETWORK_FIXES:
        fix = fix or NETWORK_FIXES[problem].format(host=host_port(settings.url))
        return [
            *lines,
            CheckLine("tenant", "tenant reachable", "fail", message, fix),
            CheckLine("tenant", "token accepted", "info", "not checked: the tenant did not answer"),
        ]
    lines.append(CheckLine("tenant", "tenant reachable", "pass", f"{host} answered over the network"))
    if ok:
        return [*lines, CheckLine("tenant", "token accepted", "pass", message)]
    if problem == "auth":
        fix = fix or (REFRESH_TOKEN_FIX if settings.token_type == "refresh_token" else TOKEN_FIX)
        return [*lines, CheckLine("tenant", "token accepted", "fail", message, fix)]
    fixes = {
        "not_found": f'check the tenant URL and "endpoint" (now {settings.endpoint!r}; Alation\'s is '
        "open_lineage_event/)",
        "server": "retry later; if it persists, send Alation support this message",
    }
    fix = fix or fixes.get(
        problem,
        "Alation refused a valid OpenLineage event: check the tenant URL and endpoint, then send Alation "
        "support this message",
    )
    return [*lines, CheckLine("tenant", "endpoint accepts events", "fail", message, fix)]


def check_tenant(settings: AlationSettings) -> list[CheckLine]:
    from airflow_provider_alation.alation.probe import probe_connection

    verdict = probe_connection(settings)
    return tenant_lines(
        settings, verdict.ok, verdict.summary or verdict.message, verdict.problem, verdict.fix
    )


# --- Alation's data sources -------------------------------------------------------------------


def check_datasources(
    settings: AlationSettings, refresh: bool = False, *, cache_only: bool = False
) -> tuple[list[CheckLine], Any]:
    """The discovery line and the index (None without discovery or when it cannot be read).

    ``cache_only`` reads the disk cache and never Alation (the UI page's load): an expired cache is
    a warning, no cache a warning naming the refresh."""
    if not settings.discover_datasources:
        return [
            CheckLine(
                "datasources",
                "discovery",
                "warn",
                "discover_datasources is off: whether namespaces match an Alation data source cannot be "
                "confirmed, and Redshift namespaces are only resolved by your namespace_map",
                'set "discover_datasources": true in the connection\'s extra',
            )
        ], None
    from airflow_provider_alation.alation.discovery import load_index_cached, load_index_interactive

    load = load_index_cached(settings) if cache_only else load_index_interactive(settings, refresh)
    if cache_only and load.state == "unavailable":
        return [
            CheckLine(
                "datasources",
                "discovery",
                "warn",
                f"not read yet: {load.detail}",
                "refresh the data sources (airflow-alation datasources --refresh, or the page's button)",
            )
        ], None
    if load.state in ("fresh", "refreshed"):
        return [CheckLine("datasources", "discovery", "pass", load.describe())], load.index
    if load.state == "stale":
        return [
            CheckLine(
                "datasources",
                "discovery",
                "warn",
                load.describe(),
                "run airflow-alation datasources --refresh once Alation's REST API answers",
            )
        ], load.index
    return [
        CheckLine(
            "datasources",
            "discovery",
            "fail",
            f"Alation's data sources could not be read: {load.detail}",
            discovery_fix(settings, load.detail),
        )
    ], None


def problem_of(detail: str) -> str:
    """The kind of failure a discovery detail describes (the words delivery's outcomes start with)."""
    text = detail.lower()
    if "network unreachable" in text or "name or service not known" in text or "connection refused" in text:
        return "unreachable"
    if "timed out" in text or "time budget" in text or "no time left" in text:
        return "timeout"
    if "tls failure" in text or "certificate" in text:
        return "tls"
    if "http 401" in text or "http 403" in text or "rejected the token" in text or "token" in text:
        return "auth"
    if "http 5" in text:
        return "server"
    return "other"


def discovery_fix(settings: AlationSettings, detail: str) -> str:
    """The fix for data sources that could not be read: network advice naming the host:port for a
    network failure, token advice for a refused token."""
    problem = problem_of(detail)
    off = ', or set "discover_datasources": false'
    if problem in NETWORK_FIXES:
        return NETWORK_FIXES[problem].format(host=host_port(settings.url)) + off
    if problem == "server":
        return (
            "retry later (airflow-alation datasources --refresh); if it persists, send Alation support "
            "this message"
        )
    if problem == "auth":
        return (
            "the REST API takes the token in a TOKEN header: use a token Alation's REST API accepts "
            '(or "token_type": "refresh_token" with the user id)' + off
        )
    return f"check the tenant URL {settings.url} and that its REST API answers" + off


# --- DAGs -------------------------------------------------------------------------------------


def dag_lines(
    dags: Sequence[tuple[str, Iterable[str]]],
    settings: AlationSettings,
    import_errors: Sequence[str] = (),
    lineage_disabled: Sequence[str] = (),
) -> list[CheckLine]:
    """Pure: the DAG lines from (dag_id, tags) pairs."""
    from airflow_provider_alation.lineage.gate import EXCLUDED, dag_selection_reason

    reasons = {
        dag_id: dag_selection_reason(dag_id, set(tags), settings.dags, settings.opt_in_tag)
        for dag_id, tags in dags
    }
    opted = sorted(d for d, reason in reasons.items() if reason is None)
    excluded = sorted(d for d, reason in reasons.items() if reason == EXCLUDED)
    lines = []
    if opted:
        shown = ", ".join(opted[:20]) + (f" and {len(opted) - 20} more" if len(opted) > 20 else "")
        lines.append(
            CheckLine("dags", "opted-in DAGs", "pass", f"{len(opted)} of {len(reasons)} DAGs: {shown}")
        )
    else:
        lines.append(
            CheckLine(
                "dags",
                "opted-in DAGs",
                "fail",
                f"none of the {len(reasons)} DAGs is opted in, so nothing is sent to Alation",
                f"add the tag {settings.opt_in_tag!r} to a DAG, call enable_alation_lineage(dag), or list "
                'dag_id patterns in the extra: "dags": {"include": ["my_dag_*"]}',
            )
        )
    if excluded:
        lines.append(
            CheckLine("dags", "excluded DAGs", "info", f"excluded by dags.exclude: {', '.join(excluded)}")
        )
    blocked = sorted(set(lineage_disabled) & set(opted))
    if blocked:
        lines.append(
            CheckLine(
                "dags",
                "OpenLineage selective enable",
                "fail",
                f"opted in, but OpenLineage's selective_enable leaves them silent: {', '.join(blocked)}",
                "call enable_lineage(dag) from airflow.providers.openlineage.utils.selective_enable on them",
            )
        )
    if import_errors:
        lines.append(
            CheckLine(
                "dags",
                "DAG import errors",
                "warn",
                f"{len(import_errors)} DAG files failed to import, so their DAGs are not counted: "
                + ", ".join(import_errors[:5]),
                "airflow dags list-import-errors shows why",
            )
        )
    return lines


def _dag_bag() -> Any:
    from airflow.configuration import conf

    folder = conf.get("core", "dags_folder")
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow 3.1+

        return DagBag(dag_folder=folder)
    except ImportError:
        from airflow.models.dagbag import DagBag

        return DagBag(dag_folder=folder, include_examples=False)


def _dags_in_database() -> dict[str, tuple[str, ...]]:
    """{dag_id: tags} of the DAGs the metadata database knows (every bundle); {} where it cannot be read."""
    try:
        from airflow.models.dag import DagModel
        from airflow.utils.session import create_session
        from sqlalchemy import select
        from sqlalchemy.orm import selectinload

        with create_session() as session:
            return {
                model.dag_id: tuple(tag.name for tag in model.tags)
                for model in session.scalars(select(DagModel).options(selectinload(DagModel.tags)))
                if not getattr(model, "is_stale", False)
            }
    except Exception:  # noqa: BLE001 - a task (no database access) or a bare machine: parse files instead
        return {}


def _asset_uris_in_database() -> dict[str, list[str]]:
    """{dag_id: asset URIs its tasks declare as inlets or outlets}, from the metadata database's asset
    references (what the DAG processor recorded), each URI once per DAG."""
    from airflow.models.asset import AssetModel, TaskInletAssetReference, TaskOutletAssetReference
    from airflow.utils.session import create_session
    from sqlalchemy import select

    found: dict[str, dict[str, None]] = {}
    with create_session() as session:
        for reference in (TaskInletAssetReference, TaskOutletAssetReference):
            query = select(reference.dag_id, AssetModel.uri).join(
                AssetModel, AssetModel.id == reference.asset_id
            )
            for dag_id, uri in session.execute(query):
                found.setdefault(dag_id, {})[uri] = None
    return {dag_id: list(uris) for dag_id, uris in found.items()}


def _asset(asset_class: Any, uri: str) -> Any:
    """The asset of a recorded URI; the URI alone where Airflow refuses to build one from it."""
    try:
        return asset_class(uri=uri)
    except Exception:  # noqa: BLE001 - recorded by another Airflow version: judged by its URI only
        return type("RecordedAsset", (), {"uri": uri})()


def check_dags_in_database(settings: AlationSettings) -> list[CheckLine]:
    """The ``dags`` lines from the metadata database alone (the api-server's page): the DAGs and tags
    the DAG processors recorded, and the assets their tasks declare, without parsing a DAG file.
    ``selective_enable`` and ``emission_policy`` need the DAG objects: the check command tells them."""
    from airflow.providers.common.compat.assets import Asset

    known = _dags_in_database()
    lines = dag_lines(list(known.items()), settings)
    opted = _opted_in(known, settings)
    if not opted:
        return lines
    try:
        uris = _asset_uris_in_database()
        converters, handlers = _asset_registries()
        verdicts = [
            (
                dag_id,
                [asset_verdict(_asset(Asset, uri), converters, handlers) for uri in uris.get(dag_id, ())],
            )
            for dag_id in opted
        ]
        lines.extend(asset_lines(verdicts))
    except Exception as exc:  # noqa: BLE001 - the DAG lines stand; the asset line names the error
        lines.append(CheckLine("dags", "assets", "warn", f"not checked: {_error(exc)}"))
    return lines


def _opted_in(known: dict[str, Any], settings: AlationSettings) -> list[str]:
    """The dag_ids of ``known`` (dag_id -> tags) whose events the settings send, sorted."""
    from airflow_provider_alation.lineage.gate import dag_selection_reason

    return sorted(
        dag_id
        for dag_id, tags in known.items()
        if dag_selection_reason(dag_id, set(tags), settings.dags, settings.opt_in_tag) is None
    )


def check_dags(settings: AlationSettings) -> list[CheckLine]:
    from airflow_provider_alation.integration.configuration import selective_enable

    known = _dags_in_database()
    bag = _dag_bag()
    for dag_id, dag in bag.dags.items():
        known.setdefault(dag_id, tuple(dag.tags or ()))
    disabled: list[str] = []
    if selective_enable():
        from airflow.providers.openlineage.utils.selective_enable import is_dag_lineage_enabled

        disabled = [dag_id for dag_id, dag in bag.dags.items() if not is_dag_lineage_enabled(dag)]
    errors = [Path(path).name for path in sorted(bag.import_errors)]
    lines = dag_lines(list(known.items()), settings, errors, disabled)
    opted = _opted_in(known, settings)
    if not opted:
        return lines
    # selective_enable is one of the legacy options the provider translates into emission_policy
    # rules: the DAGs it silences already have their line.
    silenced, no_hooks = emission_problems(
        {dag_id: bag.dags.get(dag_id) for dag_id in opted if dag_id not in disabled}
    )
    lines.extend(emission_lines(silenced, no_hooks))
    try:
        verdicts = _asset_verdicts({dag_id: bag.dags[dag_id] for dag_id in opted if dag_id in bag.dags})
        lines.extend(asset_lines(verdicts, [dag_id for dag_id in opted if dag_id not in bag.dags]))
    except Exception as exc:  # noqa: BLE001 - the DAG lines stand; the asset line names the error
        lines.append(CheckLine("dags", "assets", "warn", f"not checked: {_error(exc)}"))
    return lines


# --- assets -> OpenLineage datasets (part of the dags section) ---------------------------------

#: The provider package that owns an asset URI scheme, for the advice text only. Each provider
#: declares its schemes under "asset-uris" in its provider info (provider.yaml, get_provider_info()),
#: with the "handler" that normalises the URI and the "to_openlineage_converter" that turns the asset
#: into an OpenLineage dataset; ProvidersManager collects them into asset_uri_handlers and
#: asset_to_openlineage_converters, which the OpenLineage provider's translate_airflow_asset reads.
#: The schemes are those of Airflow's "Asset URI Schemes" page (community providers); the file
#: scheme's converter comes from common-io (the core only normalises file://). Whether a scheme
#: converts here is always asked of the ProvidersManager, never of this table.
ASSET_SCHEME_PROVIDERS = {
    "file": "apache-airflow-providers-common-io",
    "postgres": "apache-airflow-providers-postgres",
    "postgresql": "apache-airflow-providers-postgres",
    "mysql": "apache-airflow-providers-mysql",
    "mariadb": "apache-airflow-providers-mysql",
    "s3": "apache-airflow-providers-amazon",
    "gs": "apache-airflow-providers-google",
    "gcp": "apache-airflow-providers-google",
    "bigquery": "apache-airflow-providers-google",
    "trino": "apache-airflow-providers-trino",
}

#: Why an asset becomes no OpenLineage dataset here.
NO_PROVIDER = "no provider"  # no installed provider knows its scheme
NO_CONVERTER = "no converter"  # a provider knows the scheme, but converts it to no OpenLineage dataset
CONVERSION_FAILED = "conversion failed"  # the converter raised on this URI
NOT_A_DATASET = "not a dataset"  # no URI scheme, or a custom x- scheme: an Airflow-only asset
#: How the WARN line says each of them (NOT_A_DATASET is an INFO line of its own).
ASSET_REASONS = {
    NO_PROVIDER: "no installed provider converts {scheme}://",
    NO_CONVERTER: "its installed provider has no OpenLineage converter for {scheme}://",
    CONVERSION_FAILED: "the {scheme}:// converter fails on it",
}
EVERYWHERE = " on every scheduler and worker, then restart them"


@dataclass(frozen=True)
class AssetVerdict:
    """One asset of a DAG: its URI (any ``user:password@`` masked), scheme and why it becomes no
    OpenLineage dataset here ("" when it does)."""

    uri: str
    scheme: str
    problem: str = ""


def _asset_registries() -> tuple[dict[str, Any], dict[str, Any]]:
    """(converters, URI handlers) by scheme, from the ProvidersManager the OpenLineage provider asks."""
    from airflow.providers.openlineage.utils import utils as ol_utils

    get_manager = getattr(ol_utils, "_get_providers_manager_instance", None)
    if get_manager is not None:
        manager = get_manager()
    else:  # OpenLineage providers before the task-runtime ProvidersManager
        from airflow.providers_manager import ProvidersManager

        manager = ProvidersManager()
    converters = getattr(manager, "asset_to_openlineage_converters", None) or getattr(
        manager, "dataset_to_openlineage_converters", None
    )
    handlers = getattr(manager, "asset_uri_handlers", None) or getattr(manager, "dataset_uri_handlers", None)
    return dict(converters or {}), dict(handlers or {})


def asset_verdict(asset: Any, converters: dict[str, Any], handlers: dict[str, Any]) -> AssetVerdict:
    """Whether the OpenLineage provider turns ``asset`` into a dataset here: its own
    ``translate_airflow_asset`` decides; the registries only tell why not."""
    from urllib.parse import urlsplit

    from airflow.providers.common.compat.openlineage.utils.utils import translate_airflow_asset

    from airflow_provider_alation.lineage.namespaces import redact

    uri = str(getattr(asset, "uri", "") or "")
    try:
        scheme = urlsplit(uri).scheme.lower()
    except ValueError:
        scheme = ""
    shown = redact(uri)
    try:
        translated = translate_airflow_asset(asset, None)
    except Exception:  # noqa: BLE001 - the provider's own guard missed one: not a dataset either way
        translated = None
    if translated is not None:
        return AssetVerdict(shown, scheme)
    if not scheme or scheme.startswith("x-"):
        return AssetVerdict(shown, scheme, NOT_A_DATASET)
    if scheme not in converters:
        return AssetVerdict(shown, scheme, NO_CONVERTER if scheme in handlers else NO_PROVIDER)
    return AssetVerdict(shown, scheme, CONVERSION_FAILED)


def _dag_assets(dag: Any) -> list[Any]:
    """The assets the DAG's tasks declare as inlets and outlets, each URI once (what OpenLineage's
    extractor manager reads when an operator's extractor finds no datasets)."""
    from airflow.providers.common.compat.assets import Asset

    found: dict[str, Any] = {}
    for task in getattr(dag, "tasks", None) or ():
        for attribute in ("inlets", "outlets"):
            declared = getattr(task, attribute, None) or ()
            for item in declared if isinstance(declared, (list, tuple, set)) else (declared,):
                if isinstance(item, Asset):
                    found.setdefault(str(item.uri), item)
    return list(found.values())


def _asset_verdicts(dags: dict[str, Any]) -> list[tuple[str, list[AssetVerdict]]]:
    """(dag_id, verdicts) for the DAG objects; a DAG whose tasks cannot be read is left out."""
    if not dags:
        return []
    converters, handlers = _asset_registries()
    found = []
    for dag_id, dag in sorted(dags.items()):
        try:
            verdicts = [asset_verdict(asset, converters, handlers) for asset in _dag_assets(dag)]
        except Exception:  # noqa: BLE001 - an odd DAG object: its assets are not told, no traceback
            continue
        found.append((dag_id, verdicts))
    return found


def _extra_for(package: str) -> str | None:
    """The extra of this package that installs ``package`` (read from its own metadata), if any."""
    from packaging.requirements import Requirement

    try:
        extras = metadata.metadata(DISTRIBUTION).get_all("Provides-Extra") or []
        requirements = [Requirement(text) for text in metadata.requires(DISTRIBUTION) or ()]
    except metadata.PackageNotFoundError:
        return None
    for extra in extras:
        if extra == "test":
            continue
        for requirement in requirements:
            marker = requirement.marker
            if (
                requirement.name == package
                and marker is not None
                and "extra" in str(marker)
                and marker.evaluate({"extra": extra})
            ):
                return extra
    return None


def asset_fix(missing: Sequence[AssetVerdict]) -> str:
    """One fix for a DAG's assets that become no dataset: what to install (this package's extra where
    one brings the provider), upgrade, or rewrite."""
    install: dict[str, str] = {}  # pip argument: what it brings ("" for the provider itself)
    upgrade: list[str] = []
    other: list[str] = []
    for verdict in missing:
        package = ASSET_SCHEME_PROVIDERS.get(verdict.scheme)
        if verdict.problem == CONVERSION_FAILED:
            other.append(
                f"write {verdict.uri} as {package or 'its provider'} documents {verdict.scheme}:// URIs"
            )
        elif package is None:
            other.append(
                f"install the Airflow provider that converts {verdict.scheme}:// assets (its provider info "
                'lists the scheme under "asset-uris" with a "to_openlineage_converter")' + EVERYWHERE
            )
        elif verdict.problem == NO_CONVERTER:
            upgrade.append(package)
        elif extra := _extra_for(package):
            install[f"'{DISTRIBUTION}[{extra}]'"] = f"the [{extra}] extra brings {package}"
        else:
            install[package] = ""
    commands = []
    if install:
        brings = "; ".join(dict.fromkeys(x for x in install.values() if x))
        commands.append(f"pip install {' '.join(install)}" + (f" ({brings})" if brings else ""))
    if upgrade:
        commands.append(f"pip install --upgrade {' '.join(dict.fromkeys(upgrade))}")
    if commands:
        other.insert(0, " and ".join(commands) + EVERYWHERE)
    return "; ".join(dict.fromkeys(other))


def _listed(items: Sequence[str], limit: int = 5) -> str:
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def asset_lines(
    dags: Sequence[tuple[str, Sequence[AssetVerdict]]], unparsed: Sequence[str] = ()
) -> list[CheckLine]:
    """The asset lines from each opted-in DAG's verdicts (pure but for the extras read from this
    package's metadata); ``unparsed`` are opted-in DAGs known only to the metadata database."""
    lines = []
    not_datasets: list[str] = []
    for dag_id, verdicts in dags:
        not_datasets.extend(f"{v.uri} ({dag_id})" for v in verdicts if v.problem == NOT_A_DATASET)
        missing = [v for v in verdicts if v.problem in ASSET_REASONS]
        if not missing:
            continue
        described = [f"{v.uri} ({ASSET_REASONS[v.problem].format(scheme=v.scheme)})" for v in missing]
        lines.append(
            CheckLine(
                "dags",
                f"assets of {dag_id}",
                "warn",
                f"{len(missing)} of its {len(verdicts)} assets become no OpenLineage dataset here, so "
                f"its tasks send Alation no lineage for them: {_listed(described)}",
                asset_fix(missing),
            )
        )
    warned = bool(lines)
    if not_datasets:
        lines.append(
            CheckLine(
                "dags",
                "assets without a dataset URI",
                "info",
                "no URI scheme a provider converts (Airflow-only assets), so OpenLineage sends no "
                f"dataset for: {_listed(not_datasets)}",
                "if Alation should show them, give them a provider's URI, e.g. "
                "postgres://host:5432/database/schema/table",
            )
        )
    if warned:
        return lines
    skipped = f"; not checked: {_listed(list(unparsed))} (not in this DAGs folder)" if unparsed else ""
    converted = [v for _, verdicts in dags for v in verdicts if not v.problem]
    if converted:
        schemes = ", ".join(sorted({f"{v.scheme}://" for v in converted}))
        message = (
            f"{len(converted)} assets of the {len(dags)} opted-in DAGs in the DAGs folder become "
            f"OpenLineage datasets here ({schemes}){skipped}"
        )
        return [CheckLine("dags", "assets", "pass", message), *lines]
    if not dags:
        message = f"not checked: the opted-in DAGs are not in this DAGs folder ({_listed(list(unparsed))})"
        return [*lines, CheckLine("dags", "assets", "info", message)]
    if not not_datasets:
        message = f"no opted-in DAG declares assets as inlets or outlets{skipped}"
        return [*lines, CheckLine("dags", "assets", "info", message)]
    return lines


# --- namespace coverage -----------------------------------------------------------------------


def namespace_line(conn_id: str, namespace: str, how: str, resolution: Any, discovery: bool) -> CheckLine:
    """Pure: one database connection's coverage line from its :class:`Resolution`."""
    name = conn_id
    sent = resolution.namespace
    via = f"emitted as {namespace} ({how}), sent as {sent}" + (
        f" ({resolution.rule}: {resolution.detail})" if resolution.changed and resolution.detail else ""
    )
    status = resolution.status(discovery)
    if status == "not applicable":
        return CheckLine("namespaces", name, "info", f"{via}; {resolution.detail}")
    if status == "matched":
        if "short host name" in resolution.detail:
            return CheckLine(
                "namespaces",
                name,
                "warn",
                f"{via}; matches {resolution.datasource} by its short host name only",
                # No space after the colon: the entry is one word, never split across lines.
                f'confirm it with the namespace_map entry "{namespace.split("://", 1)[-1]}":'
                f'"{sent.split("://", 1)[-1]}"',
            )
        return CheckLine(
            "namespaces", name, "pass", f"{via}; matches Alation data source {resolution.datasource}"
        )
    if status == "not checked":
        return CheckLine("namespaces", name, "warn", f"{via}; not checked against Alation", resolution.fix)
    return CheckLine("namespaces", name, "fail", f"{via}; matches no Alation data source", resolution.fix)


def _env_connections() -> list[Any]:
    from airflow.models.connection import Connection

    found = []
    for key, value in sorted(os.environ.items()):
        if not key.startswith("AIRFLOW_CONN_") or not value.strip():
            continue
        conn_id = key[len("AIRFLOW_CONN_") :].lower()
        try:
            if value.lstrip().startswith("{"):
                found.append(Connection.from_json(value, conn_id=conn_id))
            else:
                found.append(Connection(conn_id=conn_id, uri=value))
        except Exception:  # noqa: BLE001 - a malformed variable is Airflow's to report; it names no database here
            continue
    return found


def _database_connections() -> tuple[list[Any], str]:
    """Connections from the environment and the metadata database, and a note on what was not read."""
    found = {conn.conn_id: conn for conn in _env_connections()}
    note = ""
    try:
        from airflow.models.connection import Connection
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            for conn in session.scalars(select(Connection)):
                found.setdefault(conn.conn_id, conn)
                session.expunge(conn)
    except Exception as exc:  # noqa: BLE001 - no database here (a task, a bare CLI host)
        note = f"the metadata database's connections could not be listed here ({type(exc).__name__})"
        if unmigrated(exc):
            note += f": {MIGRATE_HINT}"
    return list(found.values()), note


MIGRATE_HINT = "the metadata database is missing or not migrated"


def unmigrated(exc: BaseException) -> bool:
    """Whether a database error means a missing or un-migrated metadata database (no such table)."""
    text = f"{type(exc).__name__} {exc}".lower()
    return any(
        word in text
        for word in (
            "no such table",
            "does not exist",
            "unable to open database",
            "undefinedtable",
        )
    )


@dataclass(frozen=True)
class Coverage:
    """One database connection's namespace line, with its parts for a table (the UI page)."""

    line: CheckLine
    conn_type: str = ""
    emitted: str = ""
    how: str = ""
    sent_as: str = ""
    rule: str = ""
    datasource: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "line": self.line.as_dict()}


def check_namespaces(
    settings: AlationSettings, index: Any, connection_ids: Sequence[str] | None = None
) -> list[CheckLine]:
    return [found.line for found in namespace_coverage(settings, index, connection_ids)]


def namespace_coverage(
    settings: AlationSettings, index: Any, connection_ids: Sequence[str] | None = None
) -> list[Coverage]:
    """The ``namespaces`` section, one :class:`Coverage` per line."""
    from airflow_provider_alation.integration.connection import get_connection
    from airflow_provider_alation.integration.connection_namespaces import emitted_namespace
    from airflow_provider_alation.lineage.resolution import NamespaceResolver

    note = ""
    lines: list[Coverage] = []
    if connection_ids:
        connections = []
        for conn_id in connection_ids:
            conn = get_connection(conn_id)
            if conn is None:
                lines.append(
                    Coverage(
                        CheckLine(
                            "namespaces", conn_id, "fail", f"connection {conn_id!r} does not exist here"
                        )
                    )
                )
            else:
                connections.append(conn)
    else:
        connections, note = _database_connections()
    resolver = NamespaceResolver.for_settings(settings, index)
    for conn in sorted(connections, key=lambda c: c.conn_id):
        try:
            emitted = emitted_namespace(conn)
        except ValueError as exc:
            line = CheckLine(
                "namespaces",
                conn.conn_id,
                "fail",
                f"the namespace OpenLineage emits for {conn.conn_id!r} ({conn.conn_type}) cannot be "
                f"told: {exc}",
                f"complete connection {conn.conn_id!r} as its provider documents",
            )
            lines.append(Coverage(line, conn.conn_type or ""))
            continue
        if emitted is None:
            continue
        resolution = resolver.resolve(emitted.namespace)
        line = namespace_line(conn.conn_id, emitted.namespace, emitted.how, resolution, index is not None)
        if emitted.hook_error and line.status != "fail":
            line = CheckLine(
                line.section,
                line.check,
                "warn",
                f"{line.message}; but {emitted.hook_error} here: where it fails the same way, the SQL "
                "extractor sends no datasets",
                line.fix or "install the provider's optional dependencies its OpenLineage support needs",
            )
        lines.append(
            Coverage(
                line,
                conn.conn_type or "",
                emitted.namespace,
                emitted.how,
                resolution.namespace,
                resolution.rule,
                resolution.datasource,
            )
        )
    if not lines and not connection_ids:
        lines.append(
            Coverage(
                CheckLine(
                    "namespaces",
                    "database connections",
                    "warn",
                    "no database connection found" + (f"; {note}" if note else ""),
                    ("run airflow db migrate, or " if MIGRATE_HINT in note else "")
                    + "connections kept in a secrets backend cannot be listed: name them with "
                    "--connection ID",
                )
            )
        )
    elif note:
        fix = "run airflow db migrate, or name them with --connection ID" if MIGRATE_HINT in note else ""
        lines.append(
            Coverage(
                CheckLine(
                    "namespaces",
                    "database connections",
                    "info",
                    note,
                    fix or "name them with --connection ID",
                )
            )
        )
    return lines


# --- the outbox -------------------------------------------------------------------------------


def outbox_lines(spool_dir: str, counts: dict[str, int], oldest_age: float | None) -> list[CheckLine]:
    """Pure: the outbox lines from its counts."""
    lines = []
    waiting = counts["pending"] + counts["claimed"]
    if waiting:
        age = f", the oldest {oldest_age / 60:.0f} min old" if oldest_age is not None else ""
        lines.append(
            CheckLine(
                "outbox",
                "waiting events",
                "warn",
                f"{waiting} events in {spool_dir} wait to be sent{age}",
                "airflow-alation replay (or the alation_outbox_replay DAG) sends them once Alation answers",
            )
        )
    else:
        lines.append(CheckLine("outbox", "waiting events", "pass", f"none waiting in {spool_dir}"))
    if counts["dead"]:
        lines.append(
            CheckLine(
                "outbox",
                "dead letters",
                "warn",
                f"{counts['dead']} events Alation refused for good are in {spool_dir}/dead",
                "read the .reason.json beside each, fix the cause, then airflow-alation replay --dead",
            )
        )
    return lines


def check_outbox(settings: AlationSettings) -> list[CheckLine]:
    return outbox_state(settings)[0]


def outbox_state(settings: AlationSettings) -> tuple[list[CheckLine], list[Any]]:
    """The ``outbox`` lines and the outbox's entries (``EntryInfo``, dead letters with their reasons)."""
    from airflow_provider_alation.outbox.disk import UnsafeDirectory
    from airflow_provider_alation.outbox.store import outbox_for

    spool = Path(settings.spool_dir)
    existing = next((p for p in (spool, *spool.parents) if p.exists()), spool)
    if settings.dry_run:
        return [
            CheckLine(
                "outbox", "dry_run", "warn", "dry_run is on: events are logged, not sent", 'remove "dry_run"'
            )
        ], []
    if not os.access(existing, os.W_OK | os.X_OK):
        return [
            CheckLine(
                "outbox",
                "spool_dir",
                "fail",
                f"spool_dir {spool} is not writable here: events are sent without a write-ahead copy",
                'point "spool_dir" at a writable directory (a shared volume on Celery/Kubernetes)',
            )
        ], []
    try:
        infos = outbox_for(settings).list() if spool.exists() else []
    except UnsafeDirectory as exc:  # others could plant events in it: its message names the fix
        message, _, fix = str(exc).partition(" Fix: ")
        return [CheckLine("outbox", "spool_dir", "fail", message.removeprefix("Alation lineage: "), fix)], []
    counts = {state: sum(info.state == state for info in infos) for state in ("pending", "claimed", "dead")}
    oldest = min((info.queued_at for info in infos if info.state != "dead"), default=None)
    lines = outbox_lines(str(spool), counts, time.time() - oldest if oldest is not None else None)
    return lines, infos


# --- the whole report -------------------------------------------------------------------------


def run_checks(
    conn_id: str | None = None,
    sections: Sequence[str] = SECTIONS,
    connection_ids: Sequence[str] | None = None,
    refresh: bool = False,
) -> Report:
    """Run the chosen sections; sections that need valid settings say so when there are none.

    Without ``conn_id`` the settings are those of the transport OpenLineage is configured with: its
    connection (``alation_default`` unless it names another), or its inline settings.
    """
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown check sections {unknown}; choose from {', '.join(SECTIONS)}")
    report = Report()
    settings: AlationSettings | None = None
    needs_settings = set(sections) - {"versions", "openlineage"}
    connection_lines: list[CheckLine] = []
    source = f"connection {conn_id!r}"
    # The OpenLineage client is built once, for the openlineage line and for the settings it names.
    from airflow_provider_alation.integration.configuration import built_transport_status

    transport_state = functools.cache(built_transport_status)
    if needs_settings:
        connection_lines, settings, source = _guarded_settings(conn_id, transport_state)
    index = None
    steps: dict[str, Callable[[], list[CheckLine]]] = {
        "versions": check_versions,
        "openlineage": lambda: check_openlineage(transport_state),
        "tenant": lambda: check_tenant(settings),
        "datasources": lambda: datasource_lines,
        "dags": lambda: check_dags(settings),
        "namespaces": lambda: check_namespaces(settings, index, connection_ids),
        "outbox": lambda: check_outbox(settings),
    }
    datasource_lines: list[CheckLine] = []
    for section in SECTIONS:
        if section not in sections:
            continue
        if section == "connection":
            report.lines.extend(connection_lines)
            if settings is not None:
                report.lines.extend(_guarded("connection", lambda: execution_timeout_lines(settings)))
            continue
        if section in needs_settings and settings is None:
            report.lines.append(
                CheckLine(
                    section,
                    section,
                    "info",
                    f"not checked: {source} is not usable (see the connection check)",
                )
            )
            continue
        if section == "datasources" or (
            section == "namespaces" and "datasources" not in sections and settings.discover_datasources
        ):
            datasource_lines, index = _datasources(settings, refresh)
        report.lines.extend(_guarded(section, steps[section]))
    return report


def _datasources(settings: AlationSettings, refresh: bool) -> tuple[list[CheckLine], Any]:
    found = _guarded("datasources", lambda: check_datasources(settings, refresh))
    return found if isinstance(found, tuple) else (found, None)


def _guarded_settings(
    conn_id: str | None, transport_state: Callable[[], tuple[bool, str, Any]]
) -> tuple[list[CheckLine], AlationSettings | None, str]:
    """The connection lines, the settings (None when unusable) and where they come from."""
    try:
        if conn_id is None:
            from airflow_provider_alation.integration.configuration import transport_conn_id

            _, _, transport = transport_state()
            if transport is not None and transport.config.inline is not None:
                try:
                    settings = transport.read_settings()
                except SettingsError as exc:
                    line = CheckLine("connection", "inline settings", "fail", "; ".join(exc.problems))
                    return [line], None, "the transport's inline settings"
                line = CheckLine("connection", "inline settings", "pass", f"valid: tenant {settings.url}")
                return [line], settings, "the transport's inline settings"
            conn_id = transport.config.conn_id if transport is not None else transport_conn_id()
        lines, settings = check_connection(conn_id)
        return lines, settings, f"connection {conn_id!r}"
    except Exception as exc:  # noqa: BLE001 - a line, never a traceback
        line = CheckLine("connection", "connection", "fail", f"could not be checked: {type(exc).__name__}")
        return [line], None, "the connection"


def _guarded(section: str, step: Callable[[], Any]) -> Any:
    """A section that breaks is a failing line naming the error, never a traceback."""
    try:
        return step()
    except Exception as exc:  # noqa: BLE001 - the report goes on; the line names the error
        return [CheckLine(section, section, "fail", f"the check itself failed: {_error(exc)}")]


def _error(exc: BaseException) -> str:
    """An exception for a report line: its type and a short message, any ``user:password@`` masked
    (a connection URI in an Airflow error would otherwise carry its password)."""
    from airflow_provider_alation.lineage.namespaces import redact

    return f"{type(exc).__name__}: {redact(str(exc))[:200]}"


def preflight(
    section: str, conn_id: str | None = None, connection_ids: Sequence[str] | None = None
) -> dict[str, Any]:
    """One preflight DAG task: log the section's lines; fail the task (no retry) when one fails."""
    import logging

    report = run_checks(conn_id, (section,), connection_ids or None)
    logging.getLogger(__name__).info("Alation lineage preflight, %s:\n%s", section, report.as_text())
    if report.failed:
        try:
            from airflow.sdk.exceptions import AirflowFailException
        except ImportError:  # Airflow 2.10
            from airflow.exceptions import AirflowFailException
        raise AirflowFailException(
            "; ".join(f"{x.check}: {x.message}" + (f" Fix: {x.fix}" if x.fix else "") for x in report.failed)
        )
    return report.counts()
