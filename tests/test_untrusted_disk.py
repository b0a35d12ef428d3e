"""``spool_dir`` and ``cache_dir`` are not trusted blindly: only regular files this provider wrote are
read and sent; anything planted (a symbolic link, a FIFO, ``/dev/zero``, a directory, a forged or
unsigned file) is quarantined or ignored, never POSTed, and never hangs or crashes a drain or a
replay; a directory others can write to is refused with one message naming the fix."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from airflow_provider_alation.alation.discovery import _MEMO, DiscoveryCache
from airflow_provider_alation.alation.tokens import AccessTokenCache
from airflow_provider_alation.outbox.disk import (
    UnsafeDirectory,
    UntrustedFile,
    check_private_dir,
    read_regular_file,
)
from airflow_provider_alation.outbox.replay import ReplaySummary, replay
from airflow_provider_alation.outbox.store import LocalOutbox
from airflow_provider_alation.settings import build_settings
from airflow_provider_alation.testing.fake_alation import FakeAlation
from airflow_provider_alation.transport import AlationConfig, AlationTransport
from tests.support.emitter import distinct_event
from tests.test_cli import run_cli
from tests.test_discovery import load, settings_for
from tests.test_faults import config

T = TypeVar("T")
#: A drain or replay that has not returned by then hangs (each finishes in well under a second).
HANG = 60.0
SECRET = b"the content of a private file that must never leave this machine"


def bounded(call: Callable[[], T], timeout: float = HANG) -> T:
    """``call()`` in a thread: fails if it has not returned within ``timeout`` (it hung)."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"did not return within {timeout}s: it hangs"
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


def genuine(outbox: LocalOutbox, count: int) -> list[str]:
    """``count`` events written by the provider and waiting in pending/; their run ids."""
    run_ids = []
    for _ in range(count):
        event = distinct_event()
        outbox.settle(outbox.put(json.dumps(event).encode()), "retry")
        run_ids.append(event["run"]["runId"])
    return run_ids


def planted_event() -> bytes:
    event = distinct_event()
    event["job"]["name"] = "planted"
    return json.dumps(event).encode()


def plant_everything(outbox: LocalOutbox, tmp_path: Path) -> list[str]:
    """One of each planted kind in pending/, with names a version of this provider would write."""
    private = tmp_path / "private.txt"
    private.write_bytes(SECRET)
    pending = outbox.pending
    now = time.time_ns()
    planted = {
        "link-to-private": f"{now:020d}-aaaaaaaaaaaa-{'0' * 32}-{len(SECRET)}.json",
        "link-to-zero": f"{now:020d}-bbbbbbbbbbbb-{'1' * 32}-100.json",
        "fifo": f"{now:020d}-cccccccccccc-{'2' * 32}-100.json",
        "directory": "x.json",
        "unsigned (old version or planted)": f"{now:020d}-dddddddddddd-{len(planted_event())}.json",
        "forged code": f"{now:020d}-eeeeeeeeeeee-{'3' * 32}-{len(planted_event())}.json",
    }
    os.symlink(private, pending / planted["link-to-private"])
    os.symlink("/dev/zero", pending / planted["link-to-zero"])
    os.mkfifo(pending / planted["fifo"])
    (pending / planted["directory"]).mkdir()
    (pending / planted["directory"] / "inside.json").write_bytes(planted_event())
    (pending / planted["unsigned (old version or planted)"]).write_bytes(planted_event())
    (pending / planted["forged code"]).write_bytes(planted_event())
    return list(planted.values())


def replay_spool(fake: FakeAlation, token: str, spool: Path, **kwargs: Any) -> ReplaySummary:
    from airflow_provider_alation.alation.delivery import sender_for
    from airflow_provider_alation.outbox.store import outbox_for

    values = config(fake.url, token, spool, fake.cert_path, time_budget=5, timeout=2)
    settings = build_settings(values, inline=True)
    return replay(outbox_for(settings), sender_for(settings), per_event_budget=5, **kwargs)


def assert_nothing_planted_sent(fake: FakeAlation) -> None:
    assert all(event["job"]["name"] != "planted" for event in fake.events)
    assert all(SECRET not in request.body for request in fake.requests)


