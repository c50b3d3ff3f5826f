"""The health, liveness and readiness answers."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class CheckResult(BaseModel):
    """One dependency's health."""

    ok: bool
    latency_ms: float | None = None
    error: str | None = None


class OperatorHealth(BaseModel):
    """Whether an operator replica wrote its heartbeat recently."""

    alive: bool
    identity: str | None = None
    last_seen: datetime | None = None
    age_seconds: float | None = None


class Health(BaseModel):
    """Dependencies and queue. 503 when the database or the Kubernetes API is down."""

    status: Literal["ok", "degraded", "unavailable"]
    database: CheckResult
    kubernetes: CheckResult
    operator: OperatorHealth | None = None
    queue_size: int | None = Field(None, description="PENDING jobs.")
    running: int | None = Field(None, description="PROCESSING jobs.")
    figures_age_seconds: float = Field(
        0.0, description="Age of these figures (refreshed in the background)."
    )


class Liveness(BaseModel):
    """The process serves requests."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Whether the database answered at the last refresh; `error` only for an admin key."""

    status: Literal["ok", "unavailable"]
    error: str | None = None
