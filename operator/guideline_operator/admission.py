"""The admission pass: starts waiting GuidelineJobs while slots are free, tenants in turn.

Slots are counted from the registry (admitted runs not finished yet), not by listing Jobs,
so a pass costs O(admitted jobs), whatever the queue length; nothing is written to a job
that stays in the queue (its position is computed on read, from the database, by the API).
One pass runs at a time; a pass requested while another runs makes that one go round again.
(The operator's own admission: not an admission policy of kube-apiserver, nor Kueue
admission; see the package's glossary.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from guideline_core.settings import OperatorSettings

from guideline_operator.metrics import Metrics
from guideline_operator.queue import QueueEntry, Registry

log = logging.getLogger("guideline_operator")

# Admits one waiting job (re-reading it first); False if it turned out not to be waiting.
Starter = Callable[[QueueEntry], bool]


def tenant_limit(settings: OperatorSettings, tenant: str) -> int:
    """The running-jobs limit of a tenant (`tenant_max_running_jobs`, per tenant
    `tenant_limits`; 0: none beyond `max_concurrent_jobs`)."""
    return settings.limits_for(tenant).max_running_jobs or 0


class Admission:
    """Fills free slots from `registry` by calling `start` (see the module docs)."""

    def __init__(
        self, registry: Registry, settings: OperatorSettings, metrics: Metrics, start: Starter
    ):
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        self.start = start
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._last = 0.0

    def pump(self, *, force: bool = True) -> None:
        """Run the pass (at most once a second unless `force`). Never blocks on another
        pass: if one is running, it is asked to go round once more."""
        if not force and time.monotonic() - self._last < 1.0:
            return
        self._wanted.set()
        while self._wanted.is_set():
            if not self._lock.acquire(blocking=False):
                return
            try:
                self._wanted.clear()
                self._once()
            except Exception:
                self.metrics.reconcile_errors.labels(stage="queue").inc()
                log.exception("admission pass failed; the next event or resync retries")
                return
            finally:
                self._last = time.monotonic()
                self._lock.release()

    def _once(self) -> None:
        if self.settings.kueue_queue_name:  # Kueue admits; only the figures are ours
            self._publish()
            return
        skipped: set[str] = set()
        while self.registry.running() < self.settings.max_concurrent_jobs:
            entry = self.registry.next_waiting(
                lambda tenant: tenant_limit(self.settings, tenant), skipped
            )
            if entry is None:
                break
            if not self.start(entry):
                skipped.add(entry.uid)
        self._publish()

    def _publish(self) -> None:
        self.metrics.queue_size.set(self.registry.waiting_count())
        self.metrics.jobs_running.set(self.registry.running())
