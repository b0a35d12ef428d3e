"""The outbox: every gated event is on disk before the first network attempt, and leaves it only on
a 2xx or into the dead-letter folder with the reason.

Disk edge, no network, no Airflow. :class:`Outbox` is the interface the transport and the replayer
use (``put``, ``claim``, ``settle``, ``list``), so that an object-storage backend with the same
once-only claims can replace :class:`LocalOutbox` where a worker's disk dies with it (Kubernetes
executor pods).

:class:`LocalOutbox` keeps one file per event under ``spool_dir``::

    pending/<entry>.json                 waiting to be sent, by anyone
    claimed/<entry>@<claimed_ms>-<n>[-dead].json  being sent by one process (its claim; its age is
                                          the file's mtime, touched when claimed)
    dead/<entry>.json + <entry>.reason.json  refused by Alation for good, with the reason

``<entry>`` is ``<queued_ns>-<random>-<bytes>``: ordered by age, unique, its size in the name so
the caps need no ``stat``. Every move is one ``rename``, atomic on a local or shared (NFS) file
system, so of several processes or machines claiming the same file exactly one wins. A claim
older than the lease (its owner died, e.g. SIGKILL mid-send) goes back to ``pending``. Above the
caps, the oldest waiting entries (pending or dead) are dropped.
Files are written atomically (temporary file, fsync, rename; mode 0600); they hold the event,
never the token.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from airflow_provider_alation.disk import atomic_write
from airflow_provider_alation.settings import AlationSettings

log = logging.getLogger(__name__)

State = Literal["pending", "claimed", "dead"]
Verdict = Literal["sent", "retry", "dead"]
#: How much of Alation's answer is kept with a dead letter.
RESPONSE_HEAD_BYTES = 512


@dataclass(frozen=True)
class Claim:
    """An entry this process holds: send ``body``, then :meth:`Outbox.settle` it."""

    entry: str
    body: bytes
    path: Path
    was_dead: bool = False


@dataclass(frozen=True)
class EntryInfo:
    entry: str
    state: State
    size: int
    queued_at: float
    reason: dict[str, object] | None = None


@dataclass(frozen=True)
class Dropped:
    """Entries removed because the outbox was over its caps (oldest first)."""

    count: int
    bytes: int


class Outbox(Protocol):
    """What the transport and the replayer need from an outbox."""

    def put(self, body: bytes) -> Claim:
        """Store ``body`` durably, already claimed by the caller (it is about to send it)."""

    def claim(self, limit: int, *, dead: bool = False, entries: Sequence[str] | None = None) -> list[Claim]:
        """Claim up to ``limit`` entries, oldest first, or exactly ``entries`` (those still there)."""

    def settle(self, claim: Claim, verdict: Verdict, reason: dict[str, object] | None = None) -> None:
        """``sent``: remove; ``retry``: back where it came from; ``dead``: to the dead letters."""

    def list(self, state: State | None = None) -> list[EntryInfo]:
        """Every entry (of one state), oldest first."""


def _entry_name(size: int) -> str:
    return f"{time.time_ns():020d}-{secrets.token_hex(6)}-{size}"


def _entry_of(name: str) -> str:
    """``<entry>`` from ``<entry>.json`` or ``<entry>@<claim>.json``."""
    return name.removesuffix(".json").split("@", 1)[0]


def _size_of(entry: str) -> int:
    tail = entry.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _waiting_size(name: str) -> int:
    """The size in ``<entry>.json`` (pending or dead), without building the entry first."""
    tail = name[:-5].rpartition("-")[2]
    return int(tail) if tail.isdigit() else 0


def _queued_at(entry: str) -> float:
    head = entry.split("-", 1)[0]
    return int(head) / 1e9 if head.isdigit() else 0.0


class LocalOutbox:
    """The outbox as files under a directory (local disk or a volume shared by several workers).

    A claim's age is its file's modification time, set when it is claimed and compared with a
    probe file's, so on a shared (NFS) volume both come from the file server's clock, not from
    machines whose clocks may differ.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        max_events: int = 10_000,
        max_bytes: int = 256 * 1024 * 1024,
        lease_seconds: float = 120.0,
    ) -> None:
        self.dir = Path(directory)
        self.pending = self.dir / "pending"
        self.claimed = self.dir / "claimed"
        self.dead = self.dir / "dead"
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.lease_seconds = lease_seconds

    def __repr__(self) -> str:
        return f"LocalOutbox({str(self.dir)!r})"

    def _ensure(self) -> None:
        for folder in (self.pending, self.claimed, self.dead):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _claim_path(self, entry: str, dead: bool = False) -> Path:
        marker = "-dead" if dead else ""
        return self.claimed / f"{entry}@{int(time.time() * 1000)}-{secrets.token_hex(3)}{marker}.json"

    @staticmethod
    def _names(folder: Path) -> list[str]:
        try:
            with os.scandir(folder) as entries:
                return [e.name for e in entries if e.name.endswith(".json") and not e.name.startswith(".")]
        except FileNotFoundError:
            return []

    def _events(self, folder: Path) -> list[str]:
        return [n for n in self._names(folder) if not n.endswith(".reason.json")]

    # -- put -----------------------------------------------------------------------------------
    def put(self, body: bytes) -> Claim:
        self._ensure()
        entry = _entry_name(len(body))
        path = self._claim_path(entry)
        atomic_write(path, body)
        return Claim(entry, body, path)

    def enforce_caps(self) -> Dropped:
        """Drop the oldest waiting entries (pending or dead) while the outbox is over a cap."""
        pending, dead = self._events(self.pending), self._events(self.dead)
        claimed = self._names(self.claimed)
        count = len(pending) + len(dead) + len(claimed)
        total = sum(map(_waiting_size, pending)) + sum(map(_waiting_size, dead))
        total += sum(_size_of(_entry_of(n)) for n in claimed)
        if count <= self.max_events and total <= self.max_bytes:
            return Dropped(0, 0)  # the common case: one listing, no sorting
        waiting = sorted(
            [(_entry_of(n), self.pending / n) for n in pending]
            + [(_entry_of(n), self.dead / n) for n in dead]
        )
        dropped = Dropped(0, 0)
        for entry, path in waiting:
            if count <= self.max_events and total <= self.max_bytes:
                break
            size = _size_of(entry)
            try:
                path.unlink()
            except FileNotFoundError:  # claimed meanwhile: still in the outbox, keep counting it
                continue
            if path.parent == self.dead:
                with contextlib.suppress(OSError):
                    (self.dead / f"{entry}.reason.json").unlink()
            dropped = Dropped(dropped.count + 1, dropped.bytes + size)
            count -= 1
            total -= size
        return dropped

    # -- claim ---------------------------------------------------------------------------------
    def _server_now(self) -> float:
        """The file system's idea of now (the file server's clock on NFS)."""
        probe = self.claimed / f".probe-{os.getpid()}-{secrets.token_hex(3)}"
        probe.touch()
        try:
            return probe.stat().st_mtime
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()

    def reclaim_stale(self, lease_seconds: float | None = None) -> int:
        """Claims older than the lease (their owner died) go back where they came from; stray
        temporary files of killed writers are removed. Returns how many claims were put back."""
        lease = self.lease_seconds if lease_seconds is None else lease_seconds
        try:
            with os.scandir(self.claimed) as entries:
                names = [(e.name, e.stat().st_mtime) for e in entries]
        except FileNotFoundError:
            return 0
        if not names:  # the common case (every drain asks): no probe file to write and remove
            return 0
        try:
            now = self._server_now()
        except FileNotFoundError:
            return 0
        moved = 0
        for name, mtime in names:
            if now - mtime < lease:
                continue
            if name.startswith("."):  # .<name>.tmp of a writer killed mid-write
                if name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        (self.claimed / name).unlink()
                continue
            folder = self.dead if name.endswith("-dead.json") else self.pending
            try:
                os.rename(self.claimed / name, folder / f"{_entry_of(name)}.json")
            except FileNotFoundError:
                continue  # another replayer reclaimed it first
            moved += 1
        return moved

    def _take(self, folder: Path, name: str, dead: bool) -> Claim | None:
        source = folder / name
        entry = _entry_of(name)
        target = self._claim_path(entry, dead)
        try:
            os.utime(source)  # fresh mtime first: a claim is never born looking stale
            os.rename(source, target)  # the one atomic step: exactly one claimer wins
            body = target.read_bytes()
        except FileNotFoundError:
            return None
        return Claim(entry, body, target, was_dead=dead)

    def claim(self, limit: int, *, dead: bool = False, entries: Sequence[str] | None = None) -> list[Claim]:
        folder = self.dead if dead else self.pending
        names = [f"{e}.json" for e in entries] if entries is not None else sorted(self._events(folder))
        claims: list[Claim] = []
        for name in names:
            if len(claims) >= limit:
                break
            taken = self._take(folder, name, dead)
            if taken is not None:
                claims.append(taken)
        return claims

    # -- settle --------------------------------------------------------------------------------
    def settle(self, claim: Claim, verdict: Verdict, reason: dict[str, object] | None = None) -> None:
        if verdict == "sent":
            try:
                claim.path.unlink()
            except FileNotFoundError:
                log.warning(
                    "Alation lineage: outbox entry %s was reclaimed by another process while it was being "
                    "sent (its lease of %gs ran out); it may be sent twice",
                    claim.entry,
                    self.lease_seconds,
                )
            if claim.was_dead:
                with contextlib.suppress(OSError):
                    (self.dead / f"{claim.entry}.reason.json").unlink()
            return
        dead = verdict == "dead" or claim.was_dead
        destination = (self.dead if dead else self.pending) / f"{claim.entry}.json"
        try:
            os.rename(claim.path, destination)  # first the event, so a full disk cannot strand it
        except FileNotFoundError:
            return  # reclaimed by another process: it owns the entry now
        if verdict == "dead":
            with contextlib.suppress(OSError):  # the reason is best effort (ENOSPC, ...)
                atomic_write(
                    self.dead / f"{claim.entry}.reason.json",
                    json.dumps({**(reason or {}), "dead_at": time.time()}, default=str).encode(),
                )

    # -- list ----------------------------------------------------------------------------------
    def list(self, state: State | None = None) -> list[EntryInfo]:
        infos: list[EntryInfo] = []
        folders: tuple[tuple[State, Path], ...] = (
            ("pending", self.pending),
            ("claimed", self.claimed),
            ("dead", self.dead),
        )
        for folder_state, folder in folders:
            if state is not None and folder_state != state:
                continue
            for name in self._events(folder):
                entry = _entry_of(name)
                reason = None
                if folder_state == "dead":
                    with contextlib.suppress(OSError, ValueError):
                        reason = json.loads((self.dead / f"{entry}.reason.json").read_bytes())
                infos.append(EntryInfo(entry, folder_state, _size_of(entry), _queued_at(entry), reason))
        return sorted(infos, key=lambda info: info.entry)

    def counts(self) -> dict[str, int]:
        return {
            "pending": len(self._events(self.pending)),
            "claimed": len(self._names(self.claimed)),
            "dead": len(self._events(self.dead)),
        }


def outbox_for(settings: AlationSettings) -> LocalOutbox:
    """The outbox the settings describe (``spool_dir``, caps, lease)."""
    return LocalOutbox(
        settings.spool_dir,
        max_events=settings.outbox_max_events,
        max_bytes=settings.outbox_max_bytes,
        lease_seconds=settings.outbox_lease,
    )
