"""Job rows written straight into the database, as the API and then the operator would
have written them (for API tests that need no cluster)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from guideline_core import db
from guideline_core.resource import Phase, new_event_id

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def add_job(
    database: db.Database,
    *,
    status: Phase = Phase.PENDING,
    created_at: datetime | None = None,
    text: str = "Staff must wash hands.",
    attempts: int = 0,
    result: dict | None = None,
    error: dict | None = None,
    title: str | None = None,
    tenant: str = "alice",
    supersedes: uuid.UUID | None = None,
) -> uuid.UUID:
    """A job row as the API and then the operator would have written it."""
    event_id = new_event_id()
    with database.connection() as conn:
        db.insert_job(
            conn,
            db.NewJob(
                event_id=event_id,
                namespace="default",
                guideline_text=text,
                title=title,
                cr_name=f"gj-{event_id.hex[:5]}",
                submitted_by=tenant,
                tenant=tenant,
                created_at=created_at,
                supersedes=supersedes,
            ),
        )
        if status != Phase.PENDING:
            db.mirror_state(
                conn,
                db.JobState(
                    event_id=event_id,
                    status=status,
                    attempts=attempts,
                    started_at=(created_at or T0) + timedelta(seconds=1),
                    completed_at=(created_at or T0) + timedelta(seconds=9)
                    if status.terminal
                    else None,
                    result=result,
                    error=error,
                    reason=(error or {}).get("reason"),
                ),
            )
    return event_id


def set_state(
    database: db.Database, event_id: str, status: Phase, attempts: int, **kw: object
) -> bool:
    """Write the state given (`db.JobState` fields), and nothing else, as the operator's
    mirror does (`db.mirror_state`); True if it was applied."""
    with database.connection() as conn:
        return db.mirror_state(
            conn,
            db.JobState(
                event_id=uuid.UUID(event_id),
                status=status,
                attempts=attempts,
                **kw,  # type: ignore[arg-type]
            ),
        )


def mirror(
    database: db.Database, event_id: str, status: Phase, attempts: int, **kw: object
) -> bool:
    """`set_state` with the run started now and, for a terminal state, ended now."""
    now = datetime.now(UTC)
    ended = now if status.terminal else None
    return set_state(database, event_id, status, attempts, started_at=now, completed_at=ended, **kw)
