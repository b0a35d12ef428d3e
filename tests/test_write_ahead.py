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
from tests.support.emitter import stand_in_config
from tests.test_gate import make_event


def _config(fake: FakeAlation, token: str, tmp_path: Path) -> dict:
    return stand_in_config(
        fake,
        token,
        tmp_path,
        discover_datasources=True,
        namespace_map={"db:5432": "prod-db.example.com:5432"},
    )


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


def _journal(monkeypatch, claimed: Path) -> list[tuple[str, object]]:
    """What happens, in order: fsyncs (of a file or a folder, by inode) and POST attempts (with the
    entries in claimed/ at that moment), and when the answer is back."""
    import stat

    from airflow_provider_alation.alation import network

    journal: list[tuple[str, object]] = []
    real_fsync, real_request = os.fsync, network.request

    def fsync(fd: int) -> None:
        real_fsync(fd)
        info = os.fstat(fd)
        journal.append(("fsync dir" if stat.S_ISDIR(info.st_mode) else "fsync file", info.st_ino))

    def request(*args, **kwargs):
        if kwargs.get("data"):
            entries = [(p, p.stat()) for p in claimed.glob("*.json")]
            journal.append(("attempt", entries))
            try:
                return real_request(*args, **kwargs)
            finally:
                journal.append(("answer", None))
        return real_request(*args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(network, "request", request)
    return journal


def test_the_event_is_written_before_the_first_attempt_and_fsynced_before_emit_returns(
    fake_alation: FakeAlation, token: str, tmp_path: Path, monkeypatch
) -> None:
    """The transport: when the POST starts, the entry is complete in claimed/ (a killed process loses
    nothing); its file and claimed/ are fsynced while the request is in flight, before the entry is
    settled and emit returns; after the 2xx it is gone."""
    claimed = tmp_path / "spool" / "claimed"
    journal = _journal(monkeypatch, claimed)
    config = {**_config(fake_alation, token, tmp_path), "discover_datasources": False}
    outcome = AlationTransport(AlationConfig.from_dict(config)).emit(Serde.to_dict(make_event()))
    assert outcome is not None and outcome.kind == "sent"

    attempt = next(i for i, (what, _) in enumerate(journal) if what == "attempt")
    ((path, info),) = journal[attempt][1]  # one entry, claimed by this emit
    assert info.st_size == int(path.stem.split("@")[0].rsplit("-", 1)[1]) > 0  # complete
    assert ("fsync file", info.st_ino) in journal and ("fsync dir", claimed.stat().st_ino) in journal
    assert not path.exists() and LocalOutbox(config["spool_dir"]).list() == []


def test_an_event_that_is_not_sent_is_durable_before_it_is_kept(
    fake_alation: FakeAlation, token: str, tmp_path: Path, monkeypatch
) -> None:
    """Alation answers 503: the entry goes back to pending/, fsynced before it is moved there."""
    claimed = tmp_path / "spool" / "claimed"
    journal = _journal(monkeypatch, claimed)
    fake_alation.lineage_down = True
    config = {
        **_config(fake_alation, token, tmp_path),
        "discover_datasources": False,
        "time_budget": 1,
        "timeout": 0.5,
    }
    outcome = AlationTransport(AlationConfig.from_dict(config)).emit(Serde.to_dict(make_event()))
    assert outcome is not None and outcome.kind == "retry"
    attempt = next(i for i, (what, _) in enumerate(journal) if what == "attempt")
    ((_, info),) = journal[attempt][1]
    assert ("fsync file", info.st_ino) in journal
    (pending,) = LocalOutbox(config["spool_dir"]).list("pending")
    assert (tmp_path / "spool" / "pending" / f"{pending.entry}.json").stat().st_ino == info.st_ino


def test_the_relay_admits_an_event_only_once_it_is_durable(token: str, tmp_path: Path, monkeypatch) -> None:
    """The relay answers 202 after admit(): by then the entry's file and its folder are fsynced."""
    from airflow_provider_alation.pipeline import Admitted, Pipeline
    from airflow_provider_alation.settings import build_settings

    claimed = tmp_path / "spool" / "claimed"
    journal = _journal(monkeypatch, claimed)
    settings = build_settings(
        {"url": "https://acme.alationcloud.com", "token": token, "spool_dir": str(tmp_path / "spool"),
         "cache_dir": str(tmp_path / "cache"), "dags": {"include": ["*"]}},
        inline=True,
    )  # fmt: skip
    admitted = Pipeline(settings, evict=False).admit(Serde.to_dict(make_event()))
    assert isinstance(admitted, Admitted) and admitted.claim is not None
    inode = admitted.claim.path.stat().st_ino
    assert ("fsync file", inode) in journal and ("fsync dir", claimed.stat().st_ino) in journal
