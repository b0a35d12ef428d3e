"""Bounded HTTP: every request of ours ends by a hard deadline, whatever the server does.

I/O edge, used by delivery, discovery, token minting and the Test button. urllib3's timeouts are per
socket read: a server that answers one byte at a time (in the status line, the headers or the body)
keeps resetting them, and a body read whole can be endless. So each request here has an overall
deadline and a size cap:

- the body is streamed (``stream=True``) and read in chunks, with a size cap and a deadline check
  after each chunk, and the response is closed on an overrun: a body is never read whole;
- a watchdog (one thread per process, asleep until the earliest deadline) shuts the request's socket
  down at the deadline. ``shutdown`` makes a read blocked in the status line, the headers or a chunk
  return at once (whatever the per-read timeout), and the connection is then closed, never reused.
  This is the simplest sound method: the request stays in the caller's thread (no thread to abandon,
  so none accumulate) and no per-read timeout arithmetic is needed. The socket is known through
  connection classes of our own, mounted in our sessions' adapter, which hand the socket of each
  request made in a watched thread to its watchdog.

Outside ``emit`` (CLI, Test button, replay, minting) a request without an explicit deadline ends
within ``timeout`` x :data:`OVERALL_TIMEOUT_FACTOR`. The TCP connect and the TLS handshake are bounded
by ``timeout`` per read only (a server trickling its TLS handshake is not covered).

``http.client`` debug output is switched off while any request of ours is in flight
(:func:`quiet_http_client`): it would print the ``Authorization`` and ``TOKEN`` headers and the
refresh token.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

#: A request without a deadline of its own (CLI, Test button, minting) ends within timeout x this.
OVERALL_TIMEOUT_FACTOR = 2.0
#: Caps on what is read of an answer. Data-source pages: each at most this much.
PAGE_CAP_BYTES = 8 * 1024 * 1024
#: Token answers and error bodies.
SMALL_CAP_BYTES = 64 * 1024
CHUNK_BYTES = 64 * 1024


class ResponseTooLarge(requests.exceptions.RequestException):
    """The answer's body is above the cap for what was asked; it was not read further."""


# -- the watchdog ---------------------------------------------------------------------------------
_local = threading.local()


def _shutdown(sock: socket.socket) -> None:
    # The plain socket method, also on an SSLSocket (whose own shutdown would drop its SSL object
    # under a reader in another thread): a blocked read returns at once, the next ones fail.
    with contextlib.suppress(OSError, ValueError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watch:
    """Shuts down the sockets of one request at its deadline (by the process's :class:`_Watchdog`)."""

    __slots__ = ("_lock", "_sockets", "deadline", "done", "fired")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.fired = False
        self.done = False  # the request ended: never fired after this
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.fired:
                _shutdown(sock)

    def _fire(self) -> None:
        # Under the lock: once __exit__ has returned, no socket of this request is shut down.
        with self._lock:
            if self.done:
                return
            self.fired = True
            for sock in self._sockets:
                _shutdown(sock)

    def __enter__(self) -> _Watch:
        if self.deadline <= time.monotonic():
            self._fire()
        else:
            _watchdog().watch(self)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.done = True
            self._sockets.clear()  # the watchdog may hold this watch a while: not its sockets


class _Watchdog:
    """One daemon thread per process that fires the :class:`_Watch` of every request past its deadline.

    A timer thread per request cost a thread start (and its scheduling) on every POST; this thread is
    started once (again in a forked child, see :func:`_watchdog`) and sleeps until the earliest
    deadline. A watch whose request ended is dropped lazily, when it reaches the top of the heap.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._wake_at = math.inf  # when the thread looks next (it is told only of earlier deadlines)

    def watch(self, watch: _Watch) -> None:
        with self._cond:
            heap = self._heap
            while heap and heap[0][2].done:  # ended requests: no need to wake for them
                heapq.heappop(heap)
            heapq.heappush(heap, (watch.deadline, next(self._order), watch))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="alation-deadline", daemon=True)
                self._thread.start()
            elif watch.deadline < self._wake_at:
                self._cond.notify()

    def _run(self) -> None:
        heap = self._heap
        while True:
            with self._cond:
                due: list[_Watch] = []
                now = time.monotonic()
                while heap and (heap[0][2].done or heap[0][0] <= now):
                    _, _, watch = heapq.heappop(heap)
                    if not watch.done:
                        due.append(watch)
                if not due:
                    self._wake_at = heap[0][0] if heap else math.inf
                    self._cond.wait(None if not heap else max(0.0, self._wake_at - now))
                    self._wake_at = -math.inf  # awake: a new deadline needs no notify
                    continue
            for watch in due:
                watch._fire()


_WATCHDOG: _Watchdog | None = None
_WATCHDOG_LOCK = threading.Lock()


def _watchdog() -> _Watchdog:
    global _WATCHDOG
    watchdog = _WATCHDOG
    if watchdog is None:
        with _WATCHDOG_LOCK:
            if _WATCHDOG is None:
                _WATCHDOG = _Watchdog()
            watchdog = _WATCHDOG
    return watchdog


def _forget_watchdog_after_fork() -> None:
    """A forked child has none of the parent's threads, and maybe a lock held at the fork: anew."""
    global _WATCHDOG, _WATCHDOG_LOCK
    _WATCHDOG, _WATCHDOG_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_watchdog_after_fork)


