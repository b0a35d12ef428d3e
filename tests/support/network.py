"""Loopback helpers for tests that need a port."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port nothing listens on (bound and released: a connection to it is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
