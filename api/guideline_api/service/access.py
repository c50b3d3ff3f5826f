"""How a request reaches jobs: its transaction (a 503 when PostgreSQL is down), the path's
event_id, and which jobs a principal may see (another tenant's job is a 404, exactly like
a missing one)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from guideline_core import db
from guideline_core.db import DatabaseUnavailableError
from psycopg2.extensions import connection as PgConnection  # noqa: N812

from guideline_api.auth import Principal
from guideline_api.context import Context
from guideline_api.http.errors import ApiError, Reason


@contextmanager
def transaction(ctx: Context) -> Iterator[PgConnection]:
    """A connection in a transaction; 503 `database_unavailable` when there is none."""
    try:
        with ctx.store.connection() as conn:
            yield conn
    except DatabaseUnavailableError as exc:
        raise ApiError(503, Reason.DATABASE_UNAVAILABLE, f"database unavailable: {exc}") from exc


def parse_event_id(value: str) -> uuid.UUID:
    """A path's event_id as a UUID; 422 otherwise."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ApiError(
            422, Reason.INVALID_EVENT_ID, f"{value[:80]!r} is not a valid event_id (a UUID)"
        ) from None


def not_found(event_id: uuid.UUID) -> ApiError:
    """The 404 of a job the caller may not see or that does not exist."""
    return ApiError(404, Reason.NOT_FOUND, f"no job with event_id {event_id}")


def visible(principal: Principal, row: Mapping[str, Any] | None) -> bool:
    """Whether `row` is a job the principal may see (its tenant's; any, for an admin)."""
    return row is not None and (principal.is_admin or row["tenant"] == principal.tenant)


def tenant_scope(principal: Principal, tenant: str | None) -> str | None:
    """The tenant a listing is limited to: a member's own; an admin's choice (None: all)."""
    if principal.is_admin:
        return tenant
    if tenant is not None and tenant != principal.tenant:
        raise ApiError(403, Reason.FORBIDDEN, "a member key sees only its own tenant's jobs")
    return principal.tenant


def locked_visible(conn: PgConnection, principal: Principal, eid: uuid.UUID) -> db.JobRow:
    """The job's row, locked for this transaction, if the principal may see it (404
    otherwise)."""
    row = db.lock_job(conn, eid)
    if not visible(principal, row):
        raise not_found(eid)
    assert row is not None
    return row
