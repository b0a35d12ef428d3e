"""Load on a standalone relay: N concurrent senders, Alation answering 200, then 503, then 200.

    .venv/bin/python bench/relay_load.py                       # 8 senders, 60 s: 20 s up, 20 s down, 20 s up
    .venv/bin/python bench/relay_load.py --senders 4 --phases 200:10,503:30,200:10 --workers 2
    .venv/bin/python bench/relay_load.py --json > r.json       # every figure as JSON

What runs: the HTTPS stand-in for Alation in this process (its outage switch answers every event
503 during a ``503`` phase), ``airflow-alation relay`` in a subprocess with ``--workers`` workers
and one sender configured, and ``--senders`` sender processes, each posting real lineage events
(``bench/data/events.json``, a fresh runId each) back to back over one keep-alive session
(``requests``), as an OpenLineage ``http`` transport does. A sender that gets 503 (the relay's
outbox is full) waits the ``Retry-After`` it is given and sends the same event again; any other
failure is counted and the event sent again too.

Measured: acknowledged events/s over the load (2xx answers), the p50/p99/max time from sending an
event to its 2xx (the attempt that was acknowledged), the relay's 503s, and the resident memory of
the relay's processes (all of them, sampled every 0.5 s: at the start of the load, its peak, and after
the outbox drained). After the load the stand-in answers 200 and the bench waits until the outbox is
empty, then counts by runId at the stand-in: lost = acknowledged but never received, duplicated =
received more than once. Exit status 1 when anything was lost or duplicated.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import secrets
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from airflow_provider_alation.testing.fake_alation import FakeAlation  # noqa: E402
from tests.support.relay_process import (  # noqa: E402
    RelayProcess,
    Sender,
    outbox_counts,
    wait_outbox_empty,
)

EVENTS = REPO / "bench" / "data" / "events.json"
RUN_ID_MARK = "00000000-0000-4000-8000-00000000feed"


@dataclass
class SenderResult:
    acked: list[str] = field(default_factory=list)  # runIds answered 2xx
    latencies: list[float] = field(default_factory=list)  # seconds, send to 2xx, per acknowledged event
    acked_at: list[float] = field(default_factory=list)  # wall clock of each 2xx
    relay_503: int = 0  # outbox full: waited Retry-After and sent again
    other_errors: Counter[str] = field(default_factory=Counter)  # status or exception name


def event_template() -> str:
    """The recorded lineage-bearing COMPLETE as JSON, its runId a placeholder."""
    event = json.loads(EVENTS.read_text())["complete_lineage"]
    event["run"]["runId"] = RUN_ID_MARK
    return json.dumps(event)


def run_sender(url: str, token: str, start_at: float, stop_at: float, queue: Any) -> None:
    """One sender process: post events back to back until ``stop_at`` (wall clock)."""
    import requests

    template = event_template()
    result = SenderResult()
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    time.sleep(max(0.0, start_at - time.time()))
    run_id = str(uuid.uuid4())
    while time.time() < stop_at:
        body = template.replace(RUN_ID_MARK, run_id)
        sent = time.monotonic()
        try:
            answer = session.post(url, data=body, headers=headers, timeout=30)
        except requests.RequestException as exc:
            result.other_errors[type(exc).__name__] += 1
            time.sleep(0.5)
            continue  # the same event again
        answer.content  # noqa: B018 - read it, so the connection is reused
        if 200 <= answer.status_code < 300:
            now = time.time()
            result.latencies.append(time.monotonic() - sent)
            result.acked.append(run_id)
            result.acked_at.append(now)
            run_id = str(uuid.uuid4())
        elif answer.status_code == 503:
            result.relay_503 += 1
            try:
                wait = float(answer.headers.get("Retry-After", "1"))
            except ValueError:
                wait = 1.0
            time.sleep(min(max(wait, 0.05), 5.0))
        else:
            result.other_errors[str(answer.status_code)] += 1
            time.sleep(0.5)
    queue.put(asdict(result))


class MemorySampler:
    """RSS of the relay's processes (the runner and its workers), every ``every`` seconds."""

    def __init__(self, relay: RelayProcess, every: float = 0.5) -> None:
        self.relay = relay
        self.every = every
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def rss(self) -> int:
        import psutil

        total = 0
        for pid in self.relay.pids():
            with contextlib.suppress(psutil.Error):
                total += psutil.Process(pid).memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append((time.time(), self.rss()))

    def start(self) -> MemorySampler:
        self.samples.append((time.time(), self.rss()))
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.samples.append((time.time(), self.rss()))


