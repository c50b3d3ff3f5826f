"""The `jobs` table: submission (a row, its idempotency key, its GuidelineJob's name) and
reads (one job, listings, counts, queue positions)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from psycopg2.extensions import connection as PgConnection  # noqa: N812

from guideline_core.db.audit import add_audit
from guideline_core.db.events import add_event
from guideline_core.db.rows import (
    JOB_COLUMNS,
    IdempotentRow,
    JobRow,
    jsonb,
    one_row,
    select_all,
    select_one,
)
from guideline_core.resource import Phase

# --- jobs: submission ----------------------------------------------------------------------


@dataclass(frozen=True)
class NewJob:
    """What a submission records before any work starts."""

    event_id: uuid.UUID
    namespace: str
    guideline_text: str
    cr_name: str | None = None
    title: str | None = None
    model: str | None = None
    provider: str | None = None
    submitted_by: str = "anonymous"
    idempotency_key: str | None = None
    request_hash: str | None = None
    status: Phase = Phase.PENDING
    created_at: datetime | None = None
    tenant: str = "default"
    created_by: str | None = None  # the Kubernetes user, for a GuidelineJob made by kubectl
    max_retries: int | None = None
    cr_uid: str | None = None
    dispatch_pending: bool = False  # True: the dispatcher still has to create the CR
    supersedes: uuid.UUID | None = None
    review_thresholds: Mapping[str, float] | None = None
    callback_url: str | None = None  # webhook of its terminal states (checked by the API)
    trace_context: Mapping[str, str] | None = None  # W3C carrier of the submission's span
    document: Mapping[str, Any] | None = None  # what the API knows of the text (migration 0012)
    document_id: uuid.UUID | None = None  # the stored document (migration 0013)


def insert_job(conn: PgConnection, job: NewJob) -> bool:
    """Insert a job row; False if a row with that event_id already exists.

    A clash on (submitted_by, idempotency_key) raises psycopg2.errors.UniqueViolation so the
    caller can answer with the job that key already made."""
    with conn.cursor() as cur:
        cur.execute(
            """
            INSERT INTO jobs (event_id, namespace, cr_name, status, title, guideline_text,
                              model, provider, submitted_by, idempotency_key, request_hash,
                              tenant, created_by, max_retries, cr_uid, dispatch_pending,
                              created_at, updated_at, supersedes, review_thresholds,
                              callback_url, trace_context, document, document_id)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                    coalesce(%s, now()), coalesce(%s, now()), %s, %s, %s, %s, %s, %s)
            ON CONFLICT (event_id) DO NOTHING
            """,
            (
                job.event_id,
                job.namespace,
                job.cr_name,
                str(job.status),
                job.title,
                job.guideline_text,
                job.model,
                job.provider,
                job.submitted_by,
                job.idempotency_key,
                job.request_hash,
                job.tenant,
                job.created_by,
                job.max_retries,
                job.cr_uid,
                job.dispatch_pending,
                job.created_at,
                job.created_at,
                job.supersedes,
                jsonb(job.review_thresholds),
                job.callback_url,
                jsonb(job.trace_context or None),
                jsonb(job.document),
                job.document_id,
            ),
        )
        inserted = cur.rowcount == 1
    if inserted:
        add_event(conn, job.event_id, str(job.status), 0, "Accepted")
        add_audit(
            conn,
            tenant=job.tenant,
            actor=job.created_by or job.submitted_by,
            action="submit",
            event_id=job.event_id,
        )
    return inserted


def ensure_job(conn: PgConnection, job: NewJob, lock_timeout_s: float = 10.0) -> bool:
    """Insert the row of a job first seen as a GuidelineJob (e.g. made by `kubectl apply`)
    unless it exists, and record `job.cr_name` if the row has no name yet; True if inserted.

    A job the API accepted has its row committed before its dispatcher creates the CR (the
    outbox), so for it this INSERT does nothing (ON CONFLICT DO NOTHING). Should another
    transaction hold a lock on a conflicting row, the INSERT waits for it: `lock_timeout_s`
    bounds that wait (for this transaction only)."""
    with conn.cursor() as cur:
        cur.execute("SET LOCAL lock_timeout = %s", (f"{int(lock_timeout_s * 1000)}ms",))
    inserted = insert_job(conn, job)
    if job.cr_name is not None:
        # The dispatcher records the name once its create returned: the row may not know it yet.
        set_cr_name(conn, job.event_id, job.cr_name, only_if_unset=True)
    return inserted


def set_cr_name(
    conn: PgConnection, event_id: uuid.UUID, cr_name: str, *, only_if_unset: bool = False
) -> None:
    """Record the name the API server gave the job's GuidelineJob (with `only_if_unset`,
    only on a row that has none)."""
    sql = "UPDATE jobs SET cr_name = %s WHERE event_id = %s"
    if only_if_unset:
        sql += " AND cr_name IS NULL"
    with conn.cursor() as cur:
        cur.execute(sql, (cr_name, event_id))


def find_by_idempotency_key(
    conn: PgConnection,
    tenant: str,
    idempotency_key: str,
    window_hours: int | None = None,
) -> IdempotentRow | None:
    """The job a (tenant, Idempotency-Key) pair already created, if any, with `expired`
    telling whether it is older than `window_hours` (then the key may be used again;
    never expired without a window)."""
    return cast(
        IdempotentRow | None,
        select_one(
            conn,
            f"SELECT {JOB_COLUMNS}, "
            "coalesce(created_at < now() - make_interval(hours => %s), false) AS expired "
            "FROM jobs WHERE tenant = %s AND idempotency_key = %s",
            (window_hours, tenant, idempotency_key),
        ),
    )


def live_idempotency_keys(
    conn: PgConnection, tenant: str, keys: list[str], window_hours: int
) -> set[str]:
    """Those of `keys` that already name a job of `tenant` within `window_hours` (a
    submission with one of them replays that job)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT idempotency_key FROM jobs WHERE tenant = %s AND idempotency_key = ANY(%s) "
            "AND created_at >= now() - make_interval(hours => %s)",
            (tenant, keys, window_hours),
        )
        return {key for (key,) in cur.fetchall()}


