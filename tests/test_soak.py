"""Soak: 1,000 events from four processes at once across an Alation outage; 0 lost, 0 duplicated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from airflow_provider_alation.outbox.store import LocalOutbox
from tests.support.airflow_home import REPO
from tests.test_faults import replay_all

PROCESSES, PER_PROCESS = 4, 250
BUDGET = 0.5


def test_soak_across_an_outage_loses_and_duplicates_nothing(fake_alation, token, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    values = {
        "url": fake_alation.url,
        "token": token,
        "verify": str(fake_alation.cert_path),
        "spool_dir": str(spool),
        "time_budget": BUDGET,
        "timeout": 0.4,
        "drain_max_events": 5,
    }
    outage: dict[str, float] = {}

    def outage_in_the_middle() -> None:
        # Alation goes down once a fifth of the events are in, for three seconds.
        while len(fake_alation.events) < PROCESSES * PER_PROCESS // 5:
            time.sleep(0.01)
        fake_alation.lineage_down = True
        outage["start"] = time.monotonic()
        time.sleep(3)
        fake_alation.lineage_down = False
        outage["end"] = time.monotonic()

    watcher = threading.Thread(target=outage_in_the_middle, daemon=True)
    watcher.start()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.support.emitter", json.dumps(values), str(PER_PROCESS)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    reports = [json.loads(p.communicate(timeout=600)[0]) for p in processes]
    watcher.join(timeout=30)
    assert "end" in outage, "the outage never happened: the emitters finished too early"

    refused = sum(1 for r in fake_alation.requests if r.status == 503)
    assert refused > 0  # events really met the outage
    assert all(report["slowest"] < BUDGET + 0.5 for report in reports), reports
    # Two replayers at once drain what the outage left (the emitters' drains sent the rest).
    summaries = []
    threads = [threading.Thread(target=lambda: summaries.append(replay_all(values))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    run_ids = [event["run"]["runId"] for event in fake_alation.events]
    assert len(run_ids) == PROCESSES * PER_PROCESS, f"lost {PROCESSES * PER_PROCESS - len(set(run_ids))}"
    assert len(set(run_ids)) == len(run_ids), "duplicated"
    assert LocalOutbox(spool).counts() == {"pending": 0, "claimed": 0, "dead": 0}
    print(
        f"soak: {len(run_ids)} events, {refused} refused during the outage, "
        f"{sum(s.sent for s in summaries)} sent by the final replay, slowest emit "
        f"{max(r['slowest'] for r in reports):.3f}s"
    )
