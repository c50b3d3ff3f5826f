"""Reading one job: with the extras asked for (its history, its text, its webhook
deliveries, a PENDING job's place in the queue), or only its status columns."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from guideline_core import db
from guideline_core.db import webhooks as store
from guideline_core.resource import Phase

from guideline_api.auth import Principal
from guideline_api.context import Context
from guideline_api.http.errors import ApiError, Reason
from guideline_api.service.access import not_found, transaction, visible
from guideline_api.service.versions import with_changes
from guideline_api.service.views import queue_info

INCLUDES = frozenset({"history", "text"})


@dataclass(frozen=True)
class JobDetail:
    """One job as read, with the extras asked for."""

    row: Mapping[str, Any]
    queue: Any = None
    history: list[dict[str, Any]] | None = None
    text: str | None = None
    deliveries: list[dict[str, Any]] | None = None


def get(
    ctx: Context, principal: Principal, event_id: uuid.UUID, include: frozenset[str]
) -> JobDetail:
    """One job of the caller's tenant (another tenant's is a 404, like a missing one)."""
    unknown = include - INCLUDES
    if unknown:
        raise ApiError(
            422, Reason.VALIDATION, f"unknown include {sorted(unknown)}; allowed: history, text"
        )
    with transaction(ctx) as conn:
        found = db.get_job(conn, event_id)
        if found is None or not visible(principal, found):
            raise not_found(event_id)
        row = with_changes(conn, found)
        queue = None
        if row["status"] == Phase.PENDING:
            queue = queue_info(conn, row, ctx.settings.operator_heartbeat_stale_seconds)
        history = db.job_history(conn, event_id) if "history" in include else None
        deliveries = store.deliveries_of(conn, event_id) if row.get("callback_url") else None
        text = None
        if "text" in include:
            text = db.get_guideline_text(conn, event_id)
            db.record_text_read(
                conn,
                tenant=row["tenant"],
                actor=principal.key_id,
                event_id=event_id,
                window_seconds=ctx.settings.audit_read_window_seconds,
                detail={"principal_tenant": principal.tenant},
            )
    return JobDetail(row=row, queue=queue, history=history, text=text, deliveries=deliveries)


def get_visible_state(ctx: Context, principal: Principal, event_id: uuid.UUID) -> dict[str, Any]:
    """A job's status columns if the caller may see it (404 like a missing one otherwise)."""
    with transaction(ctx) as conn:
        row = db.job_state(conn, event_id)
    if not visible(principal, row):
        raise not_found(event_id)
    assert row is not None
    return row
