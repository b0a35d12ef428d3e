"""The ``airflow-alation`` command: see what namespaces become and which data sources Alation has.

    airflow-alation check [--conn-id ID] [--only SECTION]... [--connection ID]... [--refresh] [--json]
    airflow-alation resolve NAMESPACE... [--conn-id ID] [--map JSON] [--refresh] [--offline] [--json]
    airflow-alation datasources [--conn-id ID] [--refresh] [--match TEXT] [--json]
    airflow-alation replay [--conn-id ID] [--dead] [--limit N] [--reclaim-after SECONDS] [--json]
    airflow-alation relay --config FILE [--host H] [--port P] [--workers N] [--tls-cert PEM --tls-key PEM]
    airflow-alation --version

On Airflow 3.2+ the same commands are ``airflow alation check|resolve|datasources|replay|version``
(the provider info's ``cli`` key names :func:`get_airflow_commands`). Both are built from
:data:`COMMANDS`, so they take the same arguments and print the same output.

Settings come from the Airflow connection (``alation_default`` unless ``--conn-id``), as the
transport reads them (``check``: the connection the configured transport names). Exit codes: 0
fine; 1 ``check``: a line failed, ``resolve``: a namespace matches no Alation data
source (known only with discovery), ``datasources``: they could not be read, ``replay``: events are
left for a later replay; 2 bad settings or usage.

Output fits the terminal from 80 columns up: a table where the columns fit, else one block per
row. Values a user copies (namespaces, host:port, connection ids) are never split across lines.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from airflow_provider_alation.commands.check import SECTIONS
from airflow_provider_alation.settings import DEFAULT_CONN_ID, AlationSettings, SettingsError, build_settings

if TYPE_CHECKING:  # the Airflow CLI imports this module at every start: the rest is imported when used
    from airflow_provider_alation.lineage.resolution import Resolution

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2
DISTRIBUTION = "airflow-provider-alation"


def package_version() -> str:
    """This package's version, from its installed metadata."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        from airflow_provider_alation import __version__

        return __version__


def _settings(args: argparse.Namespace) -> AlationSettings:
    from airflow_provider_alation.integration.connection import load_settings

    settings = load_settings(args.conn_id)
    extra_map = getattr(args, "map", None)
    if extra_map:
        try:
            rules = json.loads(extra_map)
        except ValueError as exc:
            raise SettingsError([f"--map: not valid JSON ({exc})"], "the command line") from None
        if not isinstance(rules, dict):
            raise SettingsError(
                ['--map: give a JSON object such as {"10.0.0.5:5432": "db:5432"}'], "the command line"
            )
        values = settings.model_dump()
        values["namespace_map"] = {**settings.namespace_map, **rules}
        settings = build_settings(values, "the connection with --map", inline=True)
    return settings


# --- layout ----------------------------------------------------------------------------------

#: Below this width ``check`` prints one block per line instead of a table.
CHECK_TABLE_WIDTH = 120
#: What a table spends per column on borders and padding.
CELL_EXTRA = 3


def _copyable(value: str, style: str = "") -> Text:
    """A value a user copies: never wrapped inside (it gets a line of its own where it does not fit)."""
    return Text(value, style=style, no_wrap=True, overflow="ignore")


def _fits(console: Console, copyable: Sequence[int], prose: int) -> bool:
    """Whether a table with columns as wide as the ``copyable`` values, plus ``prose`` columns of at
    least 16 characters, fits the console."""
    need = sum(copyable) + 16 * prose + CELL_EXTRA * (len(copyable) + prose) + 1
    return need <= console.width


def _field(label: str, value: str, width: int, indent: int = 2, style: str = "") -> Text:
    """``label value`` on one line when it fits, else the value on a line of its own below the label."""
    line = Text(" " * indent).append(label, style="dim")
    if indent + len(label) + 1 + len(value) <= width or not value:
        return line.append(" ").append(value, style=style)
    return line.append("\n" + " " * (indent + 2)).append(value, style=style)


def _prose(console: Console, label: str, value: str | Text, indent: int = 2) -> Text:
    """Text wrapped at spaces, with a hanging indent and no trailing blanks (a word never splits
    unless it is wider than the line)."""
    text = Text.assemble((label + " ", "bold") if label else "", value)
    lines = text.wrap(console, max(console.width - indent, 20))
    out = Text()
    for number, line in enumerate(lines):
        line.rstrip()
        out.append("\n" if number else "").append(" " * indent).append_text(line)
    return out


# --- resolve ---------------------------------------------------------------------------------


