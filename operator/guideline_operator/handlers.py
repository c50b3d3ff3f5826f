"""The kopf wiring: which events call which `Reconciler` method, and kopf's own settings.

Handlers are registered on an explicit `kopf.OperatorRegistry` (not kopf's global one) so
the resync interval can come from settings and importing this module has no side effects.

kopf settings that matter here:
- GuidelineJobs are reconciled from `on.event` (level-based: every event runs the same
  idempotent pass), not from kopf's create/update/resume handlers: those persist their
  progress and a diff base in the object, 2 more writes per GuidelineJob whatever it does.
  The diff base is therefore never stored (`NoDiffBase`): kopf sees no changes to handle,
  and a pass that fails for a temporary reason is retried by `Retry` (a timer) and by
  the resync timer.
- finalizer: kopf puts one on every GuidelineJob because of the resync timer and the
  delete handler (the admission policy of the chart adds it at creation, which saves kopf
  that write; elsewhere a GuidelineJob is reconciled only once kopf's finalizer is on, as
  a status write in the same pass would make kopf's resourceVersion-conditional patch of
  the finalizer fail with 422 and be made again), and it is kept on purpose: with it,
  the delete handler is guaranteed to run, so a job deleted while PENDING or PROCESSING
  always ends as CANCELLED (reason Deleted) in its database row instead of staying
  PROCESSING forever. The price:
  GuidelineJobs cannot be deleted while no operator runs (uninstall deletes them first).
  Jobs and pods get no finalizer (they are only watched, `on.event`).
- progress storage: `status.kopf.progress` (the CRD reserves `status.kopf` for it), used
  only by the delete handler's retries.
- posting: kopf's own INFO chatter is not turned into Events (WARNING and up only); the
  transition Events are posted explicitly.
"""

from __future__ import annotations

import contextvars
import copy
import logging
import threading
from collections.abc import Callable
from typing import Any

import kopf
import psycopg2
from guideline_core import db
from guideline_core import resource as gj
from guideline_core.guidelinejob import GuidelineJob, as_guidelinejob
from guideline_core.k8s import KubeError
from guideline_core.settings import OperatorSettings

from guideline_operator import rows
from guideline_operator.housekeeping import Heartbeat
from guideline_operator.reconciler import Reconciler

log = logging.getLogger("guideline_operator")
CR = (gj.GROUP, gj.VERSION, gj.PLURAL)
TRANSIENT = (KubeError, OSError, db.DatabaseUnavailableError, psycopg2.Error)


class NoDiffBase(kopf.DiffBaseStorage):
    """A diff base that is never written: every object reads as already handled."""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return self.build(body=body)

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


class Retry:
    """Re-runs a failed pass after a short delay, at most one pending per GuidelineJob."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str], threading.Timer] = {}
        self._lock = threading.Lock()

    def later(self, key: tuple[str, str], delay: float, call: Callable[[], None]) -> None:
        """Run `call` in `delay` seconds unless one is pending for `key` already."""

        context = contextvars.copy_context()  # kopf's (its Event poster lives there)

        def run() -> None:
            with self._lock:
                self._pending.pop(key, None)
            context.run(call)

        with self._lock:
            if key in self._pending:
                return
            timer = threading.Timer(delay, run)
            timer.daemon = True
            self._pending[key] = timer
        timer.start()


def kopf_settings(settings: OperatorSettings) -> kopf.OperatorSettings:
    """kopf's settings for this operator (see the module docstring)."""
    ks = kopf.OperatorSettings()
    ks.persistence.diffbase_storage = NoDiffBase()
    ks.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    ks.persistence.finalizer = gj.FINALIZER
    ks.posting.level = logging.WARNING
    ks.execution.max_workers = settings.handler_workers
    ks.watching.server_timeout = settings.watch_timeout_seconds
    ks.watching.client_timeout = settings.watch_timeout_seconds + 30
    ks.watching.connect_timeout = 10
    ks.batching.error_delays = (1, 2, 5, 10, 30, 60)
    # The namespaces to serve are given, and the CRD exists before the operator starts:
    # no cluster-wide scan of Namespaces and CRDs, which least-privilege RBAC denies (kopf
    # would log each 403 as an error and retry).
    ks.scanning.disabled = True
    # A GuidelineJob deleted while its resync timer runs (retention deletes it from the
    # timer itself) waits for the timer to stop: check every second, not kopf's 60 s.
    ks.background.cancellation_polling = 1
    ks.background.instant_exit_timeout = 0.5
    return ks


