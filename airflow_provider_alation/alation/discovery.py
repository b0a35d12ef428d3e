"""Discovery: Alation's data sources, read over the REST API and cached on disk with a TTL.

I/O edge. ``GET /integration/v1/datasource/`` (native sources) and ``/integration/v2/datasource/``
(OCF connector sources), ``TOKEN`` header, pages of ``limit`` objects followed by the
``X-Next-Page`` header (or ``skip`` when a tenant does not send it), 429/5xx and network errors
retried with back-off inside a deadline.

The OpenLineage provider emits each task event from a short-lived forked process, so the index
lives in a file under ``cache_dir``: an SQLite store (see
:mod:`~airflow_provider_alation.alation.datasource_store`) that a process looks namespaces up in
without loading it, so an event costs the same with 500 data sources or 50,000; every row
authenticated by an HMAC keyed by ``cache_dir/.cache-key``, so a planted file is not used. A
process reuses it while it is younger than ``discovery_ttl``; one process at a time (a
non-blocking ``flock``) refreshes it, writing the pages into a new file as they arrive (memory
stays at one page) and renaming it into place; when Alation's REST API fails, the stale file keeps
being used, the failure is remembered for a few minutes so that other processes do not each spend
their time budget on it, and the event still goes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from airflow_provider_alation.alation import network
from airflow_provider_alation.alation.datasource_store import StoreWriter, open_store, write_store
from airflow_provider_alation.alation.delivery import (
    TRANSIENT_STATUS,
    USER_AGENT,
    classify_exception,
    retry_after_seconds,
    retrying_until,
)
from airflow_provider_alation.alation.masking import redact
from airflow_provider_alation.lineage.datasources import DataSource, DataSourceIndex, EndpointIndex
from airflow_provider_alation.outbox.disk import (
    atomic_write,
    cache_key,
    dir_key,
    read_regular_file,
    seal,
    unseal,
)
from airflow_provider_alation.settings import AlationSettings

log = logging.getLogger(__name__)

APIS = (("v1", "integration/v1/datasource/"), ("v2", "integration/v2/datasource/"))
PAGE_SIZE = 1000
#: Attempts per page (429/5xx/network errors are retried with back-off, within the deadline).
MAX_ATTEMPTS = 4
MAX_PAGES = 10_000
#: Bumped when the endpoint parser changes, so cached files are re-parsed from their URIs.
PARSER_VERSION = 1
#: After a failed refresh, processes use the stale file for this long before trying again.
FAILURE_BACKOFF_SECONDS = 300.0
#: A data-source page is read in chunks up to this size, not further (1000 sources: ~0.5 MiB).
MAX_PAGE_BYTES = 8 * 1024 * 1024
#: Recorded as the failure before a refresh starts, replaced when it ends: a process killed while it
#: waits for Alation (the OpenLineage provider kills its emitting child at 10 s) still makes the next
#: processes back off instead of each starting the same hanging fetch.
UNFINISHED = "the last refresh never finished (its process was killed or hung while reading Alation)"


class DiscoveryError(RuntimeError):
    """Alation's data sources could not be read; the message never contains the token."""

    def __init__(self, message: str, problem: str) -> None:
        super().__init__(message)
        self.problem = problem


