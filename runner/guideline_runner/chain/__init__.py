"""The two-step chain, free of Kubernetes: (1) summarize the guideline (map-reduce when it
is longer than the provider takes at once, reusing cached summaries of unchanged parts),
(2) build a checklist from every section of the guideline with the summary as context
(one call per section, merged), then ground every item in the text and measure
the result's quality (coverage of the guideline's obligations, the review gate).

`run_chain` adds what wraps the steps: the soft time limit over the whole chain, reuse of
a summary kept from an earlier attempt, and the optional fallback to the extractive
provider when the LLM fails for good.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from guideline_core import logs
from guideline_core.resource import FailureReason
from guideline_core.settings import RunnerSettings
from guideline_core.splitting import checklist_sections, planned_rounds, time_limit

from guideline_runner import quality, tracing
from guideline_runner.chunk_cache import DISABLED_NOTE, ChunkCache
from guideline_runner.errors import ChainError
from guideline_runner.grounding import ground
from guideline_runner.models import (
    Capped,
    ChainResult,
    ChunkCacheReport,
    DraftItem,
    PartialSummary,
    ReviewThresholds,
    Usage,
)
from guideline_runner.obligations import obligations_of
from guideline_runner.progress import Progress
from guideline_runner.providers.base import Completion, Provider
from guideline_runner.providers.extractive import ExtractiveProvider
from guideline_runner.text import group_texts, map_parts

log = logging.getLogger(__name__)

SUMMARIZE = "summarize"
CHECKLIST = "checklist"
# Failures that mean the LLM will not deliver for this job, whatever a new pod does.
_PERMANENT_LLM_FAILURES = frozenset(
    {FailureReason.LLM_REJECTED, FailureReason.INVALID_OUTPUT, FailureReason.TIMEOUT}
)
T = TypeVar("T")


class _CancelledError(Exception):
    """The soft time limit passed; the worker stops before its next call."""


@dataclass
class _StepRecord:
    usage: Usage = field(default_factory=Usage)
    duration: float = 0.0


@contextmanager
def _step(name: str, **fields: Any) -> Iterator[_StepRecord]:
    """Log the start and the end (duration, tokens) or failure of one chain step."""
    record = _StepRecord()
    with logs.bind(step=name), tracing.step(name, fields) as span:
        log.info("step started", extra=fields)
        started = time.monotonic()
        try:
            yield record
        except ChainError as err:
            record.duration = round(time.monotonic() - started, 3)
            log.warning(
                "step failed",
                extra={
                    "duration_s": record.duration,
                    "reason": str(err.reason),
                    "error": err.message,
                },
            )
            raise
        record.duration = round(time.monotonic() - started, 3)
        span.set("guideline.llm.calls", record.usage.calls)
        span.set("guideline.llm.calls_saved", record.usage.calls_saved)
        span.set("guideline.llm.total_tokens", record.usage.total_tokens)
        log.info(
            "step finished",
            extra={
                "duration_s": record.duration,
                "prompt_tokens": record.usage.prompt_tokens,
                "completion_tokens": record.usage.completion_tokens,
                "total_tokens": record.usage.total_tokens,
                "llm_calls": record.usage.calls,
            },
        )


def _call(cancel: threading.Event, fn: Callable[[], Completion[T]]) -> Completion[T]:
    if cancel.is_set():
        raise _CancelledError
    return fn()


def _call_all(
    cancel: threading.Event,
    concurrency: int,
    calls: Sequence[Callable[[], Completion[T]]],
    done: dict[int, Completion[T]] | None = None,
    progress: Progress | None = None,
    sections_per_call: int = 0,
) -> list[Completion[T]]:
    """The answers of `calls`, in order, with at most `concurrency` of them in flight.
    The first failure is raised at once: calls not started yet are never started, those
    in flight are abandoned. The workers are daemon threads, so a call the soft timeout
    or a failure abandoned never holds up the runner's exit. `done` receives each answer
    by index as it arrives (what a failure leaves behind); `progress` counts each answer
    (with `sections_per_call` sections) and the end of the round."""
    done = {} if done is None else done
    progress = progress or Progress()
    if concurrency <= 1 or len(calls) <= 1:
        for index, fn in enumerate(calls):
            done[index] = _call(cancel, fn)
            progress.call_done(sections_per_call)
        progress.round_done()
        return [done[index] for index in range(len(calls))]
    results: list[Completion[T] | None] = [None] * len(calls)
    pending = iter(enumerate(calls))
    lock = threading.Lock()
    finished = threading.Event()
    failures: list[BaseException] = []
    left = [len(calls)]

    def work() -> None:
        while not finished.is_set():
            with lock:
                task = next(pending, None)
            if task is None:
                return
            index, fn = task
            try:
                results[index] = done[index] = _call(cancel, fn)
            except BaseException as exc:
                failures.append(exc)
                finished.set()
                return
            progress.call_done(sections_per_call)
            with lock:
                left[0] -= 1
                if left[0] == 0:
                    finished.set()

    for number in range(min(concurrency, len(calls))):
        # Each worker logs with the caller's bindings (event_id, step).
        context = contextvars.copy_context()
        threading.Thread(
            target=context.run, args=(work,), name=f"llm-{number}", daemon=True
        ).start()
    finished.wait()
    if failures:
        raise failures[0]
    progress.round_done()
    return [result for result in results if result is not None]


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


def summarize(
    text: str,
    provider: Provider,
    cancel: threading.Event | None = None,
    cache: ChunkCache | None = None,
    concurrency: int = 1,
    progress: Progress | None = None,
) -> Completion[str]:
    """Step 1: the summary of `text`. Longer than `provider.max_input_chars`, the text is
    cut at paragraph boundaries chosen by content (nothing dropped), each part summarized
    (or its summary taken from `cache`), and the partial summaries combined, in rounds if
    they are themselves too long; up to `concurrency` calls of a round run at once.
    `progress` is told the calls of each round as it is planned and as they finish."""
    cancel = cancel or threading.Event()
    progress = progress or Progress()
    limit = provider.max_input_chars
    if limit is None or len(text) <= limit:
        progress.plan(calls=1)
        return _call_all(cancel, 1, [lambda: provider.summarize(text.strip())], None, progress)[0]
    parts = map_parts(text, limit)
    cached = cache.lookup(parts) if cache is not None else {}
    log.info(
        "guideline split for map-reduce",
        extra={"parts": len(parts), "chars": len(text), "cached_parts": len(cached)},
    )
    missing = [number for number in range(len(parts)) if number not in cached]
    progress.plan(calls=len(missing))
    answers = _call_all(
        cancel,
        concurrency,
        [
            lambda number=number: provider.summarize(  # type: ignore[misc]  # default-arg lambda
                parts[number], part=number + 1, parts=len(parts)
            )
            for number in missing
        ],
        None,
        progress,
    )
    usage = Usage(calls_saved=len(cached))
    found = dict(cached)
    for number, completion in zip(missing, answers, strict=True):
        if cache is not None:
            cache.store(parts[number], completion.value)
        found[number] = completion.value
        usage += completion.usage
    summaries = [found[number] for number in range(len(parts))]
    rounds = 0
    while len(summaries) > 1:
        rounds += 1
        groups = group_texts(summaries, limit)
        combines = [
            lambda group=group: provider.combine(group) for group in groups if len(group) > 1
        ]
        progress.plan(calls=len(combines))
        merged = _call_all(cancel, concurrency, combines, None, progress)
        usage += sum((c.usage for c in merged), Usage())
        answers_left = iter(merged)
        summaries = [group[0] if len(group) == 1 else next(answers_left).value for group in groups]
        log.info("partial summaries combined", extra={"round": rounds, "left": len(summaries)})
    return Completion(summaries[0], usage)


def section_key(section: str) -> str:
    """The key of a section's kept checklist answer: its text's SHA-256."""
    return hashlib.sha256(section.encode("utf-8", "surrogatepass")).hexdigest()


def _same_obligation(item: DraftItem) -> str:
    """What makes two sections' items one: the passage quoted (else the item), compared
    without case, blanks or end punctuation."""
    return " ".join((item.quote or item.item).casefold().split()).strip(" .;:")


def sections_of(text: str, provider: Provider) -> list[str]:
    """The sections `text`'s checklist is drawn from by `provider`: the whole text for a
    provider without an input limit (the extractive one), else `checklist_sections`."""
    limit = provider.max_input_chars
    return [text] if limit is None else checklist_sections(text, limit)


def plan_checklist(
    text: str,
    provider: Provider,
    progress: Progress,
    kept: dict[str, list[DraftItem]] | None = None,
) -> list[str]:
    """`sections_of(text, provider)`, told to `progress`: every section, one checklist
    call for each not `kept` from an earlier attempt, and those kept as done."""
    sections = sections_of(text, provider)
    kept = kept or {}
    left = sum(1 for section in sections if section_key(section) not in kept)
    progress.plan(calls=left, sections=len(sections))
    if left < len(sections):
        progress.sections_done(len(sections) - left)
    return sections


def checklist(
    text: str,
    summary: str,
    provider: Provider,
    cancel: threading.Event,
    concurrency: int = 1,
    max_items: int | None = None,
    kept: dict[str, list[DraftItem]] | None = None,
    progress: Progress | None = None,
    sections: list[str] | None = None,
) -> Completion[tuple[list[DraftItem], Capped | None]]:
    """Step 2: checklist items drawn from every section of `text` (its own headings, then
    size: `checklist_sections`), one call per section with up to `concurrency` in flight,
    merged in the text's order with items quoting the same passage kept once (the others
    in its `also`, each quote looked for in its own section first), and cut at
    `max_items`; with which caps were reached. A provider without an input limit (the
    extractive one) gets the whole text in one call. Sections whose answer an earlier
    attempt `kept` (by `section_key`) are not asked again; on a failure the answers done
    so far are left in the error's `keep` for `status.partial`. `progress` counts each
    section's answer (`sections`: the ones `plan_checklist` planned, else computed here)."""
    limit = provider.max_input_chars
    sections = sections if sections is not None else sections_of(text, provider)
    kept = kept or {}
    if len(sections) == 1:
        calls = [lambda: provider.checklist(summary, guideline=text)]
    else:
        calls = [
            lambda number=number, section=section: provider.checklist(  # type: ignore[call-arg, misc]
                summary, guideline=section, section=number, sections=len(sections)
            )
            for number, section in enumerate(sections, start=1)
        ]
    keys = [section_key(section) for section in sections]
    todo = [index for index, key in enumerate(keys) if key not in kept]
    log.info(
        "checklist drawn by section",
        extra={"sections": len(sections), "kept_sections": len(sections) - len(todo)},
    )
    finished: dict[int, Completion[list[DraftItem]]] = {}
    try:
        _call_all(cancel, concurrency, [calls[index] for index in todo], finished, progress, 1)
    except ChainError as err:
        err.keep = {
            keys[todo[i]]: [d.model_dump(mode="json") for d in c.value] for i, c in finished.items()
        }
        err.keep.update(
            {key: [d.model_dump(mode="json") for d in kept[key]] for key in kept if key in keys}
        )
        raise
    new = {todo[i]: c for i, c in finished.items()}
    answers = [
        new[index] if index in new else Completion(kept[keys[index]], Usage(calls_saved=1))
        for index in range(len(sections))
    ]
    per_section = getattr(provider, "max_items", None)
    full = sum(1 for a in answers if per_section is not None and len(a.value) >= per_section)
    merged: list[DraftItem] = []
    seen: dict[str, DraftItem] = {}
    offset = 0
    for section, answer in zip(sections, answers, strict=True):
        span = (offset, offset + len(section))
        offset += len(section)
        for draft in answer.value:
            item = (
                draft.model_copy(update={"within": span, "also": []})
                if len(sections) > 1
                else draft
            )
            key = _same_obligation(item)
            if len(sections) > 1 and key in seen:
                seen[key].also.append(item)  # one item, its sources kept
                continue
            seen[key] = item
            merged.append(item)
    left_out = sum(answer.left_out for answer in answers)
    cut = max_items is not None and len(merged) > max_items
    if cut and max_items is not None:
        log.warning(
            "checklist cut at the total cap", extra={"items": len(merged), "kept": max_items}
        )
        left_out += len(merged) - max_items
        merged = merged[:max_items]
    if limit is None:  # one call over the whole text: the provider's cap is the total one
        full, cut = 0, cut or full > 0
    capped = Capped(per_section=full, total=cut) if full or cut else None
    usage = sum((a.usage for a in answers), Usage())
    return Completion((merged, capped), usage, left_out=left_out)


