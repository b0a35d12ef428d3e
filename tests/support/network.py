"""Loopback helpers for tests that need a port."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port nothing listens on (bound and released: a connection to it is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: Sockets holding the ports :func:`refused_port` gave out, for the rest of the test session.
_HELD: list[socket.socket] = []


def refused_port() -> int:
    """A loopback port a connection to is refused, for the whole test session: bound and held by a
    socket that never listens. A port :func:`free_port` released may be taken meanwhile, or, in the
    ephemeral range, be picked as the connecting socket's own port: a TCP self-connect, which then
    "does not answer" instead of refusing (seen once in CI, in the Test button's test)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _HELD.append(sock)
    return sock.getsockname()[1]


def release_port(port: int) -> None:
    """Let a server bind a port :func:`refused_port` holds (Alation coming back on it)."""
    for sock in [s for s in _HELD if s.getsockname()[1] == port]:
        _HELD.remove(sock)
        sock.close()
