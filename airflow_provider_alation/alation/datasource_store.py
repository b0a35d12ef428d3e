"""Alation's data sources on disk, looked up and not loaded: one SQLite file per tenant.

I/O edge (disk). The OpenLineage provider emits each event from a child it forks off the task
process; each child used to read and parse the whole discovered index (tens of milliseconds at 5,000
data sources, growing with the catalogue). Here a child opens the file read-only and answers each
namespace with one or two indexed queries, so what an event costs does not depend on how many data
sources the tenant has.

Layout: ``meta`` (tenant URL, when it was read, parser version, count), ``sources`` (each data
source as the JSON of :meth:`DataSource.to_dict`) and ``keys`` (``(kind, key, port, host, source)``:
kind ``endpoint`` keys a source by its host:port, the others are the secondary keys of
:func:`~airflow_provider_alation.lineage.datasources.secondary_keys`).

Trust: the file is opened only if it is a regular file (not a link, FIFO or device), read-only and
``immutable`` (it is only ever replaced whole, by rename, so no reader takes a lock). Every row
that is used carries an HMAC-SHA256, keyed by ``cache_dir/.cache-key`` and bound to the tenant
URL, that is checked when it is read; a key row is checked against the host it names. A file this
provider did not write, or one altered afterwards, is refused at the first row that does not
verify (the ``meta`` row, at open): the index then answers nothing and the next load reads Alation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import stat
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from airflow_provider_alation.lineage.datasources import (
    DataSource,
    Endpoint,
    EndpointIndex,
    secondary_keys,
)
from airflow_provider_alation.outbox.disk import UntrustedFile, fsync_dir, kind_of, mac

log = logging.getLogger(__name__)

_DOMAIN_META = b"airflow-provider-alation/datasource-store/meta/v1"
_DOMAIN_SOURCE = b"airflow-provider-alation/datasource-store/source/v1"
ENDPOINT = "endpoint"
#: Lookups remembered per process (a namespace is resolved once per resolver anyway).
_MEMO_LIMIT = 4096

_SCHEMA = (
    "CREATE TABLE meta (url TEXT NOT NULL, fetched_at REAL NOT NULL, parser INTEGER NOT NULL, "
    "count INTEGER NOT NULL, mac TEXT NOT NULL)",
    "CREATE TABLE sources (id INTEGER PRIMARY KEY, body TEXT NOT NULL, mac TEXT NOT NULL)",
    "CREATE TABLE keys (kind TEXT NOT NULL, key TEXT NOT NULL, port INTEGER NOT NULL, host TEXT NOT NULL, "
    "source INTEGER NOT NULL, PRIMARY KEY (kind, key, port, host, source)) WITHOUT ROWID",
)


def _meta_mac(key: bytes, url: str, fetched_at: float, parser: int, count: int) -> str:
    return mac(
        key, _DOMAIN_META, url.encode(), repr(float(fetched_at)).encode(), b"%d" % parser, b"%d" % count
    )


def _source_mac(key: bytes, url: str, row: int, body: str) -> str:
    return mac(key, _DOMAIN_SOURCE, url.encode(), b"%d" % row, body.encode())


class StoreWriter:
    """Writes a new store next to ``path`` and puts it in place on :meth:`commit` (atomic rename,
    file and directory fsynced); discarded on any failure, so readers see the old file or the new.

    Sources are added in batches as the pages arrive: memory stays at one page, whatever the count.
    """

    def __init__(self, path: Path, key: bytes, url: str, parser: int) -> None:
        self.path, self._key, self.url, self.parser = Path(path), key, url, parser
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        os.close(fd)
        self._tmp = Path(tmp)
        self.count = 0
        try:
            self._db = sqlite3.connect(self._tmp, isolation_level=None, check_same_thread=False)
            # A file that is renamed into place only when complete needs no journal of its own.
            self._db.execute("PRAGMA journal_mode=OFF")
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.execute("BEGIN")
            for statement in _SCHEMA:
                self._db.execute(statement)
        except BaseException:
            self.discard()
            raise

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()  # after commit the temporary file is gone: nothing to do

    def add(self, sources: Iterable[DataSource]) -> None:
        rows: list[tuple[int, str, str]] = []
        keys: list[tuple[str, str, int, str, int]] = []
        for source in sources:
            self.count += 1
            row = self.count
            body = json.dumps(source.to_dict(), separators=(",", ":"), ensure_ascii=False)
            rows.append((row, body, _source_mac(self._key, self.url, row, body)))
            for host, port in source.endpoints:
                keys.append((ENDPOINT, host, port, host, row))
                keys.extend((kind, value, port, host, row) for kind, value in secondary_keys(host))
        self._db.executemany("INSERT INTO sources (id, body, mac) VALUES (?, ?, ?)", rows)
        self._db.executemany("INSERT OR IGNORE INTO keys VALUES (?, ?, ?, ?, ?)", keys)

    def commit(self, fetched_at: float) -> None:
        meta = _meta_mac(self._key, self.url, fetched_at, self.parser, self.count)
        self._db.execute(
            "INSERT INTO meta VALUES (?, ?, ?, ?, ?)",
            (self.url, float(fetched_at), self.parser, self.count, meta),
        )
        self._db.execute("COMMIT")
        self._db.close()
        fd = os.open(self._tmp, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(self._tmp, 0o600)
        os.replace(self._tmp, self.path)
        fsync_dir(self.path.parent)

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self._db.close()
        with contextlib.suppress(OSError):
            self._tmp.unlink()


def write_store(
    path: Path, key: bytes, url: str, parser: int, sources: Iterable[DataSource], at: float
) -> None:
    """Write every one of ``sources`` as the store at ``path`` in one go."""
    with StoreWriter(path, key, url, parser) as writer:
        writer.add(sources)
        writer.commit(at)


class StoredIndex(EndpointIndex):
    """An :class:`EndpointIndex` answered from the store at ``path`` (see the module's docstring).

    Safe to use from several threads; in a forked child it opens the file again (an SQLite
    connection must not cross a fork). A row that does not verify, or a file that has become
    unreadable, turns it into an index that answers nothing (logged once): resolution goes on
    without discovery for that event, and the next load reads Alation again.
    """

    def __init__(self, path: Path, key: bytes, url: str) -> None:
        self.path, self._key, self.url = Path(path), key, url
        self._lock = threading.Lock()
        self._pid = -1
        self._inode: int | None = None
        self._db: sqlite3.Connection | None = None
        self._at: dict[Endpoint, tuple[DataSource, ...]] = {}
        self._all: tuple[DataSource, ...] | None = None
        self.broken = ""
        db = self._connect()
        row = db.execute("SELECT url, fetched_at, parser, count, mac FROM meta").fetchall()
        if len(row) != 1:
            raise UntrustedFile(self.path, "no single meta row (not written by this provider)")
        stored_url, fetched_at, parser, count, code = row[0]
        if not isinstance(fetched_at, float) or not isinstance(parser, int) or not isinstance(count, int):
            raise UntrustedFile(self.path, "a meta row of the wrong types (not written by this provider)")
        if code != _meta_mac(key, str(stored_url), fetched_at, parser, count):
            raise UntrustedFile(
                self.path, "its authentication code does not verify (not written by this provider)"
            )
        if stored_url != url:
            raise UntrustedFile(self.path, f"written for another tenant ({stored_url})")
        self.fetched_at, self.parser, self.count = fetched_at, parser, count

    def __repr__(self) -> str:
        return f"<StoredIndex {self.path.name}: {self.count} data sources>"

    def _connect(self) -> sqlite3.Connection:
        if self._db is not None and self._pid == os.getpid():
            return self._db
        # Not a link, FIFO or device (opening a FIFO would block); the directory is private already.
        info = os.lstat(self.path)
        if not stat.S_ISREG(info.st_mode):
            raise UntrustedFile(self.path, kind_of(info.st_mode))
        # A refresh may have replaced the file since this index was opened (a forked child reconnects):
        # its rows are as trustworthy (each verified) and newer.
        self._inode = info.st_ino
        uri = f"{self.path.absolute().as_uri()}?mode=ro&immutable=1"
        db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA trusted_schema=OFF")  # no function a planted schema names runs here
        db.execute("PRAGMA query_only=ON")
        # Pages read through a memory map: a new process's first lookups cost page faults on what the
        # operating system has cached, not a read() per page.
        db.execute("PRAGMA mmap_size=1073741824")
        self._db, self._pid = db, os.getpid()
        return db

    def _refuse(self, reason: str) -> None:
        """Stop answering from this file, and remove it (it is this provider's own cache, in a private
        directory), so that the next load reads Alation again instead of this file."""
        if self.broken:
            return
        self.broken = reason
        with contextlib.suppress(OSError):
            if os.lstat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        log.warning(
            "Alation lineage: not using the data-source cache %s: %s; it is removed, and Alation's data "
            "sources are read again at the next load",
            self.path,
            reason,
        )

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]] | None:
        """The rows, or None when the file cannot answer now. Only what says the file itself is bad
        (not a database, malformed, or not a regular file any more) refuses it; a key SQLite cannot
        hold (a lone surrogate) or a passing failure (no file descriptor left, an I/O error) is
        answered "not found" for this lookup and leaves the file alone."""
        if self._pid != os.getpid():  # a forked child: a lock another thread held at the fork is not ours
            self._lock = threading.Lock()
        try:
            with self._lock:
                return self._connect().execute(sql, args).fetchall()
        except UnicodeEncodeError:
            return None
        except UntrustedFile as exc:
            self._refuse(str(exc))
        except (sqlite3.OperationalError, OSError) as exc:
            log.debug("Alation lineage: data-source cache %s not readable now: %s", self.path, exc)
        except sqlite3.DatabaseError as exc:  # not a database, malformed
            self._refuse(str(exc))
        return None

    def _source(self, row: int, body: Any, code: Any) -> DataSource:
        if not isinstance(body, str) or code != _source_mac(self._key, self.url, row, body):
            raise UntrustedFile(self.path, f"data source row {row} does not verify (altered or planted)")
        return DataSource.from_dict(json.loads(body))

    def _verified(self, rows: list[tuple[Any, ...]]) -> tuple[DataSource, ...] | None:
        """The data sources of ``(id, body, mac)`` rows; None, the file refused, if one does not verify."""
        try:
            return tuple(self._source(*row) for row in rows)
        except (UntrustedFile, ValueError, TypeError) as exc:
            self._refuse(str(exc))
            return None

    def sources_at(self, endpoint: Endpoint) -> tuple[DataSource, ...]:
        hit = self._at.get(endpoint)
        if hit is not None or self.broken:
            return hit or ()
        host, port = endpoint
        rows = self._query(
            "SELECT s.id, s.body, s.mac FROM keys k JOIN sources s ON s.id = k.source "
            "WHERE k.kind = ? AND k.key = ? AND k.port = ? ORDER BY s.id",
            (ENDPOINT, host, port),
        )
        found = self._verified(rows) if rows is not None else None
        if found is None:
            return ()
        if any(endpoint not in source.endpoints for source in found):
            self._refuse(f"a key row for {host}:{port} names a data source without it")
            return ()
        if len(self._at) < _MEMO_LIMIT:
            self._at[endpoint] = found
        return found

    def endpoints_for(self, kind: str, key: str, port: int) -> frozenset[Endpoint]:
        if self.broken:
            return frozenset()
        rows = self._query(
            "SELECT DISTINCT host FROM keys WHERE kind = ? AND key = ? AND port = ?", (kind, key, port)
        )
        if not rows:
            return frozenset()
        hosts = [row[0] for row in rows]
        if any(not isinstance(host, str) or (kind, key) not in secondary_keys(host) for host in hosts):
            self._refuse(f"a {kind} key row for {key!r} names a host it does not belong to")
            return frozenset()
        return frozenset((host, port) for host in hosts)

    def __len__(self) -> int:
        return self.count

    @property
    def sources(self) -> tuple[DataSource, ...]:
        """Every data source, read once (listings only: resolution never needs them all)."""
        if self._all is None:
            rows = self._query("SELECT id, body, mac FROM sources ORDER BY id", ())
            found = self._verified(rows) if rows is not None else None
            if found is None:
                return ()
            self._all = found
        return self._all


def open_store(path: Path, key: bytes, url: str) -> StoredIndex:
    """The store at ``path``; ``FileNotFoundError``, :class:`UntrustedFile` (not ours, or not a regular
    file) or ``sqlite3.DatabaseError`` (not a database) when it cannot be used."""
    return StoredIndex(path, key, url)