def parse_phases(text: str) -> list[tuple[int, float]]:
    phases = []
    for part in text.split(","):
        status, _, seconds = part.partition(":")
        if status not in ("200", "503") or not seconds:
            raise argparse.ArgumentTypeError(f"{part!r}: a phase is 200:SECONDS or 503:SECONDS")
        phases.append((int(status), float(seconds)))
    return phases


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    phases: list[tuple[int, float]] = args.phases or [
        (200, args.duration / 3),
        (503, args.duration / 3),
        (200, args.duration - 2 * (args.duration / 3)),
    ]
    load_seconds = sum(seconds for _, seconds in phases)
    alation_token = "bench-alation-" + secrets.token_hex(12)
    relay_token = "bench-relay-" + secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="alation-relay-load-") as tmp:
        root = Path(tmp)
        fake = FakeAlation(alation_token, tls_dir=root / "tls").start()
        sender = Sender(
            name="bench",
            token=relay_token,
            alation={
                "url": fake.url,
                "token": alation_token,
                "verify": str(fake.cert_path),
                "spool_dir": str(root / "spool"),
                "cache_dir": str(root / "cache"),
                "dags": {"include": ["*"]},
                # the recorded events' PostgreSQL (a throwaway port) as a catalogued host
                "namespace_map": {r"re:^postgres://127\.0\.0\.1:\d+$": "postgres://prod-db.example.com:5432"},
                **({"outbox_max_events": args.outbox_max_events} if args.outbox_max_events else {}),
            },
        )
        relay = RelayProcess(
            root / "relay", [sender], workers=args.workers, extra_config={"retry_after": args.retry_after}
        )
        try:
            relay.start()
            time.sleep(1.0)  # the workers import and bind
            sampler = MemorySampler(relay).start()
            context = multiprocessing.get_context("spawn")
            queue = context.Queue()
            start_at = time.time() + 3.0  # the sender processes start (spawn + imports) meanwhile
            stop_at = start_at + load_seconds
            processes = [
                context.Process(
                    target=run_sender, args=(relay.lineage_url, relay_token, start_at, stop_at, queue)
                )
                for _ in range(args.senders)
            ]
            for process in processes:
                process.start()
            time.sleep(max(0.0, start_at - time.time()))
            rss_at_start = sampler.rss()
            windows = []  # (status, from, to), wall clock
            began = start_at
            for status, seconds in phases:
                fake.lineage_down = status == 503
                windows.append((status, began, began + seconds))
                began += seconds
                time.sleep(max(0.0, began - time.time()))
            fake.lineage_down = False
            results = [queue.get(timeout=120) for _ in processes]
            for process in processes:
                process.join(30)
            load_end = time.time()
            left = wait_outbox_empty(sender.spool_dir, timeout=args.drain_timeout)
            drained = time.time() - load_end
            time.sleep(2.0)  # a late duplicate would arrive now
            sampler.stop()
            counts = outbox_counts(sender.spool_dir)
        finally:
            relay.stop()
            fake.lineage_down = False
            fake.stop()
        # The relay's own messages (warnings, errors, lifecycle), not uvicorn's access log.
        log_tail = "\n".join(
            line for line in relay.log_text().splitlines() if '"POST /api/v1/lineage HTTP/1.1"' not in line
        )[-6000:]

    acked = [run_id for result in results for run_id in result["acked"]]
    acks = [pair for result in results for pair in zip(result["acked_at"], result["latencies"], strict=True)]
    latencies = [latency for _, latency in acks]
    with fake._lock:
        received = [event["run"]["runId"] for event in fake.events]
        statuses = Counter(r.status for r in fake.requests if r.method == "POST" and r.path == fake.endpoint)
    received_set = set(received)
    positions: dict[str, list[int]] = {}
    for index, run_id in enumerate(received):
        positions.setdefault(run_id, []).append(index)
    duplicates = {run_id: where for run_id, where in positions.items() if len(where) > 1}
    acked_set = set(acked)
    rss = [value for _, value in sampler.samples]
    errors: Counter[str] = Counter()
    for result in results:
        errors.update(result["other_errors"])
    per_phase = []
    last_sample = sampler.samples[-1][0]
    for status, begin, end in [*windows, ("drain", load_end, last_sample)]:
        in_phase = [latency for at, latency in acks if begin <= at < end]
        sampled = [value for at, value in sampler.samples if begin <= at <= end] or [0]
        end = load_end + drained if status == "drain" else end
        per_phase.append(
            {
                "alation": status,
                "seconds": end - begin,
                "acked": len(in_phase),
                "acked_per_second": len(in_phase) / (end - begin) if end > begin else 0.0,
                "p50_ms": percentile(in_phase, 0.50) * 1000,
                "p99_ms": percentile(in_phase, 0.99) * 1000,
                "rss_peak_mb": max(sampled) / 2**20,
                "rss_end_mb": sampled[-1] / 2**20,
            }
        )
    report: dict[str, Any] = {
        "config": {
            "senders": args.senders,
            "workers": args.workers,
            "phases": [f"{status}:{seconds:g}" for status, seconds in phases],
            "outbox_max_events": args.outbox_max_events or 10_000,
            "retry_after": args.retry_after,
        },
        "phases": per_phase,
        "acked": len(acked),
        "acked_per_second": len(acked) / load_seconds,
        "ack_latency_ms": {
            "p50": percentile(latencies, 0.50) * 1000,
            "p99": percentile(latencies, 0.99) * 1000,
            "max": max(latencies, default=float("nan")) * 1000,
            "mean": statistics.fmean(latencies) * 1000 if latencies else float("nan"),
        },
        "relay_503": sum(r["relay_503"] for r in results),
        "sender_errors": dict(errors),
        "alation_posts": sum(statuses.values()),
        "alation_statuses": {str(k): v for k, v in sorted(statuses.items())},
        "received": len(received),
        "unique_received": len(received_set),
        "lost": len(acked_set - received_set),
        "duplicated": len(received) - len(received_set),
        # each duplicated runId: its positions in the order Alation received the events
        "duplicates": dict(list(duplicates.items())[:20]),
        "unexpected": len(received_set - acked_set),  # received, never acknowledged (sender retried)
        "drain_seconds": drained,
        "outbox_left": left if left["pending"] + left["claimed"] else counts,
        "relay_rss_mb": {
            "start": rss_at_start / 2**20,
            "peak": max(rss, default=0) / 2**20,
            "end": (rss[-1] if rss else 0) / 2**20,
        },
        # every 5 s from the start of the load: [seconds, MiB]
        "relay_rss_series": [
            [round(at - start_at, 1), round(value / 2**20, 1)]
            for index, (at, value) in enumerate(sampler.samples)
            if at >= start_at and index % 10 == 0
        ],
        "relay_log_tail": log_tail if args.json else "",
    }
    with contextlib.suppress(Exception):
        from bench.compare import machine

        report["machine"] = machine()
    return report


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    config = report["config"]
    table = Table(
        title=(
            f"relay load: {config['senders']} senders, relay --workers {config['workers']}, "
            f"Alation {' then '.join(config['phases'])} (status:seconds)"
        ),
        title_justify="left",
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    latency = report["ack_latency_ms"]
    rss = report["relay_rss_mb"]
    rows = [
        ("acknowledged events", f"{report['acked']:,}"),
        ("sustained acknowledged events/s", f"{report['acked_per_second']:,.0f}"),
        (
            "ack latency p50 / p99 / max",
            f"{latency['p50']:.1f} / {latency['p99']:.1f} / {latency['max']:.0f} ms",
        ),
        ("relay answered 503 (outbox full)", f"{report['relay_503']:,}"),
        ("sender errors", ", ".join(f"{k}: {v}" for k, v in report["sender_errors"].items()) or "0"),
        (
            "POSTs to Alation, by status",
            f"{report['alation_posts']:,} ("
            + ", ".join(f"{k}: {v:,}" for k, v in report["alation_statuses"].items())
            + ")",
        ),
        ("events received by Alation", f"{report['received']:,}"),
        ("outbox drained after the load in", f"{report['drain_seconds']:.1f} s"),
        ("outbox left (pending/claimed/dead)", "/".join(str(v) for v in report["outbox_left"].values())),
        ("lost (acknowledged, never received)", str(report["lost"])),
        ("duplicated (received twice or more)", str(report["duplicated"])),
        ("relay RSS start / peak / end", f"{rss['start']:.0f} / {rss['peak']:.0f} / {rss['end']:.0f} MiB"),
    ]
    for row in rows:
        table.add_row(*row)
    console = Console()
    console.print(table)
    phases = Table(title="per phase (drain: after the load, until the outbox is empty)", title_justify="left")
    for name in (
        "Alation answers",
        "seconds",
        "acked",
        "acked/s",
        "p50 ms",
        "p99 ms",
        "RSS peak MiB",
        "RSS end MiB",
    ):
        phases.add_column(name, justify="right")
    for phase in report["phases"]:
        phases.add_row(
            str(phase["alation"]),
            f"{phase['seconds']:.0f}",
            f"{phase['acked']:,}",
            f"{phase['acked_per_second']:,.0f}",
            f"{phase['p50_ms']:.1f}",
            f"{phase['p99_ms']:.1f}",
            f"{phase['rss_peak_mb']:.0f}",
            f"{phase['rss_end_mb']:.0f}",
        )
    console.print(phases)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--senders", type=int, default=8, help="concurrent sender processes (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="relay --workers (default 2)")
    parser.add_argument(
        "--duration", type=float, default=60, help="seconds of load, in thirds 200/503/200 (default 60)"
    )
    parser.add_argument(
        "--phases",
        type=parse_phases,
        help="what Alation answers, in order, as STATUS:SECONDS (200 or 503), e.g. 200:20,503:20,200:20; "
        "overrides --duration",
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=300, help="seconds to wait for the outbox to empty"
    )
    parser.add_argument(
        "--outbox-max-events",
        type=int,
        help="the sender's outbox_max_events (default: the setting's default, 10000); small values make "
        "the relay answer 503 (outbox full) during the outage",
    )
    parser.add_argument(
        "--retry-after",
        type=int,
        default=2,
        help="the relay's retry_after, seconds a sender waits after a 503 (default 2; the relay's own "
        "default is 30); senders never wait more than 5 s",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--load", metavar="FILE", help="print the table of a saved --json result")
    args = parser.parse_args(argv)
    report = json.loads(Path(args.load).read_text()) if args.load else run(args)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_table(report)
    return 0 if report["lost"] == 0 and report["duplicated"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