def _resolution_row(resolution: Resolution, discovery: bool) -> dict[str, Any]:
    return resolution.as_row(discovery)


RESOLVE_COLOURS = {"matched": "green", "no match": "red", "not checked": "yellow", "not applicable": "dim"}


def render_resolutions(console: Console, rows: Sequence[dict[str, Any]]) -> None:
    """The ``resolve`` rows: a table where the namespaces fit on one line, else a block per namespace."""
    namespaces = max((len(row["namespace"]) for row in rows), default=9)
    sent = max((len(row["sent_as"]) for row in rows), default=18)
    if _fits(console, [max(namespaces, 9), max(sent, 18)], 3):
        table = Table(show_lines=True)
        table.add_column("Namespace", no_wrap=True)
        table.add_column("Sent to Alation as", no_wrap=True)
        for column in ("Rule", "Alation data source", "Fix"):
            table.add_column(column, overflow="fold", min_width=16, ratio=3 if column == "Fix" else 1)
        for row in rows:
            shown = row["detail"] and row["status"] != "not applicable"
            rule = Text.assemble(row["rule"], ("\n" + row["detail"], "dim") if shown else "")
            source = row["datasource"] if row["status"] == "matched" else row["status"]
            table.add_row(
                _copyable(row["namespace"]),
                _copyable(row["sent_as"]),
                rule,
                Text(source, style=RESOLVE_COLOURS[row["status"]]),
                Text(row["fix"] or ("" if row["status"] != "not applicable" else row["detail"])),
            )
        console.print(table)
        return
    width = console.width
    for row in rows:
        source = row["datasource"] if row["status"] == "matched" else row["status"]
        parts: list[RenderableType] = [
            Text(""),
            Text(row["namespace"], style="bold", no_wrap=True, overflow="fold"),
            _field("sent to Alation as", row["sent_as"], width),
            _field("Alation data source", source, width, style=RESOLVE_COLOURS[row["status"]]),
            _prose(
                console,
                "rule",
                Text.assemble(row["rule"], (f" ({row['detail']})" if row["detail"] else "", "dim")),
            ),
        ]
        if row["fix"]:
            parts.append(_prose(console, "Fix:", row["fix"]))
        console.print(Group(*parts))


def cmd_resolve(args: argparse.Namespace, console: Console) -> int:
    from airflow_provider_alation.alation.discovery import IndexLoad, load_index_interactive
    from airflow_provider_alation.lineage.resolution import NamespaceResolver

    settings = _settings(args)
    load: IndexLoad | None = None
    if settings.discover_datasources and not args.offline:
        load = load_index_interactive(settings, args.refresh)
    index = load.index if load is not None else None
    resolver = NamespaceResolver.for_settings(settings, index)
    rows = [_resolution_row(resolver.resolve(namespace), index is not None) for namespace in args.namespaces]
    if args.json:
        print(json.dumps({"datasources": load.state if load else "off", "namespaces": rows}, indent=2))
    else:
        if load is None:
            why = (
                "--offline"
                if args.offline
                else 'discover_datasources is off; set "discover_datasources": true'
            )
            console.print(f"Alation data sources: not read ({why}), so matches cannot be confirmed.")
        else:
            console.print(f"Alation data sources: {load.describe()}")
        render_resolutions(console, rows)
    return EXIT_PROBLEM if any(row["status"] == "no match" for row in rows) else EXIT_OK


# --- datasources -----------------------------------------------------------------------------


def render_datasources(console: Console, sources: Sequence[Any]) -> None:
    """Alation's data sources: a table where host:port and URI fit on one line, else a block each."""
    endpoints = {source.id: [f"{h}:{p}" for h, p in source.endpoints] for source in sources}
    widest_endpoint = max((len(e) for found in endpoints.values() for e in found), default=11)
    widest_uri = max((len(source.uri) for source in sources), default=3)
    if _fits(console, [max(widest_endpoint, 11), max(widest_uri, 3), 4, 3], 2):
        table = Table()
        table.add_column("Id", no_wrap=True)
        table.add_column("API", no_wrap=True)
        table.add_column("Type", overflow="fold")
        table.add_column("Title", overflow="fold")
        table.add_column("host:port", no_wrap=True)
        table.add_column("URI", no_wrap=True)
        for source in sources:
            found = endpoints[source.id]
            table.add_row(
                str(source.id),
                source.api,
                Text(source.dbtype),
                Text(source.title),
                _copyable("\n".join(found)) if found else Text("none parsed", style="red"),
                _copyable(source.uri),
            )
        console.print(table)
        return
    width = console.width
    for source in sources:
        parts: list[RenderableType] = [
            Text(""),
            Text.assemble(
                (f"#{source.id} ", "bold"),
                (source.title, "bold"),
                (f"  {source.dbtype}, {source.api}", "dim"),
            ),
        ]
        for endpoint in endpoints[source.id] or ():
            parts.append(_field("host:port", endpoint, width))
        if not endpoints[source.id]:
            parts.append(_field("host:port", "none parsed", width, style="red"))
        parts.append(_field("URI", source.uri, width))
        console.print(Group(*parts))


