"""Data the chain produces: checklist items (also the schema the LLM must answer in),
token usage, the partial result kept after step 1, and the final result."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_ITEM_CHARS: Final = 1000
MAX_CATEGORY_CHARS: Final = 64


class Priority(StrEnum):
    """How much a checklist item matters: obligations high, recommendations medium,
    options low."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class ChecklistItem(BaseModel):
    """One actionable item of a checklist."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    item: str = Field(min_length=1, max_length=MAX_ITEM_CHARS)
    priority: Priority
    category: str = Field(min_length=1, max_length=MAX_CATEGORY_CHARS)

    @field_validator("priority", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        # Models sometimes capitalise enum values ("High"); the meaning is unambiguous.
        return value.strip().lower() if isinstance(value, str) else value


class ChecklistAnswer(BaseModel):
    """The JSON object the LLM must answer the checklist step with."""

    model_config = ConfigDict(extra="ignore")

    items: list[ChecklistItem] = Field(min_length=1)


def checklist_response_format(max_items: int) -> dict[str, Any]:
    """The `response_format` of the checklist request: a strict JSON schema matching
    `ChecklistAnswer` (written out by hand: strict mode wants every property required and
    no additional properties)."""
    item_schema = {
        "type": "object",
        "properties": {
            "item": {"type": "string", "description": "One concrete action, imperative."},
            "priority": {"type": "string", "enum": [p.value for p in Priority]},
            "category": {"type": "string", "description": "Short lowercase grouping label."},
        },
        "required": ["item", "priority", "category"],
        "additionalProperties": False,
    }
    schema = {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": item_schema,
                "description": f"At most {max_items} items.",
            }
        },
        "required": ["items"],
        "additionalProperties": False,
    }
    return {
        "type": "json_schema",
        "json_schema": {"name": "guideline_checklist", "strict": True, "schema": schema},
    }


class Usage(BaseModel):
    """Token usage of one chain step (summed over its LLM calls)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    calls: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            calls=self.calls + other.calls,
        )


class PartialSummary(BaseModel):
    """Step 1's outcome as kept in `status.partial`, so a retried pod skips step 1."""

    model_config = ConfigDict(extra="ignore")

    summary: str = Field(min_length=1)
    attempt: int | None = None
    usage: dict[str, Usage] = Field(default_factory=dict)
    durations: dict[str, float] = Field(default_factory=dict)

    def to_status(self) -> dict[str, Any]:
        """The body of `status.partial`."""
        return self.model_dump(mode="json", exclude_none=True)


class ChainResult(BaseModel):
    """The outcome of the chain, as written to `status.result`."""

    summary: str
    checklist: list[ChecklistItem]
    provider: str
    model: str
    degraded: bool = False
    usage: dict[str, Usage]
    durations: dict[str, float]
    # Not part of status.result: whether step 1 was taken from status.partial.
    summary_reused: bool = Field(False, exclude=True)

    def to_status(self) -> dict[str, Any]:
        """The body of `status.result`."""
        return self.model_dump(mode="json")
