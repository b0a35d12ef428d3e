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
    sent/<entry>.sent                    delivered, to be removed (see :meth:`LocalOutbox.settle`)
    quarantine/<name>                    not this provider's, or cut short: never sent (see below)
    .entry-key                           the random key the entries are authenticated with (0600)

``<entry>`` is ``<queued_ns>-<random>-<mac>-<bytes>``: ordered by age, unique, its size in the name
so the caps need no ``stat``. Every move is one ``rename``, atomic on a local or shared (NFS) file
system, so of several processes or machines claiming the same file exactly one wins. A claim
older than the lease (its owner died, e.g. SIGKILL mid-send) goes back to ``pending``. Above the
caps, the oldest waiting entries (pending or dead) are dropped.
An entry is created under its claim's name and fsynced with its folder (see
:func:`~airflow_provider_alation.outbox.disk.write_new`; mode 0600): no one reads a claim within its
lease, and a file cut short (its writer killed, the machine crashed) fails its size check when it is
claimed again. Entries hold the event, never the token.

The disk is not trusted blindly: an entry is sent with the token only if it is a regular file this
provider wrote. ``<mac>`` is an HMAC-SHA256 (first 128 bits, hex) over the rest of the name and the
file's bytes, keyed by ``.entry-key`` (32 random bytes made once, beside the folders). It is in the
name rather than in the file so that ``put`` stays one atomic write, a move keeps it, and every
entry stays the exact JSON event (to inspect, or to send by hand). A claim reads the file without
following a symbolic link, without blocking (a FIFO), only if it is a regular file of at most its
size in the name (capped at ``max_bytes``); an entry that fails any of this, or whose code does not
verify (planted, or written by a version before entries were signed), is moved to ``quarantine/``
(never sent, never deleted), logged with the reason and counted, and the replay goes on. Folders
are checked once per instance: a symbolic link, a foreign owner, or group/world-writable is refused
with :class:`~airflow_provider_alation.outbox.disk.UnsafeDirectory`, whose message names the fix.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from airflow_provider_alation.outbox.disk import (
    UntrustedFile,
    atomic_write,
    check_private_dir,
    kind_of,
    load_secret,
    mac,
    read_regular_file,
    sync_written,
    write_new,
)
from airflow_provider_alation.settings import AlationSettings

log = logging.getLogger(__name__)

State = Literal["pending", "claimed", "dead"]
Verdict = Literal["sent", "retry", "dead"]
#: How much of Alation's answer is kept with a dead letter.
RESPONSE_HEAD_BYTES = 512
#: The key file, in ``spool_dir``; hex digits of the authentication code kept in an entry's name.
KEY_FILE = ".entry-key"
MAC_HEX = 32
_MAC_DOMAIN = b"airflow-provider-alation/outbox-entry/v1"
#: Dead-letter reasons above this size are not read.
REASON_MAX_BYTES = 64 * 1024


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
    #: Entries waiting in ``pending/`` when the caps were checked (-1: not looked at).
    pending: int = -1
    #: Entries in ``claimed/`` then (the caller's own included; -1: not looked at).
    claimed: int = -1


class Outbox(Protocol):
    """What the transport and the replayer need from an outbox."""

    def put(self, body: bytes) -> Claim:
        """Store ``body`` durably, already claimed by the caller (it is about to send it)."""

    def claim(self, limit: int, *, dead: bool = False, entries: Sequence[str] | None = None) -> list[Claim]:
        """Claim up to ``limit`` entries, oldest first, or exactly ``entries`` (those still there)."""

    def settle(self, claim: Claim, verdict: Verdict, reason: dict[str, object] | None = None) -> None:
        """``sent``: out of the outbox (at once; its file may be removed later); ``retry``: back where it
        came from; ``dead``: to the dead letters."""

    def list(self, state: State | None = None) -> list[EntryInfo]:
        """Every entry (of one state), oldest first."""


def _entry_code(key: bytes, stem: str, body: bytes) -> str:
    return mac(key, _MAC_DOMAIN, stem.encode(), body)[:MAC_HEX]


