"""The job state the operator observes on the cluster, written into `jobs` (status,
progress, cost, changes of a superseding job) with its history entry."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, cast

import psycopg2
import psycopg2.extras
from psycopg2.extensions import connection as PgConnection  # noqa: N812

from guideline_core.changes import job_changes
from guideline_core.cost import DEFAULT_MODEL_PRICES, result_cost
from guideline_core.db.audit import add_audit
from guideline_core.db.rows import jsonb
from guideline_core.resource import TERMINAL_PHASES, Phase

DELETED_REASON = "Deleted"
DELETED_MESSAGE = "the GuidelineJob was deleted before it finished"


# --- jobs: state written by the operator ---------------------------------------------------


@dataclass(frozen=True)
class JobState:
    """The state of a job as the operator observed it on the cluster."""

    event_id: uuid.UUID
    status: Phase
    attempts: int
    started_at: datetime | None = None
    completed_at: datetime | None = None
    result: Mapping[str, Any] | None = None
    error: Mapping[str, Any] | None = None
    reason: str | None = None
    message: str | None = None
    run: int = 0  # the CR's status.retryRequests: which run of the job this state is of
    actor: str = "operator"  # who caused it, for the audit log


def mirror_state(
    conn: PgConnection, state: JobState, prices: Mapping[str, Any] | None = None
) -> bool:
    """Write the observed state into the job's row; True if anything changed.

    Idempotent: writing the same state twice changes nothing and records no event.
    `attempts` and `run` never go backwards. A state of an older run than the row's (the
    API already accepted a retry the cluster has not seen yet) is ignored, and so is a
    different status over a terminal one of the same run (a job cancelled through the API
    stays CANCELLED even if its pod finished at that moment): what the API answered holds.

    A COMPLETED job that supersedes another gets its `changes` in the same UPDATE (so the
    webhook trigger's copy of the row has them); a job completing refreshes the changes of
    its COMPLETED superseders that had none available yet (a retry's late result).

    A COMPLETED job gets its `cost` (`result.usage.cost`: its tokens at `prices`, the
    `model_prices` table) in the same UPDATE, kept as it is once stored for this result."""
    changes = _changes_on_completion(conn, state) if state.status == Phase.COMPLETED else None
    cost = None
    if state.status == Phase.COMPLETED and isinstance(state.result, Mapping):
        cost = result_cost(state.result, DEFAULT_MODEL_PRICES if prices is None else prices)
        if cost is not None:
            cost["computed_at"] = datetime.now(UTC).isoformat()
    with conn.cursor() as cur:
        cur.execute(
            """
            UPDATE jobs SET status = %s, attempts = greatest(attempts, %s),
                   started_at = coalesce(%s, started_at),
                   completed_at = %s,
                   result = %s, error = %s, updated_at = now(), run = greatest(run, %s),
                   changes = %s,
                   cost = CASE WHEN status = %s AND result = %s AND cost IS NOT NULL
                               THEN cost ELSE %s END
             WHERE event_id = %s
               AND (%s > run OR (%s = run AND (status <> ALL(%s) OR status = %s)))
               AND (status IS DISTINCT FROM %s OR attempts < %s
                    OR result IS DISTINCT FROM %s OR error IS DISTINCT FROM %s
                    OR started_at IS DISTINCT FROM coalesce(%s, started_at)
                    OR completed_at IS DISTINCT FROM %s)
            RETURNING tenant
            """,
            (
                str(state.status),
                state.attempts,
                state.started_at,
                state.completed_at,
                jsonb(state.result),
                jsonb(state.error),
                state.run,
                jsonb(changes),
                str(Phase.COMPLETED),
                jsonb(state.result),
                jsonb(cost),
                state.event_id,
                state.run,
                state.run,
                [p.value for p in TERMINAL_PHASES],
                str(state.status),
                str(state.status),
                state.attempts,
                jsonb(state.result),
                jsonb(state.error),
                state.started_at,
                state.completed_at,
            ),
        )
        updated = cur.fetchone()
        if updated is None:
            return False
        cur.execute(
            """
            INSERT INTO job_events (event_id, status, attempts, reason, message)
            SELECT %s, %s, %s, %s, %s
             WHERE NOT EXISTS (
                SELECT 1 FROM (SELECT status, attempts FROM job_events WHERE event_id = %s
                                ORDER BY id DESC LIMIT 1) last
                 WHERE last.status = %s AND last.attempts = %s)
            """,
            (
                state.event_id,
                str(state.status),
                state.attempts,
                state.reason,
                state.message,
                state.event_id,
                str(state.status),
                state.attempts,
            ),
        )
        if cur.rowcount == 1:
            add_audit(
                conn,
                tenant=updated[0],
                actor=state.actor,
                action=f"status:{state.status}",
                event_id=state.event_id,
                detail={"attempts": state.attempts, "run": state.run, "reason": state.reason},
            )
    if state.status == Phase.COMPLETED:
        _refresh_superseders(conn, state.event_id)
    return True


PROGRESS_FIELDS: Final = ("sections_done", "sections_total", "calls_done", "calls_total")
PROGRESS_REASON: Final = "Progress"


def progress_of(raw: Any) -> dict[str, int] | None:
    """The four counts of a `status.progress` (whole numbers, 0 if missing); None if it is
    not an object."""
    if not isinstance(raw, Mapping):
        return None
    counts = {}
    for name in PROGRESS_FIELDS:
        value = raw.get(name)
        counts[name] = value if isinstance(value, int) and value >= 0 else 0
    return counts


def mirror_progress(
    conn: PgConnection, event_id: uuid.UUID, run: int, progress: Mapping[str, int]
) -> bool:
    """Store the progress of a PROCESSING job's run `run` and add a `progress` event to its
    history (the event stream's); True if it changed. Nothing for a job no longer
    PROCESSING or already in a later run (a late write of a finished pod)."""
    with conn.cursor() as cur:
        cur.execute(
            """
            UPDATE jobs SET progress = %s
             WHERE event_id = %s AND status = %s AND run = %s
               AND progress IS DISTINCT FROM %s
            RETURNING status, attempts
            """,
            (jsonb(progress), event_id, str(Phase.PROCESSING), run, jsonb(progress)),
        )
        updated = cur.fetchone()
        if updated is None:
            return False
        cur.execute(
            "INSERT INTO job_events (event_id, status, attempts, reason, progress) "
            "VALUES (%s, %s, %s, %s, %s)",
            (event_id, updated[0], updated[1], PROGRESS_REASON, jsonb(progress)),
        )
    return True


def _changes_on_completion(conn: PgConnection, state: JobState) -> dict[str, Any] | None:
    """The `changes` to store with COMPLETED `state`: None unless the job supersedes
    another; what is stored already if the row has this result (nothing is recomputed)."""
    if not isinstance(state.result, Mapping):
        return None
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(
            "SELECT tenant, supersedes, changes, status = %s AND result = %s AS known "
            "FROM jobs WHERE event_id = %s",
            (str(Phase.COMPLETED), jsonb(state.result), state.event_id),
        )
        job = cur.fetchone()
    if job is None or job["supersedes"] is None:
        return None
    if job["known"] and job["changes"] is not None:
        return cast(dict[str, Any], job["changes"])
    return _compute_changes(conn, job, state.result)


def _compute_changes(
    conn: PgConnection, job: Mapping[str, Any], result: Mapping[str, Any]
) -> dict[str, Any]:
    """`guideline_core.changes.job_changes` of `job` (tenant, supersedes) with `result`,
    against the superseded row read under a share lock: a superseded job completing at
    this moment either commits first (and is seen) or waits for this transaction (and then
    refreshes this job's changes, `_refresh_superseders`)."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(
            "SELECT tenant, status, result FROM jobs WHERE event_id = %s FOR SHARE",
            (job["supersedes"],),
        )
        return job_changes(job, result, cur.fetchone())


def _refresh_superseders(conn: PgConnection, event_id: uuid.UUID) -> None:
    """Store the changes of the COMPLETED jobs superseding `event_id` that had none
    available (it completed after them: a retry of a failed job)."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(
            "SELECT event_id, tenant, supersedes, result FROM jobs "
            "WHERE supersedes = %s AND status = %s AND (changes ->> 'available') = 'false'",
            (event_id, str(Phase.COMPLETED)),
        )
        for job in cur.fetchall():
            if isinstance(job["result"], dict):
                store_changes(conn, job["event_id"], _compute_changes(conn, job, job["result"]))


def store_changes(conn: PgConnection, event_id: uuid.UUID, changes: Mapping[str, Any]) -> None:
    """Store a job's `changes` (the status is untouched: no webhook is enqueued again)."""
    with conn.cursor() as cur:
        cur.execute("UPDATE jobs SET changes = %s WHERE event_id = %s", (jsonb(changes), event_id))


def changes_of(conn: PgConnection, row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The stored `changes` of a COMPLETED row that supersedes another; computed and
    stored once if missing (a job completed before migration 0007)."""
    if not row.get("supersedes") or row["status"] != Phase.COMPLETED:
        return None
    if row.get("changes") is not None:
        return cast(dict[str, Any], row["changes"])
    if not isinstance(row.get("result"), dict):
        return None
    changes = _compute_changes(conn, row, row["result"])
    store_changes(conn, row["event_id"], changes)
    return changes


def finish_if_active(conn: PgConnection, state: JobState) -> bool:
    """Write a terminal `state` only if the row is not terminal already (checked under a
    row lock, so a job finishing at the same moment keeps its own outcome). True if the
    row changed."""
    with conn.cursor() as cur:
        cur.execute("SELECT status FROM jobs WHERE event_id = %s FOR UPDATE", (state.event_id,))
        row = cur.fetchone()
    if row is None or is_terminal(row[0]):
        return False
    return mirror_state(conn, state)


def mark_deleted(
    conn: PgConnection,
    event_id: str | uuid.UUID,
    attempts: int,
    started_at: datetime | None,
) -> bool:
    """Record that a job's GuidelineJob was deleted before it finished: CANCELLED with
    reason `Deleted`, unless its row is already terminal or missing. True if the row
    changed."""
    return finish_if_active(
        conn,
        JobState(
            event_id=uuid.UUID(str(event_id)),
            status=Phase.CANCELLED,
            attempts=attempts,
            started_at=started_at,
            completed_at=datetime.now(UTC).replace(microsecond=0),
            error={"reason": DELETED_REASON, "message": DELETED_MESSAGE},
            reason=DELETED_REASON,
            message=DELETED_MESSAGE,
        ),
    )


# --- helpers -------------------------------------------------------------------------------


def is_terminal(status: str) -> bool:
    """True if `status` is a terminal phase."""
    return status in {str(p) for p in TERMINAL_PHASES}
