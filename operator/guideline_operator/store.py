"""Adapters from GuidelineJob objects to the shared database layer (`guideline_core.db`,
which holds every query): the row of a CR nobody recorded, and the row state that mirrors
a CR's status. No SQL here."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from guideline_core import db
from guideline_core import resource as gj
from guideline_core.kube import event_id_of
from guideline_core.resource import Phase
from psycopg2.extensions import connection as PgConnection  # noqa: N812

from guideline_operator import observe


def ensure_row(conn: PgConnection, cr: Mapping[str, Any], lock_timeout_s: float = 10.0) -> bool:
    """Insert the job's row from the CR's spec unless it exists (`db.ensure_job`); True if
    inserted."""
    metadata = cr["metadata"]
    spec = cr.get("spec") or {}
    annotations = metadata.get("annotations") or {}
    return db.ensure_job(
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
            supersedes=uuid.UUID(spec["supersedes"]) if spec.get("supersedes") else None,
        ),
        lock_timeout_s,
    )


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
        run=observe.current_run(cr),
    )
