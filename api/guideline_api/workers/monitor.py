"""The figures `/health` and `/metrics` report, refreshed by one background thread.

However often those endpoints are called (they need no key), the database and the
Kubernetes API see one round of checks per `health_cache_seconds`: jobs per status, the
operator's heartbeat, a trivial query and a one-item list of GuidelineJobs. Every answer
carries the age of its figures; figures older than `stale_after` count as a failed check.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from guideline_core import db
from guideline_core.db import DatabaseUnavailableError

from guideline_api.kubeapi import KubeGateway, KubernetesUnavailableError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    """One dependency's outcome at the last refresh."""

    ok: bool
    latency_ms: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """The figures of one refresh; `taken` is on the monotonic clock."""

    taken: float
    database: Check
    kubernetes: Check
    counts: dict[str, int] | None = None
    heartbeat: dict[str, Any] | None = None

    def age(self, now: float | None = None) -> float:
        """Seconds since these figures were taken."""
        return (time.monotonic() if now is None else now) - self.taken


NOT_YET = Check(ok=False, error="not checked yet")


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


class HealthMonitor:
    """Refreshes a Snapshot every `interval` seconds in a daemon thread."""

    def __init__(self, store: db.Database, kube: KubeGateway, interval: float, stale_after: float):
        self.store = store
        self.kube = kube
        self.interval = interval
        self.stale_after = stale_after
        self._snapshot = Snapshot(time.monotonic(), NOT_YET, NOT_YET)
        self._first = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> Snapshot:
        """Run the checks now and keep their figures."""
        start = time.perf_counter()
        counts = beat = None
        try:
            with self.store.connection() as conn:
                counts = db.count_by_status(conn)
                beat = db.latest_heartbeat(conn)
            database = Check(ok=True, latency_ms=_ms(start))
        except DatabaseUnavailableError as exc:
            database = Check(ok=False, error=str(exc)[:500])
        start = time.perf_counter()
        try:
            self.kube.ping()
            kubernetes = Check(ok=True, latency_ms=_ms(start))
        except KubernetesUnavailableError as exc:
            kubernetes = Check(ok=False, error=str(exc)[:500])
        self._snapshot = Snapshot(time.monotonic(), database, kubernetes, counts, beat)
        self._first.set()
        return self._snapshot

    def snapshot(self, first_wait: float = 10.0) -> Snapshot:
        """The latest figures (waiting up to `first_wait` s for the first refresh); figures
        older than `stale_after` are reported as failed checks."""
        self._first.wait(first_wait)
        snap = self._snapshot
        if snap.age() <= self.stale_after:
            return snap
        stale = Check(ok=False, error=f"no fresh figures for {snap.age():.0f} s")
        return Snapshot(snap.taken, stale, stale, None, snap.heartbeat)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # a bug here must not end the refreshes
                log.exception("health refresh failed")
            self._stop.wait(self.interval)

    def start(self) -> None:
        """Start the background refreshes."""
        self._thread = threading.Thread(target=self._run, name="health-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background refreshes (waits for a refresh in progress)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
