"""AlationTransport side by side with the stock OpenLineage ``http`` transport, in one run.

    .venv/bin/python bench/compare.py [--repeat 3] [--json] [--only traffic,emit,task,resolver]
                                      [--dag-runs 2] [--events 300] [--profile] [--load FILE]

The alternative every Alation user has today is the OpenLineage provider's plain ``http``
transport (openlineage-python ``HttpTransport``) pointed at Alation's endpoint. Both transports
are measured against the same local HTTPS receiver (the stand-in for Alation, TLS verified against
its CA), on the same machine, in the same run:

1. traffic: ``airflow dags test bench_twenty_sql`` (a Python task, an Empty task, a DDL + seed
   task, 20 ``INSERT INTO t_out_k SELECT ... FROM t_in_k`` tasks) against a real PostgreSQL
   server: requests and bytes the receiver gets per DAG run, and the task-slot time of the run;
2. emit: ``emit()`` in this process, both transports interleaved: the lineage-bearing COMPLETE
   event (transport reused; a new transport per event in this process; a forked child per event
   as in Airflow: the stock client built in the child, AlationTransport prepared in the task
   process by the plugin), the same with the receiver answering after 20 and 50 ms (a realistic round
   trip; the overhead in %), and the events AlationTransport drops (START, COMPLETE without
   datasets, DAG COMPLETE);
3. task: ``airflow dags test bench_task_time`` (``--repeat`` SQL tasks in a row, each timed from
   its start_date to its end, OpenLineage listeners included) with the endpoint healthy, hanging
   (accepts TCP, never answers) and refusing connections, against OpenLineage disabled;
4. resolver: bench/resolver.py (10,000 rules, 5,000 discovered data sources); AlationTransport only.

Every measure is repeated (``--repeat``; ``--dag-runs`` for 1) and shown as median (min-max).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

SECTIONS = ("traffic", "emit", "task", "resolver")
KIND_LABEL = {"disabled": "OpenLineage disabled", "http": "stock http", "alation": "AlationTransport"}


# -- statistics ---------------------------------------------------------------------------------
def stats(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "n": len(values),
    }


def ratio_stats(numerators: Sequence[float], denominators: Sequence[float]) -> dict[str, float] | None:
    """Ratio of the medians, and the range of the paired ratios (same repetition) when paired."""
    if not numerators or not denominators:
        return None
    median = statistics.median(numerators) / statistics.median(denominators)
    if len(numerators) == len(denominators):
        pairs = [n / d for n, d in zip(numerators, denominators, strict=True) if d]
        return {"median": median, "min": min(pairs), "max": max(pairs), "paired": True}
    return {"median": median, "min": median, "max": median, "paired": False}


# -- 1. traffic per DAG run ----------------------------------------------------------------------
def bench_traffic(airflow: Any, dag_runs: int, log: Callable[[str], None]) -> dict[str, Any]:
    from bench.receivers import Traffic, bench_receiver

    token = "bench-token-" + secrets.token_hex(12)
    samples: dict[str, dict[str, list[float]]] = {k: {} for k in ("disabled", "http", "alation")}
    by_type: dict[str, dict[str, int]] = {}
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tls, bench_receiver(token, tls) as fake:
        for rep in range(dag_runs):
            for kind in ("disabled", "http", "alation"):
                airflow.prepare_tables()
                fake.reset()
                env = airflow.env(kind, fake.url, token, str(fake.cert_path))
                run = airflow.run("bench_twenty_sql", kind, env)
                time.sleep(0.2)
                traffic = Traffic.of(fake)
                log(
                    f"  traffic {rep + 1}/{dag_runs} {kind}: ok={run.ok} {traffic.requests} requests, "
                    f"{traffic.wire_bytes:,} B, run {run.run_wall:.1f}s, slots {run.slot_seconds:.2f}s"
                )
                if not run.ok:
                    problems.append(f"{kind} run {rep + 1} failed:\n{run.output[-3000:]}")
                into = samples[kind]
                for key, value in (
                    ("requests", traffic.requests),
                    ("wire_bytes", traffic.wire_bytes),
                    ("body_bytes", traffic.body_bytes),
                    ("run_wall", run.run_wall),
                    ("slot_seconds", run.slot_seconds),
                    ("tasks", len(run.tasks)),
                ):
                    into.setdefault(key, []).append(float(value))
                by_type[kind] = traffic.by_type
                if kind == "alation":
                    bad = [
                        e["job"]["name"]
                        for e in fake.events
                        if e["eventType"] != "COMPLETE" or len(e["inputs"]) != 1 or len(e["outputs"]) != 1
                    ]
                    if traffic.requests != 20 or bad:
                        problems.append(
                            f"AlationTransport sent {traffic.requests} events (expected 20): {bad}"
                        )
    return {"samples": samples, "by_type": by_type, "problems": problems}


# -- 2. emit() cost ------------------------------------------------------------------------------
def bench_emit(repeat: int, events: int, log: Callable[[str], None]) -> dict[str, Any]:
    from bench.emit_cost import run_once

    reps: list[dict[str, dict[str, float]]] = []
    for rep in range(repeat):
        result = run_once(events=events, cold=max(20, events // 6), dropped=max(500, events * 5))
        reps.append(result)
        log(
            f"  emit {rep + 1}/{repeat}: sent alation {result['sent/alation']['median'] * 1e3:.2f} ms, "
            f"http {result['sent/http']['median'] * 1e3:.2f} ms"
        )
    measures = [k for k in reps[0] if k != "check"]
    samples = {m: {q: [r[m][q] for r in reps] for q in ("median", "p99")} for m in measures}
    return {"samples": samples, "checks": [r["check"] for r in reps], "events": events}


# -- 3. added task time ----------------------------------------------------------------------------
def bench_task_time(airflow: Any, tasks: int, log: Callable[[str], None]) -> dict[str, Any]:
    from airflow_provider_alation.testing.fake_alation import make_self_signed_cert
    from bench.receivers import HangingEndpoint, bench_receiver, refused_endpoint

    token = "bench-token-" + secrets.token_hex(12)
    samples: dict[str, list[float]] = {}
    notes: dict[str, list[str]] = {}
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        cert, _ = make_self_signed_cert(Path(tmp) / "ca")

        def one(name: str, kind: str, url: str | None, ca_cert: str | None) -> None:
            airflow.prepare_tables()
            env = airflow.env(kind, url, token, ca_cert)
            env["BENCH_TASK_TIME_TASKS"] = str(tasks)
            run = airflow.run("bench_task_time", kind, env, stop_after_run=True)
            values = [t.occupied for t in run.tasks.values() if t.occupied is not None]
            samples[name] = values
            notes[name] = sorted(
                {
                    re.sub(r"(pid|id) `[^`]+`", r"\1 `...`", line.split("]", 1)[1].strip())[:150]
                    for line in run.output.splitlines()
                    if "[warning" in line
                    and any(k in line for k in ("expired", "Failed to emit", "no answer", "not delivered"))
                }
            )[:3]
            log(
                f"  task time {name}: ok={run.ok} "
                + ", ".join(f"{v:.2f}s" for v in values)
                + f" (dags test {run.wall:.0f}s)"
            )
            if not run.ok or len(values) != tasks:
                problems.append(f"{name}: ok={run.ok}, {len(values)} task timings:\n{run.output[-3000:]}")

        one("disabled", "disabled", None, None)
        with bench_receiver(token, Path(tmp) / "tls") as fake:
            for kind in ("http", "alation"):
                one(f"healthy/{kind}", kind, fake.url, str(fake.cert_path))
        for kind in ("http", "alation"):
            with HangingEndpoint() as hanging:
                one(f"hang/{kind}", kind, hanging.url, str(cert))
        for kind in ("http", "alation"):
            with refused_endpoint() as url:
                one(f"refused/{kind}", kind, url, str(cert))
    return {"samples": samples, "notes": notes, "problems": problems, "tasks": tasks}


# -- 4. resolver ---------------------------------------------------------------------------------
def bench_resolver(repeat: int) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(BENCH / "resolver.py"), "--repeat", str(repeat), "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(result.stdout)


# -- machine -------------------------------------------------------------------------------------
def machine() -> dict[str, str]:
    info = {"python": platform.python_version(), "kernel": platform.release()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Model name", "CPU(s)", "Hypervisor vendor"):
                info[key.strip()] = value.strip()
    except OSError:
        pass
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        info["memory"] = f"{int(meminfo.readline().split()[1]) / 1024 / 1024:.0f} GiB"
    for package in (
        "apache-airflow",
        "apache-airflow-providers-openlineage",
        "openlineage-python",
        "apache-airflow-providers-postgres",
        "requests",
        "urllib3",
        "airflow-provider-alation",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            info[package] = metadata.version(package)
    try:
        from tests.support.postgres import _bin_dir

        out = subprocess.run([str(_bin_dir() / "postgres"), "--version"], capture_output=True, text=True)
        found = re.search(r"\(PostgreSQL\) (\S+)", out.stdout)
        info["postgresql"] = found.group(1) if found else out.stdout.strip()
    except (OSError, RuntimeError):
        pass
    return info


# -- the table -----------------------------------------------------------------------------------
def cell(values: Sequence[float] | None, scale: float = 1.0, digits: int = 2, spread: bool = True) -> str:
    s = stats(values or [])
    if s is None:
        return "-"
    fmt = f"{{:,.{digits}f}}"
    median = fmt.format(s["median"] * scale)
    if not spread or s["min"] == s["max"]:
        return median
    return f"{median} ({fmt.format(s['min'] * scale)}-{fmt.format(s['max'] * scale)})"


def ratio_cell(r: dict[str, float] | None, digits: int = 2) -> str:
    if r is None:
        return "-"
    fmt = f"{{:.{digits}f}}"
    text = f"x{fmt.format(r['median'])}"
    if r["paired"] and r["min"] != r["max"]:
        text += f" ({fmt.format(r['min'])}-{fmt.format(r['max'])})"
    return text


def overhead_cell(r: dict[str, float] | None) -> str:
    """A ratio as the overhead in %: (AlationTransport - stock) / stock."""
    if r is None:
        return "-"
    text = f"{(r['median'] - 1) * 100:+.1f}%"
    if r["paired"] and r["min"] != r["max"]:
        text += f" ({(r['min'] - 1) * 100:+.1f} to {(r['max'] - 1) * 100:+.1f})"
    return text


def added_cell(values: Sequence[float], base: Sequence[float]) -> str:
    if not values or not base:
        return "-"
    added = statistics.median(values) - statistics.median(base)
    return f"+{added:.2f} (x{statistics.median(values) / statistics.median(base):.1f})"


def build_rows(results: dict[str, Any]) -> list[tuple[str, ...] | str]:
    rows: list[tuple[str, ...] | str] = []
    if "traffic" in results:
        t = results["traffic"]["samples"]
        runs = len(t["http"].get("requests", []))
        rows.append(f"1. traffic per DAG run: bench_twenty_sql, 23 tasks ({runs} runs of each)")
        for key, label, unit, scale, digits in (
            ("requests", "requests to the endpoint", "", 1.0, 0),
            ("wire_bytes", "bytes sent (request line + headers + body)", "KB", 1e-3, 1),
            ("body_bytes", "event bytes (bodies)", "KB", 1e-3, 1),
        ):
            rows.append(
                (
                    label,
                    unit,
                    "",
                    cell(t["http"].get(key), scale, digits),
                    cell(t["alation"].get(key), scale, digits),
                    ratio_cell(ratio_stats(t["alation"].get(key, []), t["http"].get(key, []))),
                )
            )
        for key, label in (
            ("slot_seconds", "task-slot time of the 23 tasks (sum)"),
            ("run_wall", "`dags test` start to DAG run finished"),
        ):
            rows.append(
                (
                    label,
                    "s",
                    cell(t["disabled"].get(key)),
                    cell(t["http"].get(key)),
                    cell(t["alation"].get(key)),
                    ratio_cell(ratio_stats(t["alation"].get(key, []), t["http"].get(key, []))),
                )
            )
    if "emit" in results:
        e = results["emit"]["samples"]
        reps = len(e["sent/alation"]["median"])
        rows.append(f"2. emit() in-process ({reps} repetitions; values are the per-repetition median / p99)")
        for measure, label in (
            ("sent", "lineage-bearing COMPLETE, transport reused"),
            ("cold", "same, new transport per event (in this process)"),
            ("fork", "same, a forked child per event, as in Airflow"),
        ):
            if f"{measure}/alation" not in e:  # a result saved before this measure existed
                continue
            for q in ("median", "p99"):
                a, h = e[f"{measure}/alation"][q], e[f"{measure}/http"][q]
                rows.append(
                    (f"{label}: {q}", "ms", "", cell(h, 1e3), cell(a, 1e3), ratio_cell(ratio_stats(a, h)))
                )
        # The same event against a realistic round trip (the stand-in holds each answer): the last
        # column is the overhead, (AlationTransport - stock) / stock.
        delays = sorted({m.split("@")[1].split("/")[0] for m in e if "@" in m}, key=lambda d: float(d[:-2]))
        for delay in delays:
            for measure, label in (
                ("sent", "transport reused"),
                ("cold", "new transport per event"),
                ("fork", "a forked child per event, as in Airflow"),
            ):
                key = f"{measure}@{delay}"
                if f"{key}/alation" not in e:
                    continue
                for q in ("median", "p99"):
                    a, h = e[f"{key}/alation"][q], e[f"{key}/http"][q]
                    rows.append(
                        (
                            f"answer after {delay}, {label}: {q}",
                            "ms",
                            "",
                            cell(h, 1e3),
                            cell(a, 1e3),
                            overhead_cell(ratio_stats(a, h)),
                        )
                    )
        for measure, label in (
            ("start", "START (dropped by AlationTransport)"),
            ("complete_no_datasets", "COMPLETE without datasets (dropped)"),
            ("complete_dag", "DAG COMPLETE (dropped)"),
        ):
            a, h = e[f"{measure}/alation"]["median"], e[f"{measure}/http"]["median"]
            rows.append(
                (
                    f"{label}: median",
                    "us",
                    "",
                    cell(h, 1e6, 0),
                    cell(a, 1e6, 1),
                    ratio_cell(ratio_stats(a, h), 4),
                )
            )
    if "task" in results:
        s = results["task"]["samples"]
        rows.append(
            f"3. task time, start_date to end incl. OpenLineage listeners "
            f"(bench_task_time, {results['task']['tasks']} tasks per setting)"
        )
        base = s.get("disabled", [])
        for endpoint, label in (
            ("healthy", "endpoint healthy"),
            ("hang", "endpoint hangs (accepts TCP, never answers)"),
            ("refused", "endpoint refuses connections"),
        ):
            h, a = s.get(f"{endpoint}/http", []), s.get(f"{endpoint}/alation", [])
            rows.append((label, "s", cell(base), cell(h), cell(a), ratio_cell(ratio_stats(a, h))))
            rows.append(
                (
                    "  added vs OL disabled: difference of medians (ratio)",
                    "s",
                    "",
                    added_cell(h, base),
                    added_cell(a, base),
                    "",
                )
            )
    if "resolver" in results:
        r = results["resolver"]
        args = r["args"]
        rows.append(
            f"4. resolver, AlationTransport only ({args['rules']:,} rules, {args['sources']:,} sources, "
            f"{args['repeat']} repetitions; last column: throughput per second)"
        )
        for name, row in r["results"].items():
            unit = row["unit"] + ("/namespace" if "resolve" in name else "/event" if "shape" in name else "")
            rows.append(
                (
                    name,
                    unit,
                    "",
                    "",
                    f"{row['median']:.2f} ({row['min']:.2f}-{row['max']:.2f})",
                    f"{row['per_second']:,.0f}/s",
                )
            )
    return rows


def machine_line(info: dict[str, Any], where: str = "", airflow_note: str = "") -> str:
    """The header line naming the machine and the versions measured."""
    return (
        f"[bold]AlationTransport vs the stock OpenLineage http transport{where}[/bold]: "
        f"{info.get('Model name', '?')}, {info.get('CPU(s)', '?')} CPUs, {info.get('memory', '?')}, "
        f"Python {info['python']}, Airflow {info.get('apache-airflow', '?')}{airflow_note}, "
        f"apache-airflow-providers-openlineage {info.get('apache-airflow-providers-openlineage', '?')}, "
        f"openlineage-python {info.get('openlineage-python', '?')}, PostgreSQL {info.get('postgresql', '?')}"
    )


def print_rows(rows: list[Any], console: Console, disabled: bool = True) -> None:
    """``rows`` as rich tables: a string starts a new table (its title), a tuple is a row of
    measure, unit, [OL disabled,] stock, Alation, ratio."""
    table: Table | None = None
    for row in rows:
        if isinstance(row, str):
            if table is not None:
                console.print(table)
            table = Table(title=row, title_justify="left", title_style="bold")
            for name in ("measure", "unit"):
                table.add_column(name)
            columns = ("OL disabled",) if disabled else ()
            for name in (*columns, "stock http", "AlationTransport", "Alation ÷ stock"):
                table.add_column(name, justify="right")
        elif table is not None:
            table.add_row(*row)
    if table is not None:
        console.print(table)


def print_saved(path: Path, printer: Callable[[dict[str, Any], Console], None]) -> None:
    """``--load``: the tables of a saved ``--json`` result (160 columns when not on a terminal)."""
    saved = json.loads(path.read_text())
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    printer(saved, console)
    console.print(f"total {saved['seconds']:.0f} s")


def print_table(results: dict[str, Any], console: Console) -> None:
    console.print(machine_line(results["machine"]))
    print_rows(build_rows(results), console)
    console.print(
        "cells: median (min-max) over repetitions; ratios: of the medians (min-max of the ratios "
        "of the same repetition, where paired)"
    )
    for section in ("traffic", "task"):
        for problem in results.get(section, {}).get("problems", []):
            console.print(f"[red]problem ({section}):[/red] {problem}")
    if "traffic" in results:
        for kind, types in results["traffic"]["by_type"].items():
            if types:
                console.print(f"events received per DAG run, {KIND_LABEL[kind]}: {types}")
    if "task" in results:
        for name, lines in results["task"]["notes"].items():
            for line in lines:
                console.print(f"[dim]{name}: {line}[/dim]", highlight=False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of lines 2-4 (default 3)")
    parser.add_argument("--dag-runs", type=int, default=2, help="DAG runs per transport for line 1")
    parser.add_argument("--events", type=int, default=300, help="sent events per repetition, line 2")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of both emit()s")
    parser.add_argument(
        "--load", metavar="FILE", help="print the table of a saved --json result, measure nothing"
    )
    args = parser.parse_args()
    if args.load:
        print_saved(Path(args.load), print_table)
        return
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown --only sections: {sorted(unknown)}")

    console = Console(stderr=args.json)
    if not console.is_terminal:
        console = Console(stderr=args.json, width=160)
    log = console.log if not args.json else (lambda message: print(message, file=sys.stderr))
    started = time.perf_counter()
    results: dict[str, Any] = {"machine": machine(), "args": vars(args)}
    if "emit" in only:
        log("2. emit() cost")
        results["emit"] = bench_emit(args.repeat, args.events, log)
    if "resolver" in only:
        log("4. resolver")
        results["resolver"] = bench_resolver(args.repeat)
    if "traffic" in only or "task" in only:
        from bench.airflow_runs import AirflowBench

        log("PostgreSQL + Airflow home (db migrate) + a warm-up run of each kind")
        with AirflowBench() as airflow:
            from bench.receivers import bench_receiver

            with tempfile.TemporaryDirectory() as tls, bench_receiver("warm-up-token", tls) as fake:
                airflow.warm_up(fake.url, "warm-up-token", str(fake.cert_path))
            if "traffic" in only:
                log("1. traffic per DAG run")
                results["traffic"] = bench_traffic(airflow, args.dag_runs, log)
            if "task" in only:
                log("3. added task time")
                results["task"] = bench_task_time(airflow, args.repeat, log)
    results["seconds"] = time.perf_counter() - started
    if args.json:
        print(json.dumps(results, indent=1, default=str))
    else:
        print_table(results, console)
        console.print(f"total {results['seconds']:.0f} s")
    if args.profile:
        from bench.emit_cost import breakdown, profile

        out = sys.stderr if args.json else sys.stdout
        print("\nAlationTransport.emit step by step vs the stock transport (median us):", file=out)
        for step, micros in breakdown().items():
            print(f"{micros:9.1f} us  {step}", file=out)
        print(profile(), file=out)


if __name__ == "__main__":
    main()
