"""Cost per event of ``emit()`` in this process: AlationTransport vs the stock ``HttpTransport``.

The events are real ones, recorded from ``bench_twenty_sql`` (bench/data/events.json), rebuilt as
the ``RunEvent`` objects a transport is handed (facets as plain dicts), each with a fresh runId.
Both transports POST to the same HTTPS stand-in for Alation on the loopback, verifying its CA.
The stand-in runs in a process of its own (bench/receivers.py's ``ReceiverProcess``), as Alation is
never in the client's process: in this one, its Python request handling (TLS, HTTP parsing, JSON)
would compete for the GIL with the transport being measured, and what a transport does while its
request is in flight (AlationTransport's overlapped work) would delay the stand-in's parsing of that
very request (measured: ~350 us per POST), a cost of the bench rather than of the transport.

The loopback answers in ~0.1 ms, so a fixed cost per event (AlationTransport's write-ahead: a file
written before the first attempt, fsynced with its folder while the request is in flight, renamed
out of the claims after the 2xx) weighs as much as the whole POST. The same sent event is therefore
also measured with the stand-in holding every answer ``DELAYS`` (20 and 50 ms: a tenant's round trip
and processing time); its overhead is (AlationTransport - stock) / stock, in %.

    .venv/bin/python bench/emit_cost.py                 # one repetition as JSON (see --help)
    .venv/bin/python bench/emit_cost.py --table         # the same as a short table
    .venv/bin/python bench/emit_cost.py --breakdown     # AlationTransport.emit step by step (median us)
    .venv/bin/python bench/emit_cost.py --profile       # cProfile of both emit()s
    .venv/bin/python bench/emit_cost.py --table --without-write-ahead   # experiment: no outbox file
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.transport.http import HttpConfig, HttpTransport

from airflow_provider_alation.integration import task_context
from airflow_provider_alation.transport import AlationConfig, AlationTransport
from bench.receivers import ReceiverProcess

EVENTS = Path(__file__).resolve().parent / "data" / "events.json"
#: The stand-in's answer delays (seconds) of the "realistic round trip" measures.
DELAYS = (0.020, 0.050)


def delay_key(delay: float) -> str:
    """``"20ms"`` for 0.020: the label of a delayed measure (``sent@20ms/alation``, ...)."""
    return f"{round(delay * 1000):d}ms"


def quiet() -> None:
    """The per-process "namespace ... matched no rule" notices: once per new transport, noise here."""
    logging.getLogger("airflow_provider_alation").setLevel(logging.ERROR)


def load_events() -> dict[str, dict[str, Any]]:
    return json.loads(EVENTS.read_text())


def as_run_event(raw: dict[str, Any]) -> RunEvent:
    """The recorded event as an openlineage-python ``RunEvent`` with a new runId."""

    def datasets(kind: type, items: list[dict[str, Any]], extra: str) -> list[Any]:
        return [
            kind(
                namespace=d["namespace"],
                name=d["name"],
                facets=d.get("facets") or {},
                **({extra: d[extra]} if d.get(extra) else {}),
            )
            for d in items
        ]

    return RunEvent(
        eventType=RunState(raw["eventType"]),
        eventTime=raw["eventTime"],
        run=Run(runId=str(uuid.uuid4()), facets=raw["run"].get("facets") or {}),
        job=Job(namespace=raw["job"]["namespace"], name=raw["job"]["name"], facets=raw["job"]["facets"]),
        producer=raw["producer"],
        inputs=datasets(InputDataset, raw.get("inputs") or [], "inputFacets"),
        outputs=datasets(OutputDataset, raw.get("outputs") or [], "outputFacets"),
    )


def stock_transport(fake: ReceiverProcess, token: str) -> HttpTransport:
    return HttpTransport(
        HttpConfig.from_dict(
            {
                "type": "http",
                "url": fake.url,
                "endpoint": "open_lineage_event/",
                "auth": {"type": "api_key", "apiKey": token},
                "sslContext": {"caCertPath": str(fake.cert_path)},
            }
        )
    )


def alation_transport(fake: ReceiverProcess, token: str, tmp: str) -> AlationTransport:
    return AlationTransport(
        AlationConfig.from_dict(
            {
                "url": fake.url,
                "token": token,
                "verify": str(fake.cert_path),
                "dags": {"include": ["*"]},
                "spool_dir": f"{tmp}/spool",
                "cache_dir": f"{tmp}/cache",
            }
        )
    )


def _time_each(count: int, emit: Callable[[RunEvent], object], make: Callable[[], RunEvent]) -> list[float]:
    samples = []
    for _ in range(count):
        event = make()
        started = time.perf_counter()
        emit(event)
        samples.append(time.perf_counter() - started)
    return samples


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def _forked(transport: Callable[[], Any], event: RunEvent) -> float:
    """Seconds a forked child takes to get its transport from ``transport()`` (the stock one: built
    in the child; AlationTransport: the one the task process prepared) and emit ``event`` with it
    (timed in the child, as the OpenLineage provider forks one per event: no thread of this process
    goes along)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            started = time.perf_counter()
            transport().emit(event)
            os.write(write, repr(time.perf_counter() - started).encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        took = os.read(read, 100)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    if not took:
        raise RuntimeError("the forked emitter reported nothing")
    return float(took)


def run_once(
    events: int = 300,
    cold: int = 40,
    dropped: int = 2000,
    delays: Sequence[float] = DELAYS,
    delayed_events: int | None = None,
    delayed_cold: int | None = None,
) -> dict[str, dict[str, float]]:
    """One repetition: returns {measure: {"median": s, "p99": s, "n": n}} plus sanity counts.

    Measures of the lineage-bearing event, the two transports interleaved event by event: ``sent``
    (one transport reused), ``cold`` (a new transport per event, in this process) and ``fork`` (a
    new transport per event in a forked child, as in Airflow), on the loopback (``events`` sent,
    ``cold`` new transports of each kind) and with the stand-in answering after each of ``delays``
    (``sent@20ms``, ``cold@20ms``, ``fork@20ms``...: ``delayed_events`` sent, by default a third of
    ``events``, and ``delayed_cold`` new transports, by default half of ``cold``); then the dropped
    events (``start``, ``complete_no_datasets``, ``complete_dag``). Each as ``<measure>/alation``
    and ``<measure>/http``.
    """
    delayed_events = max(10, events // 3) if delayed_events is None else delayed_events
    delayed_cold = max(10, cold // 2) if delayed_cold is None else delayed_cold
    quiet()
    raw = load_events()
    token = "bench-token-" + uuid.uuid4().hex
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, ReceiverProcess(token, f"{tmp}/tls") as fake:
        alation = alation_transport(fake, token, tmp)
        stock = stock_transport(fake, token)

        def lineage() -> RunEvent:
            return as_run_event(raw["complete_lineage"])

        def new_alation() -> AlationTransport:
            return alation_transport(fake, token, tmp)

        def new_stock() -> HttpTransport:
            return stock_transport(fake, token)

        def interleaved(
            measure: str, count: int, a: Callable[[RunEvent], Any], s: Callable[[RunEvent], Any]
        ) -> None:
            """``count`` events through each, alternating, so that drift hits both alike."""
            a_samples: list[float] = []
            s_samples: list[float] = []
            for _ in range(count):
                a_samples += _time_each(1, a, lineage)
                s_samples += _time_each(1, s, lineage)
            out[f"{measure}/alation"] = summary(a_samples)
            out[f"{measure}/http"] = summary(s_samples)

        def prepared_alation() -> Callable[[], AlationTransport]:
            """As the plugin does in the task process before the provider forks the emitter: the
            transport built (the provider's client), the task recorded, the settings read."""
            transport = new_alation()
            task_context.set_current("bench_twenty_sql", "copy_00", ())
            transport.prepare()
            return lambda: transport

        def forked(measure: str, count: int) -> None:
            a_samples: list[float] = []
            s_samples: list[float] = []
            for _ in range(count):
                # AlationTransport prepared in "the task process" (this one), the stock client built
                # in the child, as the provider builds it there. What the task process spends
                # preparing counts: it is the task's time too.
                started = time.perf_counter()
                prepared = prepared_alation()
                a_samples.append(time.perf_counter() - started + _forked(prepared, lineage()))
                s_samples.append(_forked(new_stock, lineage()))
            task_context.clear()
            out[f"{measure}/alation"] = summary(a_samples)
            out[f"{measure}/http"] = summary(s_samples)

        # Warm-up: first-use costs (settings, session, TLS handshake, outbox folders) paid once.
        for _ in range(5):
            alation.emit(lineage())
            stock.emit(lineage())

        for suffix, delay, sent, new in [("", 0.0, events, cold)] + [
            (f"@{delay_key(d)}", d, delayed_events, delayed_cold) for d in delays
        ]:
            # The stand-in holds every answer `delay` seconds: a tenant's round trip (0: loopback).
            fake.set_answer_delay(delay)
            interleaved(f"sent{suffix}", sent, alation.emit, stock.emit)
            # A new transport for every event: new settings, HTTP session and TLS handshake, outbox
            # folders checked. In this process (`cold`: the deadline watchdog thread is shared),
            # and in a forked child as the OpenLineage provider does (`fork`: nothing shared).
            interleaved(f"cold{suffix}", new, lambda e: new_alation().emit(e), lambda e: new_stock().emit(e))
            forked(f"fork{suffix}", new)
        fake.set_answer_delay(0.0)

        # Events Alation makes no lineage of: dropped by AlationTransport, sent by the stock one.
        for name in ("start", "complete_no_datasets", "complete_dag"):

            def make(name: str = name) -> RunEvent:
                return as_run_event(raw[name])

            out[f"{name}/alation"] = summary(_time_each(dropped, alation.emit, make))
            out[f"{name}/http"] = summary(_time_each(max(50, events // 3), stock.emit, make))

        # lineage-bearing events sent by AlationTransport
        expected = 5 + events + 2 * cold + len(delays) * (delayed_events + 2 * delayed_cold)
        received = fake.counts(marker="airflow-provider-alation")
        out["check"] = {
            "alation_posts": float(received["marked"]),
            "alation_expected": float(expected),
            "accepted": float(received["events"]),
            "spool_left": float(len(list(Path(f"{tmp}/spool").rglob("*.json")))),
        }
        alation.close()
        stock.close()
    return out


def without_write_ahead() -> None:
    """An experiment, not a mode of the provider: AlationTransport in this process without its
    write-ahead (no outbox file written, fsynced or renamed; the event sent as when ``spool_dir`` is
    unusable), to measure what the write-ahead costs against the same stand-in (BENCHMARKS.md)."""
    from airflow_provider_alation.pipeline import Pipeline

    def nothing_written(self: Pipeline, *args: Any, **kwargs: Any) -> None:
        return None

    Pipeline._write_ahead = nothing_written  # type: ignore[method-assign]


def summary(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "p99": p99(samples), "n": float(len(samples))}


def profile(events: int = 300, top: int = 25) -> str:
    """cProfile of both transports' emit() of the lineage-bearing event, as text: a transport reused
    for every event (warm), then a new transport per event (cold, as in the provider's forked child)."""
    quiet()
    raw = load_events()
    token = "bench-token-" + uuid.uuid4().hex
    report = io.StringIO()
    with tempfile.TemporaryDirectory() as tmp, ReceiverProcess(token, f"{tmp}/tls") as fake:
        makers: dict[str, Callable[[], Any]] = {
            "AlationTransport": lambda: alation_transport(fake, token, tmp),
            "HttpTransport": lambda: stock_transport(fake, token),
        }
        for mode, count in (("warm", events), ("cold", max(20, events // 5))):
            for name, make in makers.items():
                transport = make()
                for _ in range(5):
                    transport.emit(as_run_event(raw["complete_lineage"]))
                prepared = [as_run_event(raw["complete_lineage"]) for _ in range(count)]
                profiler = cProfile.Profile()
                started = time.perf_counter()
                profiler.enable()
                for event in prepared:
                    if mode == "cold":
                        transport = make()
                    transport.emit(event)
                profiler.disable()
                elapsed = time.perf_counter() - started
                report.write(
                    f"\n=== {name}.emit, {mode}, x{count}: {elapsed / count * 1e3:.2f} ms/event ===\n"
                )
                stats = pstats.Stats(profiler, stream=report)
                stats.sort_stats("cumulative").print_stats(top)
                stats.sort_stats("tottime").print_stats(12)
                transport.close()
    return report.getvalue()


def breakdown(count: int = 300) -> dict[str, float]:
    """Median microseconds of each step of AlationTransport.emit for the lineage-bearing event, each
    timed on its own outside the transport, next to the stock transport's two steps."""
    import threading

    from openlineage.client.serde import Serde

    from airflow_provider_alation.alation.delivery import Outcome
    from airflow_provider_alation.lineage.shaping import shape_event
    from airflow_provider_alation.outbox.replay import replay, settle
    from airflow_provider_alation.outbox.store import LocalOutbox

    quiet()
    raw = load_events()
    token = "bench-token-" + uuid.uuid4().hex
    out: dict[str, float] = {}

    def median_us(run: Callable[[], object], n: int = count) -> float:
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            run()
            samples.append(time.perf_counter() - started)
        return statistics.median(samples) * 1e6

    event = as_run_event(raw["complete_lineage"])
    with tempfile.TemporaryDirectory() as tmp, ReceiverProcess(token, f"{tmp}/tls") as fake:
        alation = alation_transport(fake, token, tmp)
        alation.emit(as_run_event(raw["complete_lineage"]))
        pipeline = alation.pipeline()
        assert pipeline is not None
        settings = pipeline.settings
        sender = pipeline._get_sender(settings)
        resolver = pipeline._resolver
        as_dict = Serde.to_dict(event)
        shaped = shape_event(as_dict, resolver.resolve, settings.max_event_bytes)
        body = shaped.body
        outbox = LocalOutbox(f"{tmp}/spool-breakdown")
        sent = Outcome("sent", 200, "accepted")

        def write_ahead_cycle() -> None:  # what emit() waits for: written before, settled after
            claim = outbox.put(body, durable=False)
            settle(outbox, claim, sent, replayed=False)
            outbox.purge_sent()

        def overlapped() -> None:  # done while the request is in flight
            claim = outbox.put(body, durable=False)
            outbox.make_durable(claim)
            outbox.enforce_caps()
            settle(outbox, claim, sent, replayed=False)
            outbox.purge_sent()

        def hand_off() -> None:
            done = threading.Event()
            sender.run_later(done.set)
            done.wait(5)

        out["alation: Serde.to_dict(event)"] = median_us(lambda: Serde.to_dict(event))
        out["alation: shape_event in place (rewrite + the one json.dumps)"] = (
            median_us(
                lambda: shape_event(
                    Serde.to_dict(event), resolver.resolve, settings.max_event_bytes, in_place=True
                )
            )
            - out["alation: Serde.to_dict(event)"]
        )
        out["alation:   of which json.dumps (size check = body)"] = median_us(
            lambda: json.dumps(shaped.event, separators=(",", ":"), ensure_ascii=False).encode()
        )
        out["alation: outbox put (write, rename) + settle (rename into sent/)"] = median_us(write_ahead_cycle)
        out["alation: fsync of file and folder + caps check (overlapped with the POST)"] = (
            median_us(overlapped) - out["alation: outbox put (write, rename) + settle (rename into sent/)"]
        )
        out["alation: hand-off to the delivery thread and back (empty)"] = median_us(hand_off)
        empty = LocalOutbox(f"{tmp}/spool-empty")
        out["alation: drain (replay of an empty outbox)"] = median_us(
            lambda: replay(empty, sender, per_event_budget=1.0, limit=20, window=1.0)
        )
        out["alation: POST (Sender.post_blocking, warm)"] = median_us(
            lambda: sender.post_blocking(body, time.monotonic() + 5)
        )
        out["alation: emit() total"] = median_us(
            lambda: alation.emit(as_run_event(raw["complete_lineage"])), n=count // 2
        )
        stock = stock_transport(fake, token)
        stock.emit(event)
        text = Serde.to_json(event)
        out["stock: Serde.to_json(event)"] = median_us(lambda: Serde.to_json(event))
        out["stock: session.post (warm)"] = median_us(
            lambda: stock.session.post(
                urljoin(stock.url, stock.endpoint),
                data=text,
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
                timeout=stock.timeout,
                verify=stock.verify,
            ).close()
        )
        out["stock: emit() total"] = median_us(
            lambda: stock.emit(as_run_event(raw["complete_lineage"])), n=count // 2
        )
        alation.close()
        stock.close()
    return out


def overhead(alation: float, stock: float) -> float:
    """(AlationTransport - stock) / stock, in %."""
    return (alation - stock) / stock * 100.0


def table(result: dict[str, dict[str, float]]) -> str:
    """One repetition of :func:`run_once` as text: median and p99 of both, the ratio and overhead."""
    lines = [
        f"{'measure':<24} {'unit':<4} {'stock median':>12} {'p99':>9} {'Alation median':>14} {'p99':>9} "
        f"{'ratio':>7} {'overhead':>9}"
    ]
    for measure in [k[: -len("/alation")] for k in result if k.endswith("/alation")]:
        a, h = result[f"{measure}/alation"], result[f"{measure}/http"]
        scale, unit = (1e3, "ms") if measure.startswith(("sent", "cold", "fork")) else (1e6, "us")
        lines.append(
            f"{measure:<24} {unit:<4} {h['median'] * scale:12.2f} {h['p99'] * scale:9.2f} "
            f"{a['median'] * scale:14.2f} {a['p99'] * scale:9.2f} {a['median'] / h['median']:7.3f} "
            f"{overhead(a['median'], h['median']):+8.1f}%"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", action="store_true", help="cProfile of both emit()s")
    parser.add_argument("--breakdown", action="store_true", help="AlationTransport.emit step by step")
    parser.add_argument("--table", action="store_true", help="print a short table instead of JSON")
    parser.add_argument("--events", type=int, default=100, help="sent events, transport reused")
    parser.add_argument("--cold", type=int, default=20, help="sent events, a new transport each")
    parser.add_argument("--dropped", type=int, default=500, help="dropped events of each kind")
    parser.add_argument(
        "--delays",
        default=",".join(str(d) for d in DELAYS),
        help="the stand-in's answer delays in seconds, comma-separated ('' for none)",
    )
    parser.add_argument(
        "--without-write-ahead",
        action="store_true",
        help="experiment: AlationTransport without its outbox file (what the write-ahead costs)",
    )
    args = parser.parse_args(argv)
    if args.without_write_ahead:
        without_write_ahead()
    if args.profile:
        print(profile())
    elif args.breakdown:
        for step, micros in breakdown().items():
            print(f"{micros:9.1f} us  {step}")
    else:
        delays = [float(d) for d in args.delays.split(",") if d.strip()]
        result = run_once(events=args.events, cold=args.cold, dropped=args.dropped, delays=delays)
        print(table(result) if args.table else json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
