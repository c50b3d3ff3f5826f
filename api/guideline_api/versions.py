"""Versions of a guideline: a submission may name the job it supersedes; reading the new
job once it is COMPLETED adds `result.changes` against that job's result (computed by
`guideline_core.changes` from the two stored results, so the runner needs no access to
other jobs)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from guideline_core import db
from guideline_core.changes import checklist_changes
from guideline_core.resource import Phase

from guideline_api.errors import ApiError, Reason


def check_supersedes(
    conn: Any, value: str | None, visible: Callable[[dict[str, Any]], bool]
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


def with_changes(conn: Any, row: dict[str, Any]) -> dict[str, Any]:
    """`row` with `result.changes` when it is a COMPLETED job that supersedes another;
    `changes.available` is false (with the reason) while the other has no result."""
    superseded, result = row.get("supersedes"), row.get("result")
    if not superseded or row["status"] != Phase.COMPLETED or not isinstance(result, dict):
        return row
    old = db.get_job(conn, superseded)
    if old is not None and old["tenant"] != row["tenant"]:
        # A GuidelineJob applied with kubectl may name any event_id: another tenant's job
        # is as unknown to it as a missing one, and its checklist is never compared.
        old = None
    if old is None or old["status"] != Phase.COMPLETED or not old.get("result"):
        state = "gone" if old is None else old["status"]
        changes: dict[str, Any] = {
            "supersedes": str(superseded),
            "available": False,
            "reason": f"the superseded job is {state}, so there is no checklist to compare",
        }
    else:
        changes = {"available": True, **checklist_changes(old["result"], result, str(superseded))}
    return {**row, "result": {**result, "changes": changes}}
