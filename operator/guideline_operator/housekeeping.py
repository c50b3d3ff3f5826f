"""Housekeeping: the operator's heartbeat row, the database retention purge, and the
retention of finished GuidelineJobs in the cluster. Each part gets what it works on."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import datetime

from guideline_core import db, summary_cache
from guideline_core.guidelinejob import GuidelineJob, status_of

from guideline_operator import observe
from guideline_operator.kubeapi import Kube
from guideline_operator.metrics import Metrics
from guideline_operator.mirror import DB_ERRORS

log = logging.getLogger("guideline_operator")


def identity() -> str:
    """This operator's identity for the heartbeat: the pod name, else the hostname."""
    return os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or socket.gethostname()


class Heartbeat:
    """A thread that writes the heartbeat row every `interval` seconds and, every
    `purge_interval` seconds, purges rows of jobs finished more than `retention_days` ago
    audit entries older than `audit_retention_days` and chunk-cache summaries written
    more than `cache_retention_days` ago (0: never)."""

    def __init__(
        self,
        database: db.Database,
        metrics: Metrics,
        *,
        identity: str,
        interval: float,
        retention_days: int,
        purge_interval: float,
        cache_retention_days: int = 0,
        audit_retention_days: int = 0,
    ):
        self.db = database
        self.metrics = metrics
        self.identity = identity
        self.interval = interval
        self.retention_days = retention_days
        self.audit_retention_days = audit_retention_days
        self.purge_interval = purge_interval
        self.cache_retention_days = cache_retention_days
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the heartbeat / purge thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the heartbeat / purge thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        next_purge = 0.0
        while True:
            try:
                with self.db.connection() as conn:
                    db.heartbeat(conn, self.identity)
            except DB_ERRORS as exc:
                log.warning("heartbeat failed", extra={"error": str(exc)})
            purges = (
                self.retention_days > 0
                or self.cache_retention_days > 0
                or self.audit_retention_days > 0
            )
            if purges and time.monotonic() >= next_purge:
                next_purge = time.monotonic() + self.purge_interval
                self.purge()
                self.purge_chunk_cache()
            if self._stop.wait(self.interval):
                return

    def purge(self) -> int:
        """Delete rows of jobs finished more than `retention_days` ago (and the audit
        entries as old) and audit entries older than `audit_retention_days`; returns how
        many jobs."""
        if self.retention_days <= 0 and self.audit_retention_days <= 0:
            return 0
        purged = audit = 0
        try:
            with self.db.connection() as conn:
                if self.retention_days > 0:
                    purged = db.purge_finished(conn, self.retention_days)
                if self.audit_retention_days > 0:
                    audit = db.purge_audit(conn, self.audit_retention_days)
        except DB_ERRORS as exc:
            log.warning("retention purge failed", extra={"error": str(exc)})
            return 0
        self.metrics.db_purged_rows.inc(purged)
        log.info(
            "retention purge",
            extra={
                "purged_rows": purged,
                "older_than_days": self.retention_days,
                "purged_audit_entries": audit,
                "audit_older_than_days": self.audit_retention_days,
            },
        )
        return purged

    def purge_chunk_cache(self) -> int:
        """Delete chunk-cache summaries older than `cache_retention_days`; returns how many."""
        if self.cache_retention_days <= 0:
            return 0
        try:
            with self.db.connection() as conn:
                purged = summary_cache.purge_older_than(conn, self.cache_retention_days)
        except DB_ERRORS as exc:
            log.warning("chunk cache purge failed", extra={"error": str(exc)})
            return 0
        log.info(
            "chunk cache purge",
            extra={"purged_rows": purged, "older_than_days": self.cache_retention_days},
        )
        return purged


def age_seconds(cr: GuidelineJob, now: datetime) -> float | None:
    """Seconds since a finished GuidelineJob completed (None if it has not)."""
    completed = observe.parse_time(status_of(cr).get("completedAt"))
    return (now - completed).total_seconds() if completed else None


class Retention:
    """Deletes finished GuidelineJobs from the cluster `seconds` after they completed."""

    def __init__(self, kube: Kube, metrics: Metrics, *, seconds: int):
        self.kube = kube
        self.metrics = metrics
        self.seconds = seconds

    def due(self, cr: GuidelineJob, now: datetime) -> bool:
        """True if a finished GuidelineJob is older than the retention."""
        age = age_seconds(cr, now)
        return age is not None and age >= self.seconds

    def apply(self, cr: GuidelineJob, now: datetime) -> bool:
        """Delete `cr` if it is due; True if it was."""
        if not self.due(cr, now):
            return False
        metadata = cr["metadata"]
        if self.kube.delete_cr(metadata["namespace"], metadata["name"]):
            self.metrics.crs_deleted.inc()
            log.info(
                "retention: deleted the finished GuidelineJob",
                extra={"age_s": int(age_seconds(cr, now) or 0)},
            )
        return True