# -- the safe reader and the directory check ---------------------------------------------------------
def test_reader_refuses_links_fifos_devices_directories_and_big_files(tmp_path: Path) -> None:
    regular = tmp_path / "regular.json"
    regular.write_bytes(b"{}")
    assert read_regular_file(regular, 2) == b"{}"
    os.mkfifo(tmp_path / "fifo.json")
    os.symlink(regular, tmp_path / "link.json")
    os.symlink("/dev/zero", tmp_path / "zero.json")
    (tmp_path / "dir.json").mkdir()
    cases = {"fifo.json": "FIFO", "link.json": "symbolic link", "zero.json": "symbolic link", "dir.json": ""}
    for name, word in cases.items():
        with pytest.raises(UntrustedFile) as refused:
            bounded(lambda name=name: read_regular_file(tmp_path / name, 1 << 20), timeout=10)
        assert word in refused.value.reason
    with pytest.raises(UntrustedFile, match="above the cap"):
        read_regular_file(regular, 1)
    with pytest.raises(UntrustedFile, match="character device"):  # /dev/zero itself: refused by type
        read_regular_file("/dev/zero", 1 << 20)
    with pytest.raises(FileNotFoundError):
        read_regular_file(tmp_path / "missing.json", 10)


def test_directory_check_creates_private_and_names_the_fix(tmp_path: Path) -> None:
    made = tmp_path / "a" / "spool"
    assert check_private_dir(made)
    assert made.stat().st_mode & 0o777 == 0o700
    assert not check_private_dir(tmp_path / "missing", create=False)
    made.chmod(0o770)
    with pytest.raises(UnsafeDirectory) as group:
        check_private_dir(made, "outbox directory (spool_dir)")
    assert "group-writable" in str(group.value) and f"chmod 700 {made}" in str(group.value)
    link = tmp_path / "link"
    link.symlink_to(made)
    with pytest.raises(UnsafeDirectory, match="symbolic link"):
        check_private_dir(link)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_foreign_owned_directory_names_the_fix(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, 65534, 65534)
    with pytest.raises(UnsafeDirectory) as refused:
        check_private_dir(foreign, "outbox directory (spool_dir)")
    assert "is owned by" in str(refused.value) and f"chown root {foreign}" in str(refused.value)


# -- the outbox ---------------------------------------------------------------------------------------
def test_replay_quarantines_everything_planted_and_sends_the_genuine(
    fake_alation, token, spool, tmp_path, alation_logs
) -> None:
    outbox = LocalOutbox(spool)
    run_ids = genuine(outbox, 3)
    planted = plant_everything(outbox, tmp_path)
    summary = bounded(lambda: replay_spool(fake_alation, token, spool))
    assert (summary.sent, summary.quarantined, summary.kept_total) == (3, len(planted), 0)
    assert fake_alation.posts_started == 3  # nothing planted was POSTed with the token
    assert sorted(e["run"]["runId"] for e in fake_alation.events) == sorted(run_ids)
    assert_nothing_planted_sent(fake_alation)
    # Moved aside, not deleted; the private file behind the link is untouched.
    assert outbox.counts() == {"pending": 0, "claimed": 0, "dead": 0}
    assert len(list(outbox.quarantine.iterdir())) == len(planted)
    assert (tmp_path / "private.txt").read_bytes() == SECRET
    warnings = [
        r.getMessage() for r in alation_logs.records if "was not sent and is now in" in r.getMessage()
    ]
    assert len(warnings) == len(planted)  # one line per entry, with the reason and the fix
    assert any("FIFO" in w for w in warnings) and any("before entries were signed" in w for w in warnings)
    assert all("Fix:" in w for w in warnings)
    # A second replay has nothing left to do.
    assert bounded(lambda: replay_spool(fake_alation, token, spool)).claimed == 0


