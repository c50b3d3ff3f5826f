"""A job as the API shows it (GET /jobs/{event_id}, and every answer that returns a
job), and the pages of the job list."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from guideline_api.schemas.checklist import CHECKLIST_ITEM_SCHEMA
from guideline_api.schemas.documents import DocumentInfo
from guideline_api.schemas.events import JobProgress
from guideline_api.schemas.webhooks import WebhookInfo


class JobError(BaseModel):
    """Why a job failed or was cancelled."""

    reason: str | None = Field(
        None,
        description="Machine-readable: `BackoffLimitExceeded`, `DeadlineExceeded`, `Timeout`, "
        "`LLMError`, `LLMRejected`, `InvalidOutput`, `InvalidInput`, `Cancelled`, "
        "`InternalError`, or for a document that cannot become text `no_text_layer` (a scan: "
        "run OCR first), `document_unreadable`, `document_too_long` (none of these three is "
        "retried).",
    )
    message: str | None = Field(None, description="What happened and what to do about it.")


class QueueInfo(BaseModel):
    """Where a PENDING job stands."""

    position: int = Field(description="1 = next of its tenant to start.")
    ahead: int = Field(description="PENDING jobs of its tenant submitted before this one.")
    pending: int = Field(description="PENDING jobs of its tenant.")
    running: int = Field(description="Jobs PROCESSING now (all tenants).")
    tenants_waiting: int = Field(0, description="Tenants with PENDING jobs, admitted in turn.")
    message: str


class HistoryEntry(BaseModel):
    """One status transition or API request in a job's history."""

    at: datetime
    status: str
    attempts: int
    reason: str | None = None
    message: str | None = None


_OPTIONAL = (
    "result",
    "error",
    "queue",
    "history",
    "guideline_text",
    "cr_name",
    "status_reason",
    "supersedes",
    "needs_review",
    "webhook",
    "document",
)


JobStatus = Literal["PENDING", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"]


JOB_EXAMPLE: dict[str, Any] = {
    "event_id": "0193d6a4-7f3e-7c2a-9b1d-2f6e8a4c5b10",
    "status": "PENDING",
    "created_at": "2026-01-05T09:30:00.123456Z",
    "updated_at": "2026-01-05T09:30:00.123456Z",
    "started_at": None,
    "completed_at": None,
    "attempts": 0,
    "title": "Hand hygiene",
    "model": None,
    "provider": None,
    "submitted_by": "alice",
    "tenant": "alice",
    "queue": {
        "position": 1,
        "ahead": 0,
        "pending": 1,
        "running": 0,
        "tenants_waiting": 1,
        "message": "waiting for a free runner slot: 0 job(s) of tenant alice ahead, 0 "
        "running; admission takes the 1 waiting tenant(s) in turn",
    },
}


class JobView(BaseModel):
    """A job as the API shows it. `result` only when COMPLETED, `error` only when FAILED or
    CANCELLED, `queue` only when PENDING, `history`/`guideline_text` only when asked for;
    `status_reason`, `cr_name`, `supersedes` and `needs_review` only when they have a value.
    An absent member is left out, never sent as null, except `progress`: always there,
    null unless the job is PROCESSING and its runner has reported a count."""

    model_config = ConfigDict(json_schema_extra={"examples": [JOB_EXAMPLE]})

    event_id: str = Field(description="The job's id (a UUID).")
    status: JobStatus
    status_reason: str | None = Field(
        None,
        description="Why the job is where it is, when the status alone does not say (e.g. "
        "accepted but its GuidelineJob not created yet while Kubernetes is unreachable).",
    )
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    attempts: int
    title: str | None
    model: str | None
    provider: str | None
    submitted_by: str
    tenant: str = Field(description="The tenant the job belongs to.")
    cr_name: str | None = Field(None, description="The GuidelineJob's name in the cluster.")
    supersedes: str | None = Field(None, description="The job this one replaces.")
    needs_review: bool | None = Field(
        None, description="When COMPLETED: whether the result fell below a review threshold."
    )
    result: dict[str, Any] | None = Field(
        None,
        description="`summary`, `checklist` (each item with its `source`, `grounded`, "
        "`strength` and `grade`), `quality`, `needs_review`, `review`, `changes` (when it "
        "supersedes a job), `document` (as the job's `document`) and the runner's metadata "
        "(provider, usage, ...).",
        json_schema_extra={
            "properties": {"checklist": {"type": "array", "items": CHECKLIST_ITEM_SCHEMA}}
        },
    )
    error: JobError | None = None
    queue: QueueInfo | None = None
    progress: JobProgress | None = Field(
        None,
        description="While PROCESSING: sections and calls done of total (null otherwise, "
        "or before the runner's first count).",
    )
    history: list[HistoryEntry] | None = None
    guideline_text: str | None = None
    webhook: WebhookInfo | None = Field(
        None, description="When the job has a callback URL: its webhook deliveries."
    )
    document: DocumentInfo | None = Field(
        None,
        description="The submitted document or text as accepted (media type, size, sha256, "
        "the hygiene's repairs), completed by the runner's extraction of an upload (pages, "
        "characters, extractor), from submission on (also as `result.document` once "
        "COMPLETED). Absent for a job made by kubectl.",
    )

    @model_serializer(mode="wrap")
    def _drop_absent(self, handler: Any):  # type: ignore[no-untyped-def]  # see above
        data = handler(self)
        for key in _OPTIONAL:
            if data.get(key) is None:
                data.pop(key, None)
        return data


class Amount(BaseModel):
    """A sum of money in one currency."""

    amount: float
    currency: str


class JobTotals(BaseModel):
    """The jobs a listing's filters match, on every page, and what they cost."""

    jobs: int
    cost: list[Amount] = Field(
        description="The stored `usage.cost` of the matching jobs, summed per currency "
        "(jobs whose model has no price are not in it)."
    )


class JobPage(BaseModel):
    """One page of jobs, newest first. Pass `next_cursor` as `cursor` for the next page;
    it is null on the last page. `totals` on the first page only (null after)."""

    items: list[JobView]
    next_cursor: str | None
    totals: JobTotals | None = None