def cmd_datasources(args: argparse.Namespace, console: Console) -> int:
    from airflow_provider_alation.alation.discovery import load_index_interactive

    settings = _settings(args)
    load = load_index_interactive(settings, args.refresh)
    sources = list(load.sources)
    if args.match:
        needle = args.match.lower()
        sources = [
            s
            for s in sources
            if needle in s.title.lower()
            or needle in s.uri.lower()
            or any(needle in h for h, _ in s.endpoints)
        ]
    if args.json:
        print(
            json.dumps(
                {"state": load.state, "detail": load.detail, "datasources": [s.to_dict() for s in sources]},
                indent=2,
            )
        )
    else:
        console.print(f"Alation data sources at {settings.url}: {load.describe()}")
        render_datasources(console, sources)
        if load.state == "fresh" and load.fetched_at:
            console.print(
                f"[dim]Cached {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(load.fetched_at))}; "
                "--refresh reads Alation again.[/dim]"
            )
    return EXIT_PROBLEM if load.state == "unavailable" else EXIT_OK


# --- check -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _logs_to_stderr() -> Iterator[None]:
    """Whatever Airflow logs to stdout (it may, by configuration) goes to stderr: the report on
    stdout stays readable, and parseable with --json."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


STATUS_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "info": "dim"}


def render_report(console: Console, lines: Sequence[Any]) -> None:
    """The check's lines: a table from :data:`CHECK_TABLE_WIDTH` columns, else a block per line."""
    if console.width >= CHECK_TABLE_WIDTH:
        table = Table(show_lines=True, title="Alation lineage: preflight check")
        table.add_column("", no_wrap=True)
        table.add_column("Check", overflow="fold", max_width=30)
        table.add_column("Result and fix", overflow="fold")
        for line in lines:
            result = Text(line.message)
            if line.fix:
                result.append("\nFix: ", style="bold").append(line.fix)
            table.add_row(
                Text(line.status.upper(), style=STATUS_STYLE[line.status]),
                Text.assemble((line.section, "dim"), "\n", line.check),
                result,
            )
        console.print(table)
        return
    console.print(Text("Alation lineage: preflight check", style="italic"))
    for line in lines:
        head = Text.assemble(
            (f"{line.status.upper():<5}", STATUS_STYLE[line.status]), (line.section, "dim"), " / ", line.check
        )
        parts: list[RenderableType] = [head, _prose(console, "", line.message, indent=6)]
        if line.fix:
            parts.append(_prose(console, "Fix:", line.fix, indent=6))
        console.print(Group(*parts))


def cmd_check(args: argparse.Namespace, console: Console) -> int:
    from airflow_provider_alation.commands.check import run_checks

    sections = args.only or SECTIONS
    with _logs_to_stderr():
        report = run_checks(args.conn_id, sections, args.connection, refresh=args.refresh)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return report.exit_code
    render_report(console, report.lines)
    counts = report.counts()
    summary = ", ".join(f"{counts[s]} {s}" for s in ("pass", "warn", "fail", "info"))
    console.print(Text(summary, style="bold red" if report.failed else "green"))
    return report.exit_code