def test_counts_and_caps_ignore_what_is_not_a_regular_file(tmp_path: Path) -> None:
    outbox = LocalOutbox(tmp_path / "spool")
    genuine(outbox, 3)
    plant_everything(outbox, tmp_path)
    os.mkfifo(outbox.claimed / "fifo@1-abc.json")
    assert outbox.counts() == {"pending": 3 + 2, "claimed": 0, "dead": 0}  # + the planted regular files
    assert len(outbox.list("pending")) == 5
    capped = LocalOutbox(tmp_path / "spool", max_events=1)
    assert bounded(capped.enforce_caps, timeout=10).count == 4
    assert capped.counts()["pending"] == 1
    assert (outbox.pending / "x.json").is_dir()  # ignored by the caps: a replay quarantines it
    assert bounded(lambda: outbox.reclaim_stale(0), timeout=10) == 1  # the FIFO, back to pending/
    assert outbox.sweep() == 5  # the directory, the two links and the two FIFOs


def test_claiming_a_fifo_or_zero_link_by_name_does_not_hang(tmp_path: Path) -> None:
    outbox = LocalOutbox(tmp_path / "spool")
    genuine(outbox, 1)
    names = plant_everything(outbox, tmp_path)
    # claim() by name (no sweep first): the reader itself refuses, the entries are quarantined.
    entries = [name.removesuffix(".json") for name in names]
    claims = bounded(lambda: outbox.claim(100, entries=entries), timeout=10)
    assert claims == [] and outbox.quarantined == len(names)
    (kept,) = outbox.claim(10)
    assert json.loads(kept.body)["job"]["name"] != "planted"


def test_a_tampered_entry_is_quarantined_not_sent(fake_alation, token, spool) -> None:
    outbox = LocalOutbox(spool)
    first_run, second_run = genuine(outbox, 2)
    first = sorted(outbox.pending.iterdir())[0]
    tampered = first.read_bytes().replace(first_run.encode(), first_run[::-1].encode())
    assert len(tampered) == first.stat().st_size and tampered != first.read_bytes()
    first.write_bytes(tampered)  # same name, same size, other bytes
    summary = bounded(lambda: replay_spool(fake_alation, token, spool))
    assert (summary.sent, summary.quarantined) == (1, 1)
    assert fake_alation.posts_started == 1
    assert [e["run"]["runId"] for e in fake_alation.events] == [second_run]


def test_entries_stay_plain_json_and_dead_letters_still_replay(fake_alation, token, spool) -> None:
    outbox = LocalOutbox(spool)
    claim = outbox.put(b'{"n": 1}')
    assert claim.path.read_bytes() == b'{"n": 1}'  # the event as is; the code is in the name
    outbox.settle(claim, "dead", {"status": 422})
    (again,) = outbox.claim(1, dead=True)
    assert again.body == b'{"n": 1}'
    assert (spool / ".entry-key").stat().st_mode & 0o777 == 0o600


