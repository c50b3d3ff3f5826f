"""The outbox in `jobs`: requests (create, cancel, retry) the API's dispatcher carries to
the cluster, claimed under a lease."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import psycopg2
import psycopg2.extras
from psycopg2.extensions import connection as PgConnection  # noqa: N812

from guideline_core.db.audit import add_audit
from guideline_core.db.events import add_event
from guideline_core.db.mirror import JobState, mirror_state
from guideline_core.db.rows import JOB_COLUMNS, DispatchRow, JobRow, one_row, select_one
from guideline_core.resource import Phase

# --- the outbox: requests the dispatcher carries to the cluster --------------------------


def claim_dispatch(conn: PgConnection, limit: int, lease_seconds: float) -> list[DispatchRow]:
    """Claim up to `limit` rows whose cluster state is behind (oldest first), leasing them
    for `lease_seconds` so no other dispatcher takes them meanwhile (SKIP LOCKED: replicas
    claiming at the same moment get disjoint rows). Each row comes with its trace context
    and its input: `document_ref` (the GuidelineJob's `spec.documentRef`) when it has a
    stored document, else its text (`guideline_text`, rows older than migration 0013)."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(
            f"""
            UPDATE jobs SET dispatch_after = now() + make_interval(secs => %s),
                   dispatch_attempts = dispatch_attempts + 1
             WHERE event_id IN (
                   SELECT event_id FROM jobs
                    WHERE dispatch_pending AND (dispatch_after IS NULL OR dispatch_after <= now())
                    ORDER BY dispatch_after NULLS FIRST, created_at
                    LIMIT %s FOR UPDATE SKIP LOCKED)
            RETURNING {JOB_COLUMNS}, trace_context,
                   CASE WHEN document_id IS NULL THEN guideline_text END AS guideline_text,
                   (SELECT json_build_object('id', d.id, 'sha256', d.sha256,
                                             'mediaType', d.media_type, 'bytes', d.bytes)
                      FROM documents d WHERE d.id = jobs.document_id) AS document_ref
            """,
            (lease_seconds, limit),
        )
        rows = cast(list[DispatchRow], cur.fetchall())
    return sorted(rows, key=lambda r: r["created_at"])


def finish_dispatch(
    conn: PgConnection,
    event_id: uuid.UUID,
    seq: int,
    *,
    cr_name: str | None = None,
    cr_uid: str | None = None,
) -> bool:
    """Record a dispatch pass over a row claimed at `seq` (and the CR it created, if any).
    The row leaves the outbox unless a newer request arrived meanwhile; True if it left."""
    with conn.cursor() as cur:
        cur.execute(
            """
            UPDATE jobs SET cr_name = coalesce(%s, cr_name), cr_uid = coalesce(%s, cr_uid),
                   dispatched_at = CASE WHEN %s::text IS NULL THEN dispatched_at
                                        ELSE coalesce(dispatched_at, now()) END,
                   dispatch_pending = (dispatch_seq <> %s),
                   dispatch_after = NULL, dispatch_error = NULL, dispatch_attempts = 0
             WHERE event_id = %s
            RETURNING dispatch_pending
            """,
            (cr_name, cr_uid, cr_uid, seq, event_id),
        )
        row = cur.fetchone()
        return row is not None and not row[0]


def defer_dispatch(conn: PgConnection, event_id: uuid.UUID, error: str, delay: float) -> None:
    """Leave a row in the outbox for another try in `delay` seconds, saying why."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE jobs SET dispatch_after = now() + make_interval(secs => %s), "
            "dispatch_error = %s WHERE event_id = %s AND dispatch_pending",
            (delay, error[:500], event_id),
        )


def release_dispatch(conn: PgConnection, event_ids: list[uuid.UUID]) -> None:
    """Give back rows a stopping dispatcher claimed but never started: due again at once,
    the claim not counted as an attempt."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE jobs SET dispatch_after = NULL, "
            "dispatch_attempts = greatest(dispatch_attempts - 1, 0) "
            "WHERE event_id = ANY(%s::uuid[]) AND dispatch_pending",
            (event_ids,),
        )


def outbox_size(conn: PgConnection) -> int:
    """Rows whose cluster state is behind (served by the partial outbox index)."""
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM jobs WHERE dispatch_pending")
        return int(one_row(cur)[0])


def lock_job(conn: PgConnection, event_id: uuid.UUID) -> JobRow | None:
    """The job's row, locked until the transaction ends (for a request that decides on
    its current state)."""
    return cast(
        JobRow | None,
        select_one(
            conn, f"SELECT {JOB_COLUMNS} FROM jobs WHERE event_id = %s FOR UPDATE", (event_id,)
        ),
    )


def request_cancel(conn: PgConnection, row: Mapping[str, Any], actor: str, message: str) -> None:
    """Cancel a locked, unfinished job: CANCELLED now (what the API answers holds), and
    the request queued for the dispatcher to carry to the GuidelineJob."""
    now = datetime.now(UTC)
    mirror_state(
        conn,
        JobState(
            event_id=row["event_id"],
            status=Phase.CANCELLED,
            attempts=row["attempts"],
            started_at=row["started_at"],
            completed_at=now,
            error={"reason": "Cancelled", "message": message},
            reason="Cancelled",
            message=message,
            run=row["run"],
            actor=actor,
        ),
    )
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE jobs SET cancel_requested_at = %s, dispatch_pending = true, "
            "dispatch_seq = dispatch_seq + 1, dispatch_after = NULL WHERE event_id = %s",
            (now, row["event_id"]),
        )


def request_retry(conn: PgConnection, row: Mapping[str, Any], actor: str, message: str) -> int:
    """Start a new run of a locked FAILED or CANCELLED job: PENDING now with `run` + 1,
    the request queued for the dispatcher; returns the new run."""
    run = int(row["run"]) + 1
    with conn.cursor() as cur:
        cur.execute(
            """
            UPDATE jobs SET status = %s, run = %s, result = NULL, error = NULL,
                   progress = NULL,
                   completed_at = NULL, cancel_requested_at = NULL, updated_at = now(),
                   dispatch_pending = true, dispatch_seq = dispatch_seq + 1,
                   dispatch_after = NULL
             WHERE event_id = %s
            """,
            (str(Phase.PENDING), run, row["event_id"]),
        )
    add_event(conn, row["event_id"], str(Phase.PENDING), row["attempts"], "RetryRequested", message)
    add_audit(
        conn,
        tenant=row["tenant"],
        actor=actor,
        action="retry",
        event_id=row["event_id"],
        detail={"run": run},
    )
    return run
