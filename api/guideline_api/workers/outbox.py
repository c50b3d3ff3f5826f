"""What the API's two outbox workers share (the dispatcher, which carries committed jobs to
the cluster, and the webhook delivery worker): a background thread that claims a batch of
due rows from PostgreSQL (`FOR UPDATE SKIP LOCKED` under a lease, so API replicas never
take the same row at once), handles them with bounded concurrency, and sleeps until the
next poll or a `wake()`; and the exponential backoff with jitter between tries."""

from __future__ import annotations

import logging
import random
import threading
from abc import ABC, abstractmethod
from concurrent.futures import CancelledError, ThreadPoolExecutor
from typing import Any

from guideline_core.db import DatabaseUnavailableError

log = logging.getLogger(__name__)


def backoff_delay(attempts: int, base: float, ceiling: float) -> float:
    """Seconds to wait after the `attempts`-th failed try: `base` doubled per earlier
    failure, at most `ceiling`, then a random share between half and all of it (jitter:
    replicas, and rows that failed together, do not retry in step)."""
    top = min(ceiling, base * 2 ** min(max(attempts, 1) - 1, 40))
    return random.uniform(top / 2, top)


class OutboxWorker(ABC):
    """Claims due rows in passes on a background thread until `stop()`."""

    name = "outbox"

    def __init__(self, *, batch_size: int, concurrency: int, poll_seconds: float):
        self._batch_size = batch_size
        self._concurrency = concurrency
        self._poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._workers: ThreadPoolExecutor | None = None

    @abstractmethod
    def claim(self) -> list[dict[str, Any]]:
        """Claim (lease) up to the batch size of due rows."""

    @abstractmethod
    def handle(self, row: dict[str, Any]) -> None:
        """Work off one claimed row (leaving it for a later try on a transient failure)."""

    def start(self) -> None:
        """Run passes in a background thread until `stop()`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._workers = ThreadPoolExecutor(self._concurrency, thread_name_prefix=self.name)
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the rows being handled, give back the ones not started, and stop."""
        self._stop.set()
        self._wake.set()
        if self._workers is not None:
            self._workers.shutdown(wait=False, cancel_futures=True)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._workers is not None:
            self._workers.shutdown(wait=True, cancel_futures=True)
            self._workers = None

    def wake(self) -> None:
        """Start a pass now (a row was just committed)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                claimed = self.run_once()
            except DatabaseUnavailableError as exc:
                log.warning(f"{self.name}: database unavailable", extra={"error": str(exc)})
                claimed = 0
            except Exception:
                log.exception(f"{self.name} pass failed")
                claimed = 0
            if claimed < self._batch_size:
                self._wake.wait(self._poll_seconds)

    def release(self, rows: list[dict[str, Any]]) -> None:  # noqa: B027 (optional hook)
        """Give back rows claimed but never handled (the worker stopped first), so that
        they need not wait for their lease to end. Default: they wait."""

    def run_once(self) -> int:
        """Claim one batch and handle it; returns how many rows were claimed."""
        rows = self.claim()
        if not rows:
            return 0
        if self._workers is None:
            for row in rows:
                self.handle(row)
            return len(rows)
        unhandled: list[dict[str, Any]] = []
        failures: list[BaseException] = []
        try:
            futures = [(row, self._workers.submit(self.handle, row)) for row in rows]
        except RuntimeError:  # stopped between the claim and the hand-over
            futures, unhandled = [], list(rows)
        for row, future in futures:
            try:
                future.result()
            except CancelledError:
                unhandled.append(row)
            except Exception as exc:
                failures.append(exc)
        if unhandled:
            try:
                self.release(unhandled)
            except Exception:
                log.exception(f"{self.name}: claimed rows not released (their lease ends)")
        if failures:
            raise failures[0]
        return len(rows)