def _plain(body: Any) -> dict[str, Any]:
    return copy.deepcopy(dict(body))


def _guidelinejob(body: Any) -> GuidelineJob:
    return as_guidelinejob(_plain(body))


def _retrying(call: Callable[[], None]) -> None:
    """Run `call`; a transient API or database failure makes kopf retry soon."""
    try:
        call()
    except TRANSIENT as exc:
        raise kopf.TemporaryError(f"{type(exc).__name__}: {exc}"[:500], delay=2) from exc


def register(
    registry: kopf.OperatorRegistry,
    rec: Reconciler,
    heartbeat: Heartbeat,
    settings: OperatorSettings,
) -> None:
    """Register every handler of the operator on `registry`."""
    retry = Retry()

    def reconcile(namespace: str, name: str, cause: str) -> None:
        try:
            rec.reconcile(namespace, name, cause=cause)
        except rows.NotRecordedYetError as exc:
            log.info("waiting for the API to record its GuidelineJob", extra={"why": str(exc)})
            retry.later((namespace, name), 1.0, lambda: reconcile(namespace, name, "retry"))
        except TRANSIENT as exc:
            rec.metrics.reconcile_errors.labels(stage="reconcile").inc()
            log.warning("reconcile failed; retrying", extra={"error": str(exc)[:500]})
            retry.later((namespace, name), 2.0, lambda: reconcile(namespace, name, "retry"))

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> Any:
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    def startup(**_: Any) -> None:
        known = rec.load_registry()
        heartbeat.start()
        log.info(
            "operator started",
            extra={
                "namespaces": rec.namespaces or "*",
                "guidelinejobs": known,
                "max_concurrent_jobs": settings.max_concurrent_jobs,
                "kueue_queue": settings.kueue_queue_name,
                "identity": heartbeat.identity,
            },
        )
        rec.admission.pump()

    @kopf.on.cleanup(registry=registry)
    def cleanup(**_: Any) -> None:
        heartbeat.stop()
        rec.mirror.db.close()
        rec.tracer.shutdown()
        log.info("operator stopped")

    @kopf.on.event(*CR, registry=registry)
    def guidelinejob_event(type: str | None, body: Any, **_: Any) -> None:
        plain = _guidelinejob(body)
        rec.cr_seen(plain, deleted=type == "DELETED")
        metadata = plain.get("metadata") or {}
        if type == "DELETED" or metadata.get("deletionTimestamp") or rec.queued(metadata["uid"]):
            return
        if gj.FINALIZER not in (metadata.get("finalizers") or []):
            # kopf adds its finalizer after this handler, with a JSON patch conditional on
            # the resourceVersion of this event's body: a status write here would make that
            # patch fail (422) and cost a second try. Its write brings the next event.
            return
        reconcile(metadata["namespace"], metadata["name"], "resume" if type is None else "event")

    @kopf.on.delete(*CR, registry=registry)
    def guidelinejob_deleted(body: Any, **_: Any) -> None:
        _retrying(lambda: rec.deleted(_guidelinejob(body)))

    @kopf.timer(*CR, registry=registry, interval=settings.resync_interval_seconds)
    def resync(body: Any, **_: Any) -> None:
        try:
            rec.resync(_guidelinejob(body))
        except rows.NotRecordedYetError:
            pass  # the next tick decides
        except TRANSIENT as exc:  # the next tick retries
            rec.metrics.reconcile_errors.labels(stage="resync").inc()
            log.warning("resync failed", extra={"error": str(exc)[:500]})

    managed = {gj.LABEL_MANAGED_BY: gj.MANAGED_BY_OPERATOR}

    @kopf.on.event("batch", "v1", "jobs", labels=managed, registry=registry)
    def job_event(type: str | None, body: Any, **_: Any) -> None:
        _child(rec, type, body)

    @kopf.on.event("v1", "pods", labels=managed, registry=registry)
    def pod_event(type: str | None, body: Any, **_: Any) -> None:
        _child(rec, type, body)


def _child(rec: Reconciler, type_: str | None, body: Any) -> None:
    try:
        rec.child_event(_plain(body), type_)
    except rows.NotRecordedYetError:
        pass  # its GuidelineJob's own events and timer decide
    except TRANSIENT as exc:  # on.event handlers are not retried: the resync timer is
        rec.metrics.reconcile_errors.labels(stage="child").inc()
        log.warning("reconcile after a Job/pod event failed", extra={"error": str(exc)[:500]})
