"""A real webhook receiver for the tests: an HTTP server on loopback that records every
POST (headers and body) and answers as told: 200, another status, by dropping the
connection without an answer, or as a tarpit that trickles an endless answer. Stopping it
closes its port (connections are refused); a new receiver may listen on the same port
again."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from support.net import free_port


@dataclass(frozen=True)
class Received:
    """One request that reached the receiver, and whether it was answered."""

    headers: dict[str, str]
    body: bytes
    answered: bool

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


TARPIT_HEAD = b"HTTP/1.1 200 OK\r\nX-Tarpit: "


class Receiver:
    """Records POSTs on http://127.0.0.1:<port>/hook; `mode` is "ok" (200), "drop" (the
    connection is closed without an answer), "hold" (no answer until `let_go()`: the
    sender times out), "tarpit" (an answer head that never ends, one byte every
    `trickle_seconds`, until the sender hangs up or `let_go()`: no per-read timeout
    fires) or an HTTP status to answer with. For a tarpit it keeps, per webhook-id, the
    connections open now (`live`), the most ever open at once (`most_live`), and the
    webhook-ids of the attempts whose sender hung up (`hung_up`)."""

    def __init__(
        self, port: int | None = None, mode: str | int = "ok", trickle_seconds: float = 0.2
    ):
        self.port = port or free_port()
        self.mode: str | int = mode
        self.trickle_seconds = trickle_seconds
        self.received: list[Received] = []
        self.live: dict[str, int] = {}
        self.most_live: dict[str, int] = {}
        self.hung_up: list[str] = []
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
                answered = mode not in ("drop", "hold", "tarpit")
                receiver._record(Received(headers, body, answered=answered))
                if mode == "tarpit":
                    receiver._trickle(self, headers["webhook-id"])
                    self.close_connection = True
                    return
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

    def _trickle(self, handler: BaseHTTPRequestHandler, webhook_id: str) -> None:
        """Send the tarpit's head a byte at a time until the sender hangs up or `let_go()`."""
        with self._changed:
            self.live[webhook_id] = self.live.get(webhook_id, 0) + 1
            self.most_live[webhook_id] = max(
                self.most_live.get(webhook_id, 0), self.live[webhook_id]
            )
            self._changed.notify_all()
        sender_left = False
        sent = 0
        while not self._held.is_set():
            # Readable means the sender hung up (it sends nothing more): noticed at once,
            # not only when a later write fails.
            readable, _, _ = select.select([handler.connection], [], [], self.trickle_seconds)
            if readable and not handler.connection.recv(1, socket.MSG_PEEK):
                sender_left = True
                break
            byte = TARPIT_HEAD[sent : sent + 1] or b"a"
            try:
                handler.wfile.write(byte)
                handler.wfile.flush()
            except OSError:
                sender_left = True
                break
            sent += 1
        with self._changed:
            self.live[webhook_id] -= 1
            if sender_left:
                self.hung_up.append(webhook_id)
            self._changed.notify_all()

    def wait_for(self, check: Callable[[], bool], timeout: float = 30.0) -> None:
        """Return once `check()` holds (evaluated whenever the receiver's state changes)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not check():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"receiver: condition not met; got {self.received}, live {self.live}, "
                        f"hung up {self.hung_up}"
                    )
                self._changed.wait(left)

    def wait_until(
        self, check: Callable[[list[Received]], bool], timeout: float = 30.0
    ) -> list[Received]:
        """The requests received so far, once `check` holds for them."""
        self.wait_for(lambda: check(self.received), timeout)
        with self._changed:
            return list(self.received)

    def answered(self, count: int = 1, timeout: float = 30.0) -> list[Received]:
        """The requests answered, once there are `count` of them."""
        got = self.wait_until(lambda r: sum(x.answered for x in r) >= count, timeout)
        return [r for r in got if r.answered]


def run_webhook_secret_cli(
    *args: str, database_url: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`guideline-api webhook-secret ...` as the console script, given the database URL in
    GUIDELINE_DATABASE_URL (when `database_url` is given; else the environment's)."""
    script = Path(sys.executable).parent / "guideline-api"
    env = dict(os.environ)
    if database_url is not None:
        env["GUIDELINE_DATABASE_URL"] = database_url
    return subprocess.run(
        [str(script), "webhook-secret", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
        env=env,
    )


def webhook_secret_cli(database_url: str, *args: str) -> str:
    """`guideline-api webhook-secret ...`; its last output line."""
    done = run_webhook_secret_cli(*args, database_url=database_url)
    return done.stdout.strip().splitlines()[-1]
