"""GET /jobs/{event_id}/events: a job's status changes as Server-Sent Events.

Every event is a row of `job_events` (its `id` is the SSE `id:`), so any API replica serves
any stream and a client resumes anywhere with `Last-Event-ID`: it gets every event with a
larger id, in order (per job, ids follow commit order, see migration 0004). The process's
EventHub (one LISTEN connection) says when to look; the stream holds a database connection
only while it reads. Frames:

- `retry: <ms>` once, then `event: status` with `id:` for each event (data: JobEvent),
  and `event: progress` with `id:` for each count the runner reported while PROCESSING
  (data: ProgressEvent; rows of `job_events` with `progress`, so one id sequence);
- `event: queue` without `id:` when a PENDING job's queue position moved (data: QueueEvent);
- `: keep-alive` comments every `sse_heartbeat_seconds` while idle;
- the stream ends after the event that made the job terminal (COMPLETED, FAILED,
  CANCELLED), at once for a job already terminal with nothing newer than Last-Event-ID,
  when the job is purged, and when PostgreSQL is lost (the client resumes);
- it also ends after its lifetime (`sse_max_stream_seconds`) with `event: reconnect`
  (data: ReconnectEvent, no `id:`), and without a word once its API key no longer verifies
  as the same principal (checked every `sse_key_recheck_seconds`).

A stream holds a slot of `StreamCaps` from before its response starts until it ends,
however it ends (`close`).
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from guideline_core import db
from guideline_core.db import DatabaseUnavailableError
from guideline_core.resource import Phase
from starlette.concurrency import run_in_threadpool

from guideline_api.auth import Principal
from guideline_api.context import Context
from guideline_api.http.errors import ApiError, Reason
from guideline_api.http.streamcaps import StreamSlot
from guideline_api.schemas.events import (
    EventQueue,
    JobEvent,
    ProgressEvent,
    QueueEvent,
    ReconnectEvent,
)
from guideline_api.service.reads import get_visible_state

log = logging.getLogger(__name__)

BATCH = 100  # events read at once; a longer history is sent in several reads
RETRY_MS = 2000  # the reconnection delay the stream suggests to its client
HEARTBEAT = b": keep-alive\n\n"


def parse_last_event_id(value: str | None) -> int:
    """The `Last-Event-ID` header as an event id (0 when absent); 422 if not a number."""
    if value is None or value.strip() == "":
        return 0
    try:
        parsed = int(value.strip())
    except ValueError:
        parsed = -1
    if parsed < 0:
        raise ApiError(
            422,
            Reason.INVALID_LAST_EVENT_ID,
            f"Last-Event-ID {value[:40]!r} is not an id this stream sent (a whole number)",
        )
    return parsed


def frame(event: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    """One SSE frame (JSON has no raw newlines, so `data:` is one line)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)
    return f"{head}event: {event}\ndata: {body}\n\n".encode()


@dataclass
class _Read:
    """One look at the job: its row, then the events after the last one sent."""

    state: dict[str, Any] | None
    events: list[dict[str, Any]] = field(default_factory=list)
    position: int | None = None


