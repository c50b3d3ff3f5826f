"""One chain step's account: its start, its end with duration, tokens and calls (or its
failure) in the log and in its trace span, and the record its caller keeps of them."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from guideline_core import logs

from guideline_runner import tracing
from guideline_runner.errors import ChainError
from guideline_runner.models import Usage

log = logging.getLogger(__package__)  # the chain's log lines keep one logger name


@dataclass
class StepRecord:
    """What one step used (set by the step) and how long it took (set at its end)."""

    usage: Usage = field(default_factory=Usage)
    duration: float = 0.0


@contextmanager
def logged_step(name: str, **fields: Any) -> Iterator[StepRecord]:
    """Log the start and the end (duration, tokens) or failure of one chain step."""
    record = StepRecord()
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
