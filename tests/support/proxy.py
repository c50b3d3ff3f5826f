"""A TCP proxy between a client and the API that a test can break: drop every open
connection (as `kubectl port-forward` or a load balancer does), or answer every new
request with a 503 (as an overloaded or restarting ingress does)."""

from __future__ import annotations

import contextlib
import socket
import threading

from support.net import free_port

UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nContent-Length: 78\r\nConnection: close\r\n\r\n"
    b'{"error": {"reason": "unavailable", "message": "the proxy answers 503 for now"}}'
)


class TcpProxy:
    """Listens on a free loopback port and forwards each connection to `target_port`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.unavailable = False  # True: answer 503 instead of forwarding
        self.accepted = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
            if self.unavailable:
                with contextlib.suppress(OSError):
                    client.recv(65536)
                    client.sendall(UNAVAILABLE)
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()  # the API is down: the client sees a dropped connection
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._shut(src)
            self._shut(dst)

    def _shut(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        with self._lock:
            self._open.discard(sock)

    def drop_connections(self) -> int:
        """Cut every open connection (both sides); returns how many sockets were open."""
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            self._shut(sock)
        return len(sockets)

    def close(self) -> None:
        """Stop listening and cut everything."""
        self._closed = True
        self._listener.close()
        self.drop_connections()
