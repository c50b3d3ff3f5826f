"""Data the chain produces: checklist items as a provider proposes them (also the schema
the LLM must answer in) and as the result carries them (with their verified source), the
quality block and review gate, token usage, the partial result kept after step 1, and the
final result."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

MAX_ITEM_CHARS: Final = 1000
MAX_CATEGORY_CHARS: Final = 64
MAX_QUOTE_CHARS: Final = 4000


class Priority(StrEnum):
    """How much a checklist item matters: obligations high, recommendations medium,
    options low."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Strength(StrEnum):
    """How the text words an item's modal: obligations, recommendations, options, and
    the prohibitions of the first two."""

    MUST = "must"
    MUST_NOT = "must_not"
    SHOULD = "should"
    SHOULD_NOT = "should_not"
    MAY = "may"


class ItemFields(BaseModel):
    """What every checklist item says."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    item: str = Field(min_length=1, max_length=MAX_ITEM_CHARS)
    priority: Priority
    category: str = Field(min_length=1, max_length=MAX_CATEGORY_CHARS)

    @field_validator("priority", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        # Models sometimes capitalise enum values ("High"); the meaning is unambiguous.
        return value.strip().lower() if isinstance(value, str) else value


class Grade(BaseModel):
    """The grade or class the guideline states for an item, verbatim:
    `guideline_text[start:end] == text`."""

    text: str
    start: int = Field(ge=0)
    end: int = Field(ge=0)


class DraftItem(ItemFields):
    """An item as a provider proposes it: with the verbatim passage of the guideline it
    comes from (`quote`), and where the provider knows it (the extractive one), the
    passage's offsets. Nothing here is trusted: grounding verifies it against the text."""

    quote: str | None = Field(None, max_length=MAX_QUOTE_CHARS)
    # What the provider says; the result's strength is derived from the quote instead.
    strength: Strength | None = None
    start: int | None = Field(None, ge=0, exclude=True)
    end: int | None = Field(None, ge=0, exclude=True)
    # Where its quote is looked for first: the span of the section it was drawn from.
    within: tuple[int, int] | None = Field(None, exclude=True)
    # The same obligation quoted again elsewhere (other sections' items merged into this
    # one): each is grounded too and becomes one more of the item's `sources`.
    also: list[DraftItem] = Field(default_factory=list, exclude=True)

    @field_validator("strength", mode="before")
    @classmethod
    def _known_strength(cls, value: Any) -> Any:
        # "Must not" and "must-not" mean must_not; a word outside the scale is dropped,
        # not a reason to reject the item (the result derives strength from the quote).
        if not isinstance(value, str):
            return None
        wording = "_".join(value.strip().lower().replace("-", " ").split())
        return wording if wording in {s.value for s in Strength} else None


class ChecklistAnswer(BaseModel):
    """The JSON object the LLM must answer the checklist step with."""

    model_config = ConfigDict(extra="ignore")

    items: list[DraftItem] = Field(min_length=1)


