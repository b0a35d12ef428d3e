"""Resolver throughput with 10,000 namespace_map rules and a 5,000-source discovered index.

    .venv/bin/python bench/resolver.py [--rules 10000] [--sources 5000] [--repeat 5] [--json]

Measures, each repeated ``--repeat`` times (min / median / max shown):
- building the rules and the index (a process does this once per settings / cache file);
- loading the index from the disk cache (what each short-lived emitting process pays once);
- resolving namespaces *uncached* (every namespace walks the rules, normalisers and index), a mix of
  exact, host, expression, discovered (exact and fuzzy) and unmatched namespaces;
- resolving them again from the per-process memo (what the second event with the same dataset pays);
- shaping a typical two-dataset event with the resolver (rewrite + facets + size check).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.table import Table

from airflow_provider_alation.alation.discovery import _MEMO, DiscoveryCache
from airflow_provider_alation.lineage.datasources import DataSource, DataSourceIndex
from airflow_provider_alation.lineage.namespaces import _COMPILED
from airflow_provider_alation.lineage.resolution import NamespaceResolver
from airflow_provider_alation.lineage.shaping import shape_event
from airflow_provider_alation.settings import build_settings
from airflow_provider_alation.testing.catalog import synthetic_datasources, synthetic_namespaces

SCHEMES = ("postgres", "mysql", "mssql", "oracle", "trino", "teradata", "redshift", "db2")


def make_rules(count: int) -> dict[str, str]:
    """60 % exact namespaces, 30 % host aliases, 10 % expressions (a few without a literal scheme)."""
    rules: dict[str, str] = {}
    exact, hosts = int(count * 0.6), int(count * 0.3)
    for n in range(exact):
        scheme = SCHEMES[n % len(SCHEMES)]
        rules[f"{scheme}://10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}:6{n % 1000:03d}"] = (
            f"{scheme}://exact-{n}.example.com:5432"
        )
    for n in range(hosts):
        rules[f"bouncer-{n}.internal:6432"] = f"real-{n}.example.com:5432"
    for n in range(count - exact - hosts):
        if n % 50 == 0:
            rules[f"re:(tunnel-{n})\\.corp:(\\d+)$"] = "postgres://\\1.example.com:\\2"
        else:
            scheme = SCHEMES[n % len(SCHEMES)]
            rules[f"re:^{scheme}://rx-{n}-([a-z0-9]+)\\.internal:(\\d+)$"] = f"{scheme}://\\1.example.com:\\2"
    return rules


def make_namespaces(count: int, rules: int, sources: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    exact, hosts = int(rules * 0.6), int(rules * 0.3)
    discovered = synthetic_namespaces(sources)
    out = []
    for i in range(count):
        kind = i % 10
        if kind < 3:
            n = rng.randrange(exact)
            scheme = SCHEMES[n % len(SCHEMES)]
            out.append(f"{scheme}://10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}:6{n % 1000:03d}")
        elif kind < 5:
            out.append(f"postgres://bouncer-{rng.randrange(hosts)}.internal:6432")
        elif kind == 5:
            n = rng.randrange(rules - exact - hosts)
            if n % 50 == 0:
                n += 1
            out.append(f"{SCHEMES[n % len(SCHEMES)]}://rx-{n}-db{i}.internal:5432")
        elif kind < 9:
            out.append(discovered[rng.randrange(sources)])  # exact, Redshift and Snowflake fuzzy
        else:
            out.append(f"postgres://unknown-{i}.example.net:5432")
    return out


def timed(repeat: int, run: Callable[[], object]) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--sources", type=int, default=5_000)
    parser.add_argument("--namespaces", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    rules = make_rules(args.rules)
    items = synthetic_datasources(args.sources)
    namespaces = make_namespaces(args.namespaces, args.rules, args.sources)
    sources = [DataSource.from_api(item, api) for api in ("v1", "v2") for item in items[api]]

    results: dict[str, dict[str, float]] = {}

    def record(name: str, samples: list[float], per: int = 1, unit: str = "ms") -> None:
        scale = 1e3 if unit == "ms" else 1e6
        values = sorted(s / per * scale for s in samples)
        results[name] = {
            "unit": unit,
            "min": values[0],
            "median": statistics.median(values),
            "max": values[-1],
            "per_second": per / statistics.median(samples),
        }

    def new_process_rules() -> None:
        _COMPILED.clear()  # as in a new process: nothing compiled yet
        re.purge()
        settings = build_settings(
            {"url": "https://bench.alationcloud.com", "token": "t", "namespace_map": rules}, inline=True
        )
        NamespaceResolver.from_map(settings.namespace_map)

    record(f"validate + build {args.rules:,} rules", timed(args.repeat, new_process_rules))
    record(
        f"parse {args.sources:,} URIs + build index",
        timed(
            args.repeat,
            lambda: DataSourceIndex.build(
                [DataSource.from_api(item, api) for api in ("v1", "v2") for item in items[api]]
            ),
        ),
    )
    with tempfile.TemporaryDirectory() as tmp:
        cache = DiscoveryCache(tmp, "https://bench.alationcloud.com")
        cache.write(sources, time.time())

        def load_from_disk() -> None:
            _MEMO.clear()  # as in a new process
            cache.read()

        record("load index from disk cache", timed(args.repeat, load_from_disk))

    index = DataSourceIndex.build(sources)
    resolver = NamespaceResolver.from_map(rules, index)

    def cold() -> None:
        for namespace in namespaces:
            resolver.resolve_uncached(namespace)

    record("resolve, uncached", timed(args.repeat, cold), per=len(namespaces), unit="us")
    for namespace in namespaces:
        resolver.resolve(namespace)

    def warm() -> None:
        for namespace in namespaces:
            resolver.resolve(namespace)

    record("resolve, memoised", timed(args.repeat, warm), per=len(namespaces), unit="us")

    rule_counts: dict[str, int] = {}
    for namespace in namespaces:
        rule = resolver.resolve(namespace).rule
        rule_counts[rule] = rule_counts.get(rule, 0) + 1

    event = {
        "eventType": "COMPLETE",
        "eventTime": "2026-01-01T00:00:00Z",
        "run": {"runId": "01890000-0000-7000-8000-000000000000", "facets": {}},
        "job": {"namespace": "airflow", "name": "dag.task", "facets": {}},
        "inputs": [{"namespace": namespaces[0], "name": "db.s.a", "facets": {}}],
        "outputs": [{"namespace": namespaces[7], "name": "db.s.b", "facets": {}}],
        "producer": "bench",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    }
    fresh = NamespaceResolver.from_map(rules, index)
    shape_runs = 2_000

    def shape() -> None:
        for _ in range(shape_runs):
            shape_event(event, fresh.resolve, 1_048_576)

    record("shape a 2-dataset event", timed(args.repeat, shape), per=shape_runs, unit="us")

    if args.json:
        print(json.dumps({"args": vars(args), "rules_hit": rule_counts, "results": results}, indent=2))
        return
    console = Console()
    console.print(
        f"{args.rules:,} rules, {len(sources):,} data sources, {len(namespaces):,} namespaces "
        f"(rules hit: {', '.join(f'{k} {v:,}' for k, v in sorted(rule_counts.items()))}); "
        f"{args.repeat} repetitions"
    )
    table = Table()
    for column in ("measure", "min", "median", "max", "unit", "per second (median)"):
        table.add_column(column, justify="right" if column != "measure" else "left")
    for name, row in results.items():
        table.add_row(
            name,
            f"{row['min']:.2f}",
            f"{row['median']:.2f}",
            f"{row['max']:.2f}",
            row["unit"] + ("/namespace" if "resolve" in name else "/event" if "shape" in name else ""),
            f"{row['per_second']:,.0f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
