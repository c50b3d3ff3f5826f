"""A job's webhook section: where its terminal states are POSTed, and how that went."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class WebhookDelivery(BaseModel):
    """One delivery of a job's terminal state to its callback URL (retried under the same
    `webhook_id`)."""

    webhook_id: str = Field(description="The `webhook-id` header of every attempt.")
    run: int = Field(description="Which run of the job (0, then one more per retry).")
    status: str = Field(description="The terminal status this delivery reports.")
    state: Literal["pending", "delivered", "failed"] = Field(
        description="`pending` (being tried), `delivered` (a 2xx answer), `failed` (given up "
        "after webhook_max_age_seconds)."
    )
    attempts: int
    created_at: datetime
    last_attempt_at: datetime | None = None
    last_status: int | None = Field(None, description="HTTP status of the last attempt.")
    last_error: str | None = Field(None, description="Why the last attempt failed.")
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None


class WebhookInfo(BaseModel):
    """Where the job's terminal states are POSTed, and how that went."""

    url: str
    deliveries: list[WebhookDelivery]
