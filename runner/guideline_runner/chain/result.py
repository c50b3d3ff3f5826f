"""The chain's result from its two steps' output: the checklist's items grounded in the
text, the quality measured against the guideline's obligations, the review gate's verdict,
and each step's usage and duration (`Gate`: how grounding and review are judged)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from guideline_core.settings import RunnerSettings

from guideline_runner import quality
from guideline_runner.grounding import ground
from guideline_runner.models import (
    Capped,
    ChainResult,
    ChunkCacheReport,
    DraftItem,
    ReviewThresholds,
    Usage,
)
from guideline_runner.obligations import obligations_of
from guideline_runner.providers.base import Completion, Provider

log = logging.getLogger(__package__)  # the chain's log lines keep one logger name


@dataclass(frozen=True)
class Gate:
    """How items are grounded and a result is judged: the review thresholds, and whether
    ungrounded items are left out."""

    thresholds: ReviewThresholds
    drop_ungrounded: bool = False
    max_items: int | None = None  # the total cap of a merged checklist

    @classmethod
    def of(cls, settings: RunnerSettings, thresholds: ReviewThresholds | None = None) -> Gate:
        """The gate of the settings, with a job's own thresholds if it has them."""
        return cls(
            thresholds=thresholds
            or ReviewThresholds(
                min_grounding=settings.review_min_grounding,
                min_coverage=settings.review_min_coverage,
            ),
            drop_ungrounded=settings.drop_ungrounded_items,
            max_items=settings.max_checklist_items,
        )


def judged(
    text: str,
    provider: Provider,
    summary: str,
    items: Completion[tuple[list[DraftItem], Capped | None]],
    gate: Gate,
    *,
    usage: dict[str, Usage],
    durations: dict[str, float],
    chunk_cache: ChunkCacheReport,
    summary_reused: bool,
) -> ChainResult:
    """The result of `summary` and the checklist step's `items` for `text`: the items
    grounded in it and judged by `gate`, with the steps' `usage` and `durations`."""
    drafts, capped = items.value
    grounded = ground(drafts, text, drop_ungrounded=gate.drop_ungrounded)
    measured = quality.assess(grounded, obligations_of(text), capped_items=items.left_out)
    measured = measured.model_copy(update={"capped": capped})
    review = quality.review(measured, gate.thresholds)
    log.info(
        "checklist grounded",
        extra={
            "items": measured.items,
            "grounded_items": measured.grounded_items,
            "coverage": measured.coverage,
            "needs_review": bool(review.reasons),
        },
    )
    return ChainResult(
        summary=summary,
        checklist=grounded.items,
        provider=provider.name,
        model=provider.model,
        quality=measured,
        needs_review=bool(review.reasons),
        review=review,
        usage=usage,
        durations=durations,
        chunk_cache=chunk_cache,
        summary_reused=summary_reused,
    )