def _entry_name(key: bytes, body: bytes) -> str:
    queued, nonce = f"{time.time_ns():020d}", secrets.token_hex(6)
    code = _entry_code(key, f"{queued}-{nonce}-{len(body)}", body)
    return f"{queued}-{nonce}-{code}-{len(body)}"


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _signed_parts(entry: str) -> tuple[str, str, int] | None:
    """(the signed stem, the code, the size) of a well-formed entry name, else None."""
    parts = entry.split("-")
    if len(parts) != 4:
        return None
    queued, nonce, code, size = parts
    if not (
        queued.isdigit() and size.isdigit() and len(code) == MAC_HEX and _is_hex(code) and _is_hex(nonce)
    ):
        return None
    return f"{queued}-{nonce}-{size}", code, int(size)


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
        self.sent = self.dir / "sent"
        self.quarantine = self.dir / "quarantine"
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.lease_seconds = lease_seconds
        #: Entries this instance moved to ``quarantine/`` (the replay reports them).
        self.quarantined = 0
        self._key: bytes | None = None
        #: Entries :meth:`put` wrote without fsync, until :meth:`make_durable` or :meth:`settle`.
        self._unsynced: set[Path] = set()

    def __repr__(self) -> str:
        return f"LocalOutbox({str(self.dir)!r})"

    def _ready(self, create: bool = True) -> bool:
        """Check the folders (once per instance) and load the key; False if there is no outbox yet
        and ``create`` is false. Raises :class:`~airflow_provider_alation.outbox.disk.UnsafeDirectory`."""
        if self._key is not None:
            return True
        if not check_private_dir(self.dir, "outbox directory (spool_dir)", create=create):
            return False
        for folder in (self.pending, self.claimed, self.dead, self.sent):
            check_private_dir(folder, "outbox folder")
        self._key = load_secret(self.dir / KEY_FILE)
        return True

    def _ensure(self) -> bytes:
        self._ready()
        assert self._key is not None
        return self._key

    def prepare(self) -> None:
        """Create and check the folders and read the key now (a task process does, so that the
        children it forks to emit start with them): OSError when the outbox cannot be used."""
        self._ensure()

    def _claim_path(self, entry: str, dead: bool = False) -> Path:
        marker = "-dead" if dead else ""
        return self.claimed / f"{entry}@{int(time.time() * 1000)}-{secrets.token_hex(3)}{marker}.json"

    @staticmethod
    def _scan(folder: Path) -> tuple[list[str], list[str]]:
        """The ``*.json`` names in ``folder``: (regular files, anything else). The file type comes
        from the directory listing itself (no ``stat`` on local file systems)."""
        regular: list[str] = []
        strays: list[str] = []
        try:
            with os.scandir(folder) as entries:
                for e in entries:
                    if e.name.endswith(".json") and not e.name.startswith("."):
                        try:
                            is_file = e.is_file(follow_symlinks=False)
                        except OSError:
                            is_file = False
                        (regular if is_file else strays).append(e.name)
        except FileNotFoundError:
            pass
        return regular, strays

    @classmethod
    def _names(cls, folder: Path) -> list[str]:
        """The regular ``*.json`` files in ``folder`` (anything else is ignored, then quarantined)."""
        return cls._scan(folder)[0]

    def _events(self, folder: Path) -> list[str]:
        return [n for n in self._names(folder) if not n.endswith(".reason.json")]

    # -- put -----------------------------------------------------------------------------------
    def put(self, body: bytes, *, durable: bool = True) -> Claim:
        """A new entry, claimed by the caller. ``durable``: the file and its name are fsynced before
        this returns (the relay, before it acknowledges). Otherwise the entry is written (a killed
        process loses nothing) and :meth:`make_durable` fsyncs it, while the caller's request is in
        flight (the transport), and at the latest before the entry is moved by :meth:`settle`."""
        entry = _entry_name(self._ensure(), body)
        path = self._claim_path(entry)
        write_new(path, body, sync=durable)
        if not durable:
            self._unsynced.add(path)
        return Claim(entry, body, path)

    def make_durable(self, claim: Claim) -> None:
        """fsync an entry :meth:`put` wrote with ``durable=False`` (a no-op for any other, and after
        the first call); OSError when the disk cannot (the entry is then written, not durable)."""
        if claim.path not in self._unsynced:
            return
        try:
            with contextlib.suppress(FileNotFoundError):  # settled or reclaimed meanwhile
                sync_written(claim.path)
        finally:
            self._unsynced.discard(claim.path)

    def is_durable(self, claim: Claim) -> bool:
        """False while an entry :meth:`put` wrote with ``durable=False`` waits for :meth:`make_durable`."""
        return claim.path not in self._unsynced

    def _held(self) -> tuple[list[str], list[str], int, int]:
        """(pending names, dead names, events, bytes) held, as the caps count them: pending,
        claimed and dead, from the names only (no file is opened or stat'ed)."""
        pending, dead, claimed = (
            self._events(self.pending),
            self._events(self.dead),
            self._names(self.claimed),
        )
        total = sum(map(_waiting_size, pending)) + sum(map(_waiting_size, dead))
        total += sum(_size_of(_entry_of(n)) for n in claimed)
        return pending, dead, len(pending) + len(dead) + len(claimed), total

    def usage(self) -> tuple[int, int]:
        """(events, bytes) held, as the caps count them."""
        if not self._ready(create=False):
            return 0, 0
        _, _, count, total = self._held()
        return count, total

    def full(self, extra_bytes: int) -> tuple[int, int] | None:
        """(events, bytes) held when one more entry of ``extra_bytes`` would go over a cap (for a
        writer that must refuse rather than evict), else None."""
        count, total = self.usage()
        if count >= self.max_events or total + extra_bytes > self.max_bytes:
            return count, total
        return None

    def enforce_caps(self) -> Dropped:
        """Drop the oldest waiting entries (pending or dead) while the outbox is over a cap."""
        if not self._ready(create=False):
            return Dropped(0, 0)
        pending, dead, count, total = self._held()
        held_claims = count - len(pending) - len(dead)
        if count <= self.max_events and total <= self.max_bytes:
            return Dropped(0, 0, len(pending), held_claims)  # the common case: one listing, no sorting
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
        temporary files of killed writers (of versions that wrote one) are removed. A claim shorter
        than its name says may still be being written: it waits for this outbox's own lease whatever
        ``lease_seconds`` asks, then goes back too (a killed writer's), and is quarantined when
        claimed. Returns how many claims were put back."""
        lease = self.lease_seconds if lease_seconds is None else lease_seconds
        if not self._ready(create=False):
            return 0
        try:
            with os.scandir(self.claimed) as entries:
                names = [(e.name, e.stat(follow_symlinks=False)) for e in entries]
        except FileNotFoundError:
            return 0
        if not names:  # the common case (every drain asks): no probe file to write and remove
            return 0
        try:
            now = self._server_now()
        except FileNotFoundError:
            return 0
        moved = 0
        for name, info in names:
            age = now - info.st_mtime
            if age < lease:
                continue
            if age < self.lease_seconds and info.st_size < _size_of(_entry_of(name)):
                # Shorter than its name says: maybe still being written (put() creates the claim in
                # place), so not taken before the full lease even when asked to (--reclaim-after 0).
                continue
            if name.startswith("."):  # .<name>.tmp of a writer killed mid-write (older versions)
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
            try:  # fresh mtime first: a claim is never born looking stale
                os.utime(source, follow_symlinks=False)
            except FileNotFoundError:
                raise
            except OSError:
                pass  # not ours to touch (it is quarantined below)
            os.rename(source, target)  # the one atomic step: exactly one claimer wins
            body = self._read_entry(entry, target)
        except FileNotFoundError:
            return None
        except UntrustedFile as exc:
            self._quarantine(target, f"{folder.name}/{name}", exc.reason)
            return None
        except OSError as exc:  # claimed by us but unreadable (e.g. planted by root, mode 000)
            self._quarantine(target, f"{folder.name}/{name}", f"it cannot be read ({exc.strerror or exc})")
            return None
        return Claim(entry, body, target, was_dead=dead)

    def _read_entry(self, entry: str, path: Path) -> bytes:
        """The bytes of an entry this provider wrote, else :class:`UntrustedFile` with the reason."""
        key = self._ensure()
        parts = _signed_parts(entry)
        if parts is None:
            info = os.lstat(path)  # a FIFO, a link or a directory is named as such, not as unsigned
            if not stat.S_ISREG(info.st_mode):
                raise UntrustedFile(path, f"{kind_of(info.st_mode)}, not a regular file")
            raise UntrustedFile(
                path,
                "it has no authentication code in its name: planted, or written by a version of this "
                "provider before entries were signed (those are not trusted either)",
            )
        stem, code, size = parts
        if size > self.max_bytes:
            raise UntrustedFile(path, f"its size {size} is above outbox_max_bytes={self.max_bytes}")
        body = read_regular_file(path, size)
        if len(body) < size:
            raise UntrustedFile(
                path,
                f"it holds {len(body)} of the {size} bytes its name says: cut short (its writer was killed "
                "or the machine crashed before it was written out, so its event was never sent) or altered",
            )
        if len(body) != size or not secrets.compare_digest(_entry_code(key, stem, body), code):
            raise UntrustedFile(path, "its authentication code does not verify: not written by this provider")
        return body

    def _quarantine(self, path: Path, was: str, reason: str) -> None:
        """Move ``path`` (not sent) to ``quarantine/``, log why with the fix, count it."""
        moved_to = self.quarantine / f"{time.time_ns()}-{secrets.token_hex(3)}-{path.name}"
        try:
            check_private_dir(self.quarantine, "outbox folder")
            os.rename(path, moved_to)
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error(
                "Alation lineage: outbox entry %s in %s is not sent (%s) and could not be quarantined: %s",
                was,
                self.dir,
                reason,
                exc,
            )
            return
        self.quarantined += 1
        log.warning(
            "Alation lineage: outbox entry %s in %s was not sent and is now in %s: %s. Only regular files "
            "this provider wrote are sent with the token. Fix: look at it there and delete it; if it was "
            "planted, find who can write to %s (it must be yours, mode 700)",
            was,
            self.dir,
            moved_to,
            reason,
            self.dir,
        )

    def sweep(self, dead: bool = False) -> int:
        """Quarantine what is not a regular file in ``pending/`` (or ``dead/``): a directory, FIFO,
        symbolic link or device named ``*.json``. Returns how many were moved."""
        if not self._ready(create=False):
            return 0
        folder = self.dead if dead else self.pending
        before = self.quarantined
        for name in self._scan(folder)[1]:
            with contextlib.suppress(OSError):
                kind = kind_of(os.lstat(folder / name).st_mode)
                self._quarantine(folder / name, f"{folder.name}/{name}", f"{kind}, not a regular file")
        return self.quarantined - before

    def claim(self, limit: int, *, dead: bool = False, entries: Sequence[str] | None = None) -> list[Claim]:
        if not self._ready(create=False):
            return []
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
        if verdict != "sent":  # it stays in the outbox: durable first
            with contextlib.suppress(OSError):
                self.make_durable(claim)
        self._unsynced.discard(claim.path)
        if verdict == "sent":
            try:
                self._retire(claim)
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
        except FileNotFoundError:  # reclaimed by another process: it owns the entry now
            log.warning(
                "Alation lineage: outbox entry %s was reclaimed while it was being sent (its lease of "
                "%gs ran out, or a replay with --reclaim-after took it); the replay that took it sends "
                "it",
                claim.entry,
                self.lease_seconds,
            )
            return
        if verdict == "dead":
            with contextlib.suppress(OSError):  # the reason is best effort (ENOSPC, ...)
                atomic_write(
                    self.dead / f"{claim.entry}.reason.json",
                    json.dumps({**(reason or {}), "dead_at": time.time()}, default=str).encode(),
                )

    def _retire(self, claim: Claim) -> None:
        """A sent entry leaves the claims at once, by a rename into ``sent/``, and is removed later
        by :meth:`purge_sent`: removing a file already flushed to disk frees its blocks, which costs
        a journal update (~0.2 ms after an idle wait here) that a rename does not. FileNotFoundError
        when the claim is gone (reclaimed by another process)."""
        try:
            os.rename(claim.path, self.sent / f"{claim.entry}.sent")
        except OSError:  # sent/ removed, not writable, a full disk...: removed here, as it used to be
            claim.path.unlink()  # FileNotFoundError if the claim itself is gone

    def purge_sent(self, limit: int | None = None) -> int:
        """Remove what :meth:`settle` moved to ``sent/`` (at most ``limit`` files): right after a send
        in a long-lived process, else while a later request is in flight, or by a replay. Returns how
        many were removed; never raises."""
        removed = tried = 0
        try:
            with os.scandir(self.sent) as entries:
                for e in entries:
                    if limit is not None and tried >= limit:  # tried: another process may be purging
                        break
                    if e.name.endswith(".sent"):
                        tried += 1
                        with contextlib.suppress(OSError):  # removed by another process meanwhile
                            os.unlink(e.path)
                            removed += 1
        except OSError:
            pass
        return removed

    # -- list ----------------------------------------------------------------------------------
    def list(self, state: State | None = None) -> list[EntryInfo]:
        infos: list[EntryInfo] = []
        folders: tuple[tuple[State, Path], ...] = (
            ("pending", self.pending),
            ("claimed", self.claimed),
            ("dead", self.dead),
        )
        if not self._ready(create=False):
            return infos
        for folder_state, folder in folders:
            if state is not None and folder_state != state:
                continue
            for name in self._events(folder):
                entry = _entry_of(name)
                reason = None
                if folder_state == "dead":
                    with contextlib.suppress(OSError, ValueError):
                        data = read_regular_file(self.dead / f"{entry}.reason.json", REASON_MAX_BYTES)
                        loaded = json.loads(data)
                        reason = loaded if isinstance(loaded, dict) else None
                infos.append(EntryInfo(entry, folder_state, _size_of(entry), _queued_at(entry), reason))
        return sorted(infos, key=lambda info: info.entry)

    def counts(self) -> dict[str, int]:
        if not self._ready(create=False):
            return {"pending": 0, "claimed": 0, "dead": 0}
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
