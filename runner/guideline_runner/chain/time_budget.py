"""The chain's soft time limit: how long a guideline may take (`soft_timeout`), and the
chain run in a worker thread that is given up when that time has passed (`within`)."""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from guideline_core.resource import FailureReason
from guideline_core.settings import RunnerSettings
from guideline_core.splitting import planned_rounds, time_limit

from guideline_runner.errors import ChainError
from guideline_runner.providers.base import Provider

log = logging.getLogger(__package__)  # the chain's log lines keep one logger name
T = TypeVar("T")


def soft_timeout(text: str, settings: RunnerSettings) -> float:
    """The chain's soft time limit for `text`: `soft_timeout_seconds`, plus
    `soft_timeout_per_round_seconds` for each round of LLM calls beyond a short
    guideline's 2 (`splitting.planned_rounds`), so that a long guideline is not failed
    for being long."""
    rounds = planned_rounds(text, settings.chunk_chars, settings.llm_concurrency)
    return time_limit(
        settings.soft_timeout_seconds, settings.soft_timeout_per_round_seconds, rounds
    )


def within(seconds: float, provider: Provider, work: Callable[[threading.Event], T]) -> T:
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