@dataclass
class EventStream:
    """The events of one job after `after`, for one client (`principal`, who presented
    `credential`), holding `slot` until `close`."""

    ctx: Context
    event_id: uuid.UUID
    after: int
    principal: Principal
    credential: str | None
    slot: StreamSlot

    def close(self) -> None:
        """Give the stream's slot back (idempotent; called however the stream ended)."""
        self.ctx.streams.release(self.slot)

    def _key_still_valid(self) -> bool:
        # The keys file reloads by itself (KeyStore): a revoked key no longer verifies, and a
        # key moved to another tenant or role is another principal.
        if not self.ctx.settings.auth_enabled:
            return True
        verified = self.ctx.keys.verify(self.credential) if self.credential else None
        return verified == self.principal

    def _read(self, last: int, with_position: bool) -> _Read:
        # The row first: if it is terminal, the event of that change (committed with it)
        # is visible to the later events query.
        with self.ctx.store.connection() as conn:
            state = db.job_state(conn, self.event_id)
            if state is None:
                return _Read(None)
            events = db.events_after(conn, self.event_id, last, BATCH)
            position = None
            if with_position and state["status"] == Phase.PENDING:
                position = db.queue_position(
                    conn, state["created_at"], self.event_id, tenant=state["tenant"]
                )
            return _Read(state, events, position)

    def _numbered(self, row: dict[str, Any]) -> dict[str, Any]:
        """The members a status and a progress event both take from their row."""
        keys = ("id", "status", "attempts", "run", "at")
        return {"event_id": str(self.event_id), **{key: row[key] for key in keys}}

    def _status(self, row: dict[str, Any], position: int | None) -> bytes:
        event = JobEvent(
            **self._numbered(row),
            reason=row["reason"],
            message=row["message"],
            terminal=db.is_terminal(row["status"]),
            queue=EventQueue(position=position) if position is not None else None,
        )
        return frame("status", event.model_dump(mode="json"), row["id"])

    def _progress(self, row: dict[str, Any]) -> bytes:
        event = ProgressEvent(**self._numbered(row), progress=row["progress"])
        return frame("progress", event.model_dump(mode="json"), row["id"])

    def _queue(self, position: int) -> bytes:
        event = QueueEvent(
            event_id=str(self.event_id), status=Phase.PENDING, queue=EventQueue(position=position)
        )
        return frame("queue", event.model_dump(mode="json"))

    def _reconnect(self) -> bytes:
        event = ReconnectEvent(event_id=str(self.event_id), reason="lifetime")
        return frame("reconnect", event.model_dump(mode="json"))

    async def frames(self) -> AsyncIterator[bytes]:
        """The stream's bytes (see the module's docstring)."""
        settings = self.ctx.settings
        heartbeat, refresh = settings.sse_heartbeat_seconds, settings.sse_queue_refresh_seconds
        recheck = settings.sse_key_recheck_seconds
        hub = self.ctx.events
        start = time.monotonic()
        # Spread, so that the streams of a burst (or of a restarted replica) do not all
        # reconnect at the same moment.
        ends_at = start + settings.sse_max_stream_seconds * random.uniform(0.9, 1.0)
        next_check = start + recheck
        yield f"retry: {RETRY_MS}\n\n".encode()
        last, sent_position = self.after, None
        # Subscribed before the first read, so nothing committed after that read is missed.
        with hub.subscribe(str(self.event_id)) as waiter:
            seen = hub.generation
            next_refresh = start + refresh
            while True:
                now = time.monotonic()
                if now >= ends_at:
                    yield self._reconnect()
                    return
                if now >= next_check:
                    if not self._key_still_valid():
                        return
                    next_check = now + recheck
                try:
                    read = await run_in_threadpool(self._read, last, True)
                except DatabaseUnavailableError as exc:
                    log.warning(
                        "event stream lost PostgreSQL; the client resumes",
                        extra={"event_id": str(self.event_id), "error": str(exc)},
                    )
                    return
                if read.state is None:
                    return  # purged
                for n, row in enumerate(read.events):
                    if row.get("progress") is not None:
                        yield self._progress(row)
                        last = row["id"]
                        continue
                    latest = n == len(read.events) - 1 and len(read.events) < BATCH
                    pending_now = latest and row["status"] == Phase.PENDING
                    position = read.position if pending_now else None
                    yield self._status(row, position)
                    last = row["id"]
                    if position is not None:
                        sent_position = position
                if len(read.events) == BATCH:
                    continue
                terminal = db.is_terminal(read.state["status"])
                if terminal and (not read.events or db.is_terminal(read.events[-1]["status"])):
                    return
                if read.position is not None and read.position != sent_position:
                    yield self._queue(read.position)
                    sent_position = read.position
                # Idle: wait for news of this job, a heartbeat, the key's re-check, the end of
                # the lifetime, or (PENDING) a queue refresh.
                pending = read.state["status"] == Phase.PENDING
                next_beat = time.monotonic() + heartbeat
                while True:
                    now = time.monotonic()
                    due = min(next_beat, next_check, ends_at) - now
                    if pending:
                        due = min(due, next_refresh - now)
                    if await waiter.wait(due):
                        break
                    now = time.monotonic()
                    if now >= ends_at:
                        break  # the checks at the top of the loop end the stream
                    if now >= next_check:
                        if not self._key_still_valid():
                            return
                        next_check = now + recheck
                    if now >= next_beat:
                        yield HEARTBEAT
                        break  # and look again: the safety net for a lost notification
                    if pending and now >= next_refresh:
                        next_refresh = now + refresh
                        if hub.generation != seen:
                            seen = hub.generation
                            break


async def open_stream(
    ctx: Context,
    principal: Principal,
    credential: str | None,
    event_id: uuid.UUID,
    last_event_id: str | None,
) -> EventStream:
    """The stream of a job of the caller's tenant (another tenant's is a 404, like a missing
    one; 503 when PostgreSQL is down), resuming after `Last-Event-ID`; 429 at a cap of open
    streams. The caller must `close` it (see `StreamCaps`)."""
    after = parse_last_event_id(last_event_id)
    await run_in_threadpool(get_visible_state, ctx, principal, event_id)
    # Taken here, in the event loop, not in the thread: a request cancelled while it waits
    # for the thread would drop a slot taken there, never to be released.
    slot = ctx.streams.acquire(principal)
    return EventStream(ctx, event_id, after, principal, credential, slot)
