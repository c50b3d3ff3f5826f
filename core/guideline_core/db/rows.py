"""The shape of a `jobs` row as the queries return it (`JobRow`, `JOB_COLUMNS`), the one
way a mapping becomes a jsonb parameter and the one way a query's rows are read as dicts
(`select_all`, `select_one`)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypedDict

import psycopg2.extras
from psycopg2.extensions import connection as PgConnection  # noqa: N812
from psycopg2.extensions import cursor as PgCursor  # noqa: N812

JOB_COLUMNS = (
    "event_id, namespace, cr_name, status, title, model, provider, attempts, result, error, "
    "submitted_by, idempotency_key, request_hash, created_at, updated_at, started_at, "
    "completed_at, tenant, created_by, max_retries, cr_uid, run, cancel_requested_at, "
    "dispatch_pending, dispatch_seq, dispatch_attempts, dispatch_error, dispatched_at, "
    "supersedes, review_thresholds, callback_url, changes, document, cost, estimated_cost, "
    "document_id, progress"
)


class JobRow(TypedDict):
    """A `jobs` row as `JOB_COLUMNS` selects it (not its text, trace context or outbox lease)."""

    event_id: uuid.UUID
    namespace: str
    cr_name: str | None
    status: str
    title: str | None
    model: str | None
    provider: str | None
    attempts: int
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    submitted_by: str
    idempotency_key: str | None
    request_hash: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    tenant: str
    created_by: str | None
    max_retries: int | None
    cr_uid: str | None
    run: int
    cancel_requested_at: datetime | None
    dispatch_pending: bool
    dispatch_seq: int
    dispatch_attempts: int
    dispatch_error: str | None
    dispatched_at: datetime | None
    supersedes: uuid.UUID | None
    review_thresholds: dict[str, float] | None
    callback_url: str | None
    changes: dict[str, Any] | None
    document: dict[str, Any] | None
    cost: dict[str, Any] | None
    estimated_cost: dict[str, Any] | None
    document_id: uuid.UUID | None
    progress: dict[str, int] | None


class IdempotentRow(JobRow):
    """A job found by its Idempotency-Key, with whether the key's window has passed."""

    expired: bool


class DispatchRow(JobRow):
    """A job claimed from the outbox, with what its GuidelineJob is made of: its trace
    context and its input (`document_ref`, the CR's `spec.documentRef`, or, for rows older
    than migration 0013, `guideline_text`)."""

    trace_context: dict[str, str] | None
    guideline_text: str | None
    document_ref: dict[str, Any] | None


def jsonb(value: Mapping[str, Any] | None) -> psycopg2.extras.Json | None:
    """A mapping as a jsonb query parameter (None stays SQL NULL)."""
    return psycopg2.extras.Json(dict(value)) if value is not None else None


def one_row(cur: PgCursor) -> tuple[Any, ...]:
    """The row a query that always returns one (an aggregate, a RETURNING of an upsert)
    returned."""
    row = cur.fetchone()
    if row is None:
        raise RuntimeError("the query returned no row")
    return row


def select_all(
    conn: PgConnection, query: str, params: Sequence[Any] | None = None
) -> list[dict[str, Any]]:
    """Every row `query` returns, each a dict by column name."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(query, params)
        return list(cur.fetchall())


def select_one(
    conn: PgConnection, query: str, params: Sequence[Any] | None = None
) -> dict[str, Any] | None:
    """The first row `query` returns as a dict by column name, or None if it returns none."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(query, params)
        return cur.fetchone()
