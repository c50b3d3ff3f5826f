"""The operator's side of PostgreSQL: creating the row of a GuidelineJob nobody recorded
(`kubectl apply`), mirroring CR state into it, the heartbeat and the retention purge.

Every statement is parameterized; each function runs in one short transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from guideline_core import db
from guideline_core import resource as gj
from guideline_core.kube import event_id_of
from guideline_core.resource import Phase
from psycopg2.extensions import connection as PgConnection  # noqa: N812

from guideline_operator import observe


def ensure_row(conn: PgConnection, cr: Mapping[str, Any], lock_timeout_s: float = 10.0) -> bool:
    """Insert the job's row from the CR's spec unless it exists; True if inserted.

    The API inserts the row and creates the CR in one transaction; if the operator sees
    the CR before that commits, this INSERT waits on the row lock and then does nothing
    (ON CONFLICT DO NOTHING). The lock timeout bounds that wait."""
    metadata = cr["metadata"]
    spec = cr.get("spec") or {}
    annotations = metadata.get("annotations") or {}
    with conn.cursor() as cur:
        cur.execute("SET LOCAL lock_timeout = %s", (f"{int(lock_timeout_s * 1000)}ms",))
    inserted = db.insert_job(
        conn,
        db.NewJob(
            event_id=uuid.UUID(event_id_of(dict(cr))),
            namespace=metadata.get("namespace") or "default",
            guideline_text=spec.get("guidelineText") or "",
            cr_name=metadata["name"],
            title=spec.get("title"),
            model=spec.get("model"),
            provider=spec.get("provider"),
            submitted_by=annotations.get(gj.ANNOTATION_SUBMITTED_BY) or "kubectl",
            created_at=observe.parse_time(metadata.get("creationTimestamp")),
        ),
    )
    with conn.cursor() as cur:
        # The API creates the CR by generateName, so its row may not know the name yet.
        cur.execute(
            "UPDATE jobs SET cr_name = %s WHERE event_id = %s AND cr_name IS NULL",
            (metadata["name"], uuid.UUID(event_id_of(dict(cr)))),
        )
    return inserted


def job_state(
    cr: Mapping[str, Any], reason: str | None = None, message: str | None = None
) -> db.JobState:
    """The row state that mirrors a GuidelineJob's status."""
    status = cr.get("status") or {}
    phase = Phase(status["phase"])
    error = status.get("error") if phase in (Phase.FAILED, Phase.CANCELLED) else None
    if reason is None and error:
        reason, message = error.get("reason"), error.get("message")
    return db.JobState(
        event_id=uuid.UUID(status.get("eventId") or event_id_of(dict(cr))),
        status=phase,
        attempts=int(status.get("attempts") or 0),
        started_at=observe.parse_time(status.get("startedAt")),
        completed_at=observe.parse_time(status.get("completedAt")) if phase.terminal else None,
        result=status.get("result") if phase == Phase.COMPLETED else None,
        error=error,
        reason=reason,
        message=message,
    )


def heartbeat(conn: PgConnection, identity: str) -> None:
    """Record that the operator `identity` is alive now."""
    with conn.cursor() as cur:
        cur.execute(
            """
            INSERT INTO operator_heartbeat (identity, seen_at) VALUES (%s, now())
            ON CONFLICT (identity) DO UPDATE SET seen_at = excluded.seen_at
            """,
            (identity,),
        )


def purge_finished(conn: PgConnection, older_than_days: int) -> int:
    """Delete rows of jobs that finished more than `older_than_days` days ago (their
    status history goes with them); returns how many."""
    with conn.cursor() as cur:
        cur.execute(
            """
            DELETE FROM jobs
             WHERE status = ANY(%s)
               AND completed_at < now() - make_interval(days => %s)
            """,
            ([p.value for p in gj.TERMINAL_PHASES], older_than_days),
        )
        return cur.rowcount


def mark_deleted(conn: PgConnection, event_id: str, attempts: int, started_at: Any) -> bool:
    """Record that a GuidelineJob was deleted before it finished: CANCELLED, reason
    Deleted, unless its row is already terminal. True if the row changed."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT status FROM jobs WHERE event_id = %s FOR UPDATE", (uuid.UUID(event_id),)
        )
        row = cur.fetchone()
    if row is None or db.is_terminal(row[0]):
        return False
    error = {"reason": "Deleted", "message": "the GuidelineJob was deleted before it finished"}
    return db.mirror_state(
        conn,
        db.JobState(
            event_id=uuid.UUID(event_id),
            status=Phase.CANCELLED,
            attempts=attempts,
            started_at=started_at,
            completed_at=datetime.now(UTC).replace(microsecond=0),
            error=error,
            reason="Deleted",
            message=error["message"],
        ),
    )
