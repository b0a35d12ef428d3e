"""The relay: real servers on loopback, the HTTPS stand-in as Alation.

- openlineage-python's own ``HttpTransport`` posts the real-events corpus (plain and gzip): the
  relay decides as ``AlationTransport`` does with the same inline settings, and every event it
  accepts reaches the stand-in exactly once, valid;
- bad input is a clear 4xx, writes nothing, and the relay still takes a good event afterwards;
- ``airflow-alation relay`` (2 uvicorn workers) survives a SIGKILL and a SIGTERM in the middle of a
  burst: every acknowledged event is delivered exactly once (counted by runId at the stand-in);
- inside a real ``airflow api-server``, ``/alation-relay/api/v1/lineage`` reaches the stand-in.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import uvicorn

from airflow_provider_alation.outbox.store import LocalOutbox
from airflow_provider_alation.relay.app import Relay, build_app
from airflow_provider_alation.relay.config import RelayConfig, parse_config
from airflow_provider_alation.relay.mount import RelayMount
from airflow_provider_alation.relay.protocol import with_limits
from airflow_provider_alation.relay.server import connection_options
from airflow_provider_alation.testing.fake_alation import FakeAlation, Fault
from airflow_provider_alation.transport import AlationConfig, AlationTransport
from tests.support.airflow_home import AirflowHome, airflow_bin
from tests.support.emitter import stand_in_config
from tests.support.network import free_port
from tests.support.real_events import CORPUS, load_corpus
from tests.support.spec import validate_event

RELAY_TOKEN = "relay-token-" + secrets.token_hex(16)
CLI = str(Path(sys.executable).with_name("airflow-alation"))


def lineage_event(run_id: str | None = None, job: str = "relay_job") -> dict[str, Any]:
    return {
        "eventType": "COMPLETE",
        "eventTime": "2024-05-01T10:00:00.000Z",
        "run": {"runId": run_id or str(uuid.uuid4())},
        "job": {"namespace": "spark-prod", "name": job},
        "inputs": [{"namespace": "postgres://db.example.com:5432", "name": "shop.public.orders"}],
        "outputs": [{"namespace": "postgres://db.example.com:5432", "name": "shop.public.summary"}],
        "producer": "https://github.com/OpenLineage/OpenLineage/tree/1.0.0/client/python",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    }


def alation_settings(fake: FakeAlation, token: str, spool: Path, **extra: Any) -> dict[str, Any]:
    return stand_in_config(fake, token, spool, **{"dags": {"include": ["*"]}, **extra})


def relay_config(fake: FakeAlation, token: str, spool: Path, **options: Any) -> dict[str, Any]:
    alation = alation_settings(fake, token, spool, **options.pop("alation", {}))
    return {"senders": [{"name": "spark", "token": RELAY_TOKEN, "alation": alation}], **options}


@contextmanager
def relay_in_thread(config: dict[str, Any]) -> Iterator[tuple[str, Relay]]:
    """The relay app under a real uvicorn server on loopback, in this process, with the standalone
    server's limits (relay/server.py): connections per worker, keep-alive, the headers' deadline."""
    relay = Relay(RelayConfig.model_validate(config))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(relay),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            **connection_options(
                relay.config, with_limits(relay.config.header_timeout, relay.config.body_timeout)
            ),
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the relay did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", relay
    finally:
        server.should_exit = True
        thread.join(30)


def post(url: str, body: bytes | Any, token: str | None = RELAY_TOKEN, **headers: str) -> requests.Response:
    sent = {"Content-Type": "application/json", **{k.replace("_", "-"): v for k, v in headers.items()}}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{url}/api/v1/lineage", data=data, headers=sent, timeout=30)


def wait_until(what: str, probe: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def run_ids(fake: FakeAlation) -> Counter[str]:
    with fake._lock:
        return Counter(str(event["run"]["runId"]) for event in fake.events)


def outbox_usage(spool: Path) -> tuple[int, int]:
    return LocalOutbox(spool / "spool").usage()


# -- the corpus through openlineage-python's HttpTransport ---------------------------------------------


@pytest.fixture(scope="module")
def transport_decisions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str | None]]:
    """What AlationTransport decides for each corpus event (inline settings as the relay's)."""
    if not CORPUS.is_dir():
        pytest.skip(f"real-events corpus not found at {CORPUS}")
    tmp = tmp_path_factory.mktemp("relay-transport")
    token = "alation-test-token-" + secrets.token_hex(12)
    decisions = {}
    with FakeAlation(token, tls_dir=tmp / "tls", validator=validate_event) as fake:
        transport = AlationTransport(
            AlationConfig.from_dict(
                {"type": "airflow_provider_alation.transport.AlationTransport"}
                | alation_settings(fake, token, tmp)
            )
        )
        for item in load_corpus(CORPUS):
            outcome = transport.emit(item.event)
            assert outcome is not None, item.id
            decisions[item.id] = ("sent", None) if outcome.kind == "sent" else (outcome.kind, outcome.detail)
        transport.close()
    return decisions


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_corpus_through_openlineage_http_transport(
    compression: str | None, transport_decisions, fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    from openlineage.client.transport.http import (
        ApiKeyTokenProvider,
        HttpCompression,
        HttpConfig,
        HttpTransport,
    )

    corpus = load_corpus(CORPUS)
    with relay_in_thread(relay_config(fake_alation, token, tmp_path)) as (url, _relay):
        sender = HttpTransport(
            HttpConfig(
                url=url,
                endpoint="api/v1/lineage",
                auth=ApiKeyTokenProvider({"apiKey": RELAY_TOKEN}),
                compression=HttpCompression(compression) if compression else None,
            )
        )
        decisions, accepted = {}, Counter()
        for item in corpus:
            answer = sender.emit(item.event)
            body = answer.json()
            if answer.status_code == 202:
                decisions[item.id] = ("sent", None)
                accepted[(body["runId"], item.event["job"]["name"])] += 1
            else:
                assert answer.status_code == 200, (item.id, answer.status_code, body)
                decisions[item.id] = ("skipped", body["reason"])
        mismatches = {
            i: (decisions[i], transport_decisions[i])
            for i in decisions
            if decisions[i] != transport_decisions[i]
        }
        assert not mismatches, mismatches
        sent = sum(accepted.values())
        assert sent == sum(1 for d in transport_decisions.values() if d[0] == "sent") > 40
        wait_until("every accepted event at the stand-in", lambda: len(fake_alation.events) >= sent)
        wait_until("an empty outbox", lambda: outbox_usage(tmp_path) == (0, 0))
    received = Counter((e["run"]["runId"], e["job"]["name"]) for e in fake_alation.events)
    assert received == accepted  # each exactly once
    rejected = [r for r in fake_alation.requests if r.path == fake_alation.endpoint and r.status != 200]
    assert not rejected, [r.body[:200] for r in rejected]  # the stand-in validates every event
    print(f"corpus ({compression or 'plain'}): {len(corpus)} posted, {sent} accepted and delivered once")


# -- bad input ------------------------------------------------------------------------------------------


def gzip_bomb(size: int) -> bytes:
    return gzip.compress(b"\0" * size, compresslevel=9)


def test_bad_input_is_a_clear_4xx_and_writes_nothing(
    fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    config = relay_config(fake_alation, token, tmp_path, max_body_bytes=4 * 1024 * 1024)
    good = lineage_event()
    with relay_in_thread(config) as (url, _relay):
        cases: list[tuple[str, requests.Response, int, str]] = [
            ("malformed JSON", post(url, b'{"eventType": "COMPLETE",'), 400, "not JSON"),
            ("a JSON array", post(url, [good, good]), 400, "JSON array"),
            ("not an event", post(url, {"hello": "world"}), 400, "none of run, job and dataset"),
            ("no runId", post(url, {**good, "run": {}}), 400, "run.runId"),
            ("wrong token", post(url, good, token="x" * 32), 403, "unknown relay token"),
            ("missing token", post(url, good, token=None), 401, "missing Authorization"),
            ("unknown encoding", post(url, json.dumps(good).encode(), Content_Encoding="br"), 415, "br"),
            (
                "not JSON content",
                post(url, b"a=b", Content_Type="application/x-www-form-urlencoded"),
                415,
                "not JSON",
            ),
            (
                "gzip bomb",
                post(url, gzip_bomb(200 * 1024 * 1024), Content_Encoding="gzip"),
                413,
                "decompressed body",
            ),
            ("broken gzip", post(url, b"\x1f\x8b\x08garbage", Content_Encoding="gzip"), 400, "gzip"),
        ]
        # 50 MB, declared: refused from the headers, before the body is read.
        host, port = url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.putrequest("POST", "/api/v1/lineage")
        for name, value in (
            ("Authorization", f"Bearer {RELAY_TOKEN}"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(50 * 1024 * 1024)),
        ):
            connection.putheader(name, value)
        connection.endheaders()
        declared = connection.getresponse()
        assert declared.status == 413, declared.status
        assert "above the relay's cap" in json.loads(declared.read())["error"]
        connection.close()

        # 50 MB, streamed without a length (chunked): refused once the cap is passed while reading.
        def chunks() -> Iterator[bytes]:
            for _ in range(50):
                yield b" " * (1024 * 1024)

        try:
            streamed = requests.post(
                f"{url}/api/v1/lineage",
                data=chunks(),
                headers={"Authorization": f"Bearer {RELAY_TOKEN}", "Content-Type": "application/json"},
                timeout=30,
            )
            assert streamed.status_code == 413, streamed.text
            assert "above the relay's cap" in streamed.json()["error"]
        except requests.ConnectionError:  # the relay may close while the body is still being sent
            pass

        for name, answer, status, words in cases:
            assert answer.status_code == status, (name, answer.status_code, answer.text)
            error = answer.json()["error"]
            assert words in error, (name, error)
            assert RELAY_TOKEN not in error and token not in error
        assert outbox_usage(tmp_path) == (0, 0)
        assert not fake_alation.events

        ok = post(url, good)
        assert ok.status_code == 202, ok.text
        assert ok.json() == {"status": "accepted", "job": "relay_job", "runId": good["run"]["runId"]}
        gzipped = lineage_event()
        answer = post(url, gzip.compress(json.dumps(gzipped).encode()), Content_Encoding="gzip")
        assert answer.status_code == 202, answer.text
        skipped = post(url, {**lineage_event(), "eventType": "START"})
        assert (skipped.status_code, skipped.json()) == (200, {"status": "skipped", "reason": "not_complete"})
        wait_until("both events at the stand-in", lambda: len(fake_alation.events) == 2)
    assert set(run_ids(fake_alation)) == {good["run"]["runId"], gzipped["run"]["runId"]}


def test_full_outbox_answers_503_with_retry_after(
    fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    fake_alation.lineage_down = True
    config = relay_config(
        fake_alation,
        token,
        tmp_path,
        retry_after=7,
        alation={"outbox_max_events": 3, "time_budget": 1, "timeout": 0.5},
    )
    with relay_in_thread(config) as (url, _relay):
        statuses = []
        for _ in range(6):
            statuses.append(post(url, lineage_event()).status_code)
            time.sleep(1.1)  # the relay looks at its outbox once a second
        full = post(url, lineage_event())
    assert statuses[:3] == [202, 202, 202], statuses
    assert full.status_code == 503 and full.headers["Retry-After"] == "7", full.text
    assert "outbox for this sender is full" in full.json()["error"]


def test_unconfigured_plugin_app_says_how_to_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.testclient import TestClient

    monkeypatch.delenv("ALATION_RELAY_CONFIG", raising=False)
    answer = TestClient(RelayMount()).post("/api/v1/lineage", json=lineage_event())
    assert answer.status_code == 404
    assert "ALATION_RELAY_CONFIG" in answer.json()["error"]
    monkeypatch.setenv("ALATION_RELAY_CONFIG", '{"senders": []}')
    answer = TestClient(RelayMount()).post("/api/v1/lineage", json=lineage_event())
    # the problem goes to the api-server's log; anyone may ask, so the answer says only where
    assert answer.status_code == 503 and "see the api-server's log" in answer.json()["error"]


def test_config_names_every_problem() -> None:
    senders = [
        {"name": "a b", "token": "t" * 20, "conn_id": "x"},
        {"name": "dbt", "token": "u" * 20, "conn_id": "x", "alation": {}},
    ]
    with pytest.raises(ValueError) as raised:
        parse_config(json.dumps({"senders": senders, "max_body_bytes": 10}), "relay.json")
    message = str(raised.value)
    assert "relay.json" in message and "senders.0.name" in message, message
    assert "exactly one of alation" in message and "max_body_bytes" in message, message
    assert "t" * 20 not in message


# -- the standalone server: SIGKILL and SIGTERM in a burst ---------------------------------------------


class StandaloneRelay:
    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path, self.log_path = config_path, log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> StandaloneRelay:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [CLI, "relay", "--config", str(self.config_path), "--port", str(self.port), "--workers", "2"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert self.process.poll() is None and time.monotonic() < deadline, self.log_path.read_text()[
                -3000:
            ]
            time.sleep(0.2)
        return self

    def workers(self) -> list[psutil.Process]:
        """uvicorn's worker processes (multiprocessing spawns them; not its resource tracker)."""
        assert self.process is not None
        return [
            child
            for child in psutil.Process(self.process.pid).children()
            if "spawn_main" in " ".join(child.cmdline())
        ]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(60)


def burst(url: str, count: int, during: Callable[[int], None]) -> list[str]:
    """``count`` events from 6 threads; ``during(acked)`` runs after each answer. The acknowledged runIds."""
    acked: list[str] = []
    lock = threading.Lock()

    def one(_: int) -> None:
        event = lineage_event()
        try:
            answer = post(url, event)
        except requests.RequestException:
            return
        if answer.status_code == 202:
            with lock:
                acked.append(event["run"]["runId"])
                done = len(acked)
            during(done)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(one, range(count)))
    return acked


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(json.dumps(config))
    return path


def replay_env(fake: FakeAlation, token: str, tmp_path: Path) -> dict[str, str]:
    extra = {
        "verify": str(fake.cert_path),
        "spool_dir": str(tmp_path / "spool"),
        "cache_dir": str(tmp_path / "cache"),
    }
    conn = {"conn_type": "alation", "host": fake.url, "password": token, "extra": extra}
    return {**os.environ, "AIRFLOW_CONN_ALATION_DEFAULT": json.dumps(conn), "PYTHONWARNINGS": "ignore"}


@pytest.mark.timeout(300)
def test_sigkill_of_a_worker_in_a_burst_loses_no_acknowledged_event(
    fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    fake_alation.lineage_down = True  # Alation answers 503 during the burst: events pile up in the outbox
    config = relay_config(
        fake_alation, token, tmp_path, replay_interval=2, alation={"time_budget": 1, "timeout": 0.5}
    )
    relay = StandaloneRelay(write_config(tmp_path / "relay.json", config), tmp_path / "relay.log").start()
    killed: list[int] = []
    try:
        workers = relay.workers()
        assert len(workers) == 2, workers

        def kill_one(acked: int) -> None:
            if acked >= 25 and not killed:
                killed.append(workers[0].pid)
                os.kill(workers[0].pid, signal.SIGKILL)

        acked = burst(relay.url, 120, kill_one)
        assert killed, "the burst ended before a worker was killed"
        fake_alation.lineage_down = False  # Alation is back: the relay's replay sends what waits
        time.sleep(6)
    finally:
        relay.stop()
    # What the killed worker held (claimed, mid-delivery) waits for the lease: replay it now.
    result = subprocess.run(
        [CLI, "replay", "--reclaim-after", "0", "--json"],
        env=replay_env(fake_alation, token, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    delivered = run_ids(fake_alation)
    assert not [r for r, n in delivered.items() if n > 1], "delivered more than once"
    missing = [r for r in acked if r not in delivered]
    assert not missing, f"{len(missing)} acknowledged event(s) not delivered"
    assert outbox_usage(tmp_path) == (0, 0)
    print(
        f"SIGKILL: {len(acked)} acknowledged, {len(delivered)} delivered "
        f"({sum(1 for r in delivered if r not in set(acked))} unacknowledged but written ahead), "
        f"replay after the kill: {json.loads(result.stdout)['sent']} sent"
    )


@pytest.mark.timeout(300)
def test_sigterm_in_a_burst_then_restart_delivers_every_acknowledged_event(
    fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    fake_alation.fail_next(*[Fault(status=503, delay=0.3) for _ in range(30)])  # slow, failing Alation
    config = relay_config(
        fake_alation, token, tmp_path, replay_interval=1, alation={"time_budget": 2, "timeout": 1}
    )
    path = write_config(tmp_path / "relay.json", config)
    relay = StandaloneRelay(path, tmp_path / "relay.log").start()
    stopped: list[bool] = []
    try:

        def terminate(acked: int) -> None:
            if acked >= 30 and not stopped:
                stopped.append(True)
                assert relay.process is not None
                relay.process.send_signal(signal.SIGTERM)

        acked = burst(relay.url, 100, terminate)
        assert relay.process is not None
        relay.process.wait(60)
    finally:
        relay.stop(signal.SIGKILL)
    assert stopped
    restarted = StandaloneRelay(path, tmp_path / "relay.log")
    restarted.start()
    try:
        wait_until(
            "every acknowledged event delivered", lambda: all(r in run_ids(fake_alation) for r in acked), 90
        )
    finally:
        restarted.stop()
    delivered = run_ids(fake_alation)
    assert not [r for r, n in delivered.items() if n > 1], "delivered more than once"
    print(
        f"SIGTERM: {len(acked)} acknowledged, all delivered once after the restart ({len(delivered)} in all)"
    )


# -- inside Airflow's api-server ------------------------------------------------------------------------


@pytest.mark.airflow
@pytest.mark.timeout(300)
def test_relay_inside_the_api_server(
    airflow_home: AirflowHome, fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    config = relay_config(fake_alation, token, tmp_path)
    port = free_port()
    env = {**airflow_home.base_env(), "ALATION_RELAY_CONFIG": json.dumps(config)}
    log_path = tmp_path / "api-server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [airflow_bin(), "api-server", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{url}/api/v2/version", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, log_path.read_text()[-3000:]
            time.sleep(0.5)
        event = lineage_event(job="from_the_api_server")
        answer = post(f"{url}/alation-relay", event)
        assert answer.status_code == 202, answer.text
        refused = post(f"{url}/alation-relay", event, token="y" * 32)
        assert refused.status_code == 403, refused.text
        wait_until("the event at the stand-in", lambda: bool(fake_alation.events), 60)
    finally:
        server.terminate()
        server.wait(30)
    assert [e["job"]["name"] for e in fake_alation.events] == ["from_the_api_server"]
