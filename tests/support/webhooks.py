"""A real webhook receiver for the tests: an HTTP server on loopback that records every
POST (headers and body) and answers as told: 200, another status, or by dropping the
connection without an answer. Stopping it closes its port (connections are refused);
a new receiver may listen on the same port again."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from support.api import free_port


@dataclass(frozen=True)
class Received:
    """One request that reached the receiver, and whether it was answered."""

    headers: dict[str, str]
    body: bytes
    answered: bool

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    """Records POSTs on http://127.0.0.1:<port>/hook; `mode` is "ok" (200), "drop" (the
    connection is closed without an answer), "hold" (no answer until `let_go()`: the
    sender times out) or an HTTP status to answer with."""

    def __init__(self, port: int | None = None, mode: str | int = "ok"):
        self.port = port or free_port()
        self.mode: str | int = mode
        self.received: list[Received] = []
        self._changed = threading.Condition()
        self._held = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                mode = receiver.mode
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver._record(Received(headers, body, answered=mode not in ("drop", "hold")))
                if mode == "drop":
                    self.close_connection = True
                    return  # no status line: the client sees the connection closed
                if mode == "hold":
                    receiver._held.wait(60)
                    self.close_connection = True
                    return
                status = 200 if mode == "ok" else int(mode)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (the port refuses connections from now on)."""
        self.let_go()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def let_go(self) -> None:
        """End every held request (their senders have given up by now)."""
        self._held.set()

    def _record(self, item: Received) -> None:
        with self._changed:
            self.received.append(item)
            self._changed.notify_all()

    def wait_until(
        self, check: Callable[[list[Received]], bool], timeout: float = 30.0
    ) -> list[Received]:
        """The requests received so far, once `check` holds for them."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not check(self.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"receiver: condition not met; got {self.received}")
                self._changed.wait(left)
            return list(self.received)

    def answered(self, count: int = 1, timeout: float = 30.0) -> list[Received]:
        """The requests answered, once there are `count` of them."""
        got = self.wait_until(lambda r: sum(x.answered for x in r) >= count, timeout)
        return [r for r in got if r.answered]


def webhook_secret_cli(database_url: str, *args: str) -> str:
    """`guideline-api webhook-secret ...` as the console script; its last output line."""
    script = Path(sys.executable).parent / "guideline-api"
    done = subprocess.run(
        [str(script), "webhook-secret", *args, "--database-url", database_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]
