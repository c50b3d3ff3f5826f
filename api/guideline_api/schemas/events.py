"""A running job's progress, and the `data:` of each event of a job's event stream
(GET /jobs/{event_id}/events)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class JobProgress(BaseModel):
    """How far a PROCESSING job's current attempt is, as its runner counts it: checklist
    sections and provider calls done of total. `calls_total` is what the runner plans so
    far, so it grows while the summary's rounds of combining are formed; the counts are
    written at most every `progress_interval_seconds` (2 s) and at the end of each round."""

    sections_done: int = Field(ge=0, description="Sections whose checklist answer is in.")
    sections_total: int = Field(ge=0, description="Sections the checklist is drawn from.")
    calls_done: int = Field(ge=0, description="Provider (LLM) calls answered.")
    calls_total: int = Field(ge=0, description="Provider calls planned so far.")


class EventQueue(BaseModel):
    """A PENDING job's place, as its event stream reports it."""

    position: int = Field(description="1 = next of its tenant to start.")


class JobEvent(BaseModel):
    """The `data:` of a `status` event of GET /jobs/{event_id}/events (its `id:` is `id`)."""

    id: int = Field(description="Increasing; send it back as Last-Event-ID to resume.")
    event_id: str
    status: str = Field(description="PENDING, PROCESSING, COMPLETED, FAILED or CANCELLED.")
    attempts: int = Field(description="Pod attempts so far (all runs).")
    run: int = Field(description="0 for the first run, N for the N-th retry request.")
    reason: str | None = Field(None, description="Why: Accepted, RetryRequested, a failure...")
    message: str | None = None
    at: datetime
    terminal: bool = Field(description="True for COMPLETED, FAILED and CANCELLED.")
    queue: EventQueue | None = Field(
        None, description="While PENDING, on the job's latest event: its queue position."
    )


class ProgressEvent(BaseModel):
    """The `data:` of a `progress` event (its `id:` is `id`, in the same sequence as the
    status events': resume after either with Last-Event-ID)."""

    id: int = Field(description="Increasing; send it back as Last-Event-ID to resume.")
    event_id: str
    status: str = Field(description="The job's status when it was counted (PROCESSING).")
    attempts: int
    run: int
    at: datetime
    progress: JobProgress


class QueueEvent(BaseModel):
    """The `data:` of a `queue` event (no `id:`): a PENDING job's queue position moved."""

    event_id: str
    status: str
    queue: EventQueue


class ReconnectEvent(BaseModel):
    """The `data:` of a `reconnect` event (no `id:`), the last frame of a stream that reached
    its maximum lifetime: reconnect with Last-Event-ID."""

    event_id: str
    reason: Literal["lifetime"]
