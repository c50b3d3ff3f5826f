"""`GET /audit`: who did what (admin keys only)."""

from __future__ import annotations

from fastapi import APIRouter, Query

from guideline_api.deps import CtxDep, CurrentPrincipal
from guideline_api.http.errors import Reason
from guideline_api.openapi import ALWAYS, INVALID_EVENT_ID, problem
from guideline_api.schemas.audit import AuditPage
from guideline_api.service import listing, views
from guideline_api.service.access import parse_event_id

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get(
    "",
    response_model=AuditPage,
    summary="The audit trail",
    responses={
        **ALWAYS,
        **problem(
            403, "Not an admin key.", (Reason.FORBIDDEN, "the audit trail is for admin keys")
        ),
        **problem(
            422,
            "A bad filter, limit or cursor.",
            (Reason.VALIDATION, "limit: Input should be less than or equal to 500"),
            (Reason.INVALID_CURSOR, "cursor is not one this API returned"),
            INVALID_EVENT_ID,
        ),
    },
)
def list_audit(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    tenant: str | None = Query(None, description="Only entries of this tenant."),
    event_id: str | None = Query(None, description="Only entries about this job."),
    limit: int = Query(100, ge=1, le=500, description="Page size (1-500)."),
    cursor: str | None = Query(None, description="`next_cursor` of the previous page."),
) -> AuditPage:
    """Every state change (with who caused it: an API key, the operator, a Kubernetes
    user), every cancel and retry request and every read of a guideline text, newest first.
    Reads of one job's text by one key within `audit_read_window_seconds` are one entry
    (`detail.reads`). Kept `audit_retention_days`, at most as long as the jobs."""
    before = views.decode_audit_cursor(cursor) if cursor is not None else None
    job = parse_event_id(event_id) if event_id is not None else None
    rows = listing.audit_page(
        ctx, principal, tenant=tenant, event_id=job, limit=limit, before_id=before
    )
    return views.audit_view(rows, limit)