def test_symlinked_pending_is_refused_and_nothing_is_sent(fake_alation, token, spool, tmp_path) -> None:
    outbox = LocalOutbox(spool)
    genuine(outbox, 1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    os.rename(outbox.pending, elsewhere / "real-pending")
    os.symlink(elsewhere / "real-pending", outbox.pending)
    with pytest.raises(UnsafeDirectory) as refused:
        bounded(lambda: replay_spool(fake_alation, token, spool))
    assert "symbolic link" in str(refused.value) and "Fix:" in str(refused.value)
    assert fake_alation.posts_started == 0


def test_group_writable_spool_dir_one_clear_message_and_nothing_planted_sent(
    fake_alation, token, spool, tmp_path, alation_logs
) -> None:
    outbox = LocalOutbox(spool)
    outbox.settle(outbox.put(b"{}"), "sent")  # the folders exist
    (spool / "pending" / "planted.json").write_bytes(planted_event())
    spool.chmod(0o770)
    values = config(fake_alation.url, token, spool, fake_alation.cert_path, drain_max_events=5)
    transport = AlationTransport(AlationConfig.from_dict(values))
    for _ in range(3):  # delivered without the outbox; the drain does not read the unsafe folder
        assert bounded(lambda: transport.emit(distinct_event())).kind == "sent"
    assert fake_alation.posts_started == 3
    assert_nothing_planted_sent(fake_alation)
    messages = [r.getMessage() for r in alation_logs.records if f"chmod 700 {spool}" in r.getMessage()]
    assert len(messages) == 1 and "group-writable" in messages[0]
    assert (spool / "pending" / "planted.json").exists()  # not touched


def test_cli_replay_quarantines_and_reports_or_names_the_fix(catalogued, token, tmp_path) -> None:
    spool = tmp_path / "spool"
    outbox = LocalOutbox(spool)
    genuine(outbox, 2)
    plant_everything(outbox, tmp_path)
    extra = {"spool_dir": str(spool), "discover_datasources": False}
    done = run_cli(catalogued, token, tmp_path, "replay", "--json", extra=extra)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    assert (summary["sent"], summary["quarantined"]) == (2, 6)
    assert catalogued.posts_started == 2
    assert_nothing_planted_sent(catalogued)
    (spool / "pending" / "y.json").mkdir()
    table = run_cli(catalogued, token, tmp_path, "replay", extra=extra)
    assert table.returncode == 0, table.stderr
    assert "quarantined, never sent" in table.stdout and str(outbox.quarantine) in table.stdout
    spool.chmod(0o777)
    refused = run_cli(catalogued, token, tmp_path, "replay", extra=extra)
    assert refused.returncode == 2
    assert f"chmod 700 {spool}" in refused.stderr and "Traceback" not in refused.stderr


# -- the discovery and token caches -------------------------------------------------------------------
def test_planted_discovery_cache_is_not_used(catalogued, token, tmp_path) -> None:
    cache_dir = tmp_path / "cache"
    settings = settings_for(catalogued, token, cache_dir)
    cache = DiscoveryCache(cache_dir, settings.url)
    planted = {
        "url": settings.url,
        "fetched_at": time.time(),
        "datasources": [{"id": 666, "title": "Planted", "uri": "postgresql://evil.example.com:5432/x"}],
    }
    check_private_dir(cache_dir)
    for content in (
        json.dumps(planted).encode(),
        b"hmac-sha256:" + b"0" * 64 + b"\n" + json.dumps(planted).encode(),
    ):
        cache.path.write_bytes(content)
        _MEMO.clear()
        assert cache.read() is None
    result = load(settings)
    assert result.state == "refreshed" and all(s.title != "Planted" for s in result.sources)
    assert catalogued.api_requests()
    # A FIFO or a /dev/zero link as the cache file: ignored at once, Alation is read again.
    for plant in (lambda p: os.mkfifo(p), lambda p: os.symlink("/dev/zero", p)):
        cache.path.unlink()
        plant(cache.path)
        _MEMO.clear()
        assert bounded(cache.read, timeout=10) is None


def test_group_writable_cache_dir_is_not_used(catalogued, token, tmp_path, alation_logs) -> None:
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir(mode=0o700)
    cache_dir.chmod(0o775)
    result = load(settings_for(catalogued, token, cache_dir))
    assert result.state == "refreshed"  # resolution goes on, without the cache
    assert not list(cache_dir.glob("datasources-*"))
    assert f"chmod 700 {cache_dir}" in alation_logs.text


def test_token_cache_reads_only_a_regular_file(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    cache = AccessTokenCache(cache_dir, "https://alation.example.com", 7, "refresh-" + "x" * 20)
    cache.write("access", time.time() + 3600)
    assert cache.read() is not None
    for plant in (lambda p: os.mkfifo(p), lambda p: os.symlink("/dev/zero", p), lambda p: p.mkdir()):
        if cache.path.is_dir() and not cache.path.is_symlink():
            cache.path.rmdir()
        else:
            cache.path.unlink()
        plant(cache.path)
        assert bounded(cache.read, timeout=10) is None


def test_unsafe_key_file_names_the_fix(spool: Path) -> None:
    outbox = LocalOutbox(spool)
    genuine(outbox, 1)
    (spool / ".entry-key").chmod(0o644)
    with pytest.raises(UnsafeDirectory, match="chmod 600"):
        LocalOutbox(spool).counts()


@pytest.fixture(autouse=True)
def _quiet_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="airflow_provider_alation")