# -- the REST client ------------------------------------------------------------------------------
class DataSourceClient:
    """Reads every data source over both APIs, one request per page."""

    def __init__(
        self,
        settings: AlationSettings,
        token: Callable[[], str],
        session: requests.Session | None = None,
    ) -> None:
        self.settings = settings
        self._token = token
        self._owns_session = session is None
        self._session = session or network.new_session()
        self._secrets: set[str] = set()  # the tokens used, redacted from any answer text kept
        self.requests_made = 0

    def __repr__(self) -> str:
        return f"DataSourceClient(url={self.settings.url!r})"

    def fetch(self, deadline: float) -> list[DataSource]:
        """Every data source, or :class:`DiscoveryError`; returns by ``deadline`` in total, whatever
        the network does (every request and the minting of its token are bounded by it)."""
        return [source for batch in self.batches(deadline) for source in batch]

    def batches(self, deadline: float) -> Iterator[list[DataSource]]:
        """:meth:`fetch` a page at a time, so a caller can store each page before the next is read."""
        try:
            for api, path in APIS:
                batch: list[DataSource] = []
                for source in self._fetch_api(api, path, deadline):
                    batch.append(source)
                    if len(batch) >= PAGE_SIZE:
                        yield batch
                        batch = []
                if batch:
                    yield batch
        finally:
            if self._owns_session:
                self._session.close()

    def _fetch_api(self, api: str, path: str, deadline: float) -> Iterator[DataSource]:
        base = f"{self.settings.url}/"
        origin = urlsplit(base)[:2]
        url: str | None = urljoin(base, f"{path}?limit={PAGE_SIZE}&skip=0")
        skip, seen_pages, seen_ids = 0, set(), set()
        for _ in range(MAX_PAGES):
            if url is None:
                return
            if url in seen_pages:
                raise DiscoveryError(f"{path}: the API sent the same page twice; stopping", "bad_response")
            seen_pages.add(url)
            response = self._get(url, deadline)
            if response.status_code == 404 and api == "v2" and skip == 0:
                log.debug("Alation lineage: %s not found; this tenant has no OCF data sources", path)
                return
            items = self._items(response, path)
            new = 0
            for item in items:
                if not isinstance(item, dict) or item.get("deleted"):
                    continue
                key = item.get("id", id(item))
                if key in seen_ids:
                    continue
                seen_ids.add(key)
                new += 1
                yield DataSource.from_api(item, api)
            if items and not new:
                raise DiscoveryError(
                    f"{path}: the page at skip={skip} repeats earlier data sources (the API ignores "
                    "skip and sends no X-Next-Page); cannot read them all",
                    "bad_response",
                )
            skip += len(items)
            next_page = response.headers.get("X-Next-Page")
            if next_page:
                url = urljoin(base, next_page)
                if urlsplit(url)[:2] != origin:
                    # Never send the token anywhere but the tenant named in the connection.
                    raise DiscoveryError(
                        f"{path}: X-Next-Page points outside {self.settings.url}; not following it",
                        "bad_response",
                    )
            elif len(items) == PAGE_SIZE:  # more than PAGE_SIZE: the server ignored limit, all is here
                url = urljoin(base, f"{path}?limit={PAGE_SIZE}&skip={skip}")
            else:
                url = None
        raise DiscoveryError(f"{path}: more than {MAX_PAGES} pages; stopping", "bad_response")

    def _items(self, response: requests.Response, path: str) -> list[Any]:
        if response.status_code in (401, 403):
            raise DiscoveryError(
                f"HTTP {response.status_code} from {path}: Alation's REST API refused the token (TOKEN "
                "header). Discovery needs an API access token, or a refresh token with "
                '"token_type": "refresh_token" and the user id as login; '
                "or set discover_datasources to false",
                "auth",
            )
        if response.status_code != 200:
            text = redact(response.text[:200].strip(), self._secrets)
            raise DiscoveryError(f"HTTP {response.status_code} from {path}: {text}", "server")
        try:
            body = response.json()
        except ValueError:
            raise DiscoveryError(f"{path}: the answer is not JSON", "bad_response") from None
        if isinstance(body, dict):  # tolerate a {"results": [...]} envelope
            body = body.get("results", body.get("data"))
        if not isinstance(body, list):
            raise DiscoveryError(f"{path}: expected a JSON list of data sources", "bad_response")
        return body

    def _get(self, url: str, deadline: float) -> requests.Response:
        results: list[requests.Response | DiscoveryError] = []

        def attempt() -> requests.Response | DiscoveryError:
            remaining = deadline - time.monotonic()
            if remaining <= 0.05:  # report what went wrong before, not that time ran out
                if results:
                    return results[-1]
                return DiscoveryError("no time left to read Alation's data sources", "timeout")
            try:
                with network.within(deadline):  # minting counts against the same deadline
                    token = self._token()
            except Exception as exc:  # noqa: BLE001 - e.g. a refresh token Alation will not exchange
                return DiscoveryError(str(exc), "auth")
            self._secrets.add(token)
            per_request = min(self.settings.timeout, remaining)
            self.requests_made += 1
            try:
                response = network.request(
                    self._session,
                    "GET",
                    url,
                    timeout=per_request,
                    deadline=deadline,
                    cap=MAX_PAGE_BYTES,
                    headers={"TOKEN": token, "Accept": "application/json", "User-Agent": USER_AGENT},
                    verify=self.settings.verify,
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                outcome = classify_exception(exc)
                results.append(DiscoveryError(redact(outcome.detail, self._secrets), outcome.problem))
            else:
                results.append(response)
            return results[-1]

        def transient(result: requests.Response | DiscoveryError) -> bool:
            if isinstance(result, DiscoveryError):
                return result.problem in ("unreachable", "timeout") and "no time left" not in str(result)
            return result.status_code in TRANSIENT_STATUS

        def hinted(result: requests.Response | DiscoveryError) -> float | None:
            return retry_after_seconds(result) if isinstance(result, requests.Response) else None

        result = retrying_until(deadline, transient, hinted, MAX_ATTEMPTS)(attempt)
        if isinstance(result, requests.Response) and result.status_code in (401, 403):
            forget = getattr(self._token, "forget", None)
            if forget is not None and getattr(self._token, "refreshable", False):
                forget()  # a minted access token Alation no longer accepts: mint anew, once
                result = retrying_until(deadline, transient, hinted, MAX_ATTEMPTS)(attempt)
        if isinstance(result, DiscoveryError):
            raise result
        return result


# -- the disk cache -------------------------------------------------------------------------------
#: In-process memo of opened stores, keyed by path and (inode, mtime, size): a process opens the
#: file again only when another process has replaced it.
_MEMO: dict[str, tuple[tuple[int, int, int], float, EndpointIndex]] = {}
STATUS_MAX_BYTES = 64 * 1024
_STATUS_SEAL = b"airflow-provider-alation/status/v1"


class DiscoveryCache:
    """``datasources-<key>.sqlite`` (the index), ``.status.json`` (last failure), ``.lock``."""

    def __init__(self, cache_dir: str | Path, url: str) -> None:
        self.url = url
        key = cache_key(url)
        self.dir = Path(cache_dir)
        self.path = self.dir / f"datasources-{key}.sqlite"
        self.status_path = self.dir / f"datasources-{key}.status.json"
        self.lock_path = self.dir / f"datasources-{key}.lock"
        #: Written by versions before the SQLite store; removed when a store replaces it.
        self.legacy_path = self.dir / f"datasources-{key}.json"

    def _key(self) -> bytes:
        """The key of ``cache_dir``, after checking nobody else can plant files there (OSError if not)."""
        return dir_key(self.dir, "cache directory (cache_dir)")

    def read(self) -> tuple[float, EndpointIndex] | None:
        """When the cached data sources were read, and their index; None when there is no usable file."""
        try:
            info = os.lstat(self.path)
            key = self._key()
        except OSError:  # missing, or cache_dir unusable or unsafe: treated as no cache
            return None
        signature = (info.st_ino, info.st_mtime_ns, info.st_size)
        memo = _MEMO.get(str(self.path))
        if memo is not None and memo[0] == signature and not getattr(memo[2], "broken", ""):
            return memo[1], memo[2]
        try:
            store = open_store(self.path, key, self.url)
        except (OSError, sqlite3.Error) as exc:
            log.warning("Alation lineage: ignoring unusable data-source cache %s (%s)", self.path, exc)
            return None
        index: EndpointIndex = store
        if store.parser != PARSER_VERSION:  # written by another version: parse the URIs again
            sources = [DataSource.from_api(source.to_dict(), source.api) for source in store.sources]
            if store.broken or len(sources) != store.count:  # a row did not verify (the file is removed),
                return None  # or the file could not be read now: not rewritten from what was read
            index = DataSourceIndex.build(sources)
            with contextlib.suppress(OSError, sqlite3.Error), self.refresh_lock(0) as held:
                if held:  # every writer holds the lock, so a refresh can sweep what a dead one left
                    self.write(sources, store.fetched_at)
        _MEMO[str(self.path)] = (signature, store.fetched_at, index)
        return store.fetched_at, index

    def writer(self) -> StoreWriter:
        """A new store, put in place by its ``commit`` (OSError when cache_dir is not usable)."""
        return StoreWriter(self.path, self._key(), self.url, PARSER_VERSION)

    def sweep(self) -> int:
        """Remove the temporary files of refreshes that never finished (their process was killed
        while it wrote, for as long as Alation took to page). Only under the refresh lock, which
        every writer holds: no live writer's file is removed. The number removed."""
        removed = 0
        for leftover in self.dir.glob(f".{self.path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                leftover.unlink()
                removed += 1
        return removed

    def write(self, sources: Iterable[DataSource], fetched_at: float) -> None:
        write_store(self.path, self._key(), self.url, PARSER_VERSION, sources, fetched_at)
        with contextlib.suppress(OSError):
            self.legacy_path.unlink()

    def last_failure(self) -> tuple[float, str] | None:
        """When the last refresh failed, and why; None if it did not (or the file is unreadable)."""
        try:
            raw = read_regular_file(self.status_path, STATUS_MAX_BYTES)
            data = json.loads(unseal(self._key(), _STATUS_SEAL, raw, self.status_path))
            return float(data["failed_at"]), str(data.get("detail", "?"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def record_failure(self, error: DiscoveryError, at: float) -> None:
        payload = {"failed_at": at, "problem": error.problem, "detail": str(error)}
        with contextlib.suppress(OSError):
            atomic_write(self.status_path, seal(self._key(), _STATUS_SEAL, json.dumps(payload).encode()))

    def clear_failure(self) -> None:
        with contextlib.suppress(OSError):
            self.status_path.unlink()

    @contextlib.contextmanager
    def refresh_lock(self, wait: float) -> Iterator[bool]:
        """Hold the refresh lock (True), or give up after ``wait`` seconds (False)."""
        self._key()  # cache_dir created (0700) and checked: an unsafe one raises, with the fix
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            give_up = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    if time.monotonic() >= give_up:
                        yield False
                        return
                    time.sleep(0.05)
                    continue
                try:
                    yield True
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                return
        finally:
            os.close(fd)


# -- what callers use -------------------------------------------------------------------------------
@dataclass(frozen=True)
class IndexLoad:
    """The index to resolve with (None when there is none), and where it came from."""

    index: EndpointIndex | None
    state: str  # "fresh", "refreshed", "stale", "unavailable"
    fetched_at: float | None = None
    detail: str = ""
    requests: int = 0

    @property
    def sources(self) -> tuple[DataSource, ...]:
        """Every data source (a listing: reads the whole cache file; resolution never needs this)."""
        return self.index.sources if self.index is not None else ()

    @property
    def count(self) -> int:
        return len(self.index) if self.index is not None else 0

    def age(self, now: float | None = None) -> float | None:
        if self.fetched_at is None:
            return None
        return (now if now is not None else time.time()) - self.fetched_at

    def describe(self) -> str:
        """One line for people: how many data sources, and from where."""
        count = f"{self.count:,} data sources"
        age = self.age()
        when = f"{age / 60:.0f} min old" if age is not None else ""
        if self.state == "fresh":
            return f"{count} from the cache ({when})"
        if self.state == "refreshed":
            return f"{count} read from Alation just now ({self.requests} requests)"
        if self.state == "stale":
            return f"{count} from an out-of-date cache ({when}): {self.detail}"
        return f"no data sources: {self.detail}"


#: Commands a person waits for (the CLI, the check) may wait longer for Alation than a task would.
INTERACTIVE_BUDGET = 30.0


def load_index_interactive(settings: AlationSettings, refresh: bool = False) -> IndexLoad:
    """:func:`load_index` for a command a person runs: :data:`INTERACTIVE_BUDGET`, the settings' token."""
    from airflow_provider_alation.alation.tokens import BearerToken

    return load_index(settings, INTERACTIVE_BUDGET, token=BearerToken(settings), refresh=refresh)


def load_index_cached(settings: AlationSettings, now: Callable[[], float] = time.time) -> IndexLoad:
    """The index from the disk cache only, never Alation (the UI page's load): ``fresh`` within
    ``discovery_ttl``, ``stale`` after it, ``unavailable`` without a cache."""
    cached = DiscoveryCache(settings.cache_dir, settings.url).read()
    if cached is None:
        return IndexLoad(None, "unavailable", None, f"no cached copy in {settings.cache_dir}")
    fetched_at, index = cached
    if now() - fetched_at < settings.discovery_ttl:
        return IndexLoad(index, "fresh", fetched_at)
    return IndexLoad(index, "stale", fetched_at, "older than discovery_ttl; not refreshed here")


def load_index(
    settings: AlationSettings,
    budget: float,
    *,
    token: Callable[[], str],
    refresh: bool = False,
    session: requests.Session | None = None,
    now: Callable[[], float] = time.time,
) -> IndexLoad:
    """The discovered index: from the cache while fresh, else refreshed within ``budget`` seconds.

    Never raises for an Alation or network problem: a failed refresh returns the stale index (or
    none) with the reason in ``detail``. ``refresh`` forces a refresh (the CLI's ``--refresh``).
    """
    deadline = time.monotonic() + budget
    cache = DiscoveryCache(settings.cache_dir, settings.url)
    cached = cache.read()

    def from_cache(state: str, detail: str = "", made: int = 0) -> IndexLoad:
        if cached is None:
            return IndexLoad(None, "unavailable", None, detail, made)
        return IndexLoad(cached[1], state, cached[0], detail, made)

    if cached is not None and not refresh and now() - cached[0] < settings.discovery_ttl:
        return from_cache("fresh")

    def backing_off(failure: tuple[float, str] | None) -> bool:
        return (
            not refresh
            and failure is not None
            and now() - failure[0] < min(FAILURE_BACKOFF_SECONDS, settings.discovery_ttl)
        )

    failure = cache.last_failure()
    # UNFINISHED while a live process holds the lock is its refresh in progress: decided under the lock.
    if backing_off(failure) and failure is not None and failure[1] != UNFINISHED:
        return from_cache("stale", f"last refresh failed: {failure[1]}")

    # Without any cache, wait (within the budget) for a process that is refreshing; else don't.
    wait = max(0.0, deadline - time.monotonic()) if cached is None else 0.0
    try:
        with cache.refresh_lock(wait) as held:
            if not held:
                cached = cache.read() or cached
                return from_cache("stale", "another process is refreshing the data sources")
            latest = cache.read()
            if latest is not None and not refresh and now() - latest[0] < settings.discovery_ttl:
                cached = latest
                return from_cache("fresh")
            failure = cache.last_failure()
            if backing_off(failure) and failure is not None:
                # Under the lock, UNFINISHED means its process died mid-fetch: do not repeat it now.
                cached = latest or cached
                return from_cache("stale", f"last refresh failed: {failure[1]}")
            return _refresh(cache, settings, token, session, deadline, now, from_cache)
    except OSError as exc:  # cache_dir unusable (the lock cannot be created): go without the cache
        log.warning(
            "Alation lineage: cache_dir %s is not usable (%s); data sources are not cached", cache.dir, exc
        )
        client = DataSourceClient(settings, token, session)
        try:
            sources = client.fetch(deadline)
        except DiscoveryError as error:
            return IndexLoad(None, "unavailable", None, str(error), client.requests_made)
        return IndexLoad(DataSourceIndex.build(sources), "refreshed", now(), "", client.requests_made)


def _refresh(
    cache: DiscoveryCache,
    settings: AlationSettings,
    token: Callable[[], str],
    session: requests.Session | None,
    deadline: float,
    now: Callable[[], float],
    from_cache: Callable[..., IndexLoad],
) -> IndexLoad:
    """Read Alation into a new cache file, page by page, and put it in place (the caller holds the
    refresh lock). Memory stays at about one page, whatever the number of data sources."""
    client = DataSourceClient(settings, token, session)
    started = now()
    # Pessimistic, before any request that may hang: replaced by the outcome below (if this process
    # lives to record it), it makes the next processes back off if this one is killed meanwhile.
    cache.record_failure(DiscoveryError(UNFINISHED, "unfinished"), started)
    cache.sweep()
    try:
        writer = cache.writer()
    except (OSError, sqlite3.Error) as exc:
        log.warning("Alation lineage: cannot write the data-source cache %s: %s", cache.path, exc)
        return _refresh_in_memory(cache, client, deadline, started, from_cache)
    try:
        with writer:
            for batch in client.batches(deadline):
                writer.add(batch)
            writer.commit(started)
    except DiscoveryError as exc:
        cache.record_failure(exc, now())
        return from_cache("stale", str(exc), client.requests_made)
    except (OSError, sqlite3.Error) as exc:  # e.g. the disk filled up while writing
        error = DiscoveryError(f"cannot write the data-source cache {cache.path}: {exc}", "disk")
        cache.record_failure(error, now())
        return from_cache("stale", str(error), client.requests_made)
    cache.clear_failure()
    with contextlib.suppress(OSError):
        cache.legacy_path.unlink()
    written = cache.read()
    if written is None:  # the file was just written; unreadable means the disk is failing
        return from_cache(
            "stale", f"cannot read back the data-source cache {cache.path}", client.requests_made
        )
    return IndexLoad(written[1], "refreshed", written[0], "", client.requests_made)


def _refresh_in_memory(
    cache: DiscoveryCache,
    client: DataSourceClient,
    deadline: float,
    started: float,
    from_cache: Callable[..., IndexLoad],
) -> IndexLoad:
    """No file can be written: read Alation into memory, for this process only."""
    try:
        sources = client.fetch(deadline)
    except DiscoveryError as exc:
        cache.record_failure(exc, time.time())
        return from_cache("stale", str(exc), client.requests_made)
    cache.clear_failure()  # the pessimistic UNFINISHED: the refresh did finish
    return IndexLoad(DataSourceIndex.build(sources), "refreshed", started, "", client.requests_made)
