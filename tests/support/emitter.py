"""Emit N distinct lineage events through AlationTransport in this process (fault and soak tests).

    python -m tests.support.emitter '<transport config JSON>' N

Prints one JSON line: how many emits returned each outcome kind, and the slowest emit in seconds.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from openlineage.client.serde import Serde

from airflow_provider_alation.transport import AlationConfig, AlationTransport
from tests.test_gate import make_event


def stand_in_config(fake: Any, token: str, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """Inline transport settings for the HTTPS stand-in ``fake`` (a FakeAlation), the outbox and the
    caches under ``tmp_path``; ``extra`` adds or overrides keys."""
    return {
        "url": fake.url,
        "token": token,
        "verify": str(fake.cert_path),
        "spool_dir": str(tmp_path / "spool"),
        "cache_dir": str(tmp_path / "cache"),
        **extra,
    }


def distinct_event() -> dict[str, Any]:
    event = Serde.to_dict(make_event())
    event["run"]["runId"] = str(uuid.uuid4())
    return event


def main() -> None:
    config, count = json.loads(sys.argv[1]), int(sys.argv[2])
    transport = AlationTransport(AlationConfig.from_dict(config))
    kinds: Counter[str] = Counter()
    slowest = 0.0
    for _ in range(count):
        started = time.monotonic()
        outcome = transport.emit(distinct_event())
        slowest = max(slowest, time.monotonic() - started)
        kinds[outcome.kind if outcome else "none"] += 1
    print(json.dumps({"kinds": kinds, "slowest": slowest}), flush=True)


if __name__ == "__main__":
    main()