# --- replay ----------------------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from airflow_provider_alation.outbox.replay import replay_with
    from airflow_provider_alation.outbox.store import outbox_for

    settings = _settings(args)
    outbox = outbox_for(settings)
    reclaimed = outbox.reclaim_stale(args.reclaim_after) if args.reclaim_after is not None else 0
    before = outbox.counts()
    total = before["dead" if args.dead else "pending"] + (0 if args.dead else before["claimed"])
    if args.limit is not None:
        total = min(total, args.limit)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=args.json,
        disable=args.json,
    ) as progress:
        task = progress.add_task("dead letters" if args.dead else "outbox", total=total or None)
        summary = replay_with(
            settings,
            outbox,
            dead=args.dead,
            limit=args.limit,
            on_event=lambda verdict, outcome: progress.advance(task),
        )
    summary.reclaimed += reclaimed
    after = outbox.counts()
    if args.json:
        print(json.dumps({**summary.as_dict(), "before": before, "after": after}, indent=2))
    else:
        console.print(Text.assemble("Replay of ", _copyable(str(settings.spool_dir))))
        console.print(Text.assemble("to ", _copyable(settings.endpoint_url)))
        table = Table()
        table.add_column("")
        table.add_column("events", justify="right", no_wrap=True)
        table.add_row("sent", str(summary.sent))
        table.add_row("dead-lettered (refused for good, or not sendable)", str(summary.dead))
        for problem, count in sorted(summary.kept.items()):
            table.add_row(f"kept for replay: {problem}", str(count))
        table.add_row("claims of killed processes put back", str(summary.reclaimed))
        if summary.quarantined:
            table.add_row("quarantined, never sent (not ours, or cut short)", str(summary.quarantined))
        table.add_row(
            "left: pending / being sent elsewhere / dead",
            f"{after['pending']} / {after['claimed']} / {after['dead']}",
        )
        console.print(table)
        if summary.quarantined:
            console.print(
                Text(
                    f"{summary.quarantined} entries this provider did not write, or cut short, were moved to "
                    f"{outbox.quarantine} (see the warnings above): look at them there and delete them.",
                    style="yellow",
                )
            )
        if summary.stopped:
            console.print(Text(f"Stopped early: {summary.stopped}", style="red"))
    return EXIT_PROBLEM if summary.kept_total or summary.stopped else EXIT_OK


# --- relay -----------------------------------------------------------------------------------


def cmd_relay(args: argparse.Namespace, console: Console) -> int:
    from airflow_provider_alation.relay.config import RelayConfigError
    from airflow_provider_alation.relay.server import ServerOptions, check, serve

    location = args.config or os.environ.get("ALATION_RELAY_CONFIG", "")
    if not location:
        raise SettingsError(["--config: give the relay configuration file (see README 'The relay')"], "relay")
    try:
        if args.check:
            _, lines = check(location)
            for line in lines:
                console.print(Text(line))
            return EXIT_OK
        serve(
            ServerOptions(
                config=location,
                host=args.host,
                port=args.port,
                workers=args.workers,
                tls_cert=args.tls_cert,
                tls_key=args.tls_key,
                log_level=args.log_level,
            )
        )
    except RelayConfigError as exc:
        raise SettingsError([str(exc)], "the relay configuration") from None
    return EXIT_OK


def cmd_version(args: argparse.Namespace, console: Console) -> int:
    print(f"{DISTRIBUTION} {package_version()}")
    return EXIT_OK


# --- the commands, for argparse and for Airflow's CLI ------------------------------------------


@dataclass(frozen=True)
class Option:
    """One argument: ``flags`` and the keyword arguments of ``add_argument`` (those Airflow's ``Arg``
    takes too: help, action, default, nargs, type, choices, required, metavar, dest)."""

    flags: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    handler: Callable[[argparse.Namespace, Console], int]
    options: tuple[Option, ...]


def _conn_id(default: str | None = DEFAULT_CONN_ID) -> Option:
    if default is None:
        return Option(
            ("--conn-id",),
            {"default": None, "help": "Alation connection (default: the one the OpenLineage transport uses)"},
        )
    return Option(("--conn-id",), {"default": default, "help": "Alation connection (default %(default)s)"})


REFRESH = Option(
    ("--refresh",), {"action": "store_true", "help": "read Alation's data sources again, ignoring the cache"}
)
JSON = Option(("--json",), {"action": "store_true", "help": "machine-readable output"})

