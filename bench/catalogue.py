"""What a bigger Alation catalogue costs: the forked emitter per event, and a discovery refresh.

    .venv/bin/python bench/catalogue.py                       # 500 / 5,000 / 50,000 sources, 10,000 rules
    .venv/bin/python bench/catalogue.py --sources 500,50000 --events 40 --json > r.json
    .venv/bin/python bench/catalogue.py --load r.json         # the table of a saved result
    .venv/bin/python bench/catalogue.py --before 9c88059      # + the same at another commit (a worktree)

Per catalogue size, in a fresh worker process (``--worker``) that talks to the HTTPS stand-in for
Alation (bench/receivers.py's ``ReceiverProcess``, in its own process, serving that many synthetic
data sources over both APIs, 1,000 per page):

1. **Discovery refresh**, in its own fresh process: ``load_index`` with ``refresh=True`` and a
   generous budget: wall time, requests, the process's peak resident memory above what it had
   after its imports (``ru_maxrss``), and the size of the cache file it leaves.
2. **The task process** (what the plugin does before the OpenLineage provider forks): a new
   ``AlationTransport`` and ``prepare()`` (read and validate the settings, compile the 10,000
   ``namespace_map`` rules, build the pipeline), nothing compiled before (``_COMPILED`` cleared).
3. **The forked emitter**: as the provider does, the task process forks a child per event and
   the child calls ``emit()`` once and exits. Each event is a COMPLETE with one input and one
   output whose namespaces are catalogued ones (exact, Redshift and Snowflake fuzzy matches) or
   ones a rule rewrites, a new pair each time. Measured in the child: ``emit()`` in total, and
   ``emit()`` minus the POST (``Outcome.elapsed``: connecting, TLS, request, answer), which is
   what the emitter adds of its own: the write-ahead, reading the index, resolving, shaping and
   settling. The same with discovery off and no rules is the floor (``baseline``), and the stock
   ``HttpTransport`` in a forked child is the reference.

``--before REV`` runs the same workers against the package at ``REV`` (a temporary ``git
worktree``), so the table shows the change. Nothing is left running or written outside temporary
directories.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-catalogue-token-0123456789"


# -- the worker (runs against whichever checkout is first on sys.path) -----------------------------
def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _config(url: str, cert: str, tmp: Path, rules: dict[str, str], discovery: bool) -> dict[str, Any]:
    return {
        "url": url,
        "token": TOKEN,
        "verify": cert,
        "dags": {"include": ["*"]},
        "spool_dir": str(tmp / "spool"),
        "cache_dir": str(tmp / "cache"),
        "discover_datasources": discovery,
        "discovery_ttl": 86400,
        "namespace_map": rules,
    }


def refresh_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Part 1, in a process of its own (``--refresh-worker``)."""
    from airflow_provider_alation.alation.discovery import load_index
    from airflow_provider_alation.settings import build_settings

    settings = build_settings(_config(spec["url"], spec["cert"], Path(spec["tmp"]), {}, True), inline=True)
    before = _rss_mib()
    started = time.perf_counter()
    load = load_index(settings, 120.0, token=lambda: TOKEN, refresh=True)
    took = time.perf_counter() - started
    rss = _rss_mib() - before
    tracemalloc.start()  # a second refresh, traced: the peak of Python's allocations during it
    traced = load_index(settings, 120.0, token=lambda: TOKEN, refresh=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    files = [p for p in Path(settings.cache_dir).iterdir() if p.name.startswith("datasources-")]
    cache = [p for p in files if p.suffix in (".sqlite", ".json")]
    return {
        "state": load.state,
        "detail": load.detail,
        "count": len(load.index) if load.index is not None else 0,
        "traced_count": len(traced.index) if traced.index is not None else 0,
        "seconds": took,
        "requests": load.requests,
        "peak_rss_mib": rss,
        "peak_traced_mib": peak / 2**20,
        "file_mib": sum(p.stat().st_size for p in cache) / 2**20,
    }


def _event(namespaces: list[str], rng: random.Random) -> Any:
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState

    source, target = rng.sample(namespaces, 2)
    return RunEvent(
        eventType=RunState.COMPLETE,
        eventTime="2026-11-30T10:00:00.000000+00:00",
        run=Run(runId=str(uuid.uuid4())),
        job=Job(namespace="bench-airflow", name="bench_dag.copy"),
        producer="https://github.com/apache/airflow/tree/providers-openlineage/2.20.3",
        inputs=[InputDataset(namespace=source, name=f"public.src_{rng.randrange(1000)}")],
        outputs=[OutputDataset(namespace=target, name=f"public.dst_{rng.randrange(1000)}")],
    )


def _forked(transport: Any, event: Any) -> dict[str, Any]:
    """``transport.emit(event)`` in a forked child, as the OpenLineage provider does; its timings."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: emit, report, exit without running the parent's clean-up
        os.close(read)
        code = 0
        try:
            started = time.perf_counter()
            outcome = transport.emit(event)
            took = time.perf_counter() - started
            network = getattr(outcome, "elapsed", None)
            kind = getattr(outcome, "kind", None)
            if not isinstance(network, float):  # the stock transport returns its Response (or None)
                network = None
                kind = "sent" if getattr(outcome, "ok", True) else "failed"
            os.write(write, json.dumps({"total": took, "network": network, "kind": kind}).encode())
        except BaseException:  # noqa: BLE001 - reported as a failed sample
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    if status != 0 or not chunks:
        raise RuntimeError(f"the forked emitter failed (status {status})")
    return json.loads(b"".join(chunks))


def emit_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Parts 2 and 3 (``--worker``)."""
    import logging
    import re

    from openlineage.client.transport.http import HttpConfig, HttpTransport

    from airflow_provider_alation.integration import task_context
    from airflow_provider_alation.lineage import namespaces as namespace_module
    from airflow_provider_alation.testing.catalog import synthetic_namespaces
    from airflow_provider_alation.transport import AlationConfig, AlationTransport
    from bench.resolver import make_rules

    logging.getLogger("airflow_provider_alation").setLevel(logging.ERROR)
    tmp = Path(spec["tmp"])
    rules = make_rules(spec["rules"])
    rng = random.Random(5)
    exact = int(spec["rules"] * 0.6)
    ruled = [f"postgres://bouncer-{n}.internal:6432" for n in range(0, int(spec["rules"] * 0.3), 7)]
    ruled += [
        f"postgres://10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}:6{n % 1000:03d}"
        for n in range(0, exact, 8)
    ]
    catalogued = synthetic_namespaces(spec["sources"])
    namespaces = catalogued + ruled[: max(1, len(catalogued) // 3)]
    task_context.set_current("bench_dag", "copy", ())  # as the plugin does before the fork
    result: dict[str, Any] = {}

    def transport_for(discovery: bool, with_rules: bool) -> tuple[Any, float]:
        namespace_module._COMPILED.clear()  # a new task process: nothing compiled yet
        re.purge()
        config = _config(spec["url"], spec["cert"], tmp, rules if with_rules else {}, discovery)
        started = time.perf_counter()
        transport = AlationTransport(AlationConfig.from_dict(config))
        transport.prepare()
        return transport, time.perf_counter() - started

    def samples(transport: Any) -> list[dict[str, Any]]:
        out = []
        for _ in range(spec["events"]):
            sample = _forked(transport, _event(namespaces, rng))
            if sample["kind"] != "sent":
                raise RuntimeError(f"an event was not sent: {sample}")
            out.append(sample)
        return out

    prepares = []
    for _ in range(3):
        transport, took = transport_for(True, True)
        prepares.append(took)
    result["prepare"] = prepares
    result["alation"] = samples(transport)
    baseline, _ = transport_for(False, False)
    result["baseline"] = samples(baseline)
    stock = HttpTransport(
        HttpConfig.from_dict(
            {
                "type": "http",
                "url": spec["url"],
                "endpoint": "open_lineage_event/",
                "auth": {"type": "api_key", "apiKey": TOKEN},
                "sslContext": {"caCertPath": spec["cert"]},
            }
        )
    )
    result["stock"] = samples(stock)
    return result


# -- the driver --------------------------------------------------------------------------------------
@contextlib.contextmanager
def stand_in(sources: int, tmp: Path) -> Iterator[dict[str, str]]:
    """The HTTPS stand-in for Alation with ``sources`` synthetic data sources, in its own process."""
    sys.path.insert(0, str(REPO))
    from airflow_provider_alation.testing.catalog import synthetic_datasources
    from bench.receivers import ReceiverProcess

    catalogue = tmp / "datasources.json"
    catalogue.write_text(json.dumps(synthetic_datasources(sources)))
    with ReceiverProcess(TOKEN, tmp / "tls", datasources=catalogue) as receiver:
        yield {"url": receiver.url, "cert": str(receiver.cert_path)}


def run_worker(root: Path, flag: str, spec: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(REPO)])}
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "catalogue.py"), flag, json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{flag} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(root: Path, sizes: list[int], rules: int, events: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-catalogue-") as name:
            tmp = Path(name)
            with stand_in(size, tmp) as server:
                spec = {"url": server["url"], "cert": server["cert"], "tmp": str(tmp), "sources": size}
                refresh = run_worker(root, "--refresh-worker", spec)
                if refresh["count"] != size:
                    raise RuntimeError(
                        f"the refresh read {refresh['count']} of {size} data sources: {refresh}"
                    )
                emits = run_worker(root, "--worker", {**spec, "rules": rules, "events": events})
        out[str(size)] = {"refresh": refresh, **emits}
        print(f"  {size:,} sources done", file=sys.stderr)
    return out


@contextlib.contextmanager
def worktree(rev: str) -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="bench-before-"))
    shutil.rmtree(where)
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(where), rev],
        check=True,
        capture_output=True,
    )
    try:
        yield where
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(where)], capture_output=True
        )


