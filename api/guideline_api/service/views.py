"""How a job row is shown: the JobView, a PENDING job's place in the queue, list cursors and
filters, and the pages of the list, batch and audit answers."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from guideline_core import db
from guideline_core.resource import Phase

from guideline_api.http.errors import ApiError, Reason
from guideline_api.schemas.audit import AuditEntry, AuditPage
from guideline_api.schemas.batch import BatchItemResult, BatchResult, ItemError
from guideline_api.schemas.jobs import JobPage, JobView, QueueInfo

if TYPE_CHECKING:
    from guideline_api.service.accept import Outcome
    from guideline_api.service.reads import JobDetail


def status_reason(row: Mapping[str, Any]) -> str | None:
    """Why a job is where it is, when its status alone does not say (accepted but not yet
    handed to Kubernetes; a cancel or retry on its way to the cluster)."""
    if not row.get("dispatch_pending"):
        return None
    if row.get("cr_uid") is None and row["status"] == Phase.PENDING:
        reason = "accepted; its GuidelineJob is not created yet"
        if row.get("dispatch_error"):
            reason += f" (Kubernetes: {row['dispatch_error']}; retrying)"
        return reason
    if row["status"] == Phase.CANCELLED:
        return "cancelled; its Job and pod are being removed"
    if row["status"] == Phase.PENDING and row.get("run"):
        return "retry accepted; on its way to the cluster"
    return None


def with_cost(result: Any, cost: dict[str, Any] | None) -> Any:
    """A finished result with `usage.cost`: the cost stored when the job completed (null
    when its model has no price)."""
    if not isinstance(result, dict):
        return result
    usage = result["usage"] if isinstance(result.get("usage"), dict) else {}
    return {**result, "usage": {**usage, "cost": cost}}


def to_view(
    row: Mapping[str, Any],
    *,
    queue: QueueInfo | None = None,
    history: list[dict[str, Any]] | None = None,
    text: str | None = None,
    deliveries: list[dict[str, Any]] | None = None,
) -> JobView:
    """The API representation of a job row (with `deliveries`, its webhook section)."""
    status = row["status"]
    result = with_cost(row.get("result"), row.get("cost")) if status == Phase.COMPLETED else None
    document = row.get("document")
    if result is not None and document is not None and "document" not in result:
        result = {**result, "document": document}
    error = None
    if status in (Phase.FAILED, Phase.CANCELLED):
        default = "Cancelled" if status == Phase.CANCELLED else "Unknown"
        error = row.get("error") or {"reason": default, "message": None}
    meta = row.get("result") or {}
    return JobView.model_validate(
        {
            "event_id": str(row["event_id"]),
            "status": status,
            "status_reason": status_reason(row),
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "started_at": row["started_at"],
            "completed_at": row["completed_at"],
            "attempts": row["attempts"],
            "title": row["title"],
            "model": row["model"] or meta.get("model"),
            "provider": row["provider"] or meta.get("provider"),
            "submitted_by": row["submitted_by"],
            "tenant": row["tenant"],
            "cr_name": row.get("cr_name"),
            "supersedes": str(row["supersedes"]) if row.get("supersedes") else None,
            "needs_review": result.get("needs_review") if result else None,
            "result": result,
            "error": error,
            "queue": queue,
            "progress": row.get("progress") if status == Phase.PROCESSING else None,
            "history": history,
            "guideline_text": text,
            "document": document,
            "webhook": (
                {"url": row["callback_url"], "deliveries": deliveries}
                if deliveries is not None and row.get("callback_url")
                else None
            ),
        }
    )


def queue_info(conn: Any, row: Mapping[str, Any], stale_after: int) -> QueueInfo:
    """Where a PENDING job stands in its tenant's queue (the operator admits tenants in
    turn, so the jobs of other tenants do not push it back)."""
    tenant = row["tenant"]
    position = db.queue_position(conn, row["created_at"], row["event_id"], tenant=tenant)
    pending = db.count_tenant_status(conn, tenant, Phase.PENDING)
    running = db.count_status(conn, Phase.PROCESSING)
    tenants = db.tenants_waiting(conn)
    beat = db.latest_heartbeat(conn)
    ahead = position - 1
    message = (
        f"waiting for a free runner slot: {ahead} job(s) of tenant {tenant} ahead, "
        f"{running} running; admission takes the {tenants} waiting tenant(s) in turn"
    )
    if beat is None or beat["age"] > stale_after:
        message += "; the operator is not running, so no job starts until it is back"
    return QueueInfo(
        position=position,
        ahead=ahead,
        pending=pending,
        running=running,
        tenants_waiting=tenants,
        message=message,
    )


def encode_cursor(row: Mapping[str, Any]) -> str:
    """The opaque keyset cursor after `row` (newest-first listing)."""
    raw = json.dumps({"t": row["created_at"].isoformat(), "id": str(row["event_id"])})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, event_id) keyset of a cursor this API returned; 422 otherwise."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not (isinstance(data, dict) and isinstance(data.get("t"), str)):
            raise ValueError("not a cursor")
        if not isinstance(data.get("id"), str):
            raise ValueError("not a cursor")
        created = datetime.fromisoformat(data["t"])
        if created.tzinfo is None:
            raise ValueError("naive timestamp")
        return created, uuid.UUID(data["id"])
    # RecursionError: a cursor of deeply nested JSON arrays.
    except (ValueError, binascii.Error, UnicodeEncodeError, RecursionError):
        raise ApiError(
            422, Reason.INVALID_CURSOR, "cursor is not one this API returned as next_cursor"
        ) from None


# Audit entries are numbered by a PostgreSQL bigserial.
_AUDIT_ID_MAX = 2**63 - 1


def decode_audit_cursor(cursor: str) -> int:
    """The audit entry id of a cursor `GET /audit` returned; 422 otherwise (also for a
    number past a bigint, which int() or PostgreSQL would fail on: a 500)."""
    digits = len(str(_AUDIT_ID_MAX))
    if cursor.isascii() and cursor.isdigit() and len(cursor) <= digits:  # "²".isdigit()
        value = int(cursor)
        if 0 < value <= _AUDIT_ID_MAX:
            return value
    raise ApiError(422, Reason.INVALID_CURSOR, "cursor is not one this API returned")


def parse_include(include: str | None) -> frozenset[str]:
    """The extras `?include=` names (comma-separated; the service refuses unknown ones)."""
    return frozenset(part.strip() for part in (include or "").split(",") if part.strip())


def detail_view(detail: JobDetail) -> JobView:
    """One job as `GET /jobs/{event_id}` shows it, with the extras it was asked for."""
    return to_view(
        detail.row,
        queue=detail.queue,
        history=detail.history,
        text=detail.text,
        deliveries=detail.deliveries,
    )


def parse_status(status: str | None) -> Phase | None:
    """The `?status=` filter of a list, any case."""
    if status is None:
        return None
    try:
        return Phase(status.upper())
    except ValueError:
        raise ApiError(
            422,
            Reason.VALIDATION,
            f"status must be one of {', '.join(p.value for p in Phase)}",
            details=[{"field": "status", "message": "unknown status", "type": "enum"}],
        ) from None


def job_page(
    rows: Sequence[Mapping[str, Any]], limit: int, totals: dict[str, Any] | None
) -> JobPage:
    """A page of the list from up to `limit` + 1 rows (one more: there is a next page)."""
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1]) if len(rows) > limit else None
    items = [to_view(r).model_copy(update={"result": None}) for r in page]
    return JobPage(items=items, next_cursor=next_cursor, totals=totals)


def _item_result(index: int, answer: Outcome | ApiError) -> BatchItemResult:
    if isinstance(answer, ApiError):
        return BatchItemResult(
            index=index,
            error=ItemError(reason=answer.reason, message=answer.message, details=answer.details),
        )
    return BatchItemResult(
        index=index,
        event_id=str(answer.row["event_id"]),
        status=answer.row["status"],
        replayed=None if answer.created else True,
    )


def batch_result(answers: list[Outcome | ApiError]) -> BatchResult:
    """The answer of `POST /jobs/batch`: each item's job or error, in order, and the counts."""
    results = [_item_result(i, a) for i, a in enumerate(answers)]
    accepted = sum(1 for a in answers if not isinstance(a, ApiError) and a.created)
    rejected = sum(1 for a in answers if isinstance(a, ApiError))
    return BatchResult(items=results, accepted=accepted, rejected=rejected)


def audit_view(rows: list[dict[str, Any]], limit: int) -> AuditPage:
    """A page of the audit trail from up to `limit` + 1 rows (one more: there is a next
    page)."""
    page = rows[:limit]
    items = [
        AuditEntry.model_validate({**r, "event_id": str(r["event_id"]) if r["event_id"] else None})
        for r in page
    ]
    next_cursor = str(page[-1]["id"]) if len(rows) > limit else None
    return AuditPage(items=items, next_cursor=next_cursor)
