"""The paged listings, newest first: the jobs the caller may see (with their totals on the
first page) and the audit trail (admin keys only)."""

from __future__ import annotations

import uuid
from typing import Any

from guideline_core import db
from guideline_core.resource import Phase

from guideline_api.auth import Principal
from guideline_api.context import Context
from guideline_api.http.errors import ApiError, Reason
from guideline_api.service.access import tenant_scope, transaction


def list_page(
    ctx: Context,
    principal: Principal,
    *,
    status: Phase | None,
    limit: int,
    before: Any,
    tenant: str | None,
    needs_review: bool | None = None,
) -> tuple[list[db.JobRow], dict[str, Any] | None]:
    """Up to `limit` + 1 jobs newest first, of the tenants the caller may see (the extra
    row tells the router there is a next page); `needs_review` filters on the review gate.
    With them, on the first page (no cursor), the totals of every job the filters match."""
    scope = tenant_scope(principal, tenant)
    with transaction(ctx) as conn:
        rows = db.list_jobs(
            conn,
            status=status,
            limit=limit + 1,
            before=before,
            tenant=scope,
            needs_review=needs_review,
        )
        totals = None
        if before is None:
            totals = db.job_totals(conn, status=status, tenant=scope, needs_review=needs_review)
        return rows, totals


def audit_page(
    ctx: Context,
    principal: Principal,
    *,
    tenant: str | None,
    event_id: uuid.UUID | None,
    limit: int,
    before_id: int | None,
) -> list[dict[str, Any]]:
    """Up to `limit` + 1 audit entries newest first; for admin keys only (403 otherwise)."""
    if not principal.is_admin:
        raise ApiError(403, Reason.FORBIDDEN, "the audit trail is for admin keys")
    with transaction(ctx) as conn:
        return db.list_audit(
            conn, limit=limit + 1, tenant=tenant, event_id=event_id, before_id=before_id
        )