def _steps(
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
        with _step(SUMMARIZE, chars=len(text), provider=provider.name) as record:
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
    with _step(CHECKLIST, summary_chars=len(summary), provider=provider.name) as record:
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
        chunk_cache=report,
        summary_reused=reused,
    )


def _within(seconds: float, provider: Provider, work: Callable[[threading.Event], T]) -> T:
    """Run `work` in a worker thread and give up after `seconds`: the soft limit then
    holds even while an LLM call (or the SDK's retry sleep) is in progress. On expiry the
    provider's connections are closed and the worker stops before its next call."""
    cancel = threading.Event()
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = work(cancel)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            done.set()

    context = contextvars.copy_context()  # the worker logs with the caller's bindings
    worker = threading.Thread(target=context.run, args=(target,), name="chain", daemon=True)
    worker.start()
    if not done.wait(seconds):
        cancel.set()
        try:
            provider.close()
        except Exception:  # closing is best effort; the limit is what matters
            log.debug("closing the provider failed", exc_info=True)
        raise ChainError(
            FailureReason.TIMEOUT, f"Processing timeout after {seconds:g} s", retryable=False
        )
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def soft_timeout(text: str, settings: RunnerSettings) -> float:
    """The chain's soft time limit for `text`: `soft_timeout_seconds`, plus
    `soft_timeout_per_round_seconds` for each round of LLM calls beyond a short
    guideline's 2 (`splitting.planned_rounds`), so that a long guideline is not failed
    for being long."""
    rounds = planned_rounds(text, settings.chunk_chars, settings.llm_concurrency)
    return time_limit(
        settings.soft_timeout_seconds, settings.soft_timeout_per_round_seconds, rounds
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
        return _within(
            soft_timeout(text, settings),
            provider,
            lambda cancel: _steps(
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
        result = _steps(text, fallback, None, None, attempt, threading.Event(), gate, None)
        return result.model_copy(update={"degraded": True})