COMMANDS: tuple[Command, ...] = (
    Command(
        "check",
        "will lineage reach Alation? one pass/warn/fail line per check",
        cmd_check,
        (
            _conn_id(None),
            Option(
                ("--only",),
                {
                    "action": "append",
                    "choices": SECTIONS,
                    "metavar": "SECTION",
                    "help": f"run only these sections (repeatable): {', '.join(SECTIONS)}",
                },
            ),
            Option(
                ("--connection",),
                {
                    "action": "append",
                    "metavar": "ID",
                    "help": "database connections to check the namespaces of (default: every one in the "
                    "environment and the metadata database; name those kept in a secrets backend)",
                },
            ),
            REFRESH,
            JSON,
        ),
    ),
    Command(
        "resolve",
        "what each namespace becomes, by which rule, and whether it matches",
        cmd_resolve,
        (
            Option(
                ("namespaces",),
                {"nargs": "+", "metavar": "NAMESPACE", "help": "e.g. postgres://10.0.0.5:5432"},
            ),
            Option(("--map",), {"help": "extra namespace_map rules (JSON) to try before saving them"}),
            Option(("--offline",), {"action": "store_true", "help": "do not read Alation's data sources"}),
            _conn_id(),
            REFRESH,
            JSON,
        ),
    ),
    Command(
        "datasources",
        "the data sources Alation has, and their host:port",
        cmd_datasources,
        (
            Option(("--match",), {"help": "only those whose title, URI or host contains this text"}),
            _conn_id(),
            REFRESH,
            JSON,
        ),
    ),
    Command(
        "replay",
        "send the events waiting in the outbox (spool_dir)",
        cmd_replay,
        (
            _conn_id(),
            Option(
                ("--dead",),
                {"action": "store_true", "help": "retry the dead letters (after fixing the cause)"},
            ),
            Option(("--limit",), {"type": int, "help": "send at most this many events"}),
            Option(
                ("--reclaim-after",),
                {
                    "type": float,
                    "metavar": "SECONDS",
                    "help": "first put back claims older than this (default: the lease, "
                    "max(120, 12 x time_budget))",
                },
            ),
            JSON,
        ),
    ),
    Command(
        "relay",
        "serve POST /api/v1/lineage for OpenLineage senders outside Airflow (Spark, dbt-ol, Flink...)",
        cmd_relay,
        (
            Option(("--config",), {"metavar": "FILE", "help": "relay configuration (JSON or YAML)"}),
            Option(
                ("--host",), {"default": "127.0.0.1", "help": "address to listen on (default %(default)s)"}
            ),
            Option(("--port",), {"type": int, "default": 8090, "help": "port (default %(default)s)"}),
            Option(
                ("--workers",), {"type": int, "default": 2, "help": "worker processes (default %(default)s)"}
            ),
            Option(("--tls-cert",), {"metavar": "PEM", "help": "serve HTTPS with this certificate"}),
            Option(("--tls-key",), {"metavar": "PEM", "help": "the certificate's private key"}),
            Option(("--log-level",), {"default": "info", "help": "uvicorn log level (default %(default)s)"}),
            Option(
                ("--check",),
                {"action": "store_true", "help": "validate the configuration, print the senders and exit"},
            ),
        ),
    ),
    Command("version", "print this provider's version", cmd_version, ()),
)
DESCRIPTION = "Alation lineage for Airflow: what namespaces become, which data sources Alation has."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airflow-alation", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        found = sub.add_parser(command.name, help=command.help, description=command.help)
        for option in command.options:
            found.add_argument(*option.flags, **option.kwargs)
        found.set_defaults(handler=command.handler)
    return parser


def run(handler: Callable[[argparse.Namespace, Console], int], args: argparse.Namespace) -> int:
    """Run a command's handler; bad settings are a message and exit code 2, never a traceback."""
    from airflow_provider_alation.outbox.disk import UnsafeDirectory

    console = Console(soft_wrap=False)
    error = Console(stderr=True)
    try:
        return handler(args, console)
    except (SettingsError, UnsafeDirectory) as exc:
        error.print(str(exc), style="red", markup=False, highlight=False)
        return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args.handler, args)


def _airflow_func(
    handler: Callable[[argparse.Namespace, Console], int],
) -> Callable[[argparse.Namespace], None]:
    def func(args: argparse.Namespace) -> None:
        code = run(handler, args)
        if code:
            sys.exit(code)

    func.__name__ = f"alation_{handler.__name__}"
    return func


def get_airflow_commands() -> list[Any]:
    """``airflow alation ...``: the provider info's ``cli`` entry (Airflow 3.2+ reads it at every
    start of its CLI, so this module imports little until a command runs)."""
    from airflow.cli.cli_config import ActionCommand, Arg, GroupCommand

    subcommands = [
        ActionCommand(
            name=command.name,
            help=command.help,
            description=command.help,
            func=_airflow_func(command.handler),
            args=tuple(Arg(option.flags, **option.kwargs) for option in command.options),
        )
        for command in COMMANDS
    ]
    return [
        GroupCommand(
            name="alation",
            help="Alation lineage: check the setup, resolve namespaces, list data sources, replay events",
            description=f"{DESCRIPTION} (also installed as airflow-alation)",
            subcommands=subcommands,
        )
    ]


if __name__ == "__main__":
    sys.exit(main())
