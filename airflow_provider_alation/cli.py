"""The ``airflow-alation`` command: see what namespaces become and which data sources Alation has.

    airflow-alation check [--conn-id ID] [--only SECTION]... [--connection ID]... [--refresh] [--json]
    airflow-alation resolve NAMESPACE... [--conn-id ID] [--map JSON] [--refresh] [--offline] [--json]
    airflow-alation datasources [--conn-id ID] [--refresh] [--match TEXT] [--json]
    airflow-alation replay [--conn-id ID] [--dead] [--limit N] [--reclaim-after SECONDS] [--json]

Settings come from the Airflow connection (``alation_default`` unless ``--conn-id``), as the
transport reads them (``check``: the connection the configured transport names). Exit codes: 0
fine; 1 ``check``: a line failed, ``resolve``: a namespace matches no Alation data
source (known only with discovery), ``datasources``: they could not be read, ``replay``: events are
left for a later replay; 2 bad settings or usage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from airflow_provider_alation.check import SECTIONS
from airflow_provider_alation.delivery import sender_for
from airflow_provider_alation.discovery import IndexLoad, load_index_interactive
from airflow_provider_alation.outbox import outbox_for
from airflow_provider_alation.replay import replay
from airflow_provider_alation.resolution import NamespaceResolver, Resolution
from airflow_provider_alation.settings import DEFAULT_CONN_ID, AlationSettings, SettingsError, build_settings

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


def _settings(args: argparse.Namespace) -> AlationSettings:
    from airflow_provider_alation.connection import load_settings

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


def _resolution_row(resolution: Resolution, discovery: bool) -> dict[str, Any]:
    status = resolution.status(discovery)
    return {
        "namespace": resolution.original,
        "sent_as": resolution.namespace,
        "rule": resolution.rule,
        "detail": resolution.detail,
        "status": status,
        "datasource": resolution.datasource,
        "fix": resolution.fix if status != "matched" else "",
    }


def cmd_resolve(args: argparse.Namespace, console: Console) -> int:
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
        table = Table(show_lines=True)
        for column in ("Namespace", "Sent to Alation as", "Rule", "Alation data source", "Fix"):
            table.add_column(column, overflow="fold")
        colours = {"matched": "green", "no match": "red", "not checked": "yellow", "not applicable": "dim"}
        for row in rows:
            shown = row["detail"] and row["status"] != "not applicable"
            rule = Text.assemble(row["rule"], ("\n" + row["detail"], "dim") if shown else "")
            source = row["datasource"] if row["status"] == "matched" else row["status"]
            table.add_row(
                Text(row["namespace"]),
                Text(row["sent_as"]),
                rule,
                Text(source, style=colours[row["status"]]),
                Text(row["fix"] or ("" if row["status"] != "not applicable" else row["detail"])),
            )
        console.print(table)
    return EXIT_PROBLEM if any(row["status"] == "no match" for row in rows) else EXIT_OK


def cmd_datasources(args: argparse.Namespace, console: Console) -> int:
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
        table = Table()
        for column in ("Id", "API", "Type", "Title", "host:port", "URI"):
            table.add_column(column, overflow="fold")
        for source in sources:
            endpoints = "\n".join(f"{h}:{p}" for h, p in source.endpoints)
            table.add_row(
                str(source.id),
                source.api,
                Text(source.dbtype),
                Text(source.title),
                Text(endpoints) if endpoints else Text("none parsed", style="red"),
                Text(source.uri),
            )
        console.print(table)
        if load.state == "fresh" and load.fetched_at:
            console.print(
                f"[dim]Cached {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(load.fetched_at))}; "
                "--refresh reads Alation again.[/dim]"
            )
    return EXIT_PROBLEM if load.state == "unavailable" else EXIT_OK


@contextlib.contextmanager
def _logs_to_stderr() -> Iterator[None]:
    """Whatever Airflow logs to stdout (it may, by configuration) goes to stderr: --json stays parseable."""
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


def cmd_check(args: argparse.Namespace, console: Console) -> int:
    from airflow_provider_alation.check import run_checks

    sections = args.only or SECTIONS
    with _logs_to_stderr() if args.json else contextlib.nullcontext():
        report = run_checks(args.conn_id, sections, args.connection, refresh=args.refresh)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return report.exit_code
    table = Table(show_lines=True, title="Alation lineage: preflight check")
    for column in ("", "Check", "Result and fix"):
        table.add_column(column, overflow="fold")
    for line in report.lines:
        result = Text(line.message)
        if line.fix:
            result.append("\nFix: ", style="bold").append(line.fix)
        table.add_row(
            Text(line.status.upper(), style=STATUS_STYLE[line.status]),
            Text.assemble((line.section, "dim"), "\n", line.check),
            result,
        )
    console.print(table)
    counts = report.counts()
    summary = ", ".join(f"{counts[s]} {s}" for s in ("pass", "warn", "fail", "info"))
    console.print(Text(summary, style="bold red" if report.failed else "green"))
    return report.exit_code


def cmd_replay(args: argparse.Namespace, console: Console) -> int:
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
        summary = replay(
            outbox,
            sender_for(settings),
            per_event_budget=settings.time_budget,
            dead=args.dead,
            limit=args.limit,
            on_event=lambda verdict, outcome: progress.advance(task),
        )
    summary.reclaimed += reclaimed
    after = outbox.counts()
    if args.json:
        print(json.dumps({**summary.as_dict(), "before": before, "after": after}, indent=2))
    else:
        table = Table(title=f"Replay of {settings.spool_dir} to {settings.endpoint_url}")
        table.add_column("")
        table.add_column("events", justify="right")
        table.add_row("sent", str(summary.sent))
        table.add_row("dead-lettered (refused for good)", str(summary.dead))
        for problem, count in sorted(summary.kept.items()):
            table.add_row(f"kept for replay: {problem}", str(count))
        table.add_row("claims of killed processes put back", str(summary.reclaimed))
        table.add_row(
            "left: pending / being sent elsewhere / dead",
            f"{after['pending']} / {after['claimed']} / {after['dead']}",
        )
        console.print(table)
        if summary.stopped:
            console.print(Text(f"Stopped early: {summary.stopped}", style="red"))
    return EXIT_PROBLEM if summary.kept_total or summary.stopped else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="airflow-alation",
        description="Alation lineage for Airflow: what namespaces become, which data sources Alation has.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--conn-id", default=DEFAULT_CONN_ID, help="Alation connection (default %(default)s)")
        p.add_argument(
            "--refresh", action="store_true", help="read Alation's data sources again, ignoring the cache"
        )
        p.add_argument("--json", action="store_true", help="machine-readable output")

    check = sub.add_parser("check", help="will lineage reach Alation? one pass/warn/fail line per check")
    check.add_argument(
        "--conn-id", default=None, help="Alation connection (default: the one the OpenLineage transport uses)"
    )
    check.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        metavar="SECTION",
        help=f"run only these sections (repeatable): {', '.join(SECTIONS)}",
    )
    check.add_argument(
        "--connection",
        action="append",
        metavar="ID",
        help="database connections to check the namespaces of (default: every one in the environment "
        "and the metadata database; name those kept in a secrets backend)",
    )
    check.add_argument(
        "--refresh", action="store_true", help="read Alation's data sources again, ignoring the cache"
    )
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(handler=cmd_check)

    resolve = sub.add_parser(
        "resolve", help="what each namespace becomes, by which rule, and whether it matches"
    )
    resolve.add_argument("namespaces", nargs="+", metavar="NAMESPACE", help="e.g. postgres://10.0.0.5:5432")
    resolve.add_argument("--map", help="extra namespace_map rules (JSON) to try before saving them")
    resolve.add_argument("--offline", action="store_true", help="do not read Alation's data sources")
    common(resolve)
    resolve.set_defaults(handler=cmd_resolve)

    datasources = sub.add_parser("datasources", help="the data sources Alation has, and their host:port")
    datasources.add_argument("--match", help="only those whose title, URI or host contains this text")
    common(datasources)
    datasources.set_defaults(handler=cmd_datasources)

    replay_cmd = sub.add_parser("replay", help="send the events waiting in the outbox (spool_dir)")
    replay_cmd.add_argument(
        "--conn-id", default=DEFAULT_CONN_ID, help="Alation connection (default %(default)s)"
    )
    replay_cmd.add_argument(
        "--dead", action="store_true", help="retry the dead letters (after fixing the cause)"
    )
    replay_cmd.add_argument("--limit", type=int, help="send at most this many events")
    replay_cmd.add_argument(
        "--reclaim-after",
        type=float,
        metavar="SECONDS",
        help="first put back claims older than this (default: the lease, max(120, 12 x time_budget))",
    )
    replay_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    replay_cmd.set_defaults(handler=cmd_replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(soft_wrap=False)
    error = Console(stderr=True)
    try:
        return args.handler(args, console)
    except SettingsError as exc:
        error.print(str(exc), style="red", markup=False, highlight=False)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
