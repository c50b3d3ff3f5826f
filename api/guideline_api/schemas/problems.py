"""Errors: the RFC 9457 problem every 4xx/5xx answers with, and its field errors."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FieldError(BaseModel):
    """One invalid field of a request."""

    field: str = Field(description="Dotted path of the field (`items.3.guideline_text`).")
    message: str
    type: str = Field(description="The kind of violation (`missing`, `string_type`, ...).")
    value: float | None = Field(
        None, description="The figure, where there is one (`budget_exceeded`: amounts)."
    )


class Problem(BaseModel):
    """An error (RFC 9457 problem details, `application/problem+json`). `reason` and
    `details` are extension members; switch on `reason` (or `type`, its URI)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "https://guideline-ingest.dev/problems/not_found",
                    "title": "Not found",
                    "status": 404,
                    "detail": "no job with event_id 0193d6a4-7f3e-7c2a-9b1d-2f6e8a4c5b10",
                    "instance": "/v1/jobs/0193d6a4-7f3e-7c2a-9b1d-2f6e8a4c5b10",
                    "reason": "not_found",
                }
            ]
        }
    )

    type: str = Field(
        description="`https://guideline-ingest.dev/problems/<reason>`: one stable URI per "
        "reason, listed in docs/api.md (Error reasons)."
    )
    title: str = Field(description="A short summary of the reason (the same for every use).")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request, for humans.")
    instance: str = Field(description="The path of the request that failed.")
    reason: str = Field(description="The machine-readable code (stable), e.g. `not_found`.")
    details: list[FieldError] | None = Field(
        None, description="The invalid fields, for field-level validation errors only."
    )