def release_idempotency_key(conn: PgConnection, event_id: uuid.UUID) -> None:
    """Detach an expired key from its old job so the unique index admits it again."""
    with conn.cursor() as cur:
        cur.execute("UPDATE jobs SET idempotency_key = NULL WHERE event_id = %s", (event_id,))


# --- jobs: reads ---------------------------------------------------------------------------


def get_job(conn: PgConnection, event_id: uuid.UUID) -> JobRow | None:
    """One job by its event_id (primary-key lookup), without the guideline text."""
    return cast(
        JobRow | None,
        select_one(conn, f"SELECT {JOB_COLUMNS} FROM jobs WHERE event_id = %s", (event_id,)),
    )


def get_guideline_text(conn: PgConnection, event_id: uuid.UUID) -> str | None:
    """The guideline text a job was submitted with."""
    with conn.cursor() as cur:
        cur.execute("SELECT guideline_text FROM jobs WHERE event_id = %s", (event_id,))
        row = cur.fetchone()
        return row[0] if row else None


def put_extracted_text(
    conn: PgConnection, event_id: uuid.UUID, text: str, document: Mapping[str, Any]
) -> bool:
    """Store the runner's extraction of a job's document: the job's text and the
    document's metadata (what the API wrote at intake, completed); False if no such job."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE jobs SET guideline_text = %s, "
            "document = coalesce(document, '{}'::jsonb) || %s WHERE event_id = %s",
            (text, jsonb(document), event_id),
        )
        return cur.rowcount == 1


def _job_filter(
    status: Phase | None, tenant: str | None, needs_review: bool | None
) -> tuple[list[str], list[Any]]:
    """The WHERE clauses and parameters of a job listing's filters."""
    clauses: list[str] = []
    params: list[Any] = []
    if tenant is not None:
        clauses.append("tenant = %s")
        params.append(tenant)
    if status is not None:
        clauses.append("status = %s")
        params.append(str(status))
    if needs_review is True:
        clauses.append("(result ->> 'needs_review') = 'true'")
    elif needs_review is False:
        clauses.append(
            "status = 'COMPLETED' AND (result ->> 'needs_review') IS DISTINCT FROM 'true'"
        )
    return clauses, params


