"""The outbox: every gated event is on disk before the first network attempt, and leaves it only on
a 2xx or into the dead-letter folder with the reason.

Disk edge, no network, no Airflow. :class:`Outbox` is the interface the transport and the replayer
use (``put``, ``claim``, ``settle``, ``list``), so that an object-storage backend with the same
once-only claims can replace :class:`LocalOutbox` where a worker's disk dies with it (Kubernetes
executor pods).

:class:`LocalOutbox` keeps one file per event under ``spool_dir``::

    pending/<entry>.json                 waiting to be sent, by anyone
    claimed/<entry>@<claimed_ms>-<n>[-dead].json  being sent by one process (its claim)
    dead/<entry>.json + <entry>.reason.json  refused by Alation for good, with the reason

``<entry>`` is ``<queued_ns>-<random>-<bytes>``: ordered by age, unique, its size in the name so
the caps need no ``stat``. Every move is one ``rename``, atomic on a local or shared (NFS) file
system, so of several processes or machines claiming the same file exactly one wins. A claim
older than the lease (its owner died, e.g. SIGKILL mid-send) goes back to ``pending``.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from airflow_provider_alation.disk import atomic_write

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

    def claim(self, limit: int, *, dead: bool = False) -> list[Claim]:
        """Claim up to ``limit`` entries, oldest first (dead letters with ``dead``)."""

    def settle(self, claim: Claim, verdict: Verdict, reason: dict[str, object] | None = None) -> None:
        """``sent``: remove; ``retry``: back to pending; ``dead``: to the dead letters, with ``reason``."""

    def list(self) -> list[EntryInfo]:
        """Every entry, oldest first."""


def _entry_name(size: int) -> str:
    return f"{time.time_ns():020d}-{secrets.token_hex(6)}-{size}"


def _entry_of(name: str) -> str:
    """``<entry>`` from ``<entry>.json`` or ``<entry>@<claim>.json``."""
    return name.removesuffix(".json").split("@", 1)[0]


def _size_of(entry: str) -> int:
    tail = entry.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _queued_at(entry: str) -> float:
    head = entry.split("-", 1)[0]
    return int(head) / 1e9 if head.isdigit() else 0.0


class LocalOutbox:
    """The outbox as files under a directory (local disk or a volume shared by several workers)."""

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

    # -- put -----------------------------------------------------------------------------------
    def put(self, body: bytes) -> Claim:
        self._ensure()
        entry = _entry_name(len(body))
        path = self._claim_path(entry)
        atomic_write(path, body)
        return Claim(entry, body, path)

    def enforce_caps(self) -> Dropped:
        """Drop the oldest pending entries while the outbox is over ``max_events`` or ``max_bytes``."""
        names = sorted(self._names(self.pending)) if self.pending.is_dir() else []
        claimed = self._names(self.claimed) if self.claimed.is_dir() else []
        count = len(names) + len(claimed)
        total = sum(_size_of(_entry_of(n)) for n in names) + sum(_size_of(_entry_of(n)) for n in claimed)
        dropped = Dropped(0, 0)
        for name in names:
            if count <= self.max_events and total <= self.max_bytes:
                break
            size = _size_of(_entry_of(name))
            with contextlib.suppress(FileNotFoundError):  # another process may have claimed it
                (self.pending / name).unlink()
                dropped = Dropped(dropped.count + 1, dropped.bytes + size)
            count -= 1
            total -= size
        return dropped

    # -- claim ---------------------------------------------------------------------------------
    @staticmethod
    def _names(folder: Path) -> list[str]:
        try:
            with os.scandir(folder) as entries:
                return [e.name for e in entries if e.name.endswith(".json") and not e.name.startswith(".")]
        except FileNotFoundError:
            return []

    def reclaim_stale(self, lease_seconds: float | None = None) -> int:
        """Claims older than the lease (their owner died) go back to pending; returns how many."""
        lease = self.lease_seconds if lease_seconds is None else lease_seconds
        now_ms = time.time() * 1000
        moved = 0
        for name in self._names(self.claimed):
            stamp = name.removesuffix(".json").split("@", 1)[-1].split("-", 1)[0]
            if not stamp.isdigit() or now_ms - int(stamp) < lease * 1000:
                continue
            folder = self.dead if name.endswith("-dead.json") else self.pending
            target = folder / f"{_entry_of(name)}.json"
            try:
                os.rename(self.claimed / name, target)
            except FileNotFoundError:
                continue  # another replayer reclaimed it first
            moved += 1
        return moved

    def claim(self, limit: int, *, dead: bool = False) -> list[Claim]:
        folder = self.dead if dead else self.pending
        claims: list[Claim] = []
        if limit <= 0:
            return claims
        names = sorted(n for n in self._names(folder) if not n.endswith(".reason.json"))
        for name in names:
            entry = _entry_of(name)
            target = self._claim_path(entry, dead)
            try:
                os.rename(folder / name, target)  # the one atomic step: exactly one claimer wins
            except FileNotFoundError:
                continue
            try:
                body = target.read_bytes()
            except OSError:
                continue
            claims.append(Claim(entry, body, target, was_dead=dead))
            if len(claims) >= limit:
                break
        return claims

    # -- settle --------------------------------------------------------------------------------
    def settle(self, claim: Claim, verdict: Verdict, reason: dict[str, object] | None = None) -> None:
        if verdict == "sent":
            with contextlib.suppress(FileNotFoundError):
                claim.path.unlink()
            if claim.was_dead:
                with contextlib.suppress(FileNotFoundError):
                    (self.dead / f"{claim.entry}.reason.json").unlink()
            return
        if verdict == "retry":
            destination = (self.dead if claim.was_dead else self.pending) / f"{claim.entry}.json"
        else:
            destination = self.dead / f"{claim.entry}.json"
            atomic_write(
                self.dead / f"{claim.entry}.reason.json",
                json.dumps({**(reason or {}), "dead_at": time.time()}, default=str).encode(),
            )
        with contextlib.suppress(FileNotFoundError):
            os.rename(claim.path, destination)

    # -- list ----------------------------------------------------------------------------------
    def list(self) -> list[EntryInfo]:
        infos: list[EntryInfo] = []
        for state, folder in (("pending", self.pending), ("claimed", self.claimed), ("dead", self.dead)):
            for name in self._names(folder):
                if name.endswith(".reason.json"):
                    continue
                entry = _entry_of(name)
                reason = None
                if state == "dead":
                    with contextlib.suppress(OSError, ValueError):
                        reason = json.loads((self.dead / f"{entry}.reason.json").read_bytes())
                infos.append(EntryInfo(entry, state, _size_of(entry), _queued_at(entry), reason))  # type: ignore[arg-type]
        return sorted(infos, key=lambda info: info.entry)

    def counts(self) -> dict[str, int]:
        return {
            "pending": len(self._names(self.pending)),
            "claimed": len(self._names(self.claimed)),
            "dead": len([n for n in self._names(self.dead) if not n.endswith(".reason.json")]),
        }

    def __iter__(self) -> Iterator[EntryInfo]:
        return iter(self.list())
