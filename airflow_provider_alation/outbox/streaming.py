"""Once per run: which streaming runs were already forwarded as a COMPLETE (``stream_as_complete``).

One empty marker file per run id (and tenant) under ``cache_dir/streaming/``, created with ``O_EXCL``, so of
every process, worker and relay sharing ``cache_dir`` exactly one forwards a run's lineage. Markers
older than :data:`MARKER_TTL_SECONDS` are removed, and beyond :data:`MAX_MARKERS` the oldest go
(checked whenever a new run is marked), so the folder cannot grow without bound; a run whose
marker is gone and that still emits is forwarded again, which describes the same run.

When the folder cannot be used (not writable, not private) the markers are kept in this process's
memory instead, with one warning: runs are then forwarded once per process.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path

from airflow_provider_alation.outbox.disk import check_private_dir, create_marker, prune_markers

log = logging.getLogger(__name__)

#: A forwarded run is remembered this long (30 days).
MARKER_TTL_SECONDS = 30 * 24 * 3600.0
#: At most this many forwarded runs are remembered; the oldest are forgotten first.
MAX_MARKERS = 10_000
#: Runs remembered in memory when the folder cannot be used.
_MEMORY_LIMIT = 10_000


class ForwardedRuns:
    """The runs already forwarded, on disk under ``directory`` (``None``: in memory only, dry_run)."""

    def __init__(self, directory: Path | None, scope: str = "") -> None:
        self.directory = directory
        self.scope = scope  # the tenant: one cache_dir may serve several
        self._lock = threading.Lock()
        self._memory: dict[str, None] = {}
        self._usable: bool | None = None if directory is not None else False

    def first(self, run_id: str) -> bool:
        """Mark ``run_id`` forwarded: True for the one caller that marked it first, else False."""
        key = f"{self.scope}\0{run_id}".encode("utf-8", "surrogatepass")
        name = hashlib.sha256(key).hexdigest()[:40]
        if self._disk():
            assert self.directory is not None
            try:
                created = create_marker(self.directory / name)
            except OSError as exc:
                self._give_up(exc)
            else:
                if created:
                    self._prune()
                return created
        with self._lock:
            if name in self._memory:
                return False
            self._memory[name] = None
            if len(self._memory) > _MEMORY_LIMIT:
                self._memory.pop(next(iter(self._memory)))
            return True

    def _disk(self) -> bool:
        if self._usable is None:
            assert self.directory is not None
            try:
                check_private_dir(self.directory, "streaming runs directory")
            except OSError as exc:
                self._give_up(exc)
            else:
                self._usable = True
        return bool(self._usable)

    def _give_up(self, exc: OSError) -> None:
        self._usable = False
        log.warning(
            "Alation lineage: cannot record forwarded streaming runs in %s (%s); they are remembered in "
            "this process only, so another process may forward a run's lineage again. Fix: make "
            "cache_dir writable and private to this user (chmod 700).",
            self.directory,
            exc,
        )

    def _prune(self) -> None:
        assert self.directory is not None
        try:
            prune_markers(self.directory, MARKER_TTL_SECONDS, MAX_MARKERS, time.time())
        except OSError as exc:
            log.debug("Alation lineage: pruning %s failed: %s", self.directory, exc)
