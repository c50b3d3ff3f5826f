"""Local networking for tests and benchmarks: a port to listen on."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on the loopback interface nobody listens on (right now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
