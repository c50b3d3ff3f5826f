"""Step 1, the summary: in one call when the guideline fits the provider's input, else
map-reduce (every part summarized in parallel, or its summary taken from the chunk cache,
then the partial summaries combined in rounds)."""

from __future__ import annotations

import logging
import threading

from guideline_runner.chain.calls import call_all
from guideline_runner.chunk_cache import ChunkCache
from guideline_runner.models import Usage
from guideline_runner.progress import Progress
from guideline_runner.providers.base import Completion, Provider
from guideline_runner.text import group_texts, map_parts

log = logging.getLogger(__package__)  # the chain's log lines keep one logger name


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
        return call_all(cancel, 1, [lambda: provider.summarize(text.strip())], None, progress)[0]
    parts = map_parts(text, limit)
    cached = cache.lookup(parts) if cache is not None else {}
    log.info(
        "guideline split for map-reduce",
        extra={"parts": len(parts), "chars": len(text), "cached_parts": len(cached)},
    )
    missing = [number for number in range(len(parts)) if number not in cached]
    progress.plan(calls=len(missing))
    answers = call_all(
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
        merged = call_all(cancel, concurrency, combines, None, progress)
        usage += sum((c.usage for c in merged), Usage())
        answers_left = iter(merged)
        summaries = [group[0] if len(group) == 1 else next(answers_left).value for group in groups]
        log.info("partial summaries combined", extra={"round": rounds, "left": len(summaries)})
    return Completion(summaries[0], usage)
