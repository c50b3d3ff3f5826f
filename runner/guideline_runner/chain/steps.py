"""The two steps in order for one provider: the summary (or the one an earlier attempt
kept, else handed to `on_summary` once made), then the checklist (skipping the sections an
earlier attempt kept), each step's usage and duration kept for the result."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from guideline_runner.chain.checklist import checklist, plan_checklist
from guideline_runner.chain.result import Gate, judged
from guideline_runner.chain.step_log import logged_step
from guideline_runner.chain.summary import summarize
from guideline_runner.chunk_cache import DISABLED_NOTE, ChunkCache
from guideline_runner.models import ChainResult, ChunkCacheReport, PartialSummary, Usage
from guideline_runner.progress import Progress
from guideline_runner.providers.base import Provider

log = logging.getLogger(__package__)  # the chain's log lines keep one logger name

SUMMARIZE = "summarize"
CHECKLIST = "checklist"


def run_steps(
    text: str,
    provider: Provider,
    partial: PartialSummary | None,
    on_summary: Callable[[PartialSummary], None] | None,
    attempt: int | None,
    cancel: threading.Event,
    gate: Gate,
    cache: ChunkCache | None,
    concurrency: int = 1,
    progress: Progress | None = None,
) -> ChainResult:
    """Summarize `text` (unless `partial` has its summary), then build, ground and judge
    its checklist with `provider`, stopping before the next call once `cancel` is set."""
    progress = progress or Progress()
    kept = partial.sections if partial is not None else None
    sections = plan_checklist(text, provider, progress, kept)
    usage: dict[str, Usage] = {}
    durations: dict[str, float] = {}
    reused = partial is not None
    report = (
        cache.report if cache is not None else ChunkCacheReport(enabled=False, note=DISABLED_NOTE)
    )
    if partial is not None:
        summary = partial.summary
        usage[SUMMARIZE] = partial.usage.get(SUMMARIZE, Usage())
        durations[SUMMARIZE] = partial.durations.get(SUMMARIZE, 0.0)
        report = partial.chunk_cache or report
        log.info(
            "summary taken from an earlier attempt; skipping step 1",
            extra={"step": SUMMARIZE, "partial_attempt": partial.attempt},
        )
    else:
        with logged_step(SUMMARIZE, chars=len(text), provider=provider.name) as record:
            completion = summarize(text, provider, cancel, cache, concurrency, progress)
            record.usage = completion.usage
        summary = completion.value
        usage[SUMMARIZE] = completion.usage
        durations[SUMMARIZE] = record.duration
        report = cache.report if cache is not None else report
        if on_summary is not None:
            on_summary(
                PartialSummary(
                    summary=summary,
                    attempt=attempt,
                    usage={SUMMARIZE: completion.usage},
                    durations={SUMMARIZE: record.duration},
                    chunk_cache=report,
                )
            )
    with logged_step(CHECKLIST, summary_chars=len(summary), provider=provider.name) as record:
        items = checklist(
            text,
            summary,
            provider,
            cancel,
            concurrency,
            gate.max_items,
            kept,
            progress,
            sections,
        )
        record.usage = items.usage
    usage[CHECKLIST] = items.usage
    durations[CHECKLIST] = record.duration
    return judged(
        text,
        provider,
        summary,
        items,
        gate,
        usage=usage,
        durations=durations,
        chunk_cache=report,
        summary_reused=reused,
    )
