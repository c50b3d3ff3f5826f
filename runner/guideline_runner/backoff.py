"""One call retried with backoff, for the runner's two clients (the REST API's runner
endpoints and its GuidelineJob): the loop is here, what a failure means is the client's.

A client's `judge(error, last)` returns the problem's text when the call is worth another
try, or the `ChainError` that ends it; on the last try it must return the `ChainError`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from guideline_runner.errors import ChainError

T = TypeVar("T")
E = TypeVar("E", bound=Exception)


def with_backoff(
    call: Callable[[], T],
    *,
    action: str,
    retry_on: tuple[type[E], ...],
    judge: Callable[[E, bool], str | ChainError],
    delays: Sequence[float],
    log: logging.Logger,
    message: str,
) -> T:
    """`call()`'s value; a `retry_on` error is judged, then logged as `message` and retried
    after the next of `delays`, or raised as the judge's `ChainError`."""
    for attempt, delay in enumerate((*delays, None), start=1):
        try:
            return call()
        except retry_on as error:
            verdict = judge(error, delay is None)
        if isinstance(verdict, ChainError):
            raise verdict
        if delay is None:
            raise AssertionError(f"no ChainError for the last try to {action}: {verdict}")
        log.warning(
            message,
            extra={"action": action, "try": attempt, "problem": verdict, "delay_s": delay},
        )
        time.sleep(delay)
    raise AssertionError("unreachable")
