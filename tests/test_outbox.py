"""The local outbox: durable write-ahead, once-only claims across threads and processes, caps."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from airflow_provider_alation.outbox.store import LocalOutbox


def filled(tmp_path: Path, count: int, **kwargs) -> LocalOutbox:
    outbox = LocalOutbox(tmp_path / "spool", **kwargs)
    for n in range(count):
        outbox.settle(outbox.put(json.dumps({"n": n}).encode()), "retry")
    return outbox


def test_put_is_on_disk_claimed_and_private(tmp_path: Path) -> None:
    outbox = LocalOutbox(tmp_path / "spool")
    claim = outbox.put(b'{"event": 1}')
    assert claim.path.parent == outbox.claimed
    assert claim.path.read_bytes() == b'{"event": 1}'
    assert claim.path.stat().st_mode & 0o777 == 0o600
    assert outbox.claim(10) == []  # a claimed entry is nobody else's
    assert outbox.counts() == {"pending": 0, "claimed": 1, "dead": 0}


def test_settle_sent_retry_dead(tmp_path: Path) -> None:
    outbox = LocalOutbox(tmp_path / "spool")
    sent, retry, dead = (outbox.put(f'{{"n": {n}}}'.encode()) for n in range(3))
    outbox.settle(sent, "sent")
    outbox.settle(retry, "retry")
    outbox.settle(dead, "dead", {"status": 422, "response_head": "bad facet"})
    assert outbox.counts() == {"pending": 1, "claimed": 0, "dead": 1}
    (dead_info,) = [info for info in outbox.list() if info.state == "dead"]
    assert dead_info.reason is not None and dead_info.reason["status"] == 422
    assert dead_info.reason["response_head"] == "bad facet"
    # A dead letter is only claimed with dead=True; settled "sent", its reason goes too.
    assert [c.body for c in outbox.claim(10)] == [b'{"n": 1}']
    (again,) = outbox.claim(10, dead=True)
    outbox.settle(again, "sent")
    assert list(outbox.dead.iterdir()) == []


def test_claims_oldest_first(tmp_path: Path) -> None:
    outbox = filled(tmp_path, 5)
    assert [json.loads(c.body)["n"] for c in outbox.claim(3)] == [0, 1, 2]


def test_threads_claim_each_entry_once(tmp_path: Path) -> None:
    outbox = filled(tmp_path, 400)
    taken: list[list[int]] = [[] for _ in range(8)]

    def worker(slot: int) -> None:
        mine = LocalOutbox(outbox.dir)
        while claims := mine.claim(7):
            taken[slot].extend(json.loads(c.body)["n"] for c in claims)
            for claim in claims:
                mine.settle(claim, "sent")

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [n for part in taken for n in part]
    assert sorted(everything) == list(range(400))
    assert sum(1 for part in taken if part) > 1  # really concurrent


def test_processes_claim_each_entry_once(tmp_path: Path) -> None:
    outbox = filled(tmp_path, 300)
    script = (
        "import json, sys\n"
        "from airflow_provider_alation.outbox.store import LocalOutbox\n"
        "box = LocalOutbox(sys.argv[1]); got = []\n"
        "while claims := box.claim(5):\n"
        "    got += [json.loads(c.body)['n'] for c in claims]\n"
        "    [box.settle(c, 'sent') for c in claims]\n"
        "print(json.dumps(got))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(outbox.dir)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    results = [json.loads(proc.communicate(timeout=120)[0]) for proc in procs]
    assert sorted(n for part in results for n in part) == list(range(300))


def test_stale_claims_go_back_to_pending(tmp_path: Path) -> None:
    outbox = LocalOutbox(tmp_path / "spool", lease_seconds=60)
    outbox.put(b'{"killed": "mid-send"}')
    outbox.settle(outbox.put(b'{"dead": 1}'), "dead", {"status": 400})
    (dead,) = outbox.claim(1, dead=True)
    assert outbox.reclaim_stale() == 0  # younger than the lease
    assert outbox.reclaim_stale(lease_seconds=0) == 2
    assert outbox.counts() == {"pending": 1, "claimed": 0, "dead": 1}  # the dead letter stays dead
    assert dead.path.exists() is False


def test_caps_drop_the_oldest_pending(tmp_path: Path) -> None:
    outbox = filled(tmp_path, 8, max_events=5)
    dropped = outbox.enforce_caps()
    assert dropped.count == 3
    assert [json.loads(c.body)["n"] for c in outbox.claim(10)] == [3, 4, 5, 6, 7]
    by_bytes = filled(tmp_path / "b", 10, max_bytes=4 * len(b'{"n": 0}'))
    assert by_bytes.enforce_caps().count == 6


def test_a_claim_is_never_born_stale(tmp_path: Path) -> None:
    import os
    import time

    outbox = filled(tmp_path, 3, lease_seconds=60)
    for path in outbox.pending.iterdir():  # waiting for replay for an hour
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    claims = outbox.claim(3)
    assert len(claims) == 3
    assert outbox.reclaim_stale() == 0  # another replayer must not take them back


def test_stray_temporary_files_of_killed_writers_are_removed(tmp_path: Path) -> None:
    import os
    import time

    outbox = LocalOutbox(tmp_path / "spool", lease_seconds=60)
    outbox.put(b"{}")
    stray = outbox.claimed / ".00001-abc-2@1-x.json.tmp"
    stray.write_bytes(b"half an event")
    os.utime(stray, (time.time() - 3600, time.time() - 3600))
    outbox.reclaim_stale()
    assert not stray.exists()


def test_caps_count_and_drop_dead_letters_too(tmp_path: Path) -> None:
    outbox = LocalOutbox(tmp_path / "spool", max_events=4)
    for n in range(6):
        outbox.settle(outbox.put(json.dumps({"n": n}).encode()), "dead" if n % 2 == 0 else "retry", {"n": n})
    assert outbox.enforce_caps().count == 2
    folders = {"pending": outbox.pending, "dead": outbox.dead}
    left = sorted(
        json.loads((folders[info.state] / f"{info.entry}.json").read_bytes())["n"] for info in outbox.list()
    )
    assert left == [2, 3, 4, 5]
    assert len(list(outbox.dead.glob("*.reason.json"))) == 2  # the dropped dead letters' reasons went too


def test_a_full_disk_cannot_strand_a_dead_letter(tmp_path: Path, monkeypatch) -> None:
    from airflow_provider_alation.outbox import store as outbox_module

    outbox = LocalOutbox(tmp_path / "spool")
    claim = outbox.put(b'{"n": 1}')

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outbox_module, "atomic_write", no_space)
    outbox.settle(claim, "dead", {"status": 400})
    assert outbox.counts() == {"pending": 0, "claimed": 0, "dead": 1}


def test_an_entry_cut_short_is_quarantined_never_sent(tmp_path: Path, caplog) -> None:
    """A machine crash before put() returned may leave an entry's name with a short file (it is
    created under its name, then fsynced): it is never sent, and the reason says so."""
    outbox = filled(tmp_path, 1)
    (pending,) = outbox.pending.glob("*.json")
    pending.write_bytes(pending.read_bytes()[:3])
    assert outbox.claim(10) == []
    assert outbox.quarantined == 1 and len(list(outbox.quarantine.iterdir())) == 1
    assert "cut short" in caplog.text


def test_put_leaves_no_temporary_file_and_removes_what_it_could_not_make_durable(
    tmp_path: Path, monkeypatch
) -> None:
    import os

    outbox = LocalOutbox(tmp_path / "spool")
    outbox.put(b'{"n": 1}')
    assert [p.name for p in outbox.claimed.iterdir() if p.name.startswith(".")] == []

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    try:
        outbox.put(b'{"n": 2}')
    except OSError:
        pass
    else:
        raise AssertionError("put() returned without its fsync")
    assert len(list(outbox.claimed.iterdir())) == 1  # only the first entry: nothing half-durable left


def test_a_claim_cut_short_by_a_killed_writer_is_quarantined_after_its_lease(tmp_path: Path, caplog) -> None:
    """put() creates the claim in place (no temporary name): a writer killed half-way leaves a short
    file under the claim's name. No one reads it within its lease; then it goes back to pending and
    fails its size check there, so it is quarantined with the reason, never sent."""
    import os
    import time

    outbox = LocalOutbox(tmp_path / "spool", lease_seconds=60)
    outbox.prepare()
    body = json.dumps({"eventType": "COMPLETE", "pad": "x" * 5000}).encode()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the writer, killed after half of the event
        real_write = os.write

        def half_then_die(fd: int, data: bytes | memoryview) -> int:
            real_write(fd, bytes(data[: len(data) // 2]))
            os._exit(0)

        os.write = half_then_die  # type: ignore[assignment]
        try:
            outbox.put(body, durable=False)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the writer was not cut off mid-write"
    (left,) = outbox.claimed.iterdir()
    assert 0 < left.stat().st_size < len(body)
    assert outbox.reclaim_stale() == 0 and outbox.claim(10) == []  # within its lease: untouched
    old = time.time() - 3600
    os.utime(left, (old, old))
    assert outbox.reclaim_stale() == 1
    assert outbox.claim(10) == []
    assert outbox.quarantined == 1 and list(outbox.claimed.iterdir()) == []
    assert "cut short (its writer was killed" in caplog.text


def test_a_write_that_fails_half_way_leaves_no_claim(tmp_path: Path, monkeypatch) -> None:
    import os

    outbox = LocalOutbox(tmp_path / "spool")
    outbox.prepare()
    real_write = os.write
    calls = []

    def full_after_some(fd: int, data: bytes | memoryview) -> int:
        calls.append(len(data))
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        return real_write(fd, bytes(data[:100]))  # a short write: put() must go on, then fails

    monkeypatch.setattr(os, "write", full_after_some)
    with pytest.raises(OSError, match="No space"):
        outbox.put(b"x" * 1000, durable=False)
    assert len(calls) == 2
    assert list(outbox.claimed.iterdir()) == []


def test_a_claim_still_being_written_is_not_reclaimed_even_when_asked_to_at_once(
    tmp_path: Path, caplog
) -> None:
    """``replay --reclaim-after 0`` while a task writes: a claim shorter than its name says may be
    mid-write (put() creates it in place), so it waits for the outbox's own lease; a complete one is
    taken at once, and its sender's settle then says another process has it."""
    import os
    import time

    outbox = LocalOutbox(tmp_path / "spool", lease_seconds=60)
    body = json.dumps({"eventType": "COMPLETE", "pad": "x" * 3000}).encode()
    writing = outbox.put(body, durable=False)
    complete = outbox.put(b'{"n": 2}', durable=False)
    with open(writing.path, "r+b") as half:  # as seen half-way through its write
        half.truncate(len(body) // 2)
    assert outbox.reclaim_stale(lease_seconds=0) == 1  # only the complete one
    assert writing.path.exists() and not complete.path.exists()
    with caplog.at_level(logging.WARNING):
        outbox.settle(complete, "retry")
    assert "was reclaimed while it was being sent" in caplog.text
    old = time.time() - 3600  # past the outbox's own lease: its writer died half-way
    os.utime(writing.path, (old, old))
    assert outbox.reclaim_stale(lease_seconds=0) == 1
    assert [c.body for c in outbox.claim(10)] == [b'{"n": 2}']  # the short one is quarantined
    assert outbox.quarantined == 1
