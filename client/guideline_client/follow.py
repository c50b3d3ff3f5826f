"""`guideline-client wait`: follow a job's event stream (GET /jobs/{event_id}/events) until
it is terminal, with a live progress line.

A thread reads the stream (httpx-sse) and reconnects with `Last-Event-ID` whenever it
breaks: a dropped connection (`kubectl port-forward` does that), a restarted API, the end
of the stream's lifetime (`event: reconnect`), a 429 (too many streams open), 502, 503 or
504, a stream silent for longer than READ_TIMEOUT (the server sends a heartbeat every
15 s), with exponential backoff and jitter capped at MAX_BACKOFF (or the server's
Retry-After, capped too). The main thread draws the progress and keeps the deadline, so
Ctrl-C and the timeout act at once, whatever the connection is doing. Client side only:
nothing here imports the server.
"""

from __future__ import annotations

import json
import queue
import random
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, TextIO

import httpx
from httpx_sse import connect_sse

READ_TIMEOUT = 60.0  # no byte (not even a heartbeat) for this long: reconnect
FIRST_BACKOFF, MAX_BACKOFF = 0.5, 10.0
TRANSIENT = {429, 502, 503, 504}
# Other events (`reconnect`) are not the job's state; `status` and `progress` carry ids.
FOLLOWED = {"status", "queue", "progress"}


class StreamRefusedError(Exception):
    """The API refused the stream for good (401, 404, 422...): the response says why."""

    def __init__(self, response: httpx.Response):
        super().__init__(response.status_code)
        self.response = response


