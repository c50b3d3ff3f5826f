"""Versions of a guideline: a submission may name the job it supersedes; reading the new
job once it is COMPLETED adds `result.changes` against that job's result (computed by
`guideline_core.changes` from the two stored results when the job completed and stored
with it, so the runner needs no access to other jobs and a read computes nothing)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from guideline_core import db

from guideline_api.http.errors import ApiError, Reason


def check_supersedes(
    conn: Any, value: str | None, visible: Callable[[Mapping[str, Any]], bool]
) -> uuid.UUID | None:
    """The event_id a submission supersedes; 422 unless it is a job the caller may see
    (another tenant's job is as unknown as a missing one)."""
    if value is None:
        return None
    event_id = uuid.UUID(value)  # the schema checked the form
    row = db.get_job(conn, event_id)
    if row is None or not visible(row):
        raise ApiError(
            422,
            Reason.VALIDATION,
            f"supersedes: no job with event_id {event_id}",
            details=[{"field": "supersedes", "message": "unknown job", "type": "not_found"}],
        )
    return event_id


def with_changes(conn: Any, row: Mapping[str, Any]) -> Mapping[str, Any]:
    """`row` with `result.changes` when it is a COMPLETED job that supersedes another: the
    value stored when it completed (`db.changes_of`; never recomputed on a read)."""
    changes = db.changes_of(conn, row)
    if changes is None or not isinstance(row.get("result"), dict):
        return row
    return {**row, "result": {**row["result"], "changes": changes}}
