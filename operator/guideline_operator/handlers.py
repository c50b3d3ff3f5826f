"""The kopf wiring: which events call which `Reconciler` method, and kopf's own settings.

Handlers are registered on an explicit `kopf.OperatorRegistry` (not kopf's global one) so
the resync interval can come from settings and importing this module has no side effects.

kopf settings that matter here:
- diff-base storage: `AnnotationsDiffBaseStorage` without `spec.guidelineText`. kopf keeps
  the last handled "essence" of each object in an annotation; annotations share a 256 KiB
  limit, and a 100,000-character guideline (JSON-escaped: up to 600 KB) would not fit, so
  the CR could no longer be patched at all. The text is immutable anyway (CEL rule).
- progress storage: `status.kopf.progress` (the CRD reserves `status.kopf` for it), apart
  from the operator's fields, which `Reconciler` writes with its own merge patches.
- finalizer: kopf puts one on every GuidelineJob because of the resync timer (kopf needs
  it to stop timers cleanly), and it is kept on purpose: with it, the delete handler is
  guaranteed to run, so a job deleted while PENDING or PROCESSING always ends as
  CANCELLED (reason Deleted) in its database row instead of staying PROCESSING forever.
  The price: GuidelineJobs cannot be deleted while no operator runs (uninstall deletes
  them first). Jobs and pods get no finalizer (they are only watched, `on.event`).
- posting: kopf's own INFO chatter is not turned into Events (WARNING and up only); the
  transition Events are posted explicitly.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

import kopf
import psycopg2
from guideline_core import db
from guideline_core import resource as gj
from guideline_core.settings import OperatorSettings
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from guideline_operator.reconciler import Reconciler

log = logging.getLogger("guideline_operator")
CR = (gj.GROUP, gj.VERSION, gj.PLURAL)
DIFFBASE_KEY = "last-handled-configuration"
FINALIZER = f"{gj.GROUP}/operator"
TRANSIENT = (ApiException, HTTPError, OSError, db.DatabaseUnavailableError, psycopg2.Error)


def kopf_settings(settings: OperatorSettings) -> kopf.OperatorSettings:
    """kopf's settings for this operator (see the module docstring)."""
    ks = kopf.OperatorSettings()
    ks.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=gj.GROUP, key=DIFFBASE_KEY, ignored_fields=["spec.guidelineText"]
    )
    ks.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    ks.persistence.finalizer = FINALIZER
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


def _retrying(call: Callable[[], None]) -> None:
    """Run `call`; a transient API or database failure makes kopf retry soon."""
    try:
        call()
    except TRANSIENT as exc:
        raise kopf.TemporaryError(f"{type(exc).__name__}: {exc}"[:500], delay=2) from exc


def register(registry: kopf.OperatorRegistry, rec: Reconciler, settings: OperatorSettings) -> None:
    """Register every handler of the operator on `registry`."""

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> Any:
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    def startup(**_: Any) -> None:
        known = rec.load_registry()
        rec.start_background()
        log.info(
            "operator started",
            extra={
                "namespaces": rec.namespaces or "*",
                "guidelinejobs": known,
                "max_concurrent_jobs": settings.max_concurrent_jobs,
                "kueue_queue": settings.kueue_queue_name,
                "identity": rec.identity,
            },
        )

    @kopf.on.cleanup(registry=registry)
    def cleanup(**_: Any) -> None:
        rec.stop_background()
        rec.db.close()
        log.info("operator stopped")

    @kopf.on.event(*CR, registry=registry)
    def guidelinejob_event(type: str | None, body: Any, **_: Any) -> None:
        rec.cr_seen(_plain(body), deleted=type == "DELETED")

    @kopf.on.resume(*CR, registry=registry)
    @kopf.on.create(*CR, registry=registry)
    @kopf.on.update(*CR, registry=registry)
    def guidelinejob_changed(namespace: str, name: str, reason: Any, **_: Any) -> None:
        cause = str(getattr(reason, "value", reason))
        _retrying(lambda: rec.reconcile(namespace, name, cause=cause))

    @kopf.on.delete(*CR, registry=registry)
    def guidelinejob_deleted(body: Any, **_: Any) -> None:
        _retrying(lambda: rec.deleted(_plain(body)))

    @kopf.timer(*CR, registry=registry, interval=settings.resync_interval_seconds)
    def resync(body: Any, **_: Any) -> None:
        try:
            rec.resync(_plain(body))
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
    except TRANSIENT as exc:  # on.event handlers are not retried: the resync timer is
        rec.metrics.reconcile_errors.labels(stage="child").inc()
        log.warning("reconcile after a Job/pod event failed", extra={"error": str(exc)[:500]})
