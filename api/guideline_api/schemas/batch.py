"""POST /jobs/batch: several guidelines in one request, and each item's outcome."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_serializer

from guideline_api.schemas.jobs import JobStatus
from guideline_api.schemas.problems import FieldError
from guideline_api.schemas.submission import SubmitJob


class BatchItem(SubmitJob):
    """One guideline of a batch; `idempotency_key` makes retrying the batch safe for it."""

    idempotency_key: str | None = Field(
        None,
        description="Idempotency-Key of this item (else derived from the batch's header).",
    )


class SubmitBatch(BaseModel):
    """Several guidelines in one request, accepted in one transaction."""

    items: list[BatchItem] = Field(description="The submissions, in order.")


class ItemError(BaseModel):
    """Why one item of a batch was not accepted."""

    reason: str = Field(description="A problem `reason` code (see Problem).")
    message: str
    details: list[FieldError] | None = None

    @model_serializer(mode="wrap")
    def _drop_absent(self, handler: Any):  # type: ignore[no-untyped-def]  # see jobs.py
        return {k: v for k, v in handler(self).items() if v is not None}


class BatchItemResult(BaseModel):
    """The outcome of one item of a batch: the job it made (or replayed) or its error.
    Absent members are left out, never sent as null."""

    index: int
    event_id: str | None = None
    status: JobStatus | None = None
    replayed: bool | None = Field(None, description="True: an Idempotency-Key replay.")
    error: ItemError | None = None

    @model_serializer(mode="wrap")
    def _drop_absent(self, handler: Any):  # type: ignore[no-untyped-def]  # see jobs.py
        return {k: v for k, v in handler(self).items() if v is not None}


class BatchResult(BaseModel):
    """One entry per submitted item, in the order given."""

    items: list[BatchItemResult]
    accepted: int = Field(description="Items that made a new job.")
    rejected: int = Field(description="Items refused (see their `error`).")
