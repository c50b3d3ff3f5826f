"""What a tenant may add at once: the backlog's caps on PENDING jobs and the rate of
requests per minute (submissions, cancels and retries), both counted in PostgreSQL so that
every API replica applies the same figures."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

from guideline_core import db
from psycopg2.extensions import connection as PgConnection  # noqa: N812

from guideline_api.context import Context
from guideline_api.http.errors import ApiError, Reason
from guideline_api.service.access import transaction


def check_backlog(conn: PgConnection, ctx: Context, tenant: str, new: int) -> None:
    """429 when `new` more PENDING jobs of `tenant` would break the backlog's rule: the
    tenant within its own cap (`tenant_backlog_full`), every tenant together within
    `max_pending_jobs`, and the jobs tenants hold beyond their guaranteed share within the
    part of the backlog not reserved for tenants still within theirs (`backlog_full`).
    Jobs a tenant holds beyond its own cap (only kubectl can put them there) do not count
    against the others."""
    settings = ctx.settings
    retry_after = {"Retry-After": str(settings.backlog_retry_after_seconds)}
    pending = db.pending_by_tenant(conn)
    mine = pending.get(tenant, 0)
    cap = settings.limits_for(tenant).max_pending_jobs
    if cap is not None and mine + new > cap:
        raise ApiError(
            429,
            Reason.TENANT_BACKLOG_FULL,
            f"tenant {tenant} has {mine} jobs waiting (limit {cap}); retry later",
            headers=retry_after,
        )
    held = {t: _held(ctx, t, n) for t, n in pending.items()}
    total = sum(held.values())
    if total + new > settings.max_pending_jobs:
        raise ApiError(
            429,
            Reason.BACKLOG_FULL,
            f"{total} jobs are waiting (limit {settings.max_pending_jobs}); retry later",
            headers=retry_after,
        )
    guaranteed = settings.tenant_guaranteed_pending_jobs
    borrowed = sum(max(0, n - guaranteed) for n in held.values())
    more = max(0, mine + new - guaranteed) - max(0, mine - guaranteed)
    shared = math.floor(settings.max_pending_jobs * (1 - settings.backlog_reserved_share))
    if more and borrowed + more > shared:
        raise ApiError(
            429,
            Reason.BACKLOG_FULL,
            f"tenant {tenant} would hold {mine + new} jobs waiting, beyond its guaranteed "
            f"{guaranteed}, and jobs beyond their tenants' guaranteed share already fill "
            f"{borrowed} of the {shared} the backlog shares (the rest is kept for tenants "
            "within their share); retry later",
            headers=retry_after,
        )


def _held(ctx: Context, tenant: str, pending: int) -> int:
    """The PENDING jobs of `tenant` that count against the backlog: at most its own cap."""
    cap = ctx.settings.limits_for(tenant).max_pending_jobs
    return pending if cap is None else min(pending, cap)


def _spend_rate(conn: PgConnection, ctx: Context, tenant: str, units: int) -> None:
    """Count `units` requests in the tenant's minute (in PostgreSQL, shared by every API
    replica); 429 past its limit (the refused request's transaction rolls back: a request
    refused for the rate costs nothing)."""
    limit = ctx.settings.limits_for(tenant).submissions_per_minute
    if not limit or units == 0:
        return
    total = db.count_submission(conn, tenant, units)
    if total > limit:
        wait = max(1, math.ceil(60 - time.time() % 60))
        raise ApiError(
            429,
            Reason.RATE_LIMITED,
            f"rate limit of {limit} requests per minute for tenant {tenant} exceeded "
            "(submissions, refused ones included, cancels and retries); retry later",
            headers={"Retry-After": str(wait)},
        )


@contextmanager
def charged(ctx: Context, tenant: str, units: int) -> Iterator[None]:
    """Charge `units` against the tenant's rate before the work, in a transaction of its
    own: what the work then refuses (an invalid item, a finished job, its own backlog)
    stays counted. Refunded when the global backlog refuses it: other tenants' jobs must
    not spend this tenant's rate."""
    if ctx.settings.limits_for(tenant).submissions_per_minute and units:
        with transaction(ctx) as conn:
            _spend_rate(conn, ctx, tenant, units)
    try:
        yield
    except ApiError as err:
        if err.reason == Reason.BACKLOG_FULL:
            _refund(ctx, tenant, units)
        raise


def _refund(ctx: Context, tenant: str, units: int) -> None:
    if ctx.settings.limits_for(tenant).submissions_per_minute and units:
        with transaction(ctx) as conn:
            db.refund_submission(conn, tenant, units)