def job_totals(
    conn: PgConnection,
    *,
    status: Phase | None,
    tenant: str | None = None,
    needs_review: bool | None = None,
) -> dict[str, Any]:
    """The jobs a listing's filters match (every page) and their stored cost, summed per
    currency: `{"jobs": n, "cost": [{"amount", "currency"}]}`."""
    clauses, params = _job_filter(status, tenant, needs_review)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM jobs {where}", params)
        jobs = int(one_row(cur)[0])
        cur.execute(
            "SELECT cost ->> 'currency', sum((cost ->> 'amount')::numeric) FROM jobs "
            f"{where} {'AND' if clauses else 'WHERE'} cost IS NOT NULL "
            "GROUP BY 1 ORDER BY 1",
            params,
        )
        costs = [{"amount": float(amount), "currency": currency} for currency, amount in cur]
    return {"jobs": jobs, "cost": costs}


def list_jobs(
    conn: PgConnection,
    *,
    status: Phase | None,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None = None,
    tenant: str | None = None,
    needs_review: bool | None = None,
) -> list[JobRow]:
    """Jobs newest first, optionally of one status and one tenant, after a keyset cursor
    (created_at, event_id) of the last row of the previous page. `needs_review` True:
    only results flagged for review (a partial index serves it); False: only COMPLETED
    jobs whose result is not flagged."""
    clauses, params = _job_filter(status, tenant, needs_review)
    if before is not None:
        clauses.append("(created_at, event_id) < (%s, %s)")
        params.extend(before)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return cast(
        list[JobRow],
        select_all(
            conn,
            f"SELECT {JOB_COLUMNS} FROM jobs {where} "
            "ORDER BY created_at DESC, event_id DESC LIMIT %s",
            (*params, limit),
        ),
    )


def count_by_status(conn: PgConnection) -> dict[str, int]:
    """Number of jobs in each status (every status present, zero when none)."""
    counts = {str(p): 0 for p in Phase}
    with conn.cursor() as cur:
        cur.execute("SELECT status, count(*) FROM jobs GROUP BY status")
        counts.update({status: n for status, n in cur.fetchall()})
    return counts


def count_status(conn: PgConnection, status: Phase) -> int:
    """Number of jobs in one status (served by the status index)."""
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM jobs WHERE status = %s", (str(status),))
        return int(one_row(cur)[0])


def queue_position(
    conn: PgConnection, created_at: datetime, event_id: uuid.UUID, tenant: str | None = None
) -> int:
    """1 + the number of PENDING jobs submitted before this one (of the same tenant, when
    given: the operator admits tenants in turn, in submission order within each)."""
    sql = "SELECT count(*) FROM jobs WHERE status = %s AND (created_at, event_id) < (%s, %s)"
    params: list[Any] = [str(Phase.PENDING), created_at, event_id]
    if tenant is not None:
        sql += " AND tenant = %s"
        params.append(tenant)
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return int(one_row(cur)[0]) + 1


# --- the operator: tenants of queued jobs --------------------------------------------------


def tenants_of(conn: PgConnection, event_ids: list[uuid.UUID]) -> dict[str, str]:
    """event_id (as text) -> tenant of the rows among `event_ids` that exist (one query)."""
    if not event_ids:
        return {}
    with conn.cursor() as cur:
        cur.execute(
            "SELECT event_id, tenant FROM jobs WHERE event_id = ANY(%s::uuid[])", (event_ids,)
        )
        return {str(event_id): tenant for event_id, tenant in cur.fetchall()}
