"""Cost per event of ``emit()`` in this process: AlationTransport vs the stock ``HttpTransport``.

The events are real ones, recorded from ``bench_twenty_sql`` (bench/data/events.json), rebuilt as
the ``RunEvent`` objects a transport is handed (facets as plain dicts), each with a fresh runId.
Both transports POST to the same HTTPS stand-in for Alation on the loopback, verifying its CA.
"""

from __future__ import annotations

import cProfile
import io
import json
import logging
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.transport.http import HttpConfig, HttpTransport

from airflow_provider_alation.testing.fake_alation import FakeAlation
from airflow_provider_alation.transport import AlationConfig, AlationTransport
from bench.receivers import bench_receiver

EVENTS = Path(__file__).resolve().parent / "data" / "events.json"


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


def stock_transport(fake: FakeAlation, token: str) -> HttpTransport:
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


def alation_transport(fake: FakeAlation, token: str, tmp: str) -> AlationTransport:
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


def run_once(events: int = 300, cold: int = 40, dropped: int = 2000) -> dict[str, dict[str, float]]:
    """One repetition: returns {measure: {"median": s, "p99": s, "n": n}} plus sanity counts."""
    quiet()
    raw = load_events()
    token = "bench-token-" + uuid.uuid4().hex
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, bench_receiver(token, f"{tmp}/tls") as fake:
        alation = alation_transport(fake, token, tmp)
        stock = stock_transport(fake, token)

        def lineage() -> RunEvent:
            return as_run_event(raw["complete_lineage"])

        # Warm-up: first-use costs (settings, session, TLS handshake, outbox folders) paid once.
        for _ in range(5):
            alation.emit(lineage())
            stock.emit(lineage())

        # Sent events, the two transports interleaved so that drift hits both alike.
        a_samples: list[float] = []
        s_samples: list[float] = []
        for _ in range(events):
            a_samples += _time_each(1, alation.emit, lineage)
            s_samples += _time_each(1, stock.emit, lineage)
        out["sent/alation"] = summary(a_samples)
        out["sent/http"] = summary(s_samples)

        # As in the provider's forked child: a new transport for every event (new settings, new
        # HTTP session and TLS handshake, outbox folders checked).
        a_cold: list[float] = []
        s_cold: list[float] = []
        for _ in range(cold):
            a_cold += _time_each(1, lambda e: alation_transport(fake, token, tmp).emit(e), lineage)
            s_cold += _time_each(1, lambda e: stock_transport(fake, token).emit(e), lineage)
        out["cold/alation"] = summary(a_cold)
        out["cold/http"] = summary(s_cold)

        # Events Alation makes no lineage of: dropped by AlationTransport, sent by the stock one.
        for name in ("start", "complete_no_datasets", "complete_dag"):

            def make(name: str = name) -> RunEvent:
                return as_run_event(raw[name])

            out[f"{name}/alation"] = summary(_time_each(dropped, alation.emit, make))
            out[f"{name}/http"] = summary(_time_each(max(50, events // 3), stock.emit, make))

        expected = 5 + events + cold  # lineage-bearing events sent by AlationTransport
        with fake._lock:
            accepted = len(fake.events)
        out["check"] = {
            "alation_posts": float(
                sum(1 for r in fake.requests if "airflow-provider-alation" in str(r.headers))
            ),
            "alation_expected": float(expected),
            "accepted": float(accepted),
            "spool_left": float(len(list(Path(f"{tmp}/spool").rglob("*.json")))),
        }
        alation.close()
        stock.close()
    return out


def summary(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "p99": p99(samples), "n": float(len(samples))}


def profile(events: int = 300, top: int = 25) -> str:
    """cProfile of both transports' emit() of the lineage-bearing event, as text: a transport reused
    for every event (warm), then a new transport per event (cold, as in the provider's forked child)."""
    quiet()
    raw = load_events()
    token = "bench-token-" + uuid.uuid4().hex
    report = io.StringIO()
    with tempfile.TemporaryDirectory() as tmp, bench_receiver(token, f"{tmp}/tls") as fake:
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
    with tempfile.TemporaryDirectory() as tmp, bench_receiver(token, f"{tmp}/tls") as fake:
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

        def write_ahead_cycle() -> None:
            claim = outbox.put(body)
            outbox.enforce_caps()
            settle(outbox, claim, sent, replayed=False)

        def thread_start_join() -> None:
            worker = threading.Thread(target=lambda: None, daemon=True)
            worker.start()
            worker.join()

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
        out["alation: outbox put + caps + settle (2 fsyncs)"] = median_us(write_ahead_cycle)
        out["alation:   of which outbox.put (write, fsync file + dir)"] = median_us(lambda: outbox.put(body))
        out["alation: delivery thread start + join (empty)"] = median_us(thread_start_join)
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


if __name__ == "__main__":
    if "--profile" in sys.argv:
        print(profile())
    elif "--breakdown" in sys.argv:
        for step, micros in breakdown().items():
            print(f"{micros:9.1f} us  {step}")
    else:
        print(json.dumps(run_once(events=100, cold=20, dropped=500), indent=1))
