"""Write-ahead first: once an event passes the gate it is on disk before anything that can block
(discovery, minting) or fail (rules, shaping), so a process killed there loses nothing.

The OpenLineage provider kills its forked emitter after ``[openlineage] execution_timeout``; here
the child is killed (SIGKILL) while Alation's REST API hangs during discovery.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from openlineage.client.serde import Serde

from airflow_provider_alation.alation.delivery import sender_for
from airflow_provider_alation.outbox.replay import replay, shaper_for
from airflow_provider_alation.outbox.store import LocalOutbox
from airflow_provider_alation.settings import build_settings
from airflow_provider_alation.testing.catalog import reference_datasources
from airflow_provider_alation.testing.fake_alation import FakeAlation, Fault
from airflow_provider_alation.transport import AlationConfig, AlationTransport
from tests.test_gate import make_event


def _config(fake: FakeAlation, token: str, tmp_path: Path) -> dict:
    return {
        "url": fake.url,
        "token": token,
        "verify": str(fake.cert_path),
        "spool_dir": str(tmp_path / "spool"),
        "cache_dir": str(tmp_path / "cache"),
        "discover_datasources": True,
        "namespace_map": {"db:5432": "prod-db.example.com:5432"},
    }


def test_an_emitter_killed_during_discovery_leaves_the_event_for_replay(
    fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    fake_alation.datasources.update(reference_datasources())
    fake_alation.fail_api_next(Fault(status=200, delay=60))  # the first data-source page hangs
    config = _config(fake_alation, token, tmp_path)
    event = Serde.to_dict(make_event())

    pid = os.fork()
    if pid == 0:  # the emitting child, as the OpenLineage provider forks it
        try:
            AlationTransport(AlationConfig.from_dict(config)).emit(event)
        finally:
            os._exit(0)
    claimed = tmp_path / "spool" / "claimed"
    deadline = time.monotonic() + 20
    while not list(claimed.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(1.0)  # the child is now waiting for the hanging data-source page
    assert os.waitpid(pid, os.WNOHANG) == (0, 0), "the child was not held by discovery"
    os.kill(pid, signal.SIGKILL)  # killed while discovery hangs, as the provider's timeout does
    os.waitpid(pid, 0)

    outbox = LocalOutbox(config["spool_dir"])
    (entry,) = outbox.list()
    assert entry.state == "claimed"  # on disk, claimed by the process that died
    assert fake_alation.events == []

    settings = build_settings(config, inline=True)
    assert outbox.reclaim_stale(0) == 1
    summary = replay(outbox, sender_for(settings), per_event_budget=5, prepare=shaper_for(settings))
    assert summary.sent == 1
    (received,) = fake_alation.events
    assert received["run"]["runId"] == event["run"]["runId"]
    # resolved and shaped when replayed, with the settings of the replay
    assert {d["namespace"] for d in received["inputs"] + received["outputs"]} == {
        "postgres://prod-db.example.com:5432"
    }
    assert outbox.list() == []


def test_the_outbox_keeps_the_event_as_emitted_minus_credentials(
    fake_alation: FakeAlation, token: str, tmp_path: Path
) -> None:
    """What is written ahead is the event before resolution, without any user:password@; the POST
    carries the shaped event. An unresolvable-now event is re-shaped by whoever replays it."""
    config = {**_config(fake_alation, token, tmp_path), "discover_datasources": False}
    event = Serde.to_dict(make_event())
    event["inputs"][0]["namespace"] = "postgres://etl:s3cr/et@db:5432"
    fake_alation.fail_next(Fault(status=503), Fault(status=503), Fault(status=503), Fault(status=503))
    outcome = AlationTransport(AlationConfig.from_dict({**config, "time_budget": 1, "timeout": 0.5})).emit(
        event
    )
    assert outcome is not None and outcome.kind == "retry"
    assert len(LocalOutbox(config["spool_dir"]).list()) == 1
    kept = json.loads(next((tmp_path / "spool" / "pending").glob("*.json")).read_bytes())
    assert kept["inputs"][0]["namespace"] == "postgres://db:5432"  # as emitted, credentials gone
    assert "s3cr/et" not in json.dumps(kept)
    posted = fake_alation.requests[0]
    assert b"s3cr/et" not in posted.body and b"prod-db.example.com:5432" in posted.body


def test_the_event_and_its_name_are_fsynced_before_the_first_attempt(
    fake_alation: FakeAlation, token: str, tmp_path: Path, monkeypatch
) -> None:
    """Durable before the network: when the POST starts, the entry is complete in claimed/, and
    its file (whatever name it had then) and claimed/ itself have been fsynced; after the 2xx it
    is gone."""
    import stat

    from airflow_provider_alation.alation import network

    journal: list[tuple[str, object]] = []
    real_fsync, real_request = os.fsync, network.request
    claimed = tmp_path / "spool" / "claimed"

    def fsync(fd: int) -> None:
        real_fsync(fd)
        info = os.fstat(fd)
        journal.append(("fsync dir" if stat.S_ISDIR(info.st_mode) else "fsync file", info.st_ino))

    def request(*args, **kwargs):
        if kwargs.get("data"):
            entries = [(p, p.stat()) for p in claimed.glob("*.json")]
            journal.append(("attempt", entries))
        return real_request(*args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(network, "request", request)
    config = {**_config(fake_alation, token, tmp_path), "discover_datasources": False}
    outcome = AlationTransport(AlationConfig.from_dict(config)).emit(Serde.to_dict(make_event()))
    assert outcome is not None and outcome.kind == "sent"

    attempt = next(i for i, (what, _) in enumerate(journal) if what == "attempt")
    ((path, info),) = journal[attempt][1]  # one entry, claimed by this emit
    assert info.st_size == int(path.stem.split("@")[0].rsplit("-", 1)[1]) > 0  # complete
    before = journal[:attempt]
    assert ("fsync file", info.st_ino) in before
    assert ("fsync dir", claimed.stat().st_ino) in before
    assert not path.exists() and LocalOutbox(config["spool_dir"]).list() == []
