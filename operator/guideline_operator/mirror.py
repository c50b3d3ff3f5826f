"""The database mirror: the operator's side of each job's row (`guideline_core.db` holds
the SQL). It records rows of GuidelineJobs the API did not make, mirrors CR states into
rows at most once per distinct state (and a PROCESSING job's `status.progress`, written by
its runner, at most once per distinct count), and answers the trust rule's row lookups.

Database errors never escape from `sync`: the row is repaired by the next pass (the
resync timer), while the cluster side carries on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import psycopg2
from guideline_core import db
from guideline_core.guidelinejob import GuidelineJob, status_of
from guideline_core.resource import Phase

from guideline_operator import rows
from guideline_operator.metrics import Metrics

log = logging.getLogger("guideline_operator")
DB_ERRORS = (db.DatabaseUnavailableError, psycopg2.Error)


def fingerprint(state: db.JobState) -> str:
    """A digest of the fields `db.mirror_state` writes."""
    fields = [
        state.status,
        state.attempts,
        state.started_at,
        state.completed_at,
        state.result,
        state.error,
        state.run,
    ]
    return hashlib.sha256(json.dumps(fields, default=str, sort_keys=True).encode()).hexdigest()


class DatabaseMirror:
    """Rows of jobs as the operator sees them, through `database`."""

    def __init__(
        self,
        database: db.Database,
        metrics: Metrics,
        prices: Mapping[str, Any] | None = None,
    ):
        self.db = database
        self.metrics = metrics
        self.prices = prices  # `model_prices`: a completed job's cost is stored with it
        self._mirrored: dict[str, str] = {}  # event_id -> fingerprint of the state written
        self._progress: dict[str, tuple[int, dict[str, int]]] = {}  # event_id -> (run, counts)

    def row(self, event_id: uuid.UUID) -> db.JobRow | None:
        """A job's row (raises on a database error: the caller decides nothing without it)."""
        with self.db.connection() as conn:
            return db.get_job(conn, event_id)

    def ensure_row(self, job: db.NewJob) -> db.JobRow:
        """The row of `job`, inserted first if missing (raises on a database error)."""
        with self.db.connection() as conn:
            if db.ensure_job(conn, job):
                log.info("recorded a GuidelineJob that had no database row")
            row = db.get_job(conn, job.event_id)
        assert row is not None
        return row

    def tenants(self, event_ids: Iterable[uuid.UUID]) -> dict[str, str]:
        """event_id -> tenant for the rows that exist (one query)."""
        with self.db.connection() as conn:
            return db.tenants_of(conn, list(event_ids))

    def already(self, state: db.JobState) -> bool:
        """True if this process wrote exactly `state` already."""
        return self._mirrored.get(str(state.event_id)) == fingerprint(state)

    def sync(self, cr: GuidelineJob, reason: str | None = None, message: str | None = None) -> None:
        """Mirror an accepted CR's state into its row, unless this process already wrote it."""
        status = status_of(cr)
        if not status.get("phase") or not status.get("eventId"):
            return
        state = rows.job_state(cr, reason, message)
        event_id = str(state.event_id)
        if not self.already(state):
            self._state(state, event_id)
        if state.status == Phase.PROCESSING:
            self._sync_progress(state, event_id, status.get("progress"))

    def _sync_progress(self, state: db.JobState, event_id: str, raw: Any) -> None:
        """Mirror the runner's `status.progress` of a PROCESSING job, once per distinct one."""
        progress = db.progress_of(raw)
        if progress is None or self._progress.get(event_id) == (state.run, progress):
            return
        try:
            with self.db.connection() as conn:
                db.mirror_progress(conn, state.event_id, state.run, progress)
            self._progress[event_id] = (state.run, progress)
        except DB_ERRORS as exc:  # informative only: the runner's next write retries
            log.warning("could not mirror the job's progress", extra={"error": str(exc)})

    def _state(self, state: db.JobState, event_id: str) -> None:
        try:
            with self.db.connection() as conn:
                changed = db.mirror_state(conn, state, self.prices)
            self._mirrored[event_id] = fingerprint(state)
            if changed:
                log.debug("mirrored into the database", extra={"status": state.status.value})
        except DB_ERRORS as exc:
            # Forget the older state written: the resync skips finished jobs it holds a
            # fingerprint of, and this one's row does not show the finished state yet.
            self._mirrored.pop(event_id, None)
            self.metrics.reconcile_errors.labels(stage="database").inc()
            log.warning(
                "could not mirror the job's state; the resync retries", extra={"error": str(exc)}
            )

    def mark_deleted(self, event_id: str, attempts: int, started_at: Any) -> None:
        """Record a job deleted before it finished (raises on a database error)."""
        with self.db.connection() as conn:
            db.mark_deleted(conn, event_id, attempts, started_at)

    def forget(self, event_id: str) -> None:
        """Drop what this process remembers of a job."""
        self._mirrored.pop(event_id, None)
        self._progress.pop(event_id, None)
