"""Adapters from GuidelineJob objects to the shared database layer (`guideline_core.db`,
which holds every query): which row a CR may affect (the trust rule), the row of a CR
nobody recorded, and the row state that mirrors a CR's status. No SQL here."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from guideline_core import db
from guideline_core import resource as gj
from guideline_core.guidelinejob import GuidelineJob, metadata_of, spec_of, status_of
from guideline_core.resource import Phase

from guideline_operator import observe


class NotRecordedYetError(Exception):
    """The CR names a job whose row does not record it yet: the API's dispatcher created it
    and has not written its uid to the row. Decide later (a temporary condition)."""


def trusted_event_id(cr: GuidelineJob) -> str | None:
    """The event_id the operator gave this GuidelineJob when it accepted it (its status,
    which users cannot write), or None before that."""
    return status_of(cr).get("eventId") or None


def identify(
    cr: GuidelineJob, row_of: Callable[[uuid.UUID], Mapping[str, Any] | None]
) -> tuple[str, bool]:
    """The event_id of a GuidelineJob not accepted yet, and whether it is the API's CR of an
    existing row (True) or a CR of its own (False: event_id = metadata.uid).

    The event-id label is a claim anyone who may create a GuidelineJob can make; it is
    believed only for the CR the row records (`row.cr_uid == metadata.uid`, written by the
    API's dispatcher after it created the CR). A row whose `cr_name` is this CR's name and
    which has no uid yet, or is still in the outbox (`dispatch_pending`: a re-create), is
    the dispatcher's CR not recorded yet: NotRecordedYetError. Anything else is
    someone else's CR claiming that job: it gets a job (and row) of its own."""
    metadata = cr["metadata"]
    uid = metadata["uid"]
    claimed = (metadata.get("labels") or {}).get(gj.LABEL_EVENT_ID)
    if not claimed or claimed == uid:
        return uid, False
    try:
        event_id = uuid.UUID(claimed)
    except ValueError:
        return uid, False
    row = row_of(event_id)
    if row is None:
        return uid, False
    if row.get("cr_uid") == uid:
        return str(event_id), True
    # The API's rows learn their CR's name with its uid (the dispatcher records both after
    # the create): until then the name the dispatcher gives is derived from the event_id.
    expected_name = row.get("cr_name") or gj.cr_name_for(event_id)
    if (
        (row.get("cr_uid") is None or row.get("dispatch_pending"))
        and expected_name == metadata.get("name")
        and row.get("namespace") == metadata.get("namespace")
    ):
        # The dispatcher's create (or re-create, after retention) not recorded yet. It
        # records only a CR it made itself, so a CR squatting the name waits here forever.
        raise NotRecordedYetError(f"job {event_id}: the row does not record this CR's uid yet")
    return uid, False


def new_row(cr: GuidelineJob, event_id: str, tenant: str) -> db.NewJob:
    """The row of a GuidelineJob the API did not make (kubectl): its tenant is the one of
    its namespace, its creator the user kube-apiserver authenticated (the created-by
    annotation, which an admission policy sets on create and keeps on update;
    docs/contracts.md)."""
    metadata = metadata_of(cr)
    spec = spec_of(cr)
    annotations = metadata.get("annotations") or {}
    return db.NewJob(
        event_id=uuid.UUID(event_id),
        namespace=metadata.get("namespace") or "default",
        guideline_text=spec.get("guidelineText") or "",
        cr_name=metadata["name"],
        title=spec.get("title"),
        model=spec.get("model"),
        provider=spec.get("provider"),
        submitted_by="kubectl",
        created_at=observe.parse_time(metadata.get("creationTimestamp")),
        tenant=tenant,
        created_by=annotations.get(gj.ANNOTATION_CREATED_BY),
        max_retries=spec.get("maxRetries"),
        cr_uid=metadata["uid"],
        supersedes=uuid.UUID(spec["supersedes"]) if spec.get("supersedes") else None,
    )


def job_state(
    cr: GuidelineJob,
    reason: str | None = None,
    message: str | None = None,
    actor: str = "operator",
) -> db.JobState:
    """The row state that mirrors an accepted GuidelineJob's status."""
    status = status_of(cr)
    phase = Phase(status["phase"])
    error = status.get("error") if phase in (Phase.FAILED, Phase.CANCELLED) else None
    if reason is None and error:
        reason, message = error.get("reason"), error.get("message")
    return db.JobState(
        event_id=uuid.UUID(status["eventId"]),
        status=phase,
        attempts=int(status.get("attempts") or 0),
        started_at=observe.parse_time(status.get("startedAt")),
        completed_at=observe.parse_time(status.get("completedAt")) if phase.terminal else None,
        result=status.get("result") if phase == Phase.COMPLETED else None,
        error=error,
        reason=reason,
        message=message,
        run=observe.current_run(cr),
        actor=actor,
    )
