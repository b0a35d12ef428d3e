"""bench/relay_load.py still runs and accounts for every event (no timing is asserted here)."""

from __future__ import annotations

import json

from tests.test_bench import run_bench


def test_relay_load_benchmark_loses_and_duplicates_nothing_through_an_outage() -> None:
    done = run_bench(
        "relay_load.py",
        *("--senders", "2", "--workers", "2", "--phases", "200:3,503:3,200:3"),
        # the relay's outbox fills during the outage: it answers 503, senders retry
        *("--outbox-max-events", "50", "--drain-timeout", "240"),
    )
    assert done.stdout, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["acked"] > 0, report
    assert report["lost"] == 0, report
    assert report["duplicated"] == 0, report
    assert report["received"] == report["acked"], report
    # The outage was real: Alation refused events, and they were delivered afterwards; the relay's
    # outbox reached its cap and the relay answered 503 (Retry-After) rather than drop any.
    assert report["alation_statuses"].get("503", 0) > 0, report
    assert report["relay_503"] > 0, report
    assert report["outbox_left"] == {"pending": 0, "claimed": 0, "dead": 0}, report
    assert report["relay_rss_mb"]["peak"] > 0
    assert done.returncode == 0, done.stderr[-3000:]
