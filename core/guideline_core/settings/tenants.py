"""A tenant's limits and LLM budget: the installation-wide defaults live in
`CommonSettings`, a tenant's overrides in its `tenant_limits` entry."""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Budget(BaseModel):
    """What a tenant may spend on LLM calls per day or per calendar month (UTC)."""

    model_config = ConfigDict(extra="forbid")

    amount: float = Field(ge=0)
    currency: str = Field("USD", min_length=3, max_length=3)
    period: Literal["day", "month"] = "month"


class TenantLimits(BaseModel):
    """Limits of one tenant; a field left out takes the installation-wide default."""

    model_config = ConfigDict(extra="forbid")

    max_pending_jobs: int | None = Field(None, ge=0)
    max_running_jobs: int | None = Field(None, ge=1)
    submissions_per_minute: int | None = Field(None, ge=0)
    allowed_models: list[str] | None = None
    callback_url: str | None = Field(
        None,
        max_length=2048,
        description="Webhook URL of the tenant's jobs that name none themselves (checked "
        "like a submission's `callback_url` at each submission).",
    )
    max_event_streams: int | None = Field(
        None,
        ge=0,
        description="Event streams the tenant may hold open in one API process (the API's "
        "`sse_max_streams_per_tenant` when left out).",
    )
    budget: Budget | None = Field(
        None, description="The tenant's LLM budget (`tenant_budget` when left out)."
    )


def first_set(*values: T | None) -> T | None:
    """The first value that is not None (a tenant's own limit before the default)."""
    return next((v for v in values if v is not None), None)