# -- the table ----------------------------------------------------------------------------------------
def _cell(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    ordered = sorted(v * scale for v in values)
    return f"{statistics.median(ordered):,.{digits}f} ({ordered[0]:,.{digits}f}-{ordered[-1]:,.{digits}f})"


def _own(samples: list[dict[str, Any]]) -> list[float]:
    return [s["total"] - (s["network"] or 0.0) for s in samples]


def render(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    for label, data in results["runs"].items():
        sizes = list(data)
        table = Table(
            title=f"{label}: {results['rules']:,} rules, {results['events']} forked emitters per size"
        )
        table.add_column("measure")
        table.add_column("unit")
        for size in sizes:
            table.add_column(f"{int(size):,} sources", justify="right")

        def row(name: str, unit: str, cells: list[str], table: Table = table) -> None:
            table.add_row(name, unit, *cells)

        ref = [data[s]["refresh"] for s in sizes]
        row("discovery refresh (fresh process)", "s", [f"{r['seconds']:.2f}" for r in ref])
        row("  requests", "", [str(r["requests"]) for r in ref])
        row("  peak of Python allocations (tracemalloc)", "MiB", [f"{r['peak_traced_mib']:.1f}" for r in ref])
        row("  resident memory added (ru_maxrss)", "MiB", [f"{r['peak_rss_mib']:.1f}" for r in ref])
        row("  cache file", "MiB", [f"{r['file_mib']:.1f}" for r in ref])
        row(
            "task process: new transport + prepare()",
            "ms",
            [_cell(data[s]["prepare"], 1e3, 1) for s in sizes],
        )
        row(
            "forked emitter: emit() total",
            "ms",
            [_cell([x["total"] for x in data[s]["alation"]], 1e3) for s in sizes],
        )
        row(
            "  emit() minus the POST (the emitter's own work)",
            "ms",
            [_cell(_own(data[s]["alation"]), 1e3) for s in sizes],
        )
        row(
            "baseline (no discovery, no rules): emit() total",
            "ms",
            [_cell([x["total"] for x in data[s]["baseline"]], 1e3) for s in sizes],
        )
        row("  emit() minus the POST", "ms", [_cell(_own(data[s]["baseline"]), 1e3) for s in sizes])
        row(
            "stock HttpTransport: emit() total",
            "ms",
            [_cell([x["total"] for x in data[s]["stock"]], 1e3) for s in sizes],
        )
        added = [
            statistics.median(_own(data[s]["alation"])) - statistics.median(_own(data[s]["baseline"]))
            for s in sizes
        ]
        row("added by the catalogue (own work, medians)", "ms", [f"{value * 1e3:+.2f}" for value in added])
        console.print(table)
    console.print("cells: median (min-max) over the samples")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sources", default="500,5000,50000", help="comma-separated catalogue sizes")
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=60, help="forked emitters per size and setting")
    parser.add_argument("--before", metavar="REV", help="also measure the package at this git revision")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--load", metavar="FILE")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--refresh-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker or args.refresh_worker:
        run = emit_worker if args.worker else refresh_worker
        print(json.dumps(run(json.loads(args.worker or args.refresh_worker))))
        return
    if args.load:
        render(json.loads(Path(args.load).read_text()))
        return
    sizes = [int(size) for size in args.sources.split(",")]
    results: dict[str, Any] = {"rules": args.rules, "events": args.events, "runs": {}}
    started = time.monotonic()
    if args.before:
        with worktree(args.before) as root:
            results["runs"][f"before ({args.before})"] = measure(root, sizes, args.rules, args.events)
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    results["runs"][f"this checkout ({head.stdout.strip() or '?'})"] = measure(
        REPO, sizes, args.rules, args.events
    )
    results["seconds"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        render(results)


if __name__ == "__main__":
    main()