class Source(BaseModel):
    """Where an item comes from: `guideline_text[start:end] == quote` exactly (Python
    string indices into the submitted text). `match` says whether the provider's quote was
    found as given or only after normalising whitespace, quote marks, dashes and case."""

    quote: str
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    match: Literal["exact", "normalized"] = "exact"
    # Where the quote is in the document the text was extracted from (`documents.cite`).
    page: int | None = Field(None, ge=1, description="Physical page (1-based) it starts on.")
    page_end: int | None = Field(
        None, ge=1, description="The page it ends on, when it runs across a page break."
    )
    page_label: str | None = Field(None, description="The printed label of `page`.")
    section: list[str] | None = Field(None, description="Heading path, outermost first.")

    @model_serializer(mode="wrap")
    def _without_absent_citation(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A text without pages or sections has no citation fields (not nulls: the CRD's
        # status schema does not take null for them).
        data = handler(self)
        for key in ("page", "page_end", "page_label", "section"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class ChecklistItem(ItemFields):
    """One actionable item of a result, with its verified source (null if the provider's
    quote is not in the guideline: then `grounded` is false), every place the same
    obligation is quoted (`sources`, the first being `source`; empty when ungrounded), the
    strength its source words and the grade the guideline states for it (both null when
    the text has none)."""

    source: Source | None = None
    sources: list[Source] = Field(default_factory=list)
    grounded: bool = False
    strength: Strength | None = None
    grade: Grade | None = None


class Passage(BaseModel):
    """A sentence of the guideline: `guideline_text[start:end] == text`."""

    text: str
    start: int
    end: int


class Capped(BaseModel):
    """The item caps a checklist reached: items beyond them were not asked for or cut."""

    per_section: int = Field(0, description="Sections whose answer reached max_items_per_section.")
    total: bool = Field(
        False, description="Whether the merged list was cut at max_checklist_items."
    )
    result_bytes: int = Field(
        0,
        description="Items cut from the end of the checklist to keep status.result within "
        "max_result_bytes (0: none).",
    )

    @model_serializer(mode="wrap")
    def _without_zero_cut(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Only a result that was cut says so (results before the bound had no such field).
        data = handler(self)
        if not data.get("result_bytes"):
            data.pop("result_bytes", None)
        return data


class Quality(BaseModel):
    """How far a checklist can be trusted, measured against the guideline."""

    items: int = Field(description="Items the provider proposed.")
    grounded_items: int = Field(description="Of those, items whose quote is in the text.")
    ungrounded_items: int
    dropped_items: int = Field(0, description="Ungrounded items left out (by the setting).")
    capped_items: int = Field(
        0, description="Items left out by the max_checklist_items cap (0: none was hit)."
    )
    grounding: float = Field(description="grounded_items / items.")
    obligations: int = Field(description="Obligation sentences of the guideline.")
    covered_obligations: int = Field(description="Of those, covered by an item's source.")
    coverage: float = Field(description="covered_obligations / obligations (1 if none).")
    uncovered: list[Passage] = Field(default_factory=list)
    uncovered_omitted: int = Field(
        0,
        description="Uncovered passages left out of `uncovered` to keep status.result within "
        "max_result_bytes (the guideline's text has them all).",
    )
    duplicates: list[list[int]] = Field(
        default_factory=list, description="Groups of checklist indices saying the same thing."
    )
    capped: Capped | None = Field(
        None, description="Which item caps the checklist reached (None: none)."
    )

    @model_serializer(mode="wrap")
    def _without_zero_omitted(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Only a result whose `uncovered` was shortened says so.
        data = handler(self)
        if not data.get("uncovered_omitted"):
            data.pop("uncovered_omitted", None)
        return data


class ReviewThresholds(BaseModel):
    """Below either, a result needs review (it is still COMPLETED)."""

    model_config = ConfigDict(extra="forbid")

    min_grounding: float = Field(ge=0, le=1)
    min_coverage: float = Field(ge=0, le=1)


class Review(BaseModel):
    """Why `needs_review` is what it is."""

    thresholds: ReviewThresholds
    reasons: list[str] = Field(default_factory=list)


class ChunkCacheReport(BaseModel):
    """What the per-chunk summary cache did for this result."""

    enabled: bool
    chunks: int = 0
    hits: int = 0
    stored: int = 0
    note: str | None = None


def checklist_response_format(max_items: int) -> dict[str, Any]:
    """The `response_format` of the checklist request: a strict JSON schema matching
    `ChecklistAnswer` (written out by hand: strict mode wants every property required and
    no additional properties)."""
    item_schema = {
        "type": "object",
        "properties": {
            "item": {
                "type": "string",
                "description": "One concrete action someone can take or check, imperative. "
                "Never a question, a heading, an evidence summary, background, or a "
                "statement that no recommendation is made.",
            },
            "priority": {"type": "string", "enum": [p.value for p in Priority]},
            "strength": {
                "type": "string",
                "enum": [s.value for s in Strength],
                "description": "How the quoted text words it: must, must_not, should, "
                "should_not, may.",
            },
            "category": {"type": "string", "description": "Short lowercase grouping label."},
            "quote": {
                "type": "string",
                "description": "The sentence or passage of the guideline this item comes "
                "from, copied verbatim (same words, same order, nothing added or left out "
                "in between).",
            },
        },
        "required": ["item", "priority", "strength", "category", "quote"],
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
    # LLM calls not made because the chunk cache had their answer.
    calls_saved: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            calls=self.calls + other.calls,
            calls_saved=self.calls_saved + other.calls_saved,
        )


class PartialSummary(BaseModel):
    """Step 1's outcome as kept in `status.partial`, so a retried pod skips step 1, and the
    checklist answers of the sections a failed attempt finished, so it skips those too."""

    model_config = ConfigDict(extra="ignore")

    summary: str = Field(min_length=1)
    attempt: int | None = None
    usage: dict[str, Usage] = Field(default_factory=dict)
    durations: dict[str, float] = Field(default_factory=dict)
    chunk_cache: ChunkCacheReport | None = None
    # The checklist answers of sections done before a failure, by `section_key`.
    sections: dict[str, list[DraftItem]] = Field(default_factory=dict)

    def to_status(self) -> dict[str, Any]:
        """The body of `status.partial`."""
        return self.model_dump(mode="json", exclude_none=True)


class DocumentWarningInfo(BaseModel):
    """One kind of repair the text hygiene made."""

    kind: str
    count: int
    first_offset: int


class DocumentInfo(BaseModel):
    """The document a job's text was extracted from (`result.document`, and what the
    runner puts to the API with the text)."""

    media_type: str
    bytes: int
    sha256: str
    pages: int | None = Field(None, description="Pages (PDF); null for a text without pages.")
    characters: int
    extractor: str
    extractor_version: str
    warnings: list[DocumentWarningInfo] = Field(default_factory=list)


class ChainResult(BaseModel):
    """The outcome of the chain, as written to `status.result`."""

    summary: str
    checklist: list[ChecklistItem]
    provider: str
    model: str
    degraded: bool = False
    quality: Quality
    needs_review: bool
    review: Review
    usage: dict[str, Usage]
    durations: dict[str, float]
    chunk_cache: ChunkCacheReport
    # The document the text was extracted from (absent for inline spec.guidelineText).
    document: DocumentInfo | None = None
    # Not part of status.result: whether step 1 was taken from status.partial.
    summary_reused: bool = Field(False, exclude=True)

    def to_status(self) -> dict[str, Any]:
        """The body of `status.result`."""
        return self.model_dump(mode="json", exclude={"document"} if self.document is None else None)
