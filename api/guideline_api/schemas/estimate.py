"""POST /jobs/estimate: what a submission would take and cost, without any LLM call."""

from __future__ import annotations

from pydantic import BaseModel, Field


class CostPrices(BaseModel):
    """The prices a cost was computed with, per million tokens."""

    input_per_million: float
    output_per_million: float


class Cost(BaseModel):
    """An amount of money spent (or to be spent) on LLM calls."""

    amount: float
    currency: str
    prices: CostPrices | None = None


class JobEstimate(BaseModel):
    """What a submission would take, computed without any LLM call."""

    model: str = Field(description="The model assumed (the submission's, else the default).")
    provider: str
    encoding: str = Field(description="The tokenizer encoding the tokens were counted with.")
    sections: int = Field(description="Sections of the text by its own headings (at least 1).")
    parts: int = Field(description="Parts the chain summarizes (map-reduce at `chunk_chars`).")
    llm_calls: int = Field(description="map_calls + reduce_calls + checklist_calls.")
    map_calls: int
    reduce_calls: int
    checklist_calls: int
    input_tokens: int = Field(description="Tokens of the parts, counted with the tokenizer.")
    cost: Cost | None = Field(
        description="The input tokens' cost at the model's price (output not included); "
        "null when the model has no price."
    )
    notes: list[str]
