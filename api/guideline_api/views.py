"""How a job row is shown: the JobView, a PENDING job's place in the queue, list cursors."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from guideline_core import db
from guideline_core.resource import Phase

from guideline_api.errors import ApiError, Reason
from guideline_api.schemas import JobView, QueueInfo


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
