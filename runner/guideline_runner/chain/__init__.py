"""The two-step chain, free of Kubernetes: (1) summarize the guideline (map-reduce when it
is longer than the provider takes at once, reusing cached summaries of unchanged parts),
(2) build a checklist from every section of the guideline with the summary as context
(one call per section, merged), then ground every item in the text and measure
the result's quality (coverage of the guideline's obligations, the review gate).

`run_chain` (here) adds what wraps the steps: the soft time limit over the whole chain,
reuse of a summary kept from an earlier attempt, and the optional fallback to the
extractive provider when the LLM fails for good.

Layout: `steps` (the two steps in order), `summary` (step 1), `checklist` (step 2),
`result` (grounding, quality and review of the steps' output), `calls` (a round of
provider calls in parallel), `step_log` (each step's log lines and trace span),
`time_budget` (the soft time limit).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from guideline_core.resource import FailureReason
from guideline_core.settings import RunnerSettings

from guideline_runner.chain.result import Gate
from guideline_runner.chain.steps import run_steps
from guideline_runner.chain.time_budget import soft_timeout, within
from guideline_runner.chunk_cache import ChunkCache
from guideline_runner.errors import ChainError
from guideline_runner.models import ChainResult, PartialSummary, ReviewThresholds
from guideline_runner.progress import Progress
from guideline_runner.providers.base import Provider
from guideline_runner.providers.extractive import ExtractiveProvider

__all__ = ["run_chain"]

log = logging.getLogger(__name__)

# Failures that mean the LLM will not deliver for this job, whatever a new pod does.
_PERMANENT_LLM_FAILURES = frozenset(
    {FailureReason.LLM_REJECTED, FailureReason.INVALID_OUTPUT, FailureReason.TIMEOUT}
)


def run_chain(
    text: str,
    settings: RunnerSettings,
    provider: Provider,
    partial_summary: PartialSummary | None = None,
    *,
    on_summary: Callable[[PartialSummary], None] | None = None,
    attempt: int | None = None,
    thresholds: ReviewThresholds | None = None,
    cache: ChunkCache | None = None,
    progress: Progress | None = None,
) -> ChainResult:
    """Summarize `text`, then build its checklist, within `soft_timeout(text, settings)`.

    With `partial_summary` (kept by an earlier attempt) step 1 is skipped. `on_summary` is
    called once step 1 has succeeded (the runner stores it in status.partial). Items are
    grounded and judged against `thresholds` (default: the settings'); `cache` holds
    summaries of map-reduce parts (None: no cache); `progress` counts the sections and
    calls as they are planned and done (not those of an extractive fallback). Raises
    `ChainError`; if `settings.fallback_to_extractive` is on and the LLM failed for good
    (rejected, unusable answer, soft timeout), completes with the extractive provider
    instead and marks the result `degraded`.
    """
    if not text or not text.strip():
        raise ChainError(
            FailureReason.INVALID_INPUT, "The guideline text is empty", retryable=False
        )
    if provider.name == ExtractiveProvider.name:
        partial_summary = None  # never label an LLM's summary as extractive
    gate = Gate.of(settings, thresholds)
    try:
        return within(
            soft_timeout(text, settings),
            provider,
            lambda cancel: run_steps(
                text,
                provider,
                partial_summary,
                on_summary,
                attempt,
                cancel,
                gate,
                cache,
                settings.llm_concurrency,
                progress,
            ),
        )
    except ChainError as err:
        if not (
            settings.fallback_to_extractive
            and provider.name != ExtractiveProvider.name
            and err.reason in _PERMANENT_LLM_FAILURES
        ):
            raise
        log.warning(
            "the LLM failed for good; completing with the extractive provider (degraded)",
            extra={"reason": str(err.reason), "error": err.message},
        )
        fallback = ExtractiveProvider(max_items=settings.max_checklist_items)
        result = run_steps(text, fallback, None, None, attempt, threading.Event(), gate, None)
        return result.model_copy(update={"degraded": True})
