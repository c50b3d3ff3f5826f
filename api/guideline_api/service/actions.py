"""What a request does to an existing job: cancel it (CANCELLED at once) or retry it (a new
run, PENDING at once). Each is decided in PostgreSQL under the job's row lock; the dispatcher
then carries it to the cluster."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from guideline_core import db, logs
from guideline_core.resource import Phase

from guideline_api.auth import Principal
from guideline_api.context import Context
from guideline_api.http.errors import ApiError, Reason
from guideline_api.service.access import locked_visible, transaction
from guideline_api.service.limits import charged, check_backlog

log = logging.getLogger(__name__)


def cancel(ctx: Context, principal: Principal, eid: uuid.UUID) -> Mapping[str, Any]:
    """Cancel an unfinished job: CANCELLED at once; the dispatcher then has the operator
    remove its Job and pod. A finished job is a 409. Charged against the caller's rate."""
    with charged(ctx, principal.tenant, 1), transaction(ctx) as conn:
        row = locked_visible(conn, principal, eid)
        if Phase(row["status"]).terminal:
            raise ApiError(
                409, Reason.JOB_FINISHED, f"job {eid} is already {row['status']}; nothing to cancel"
            )
        db.request_cancel(conn, row, principal.key_id, f"cancelled by {principal.key_id}")
        fresh = db.get_job(conn, eid)
    ctx.dispatcher.wake()
    ctx.webhooks.wake()  # its delivery, if it has a callback URL, was queued by the trigger
    ctx.metrics.job_requests.labels("cancel").inc()
    with logs.bind(event_id=str(eid)):
        log.info("cancel requested", extra={"submitted_by": principal.key_id})
    return fresh or row


def retry(ctx: Context, principal: Principal, eid: uuid.UUID) -> Mapping[str, Any]:
    """Start a new run of a FAILED or CANCELLED job: PENDING at once (same event_id,
    attempts keep counting, its max_retries kept); any other status is a 409, and so is a
    job that has had `max_runs_per_job` runs. Charged against the caller's rate."""
    with charged(ctx, principal.tenant, 1), transaction(ctx) as conn:
        row = locked_visible(conn, principal, eid)
        if row["status"] not in (Phase.FAILED, Phase.CANCELLED):
            raise ApiError(
                409,
                Reason.JOB_NOT_RETRYABLE,
                f"job {eid} is {row['status']}; only FAILED or CANCELLED jobs can be retried",
            )
        runs = int(row["run"]) + 1
        if runs >= ctx.settings.max_runs_per_job:
            raise ApiError(
                409,
                Reason.TOO_MANY_RUNS,
                f"job {eid} has had {runs} runs (limit {ctx.settings.max_runs_per_job}); "
                "submit it again as a new job",
            )
        check_backlog(conn, ctx, row["tenant"], 1)
        run = db.request_retry(
            conn, row, principal.key_id, f"retry requested by {principal.key_id}"
        )
        fresh = db.get_job(conn, eid)
    ctx.dispatcher.wake()
    ctx.metrics.job_requests.labels("retry").inc()
    with logs.bind(event_id=str(eid)):
        log.info("retry requested", extra={"submitted_by": principal.key_id, "run": run})
    return fresh or row