@dataclass
class Progress:
    """What the wait knows of the job: the progress line's content."""

    event_id: str
    status: str = "?"
    attempts: int = 0
    position: int | None = None
    counts: dict[str, int] | None = None  # the latest `progress` event's, while PROCESSING
    note: str = ""  # e.g. "reconnecting in 2s (connection lost)"
    terminal: bool = False

    def line(self, elapsed: float, with_id: bool = True) -> str:
        """The progress line, e.g. `<event_id>: PENDING | attempt 0 | queue position 3 | 12s`
        or `<event_id>: PROCESSING | attempt 1 | sections 2/9, calls 14/31 | 40s`."""
        parts = [self.status, f"attempt {self.attempts}"]
        if self.position is not None and self.status == "PENDING":
            parts.append(f"queue position {self.position}")
        if self.counts is not None and self.status == "PROCESSING":
            c = self.counts
            parts.append(
                f"sections {c.get('sections_done', 0)}/{c.get('sections_total', 0)}, "
                f"calls {c.get('calls_done', 0)}/{c.get('calls_total', 0)}"
            )
        minutes, seconds = divmod(int(elapsed), 60)
        parts.append(f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s")
        if self.note:
            parts.append(self.note)
        return (f"{self.event_id}: " if with_id else "") + " | ".join(parts)


class _Reader(threading.Thread):
    """Reads the stream, reconnecting; posts ("event" | "note" | "refused" | "failed" |
    "end", value) for the main thread."""

    def __init__(self, http: httpx.Client, event_id: str, out: queue.Queue[tuple[str, Any]]):
        super().__init__(name="event-stream", daemon=True)
        self.http, self.event_id, self.out = http, event_id, out
        self.last_id: str | None = None
        self.stopped = threading.Event()

    def run(self) -> None:
        delay = FIRST_BACKOFF
        while not self.stopped.is_set():
            wait = delay
            try:
                if self._follow():
                    self.out.put(("end", None))
                    return
                reason = "the stream ended early"
                delay = FIRST_BACKOFF  # it had worked: start the backoff again
                wait = delay
            except StreamRefusedError as exc:
                if exc.response.status_code not in TRANSIENT:
                    self.out.put(("refused", exc.response))
                    return
                reason = f"HTTP {exc.response.status_code}"
                wait = min(_retry_after(exc.response, delay), MAX_BACKOFF)
            except (httpx.HTTPError, ValueError) as exc:  # ValueError: a torn JSON line
                reason = _why(exc)
            except Exception as exc:  # the client closed under us, or a bug: not retried
                if not self.stopped.is_set():
                    self.out.put(("failed", exc))
                return
            wait *= random.uniform(0.8, 1.2)
            self.out.put(("note", f"reconnecting in {wait:.1f}s ({reason})"))
            if self.stopped.wait(wait):
                return
            delay = min(delay * 2, MAX_BACKOFF)

    def _follow(self) -> bool:
        """One connection; True once the job's terminal event arrived."""
        headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
        timeout = httpx.Timeout(10.0, read=READ_TIMEOUT)
        path = f"/v1/jobs/{self.event_id}/events"
        with connect_sse(self.http, "GET", path, headers=headers, timeout=timeout) as source:
            if source.response.status_code != 200:
                source.response.read()
                raise StreamRefusedError(source.response)
            self.out.put(("note", ""))  # connected
            for sse in source.iter_sse():
                if not sse.data or sse.event not in FOLLOWED:  # `retry:`, `reconnect`
                    continue
                data = json.loads(sse.data)
                if sse.event in ("status", "progress"):
                    self.last_id = sse.id
                self.out.put(("event", data))
                if sse.event == "status" and data.get("terminal"):
                    return True
        return False


def _retry_after(response: httpx.Response, default: float) -> float:
    try:
        return max(float(response.headers.get("Retry-After", default)), 0.0)
    except ValueError:
        return default


def _why(exc: Exception) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "API unreachable"
    if isinstance(exc, httpx.ReadTimeout):
        return f"no data for {READ_TIMEOUT:g}s"
    if isinstance(exc, httpx.HTTPError):
        return "connection lost"
    return "garbled stream"


class Follow:
    """Follow one job until it is terminal (`run`), drawing progress on `err`."""

    def __init__(self, http: httpx.Client, event_id: str, err: TextIO | None = None):
        self.http = http
        self.progress = Progress(event_id)
        self.err = err or sys.stderr
        self.live = self.err.isatty()  # one redrawn line; else a line per change
        self._printed = ""
        self._last: tuple[Any, ...] = ()

    def run(self, timeout: float) -> Progress:
        """Block until the terminal event; raise TimeoutError after `timeout` seconds,
        StreamRefusedError if the API refuses the stream (KeyboardInterrupt passes through).
        The progress line is finished (newline) whatever happens."""
        events: queue.Queue[tuple[str, Any]] = queue.Queue()
        reader = _Reader(self.http, self.progress.event_id, events)
        start = time.monotonic()
        reader.start()
        try:
            while True:
                elapsed = time.monotonic() - start
                if elapsed >= timeout:
                    raise TimeoutError(self.progress)
                try:
                    kind, value = events.get(timeout=min(1.0, timeout - elapsed))
                except queue.Empty:
                    self._draw(time.monotonic() - start)
                    continue
                if kind == "end":
                    return self.progress
                if kind == "refused":
                    raise StreamRefusedError(value)
                if kind == "failed":
                    raise value
                if kind == "note":
                    self.progress.note = value
                else:
                    self._apply(value)
                self._draw(time.monotonic() - start)
        finally:
            reader.stopped.set()
            if self.live and self._printed:
                self.err.write("\n")
                self.err.flush()

    def _apply(self, data: dict[str, Any]) -> None:
        p = self.progress
        p.status = data.get("status", p.status)
        p.attempts = data.get("attempts", p.attempts)
        p.terminal = bool(data.get("terminal", False))
        if isinstance(data.get("progress"), dict):
            p.counts = data["progress"]
        elif p.status != "PROCESSING":
            p.counts = None
        queue_info = data.get("queue")
        p.position = queue_info.get("position") if queue_info else None

    def _draw(self, elapsed: float) -> None:
        p = self.progress
        if p.status == "?" and not p.note:
            return  # nothing to say before the first event
        if self.live:
            # One line redrawn in place: without the id (printed before), cut to the width.
            width = shutil.get_terminal_size().columns - 1
            self._printed = p.line(elapsed, with_id=False)[:width]
            self.err.write("\r\033[K" + self._printed)
            self.err.flush()
            return
        # Not a terminal: a line when something changed, not for the ticking clock.
        counts = tuple(sorted(p.counts.items())) if p.counts else None
        key = (p.status, p.attempts, p.position, counts, p.note)
        if key != self._last:
            self._last = key
            print(p.line(elapsed), file=self.err, flush=True)