def _register(sock: socket.socket | None) -> None:
    watch: _Watch | None = getattr(_local, "watch", None)
    if watch is not None and sock is not None:
        watch.add(sock)


class _WatchedConnection:
    """Hands the socket of each request made in a watched thread to the watchdog."""

    sock: socket.socket | None

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        _register(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _register(self.sock)  # a reused connection (a new one registers in connect)
        super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_WatchedConnection, HTTPConnection):
    pass


class _HTTPSConnection(_WatchedConnection, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter with watched connections (see the module docstring)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_POOLS)
        return manager


def new_session() -> requests.Session:
    """A session whose requests :func:`request` can bound."""
    session = requests.Session()
    session.mount("https://", DeadlineAdapter())
    session.mount("http://", DeadlineAdapter())
    return session


# -- quiet http.client ----------------------------------------------------------------------------
_QUIET_LOCK = threading.Lock()
_quiet_depth = 0
_saved_debuglevel = 0


@contextlib.contextmanager
def quiet_http_client() -> Iterator[None]:
    """``http.client`` debug output off while any request of ours is in flight: it would print the
    Authorization/TOKEN headers and the refresh token. Reference-counted, so overlapping requests
    (an abandoned one finishing while the next runs) never switch it back on under each other."""
    global _quiet_depth, _saved_debuglevel
    with _QUIET_LOCK:
        if _quiet_depth == 0:
            _saved_debuglevel = http.client.HTTPConnection.debuglevel
            http.client.HTTPConnection.debuglevel = 0
        _quiet_depth += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                http.client.HTTPConnection.debuglevel = _saved_debuglevel


# -- ambient deadline -----------------------------------------------------------------------------
@contextlib.contextmanager
def within(deadline: float) -> Iterator[None]:
    """Every :func:`request` made in this thread inside the block ends by ``deadline`` too (e.g. a
    token minted for a discovery request, which knows nothing of the event's deadline)."""
    previous: float = getattr(_local, "ambient", math.inf)
    _local.ambient = min(previous, deadline)
    try:
        yield
    finally:
        _local.ambient = previous


def overall_deadline(timeout: float) -> float:
    """The deadline of a request that has none of its own: ``timeout`` x the factor from now."""
    return time.monotonic() + timeout * OVERALL_TIMEOUT_FACTOR


# -- the request ----------------------------------------------------------------------------------
def request(
    session: requests.Session,
    method: str,
    url: str,
    *,
    timeout: float,
    cap: int,
    deadline: float | None = None,
    keep_head: bool = False,
    **kwargs: Any,
) -> requests.Response:
    """``session.request`` ending by ``deadline`` (default: :func:`overall_deadline`) and by the one
    set by :func:`within`, with the body read (at most ``cap`` bytes) into ``response.content``.

    ``timeout`` is the per-read timeout (never more than what is left). Above ``cap``,
    :class:`ResponseTooLarge` is raised, or with ``keep_head`` the first ``cap`` bytes are kept and
    the rest is not read. Past the deadline, :class:`requests.exceptions.ReadTimeout` is raised.
    """
    until = min(deadline if deadline is not None else overall_deadline(timeout), _ambient())
    started = time.monotonic()
    if until - started <= 0.01:
        raise requests.exceptions.ReadTimeout("no time left for the request")
    per_read = max(0.01, min(timeout, until - started))
    adapter = session.get_adapter(url)
    if not isinstance(adapter, DeadlineAdapter):  # a session not made by new_session()
        session.mount(url.split("://", 1)[0] + "://", DeadlineAdapter())
    with quiet_http_client(), _Watch(until) as watch:
        response: requests.Response | None = None
        previous = getattr(_local, "watch", None)
        _local.watch = watch
        try:
            try:
                response = session.request(method, url, stream=True, timeout=(per_read, per_read), **kwargs)
            finally:
                _local.watch = previous
            _read_body(response, until, cap, keep_head)
            if watch.fired:  # the socket was shut down: what was read may be cut short
                raise requests.exceptions.ReadTimeout("deadline")
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            if response is not None:
                response.close()
            if isinstance(exc, ResponseTooLarge):
                raise
            if watch.fired or time.monotonic() >= until:
                raise requests.exceptions.ReadTimeout(
                    f"no complete answer within {until - started:.1f}s (overall bound)"
                ) from None
            if isinstance(exc, requests.RequestException):
                raise
            raise requests.exceptions.ConnectionError(f"{type(exc).__name__}: {exc}") from None
    return response


def _ambient() -> float:
    return float(getattr(_local, "ambient", math.inf))


def _read_body(response: requests.Response, deadline: float, cap: int, keep_head: bool) -> None:
    """Read the body in chunks into ``response.content``; never past ``cap`` nor ``deadline``."""
    chunks: list[bytes] = []
    size = 0
    truncated = False
    for chunk in response.iter_content(CHUNK_BYTES):
        if size + len(chunk) > cap:
            if not keep_head:
                raise ResponseTooLarge(f"the answer is larger than {cap // 1024} KiB; not read further")
            chunks.append(chunk[: cap - size])
            truncated = True
            break
        chunks.append(chunk)
        size += len(chunk)
        if time.monotonic() >= deadline:
            raise requests.exceptions.ReadTimeout("deadline")
    response._content = b"".join(chunks)
    response._content_consumed = True
    if truncated:
        response.raw.close()  # the rest is not wanted: the connection is not reused
        response.close()
