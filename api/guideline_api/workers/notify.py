"""One LISTEN connection per API process, fanned out to the event streams it serves.

A thread waits on the connection's socket for the NOTIFYs that migration 0004 sends for
every new `job_events` row (`<event_id> <id>`) and wakes the streams following that job;
100 streams hold this one connection, not 100. A notification only says "look again": the
streams read the events themselves from PostgreSQL (and also every heartbeat, so a
notification lost while this connection was down costs latency, never an event).
"""

from __future__ import annotations

import asyncio
import logging
import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
from guideline_core import db
from guideline_core.db import DatabaseUnavailableError

log = logging.getLogger(__name__)


class Waiter:
    """What one stream waits on: set (from the listener thread) when its job has news."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._event = asyncio.Event()

    def wake(self) -> None:
        """Thread-safe: wake the stream."""
        self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds; True if woken (then reset for the next wait)."""
        try:
            await asyncio.wait_for(self._event.wait(), max(timeout, 0.0))
        except TimeoutError:
            return False
        self._event.clear()
        return True


class EventHub:
    """The process's listener: `subscribe(event_id)` gives a Waiter woken on that job's
    events; `generation` counts notifications of any job (a PENDING job's queue position
    can only move when some job's state changed)."""

    def __init__(self, url: str, connect_timeout: int = 3, max_backoff: float = 5.0):
        self._url = url
        self._connect_timeout = connect_timeout
        self._max_backoff = max_backoff
        self._lock = threading.Lock()
        self._waiters: dict[str, set[Waiter]] = {}
        self._generation = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()  # set while the LISTEN connection is up

    @property
    def generation(self) -> int:
        """How many notifications arrived so far (any job)."""
        return self._generation

    @contextmanager
    def subscribe(self, event_id: str) -> Iterator[Waiter]:
        """A Waiter for `event_id`'s events while the block runs (call from the event loop)."""
        waiter = Waiter(asyncio.get_running_loop())
        key = event_id.lower()
        with self._lock:
            self._waiters.setdefault(key, set()).add(waiter)
        try:
            yield waiter
        finally:
            with self._lock:
                group = self._waiters.get(key)
                if group is not None:
                    group.discard(waiter)
                    if not group:
                        del self._waiters[key]

    def start(self) -> None:
        """Start the listener thread (idempotent)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="event-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the listener thread and close its connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _wake(self, event_ids: set[str] | None) -> None:
        with self._lock:
            self._generation += 1
            if event_ids is None:
                waiters = [w for group in self._waiters.values() for w in group]
            else:
                waiters = [w for e in event_ids for w in self._waiters.get(e, ())]
        for waiter in waiters:
            waiter.wake()

    def _run(self) -> None:
        delay = 0.2
        while not self._stop.is_set():
            conn = None
            try:
                conn = db.connect_listener(self._url, self._connect_timeout)
                self.listening.set()
                delay = 0.2
                # Whatever was committed while no connection listened: every stream looks.
                self._wake(None)
                self._listen(conn)
            except (DatabaseUnavailableError, psycopg2.Error, OSError) as exc:
                if not self._stop.is_set():
                    log.warning("event listener lost PostgreSQL", extra={"error": str(exc)})
            finally:
                self.listening.clear()
                if conn is not None:
                    conn.close()
            self._stop.wait(delay)
            delay = min(delay * 2, self._max_backoff)

    def _listen(self, conn: psycopg2.extensions.connection) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([conn], [], [], 0.5)
            if not readable:
                continue
            conn.poll()  # raises if the server went away
            if not conn.notifies:
                continue
            event_ids = {n.payload.split(" ", 1)[0] for n in conn.notifies}
            conn.notifies.clear()
            self._wake(event_ids)
