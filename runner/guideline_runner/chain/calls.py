"""A round of provider calls: at most so many in flight, each counted in the job's
progress as it is answered, none started once the chain is cancelled (its soft time limit
passed), and the first failure ending the round at once."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from guideline_runner.progress import Progress
from guideline_runner.providers.base import Completion

T = TypeVar("T")


class _CancelledError(Exception):
    """The soft time limit passed; the worker stops before its next call."""


def _call(cancel: threading.Event, fn: Callable[[], Completion[T]]) -> Completion[T]:
    if cancel.is_set():
        raise _CancelledError
    return fn()


def call_all(
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
