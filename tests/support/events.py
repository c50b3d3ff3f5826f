"""Following GET /jobs/{event_id}/events from a test: a thread reads the stream with a real
SSE client (httpx-sse) and hands over each event as it arrives."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from guideline_core import db
from httpx_sse import aconnect_sse

END = object()  # the stream ended (the server closed it)


@dataclass(frozen=True)
class Event:
    """One SSE event as the client saw it."""

    event: str
    id: str | None
    data: dict[str, Any]


class StreamReader:
    """Reads one job's event stream in a thread; `next()` gives each event in turn,
    `close()` drops the connection at once (the read is cancelled, as a client going away)."""

    def __init__(self, url: str, event_id: str, key: str, last_event_id: str | None = None) -> None:
        self._headers = {"Authorization": f"Bearer {key}"}
        if last_event_id is not None:
            self._headers["Last-Event-ID"] = last_event_id
        self._url = url
        self._path = f"/jobs/{event_id}/events"
        self._items: queue.Queue[Any] = queue.Queue()
        self.status_code: int | None = None
        self.content_type: str | None = None
        self.error: BaseException | None = None
        self._opened = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._opened.wait(30):
            raise TimeoutError("the event stream did not answer")

    def _run(self) -> None:
        self._task = self._loop.create_task(self._read())
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        finally:
            self._opened.set()
            self._items.put(END)
            self._loop.close()

    async def _read(self) -> None:
        timeout = httpx.Timeout(10, read=60)
        try:
            async with (
                httpx.AsyncClient(base_url=self._url, timeout=timeout) as client,
                aconnect_sse(client, "GET", self._path, headers=self._headers) as source,
            ):
                self.status_code = source.response.status_code
                self.content_type = source.response.headers.get("content-type")
                self._opened.set()
                if self.status_code != 200:
                    await source.response.aread()
                    self._items.put(source.response.json())
                    return
                async for sse in source.aiter_sse():
                    if not sse.data:  # the `retry:` frame (httpx-sse yields it; no event)
                        continue
                    self._items.put(Event(sse.event, sse.id or None, json.loads(sse.data)))
        except httpx.HTTPError as exc:  # e.g. the server went away mid-stream
            self.error = exc

    def next(self, timeout: float = 30) -> Any:
        """The next event (or END once the stream ended)."""
        return self._items.get(timeout=timeout)

    def until_end(self, timeout: float = 30) -> list[Event]:
        """Every further event until the stream ends."""
        events = []
        while (item := self.next(timeout)) is not END:
            events.append(item)
        return events

    def close(self) -> None:
        """Drop the connection now."""
        if self._task is not None and not self._loop.is_closed():
            # RuntimeError: the loop closed meanwhile (the stream had ended).
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout=10)


def stored_ids(database: db.Database, event_id: str) -> list[int]:
    """The ids of the job's stored events, in order: what streams must have sent together."""
    with database.connection() as conn:
        return [e["id"] for e in db.events_after(conn, uuid.UUID(event_id), 0, 1000)]
