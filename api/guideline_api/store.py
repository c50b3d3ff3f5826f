"""The API's database access: the shared pool behind a bounded wait for a free connection,
plus the few queries only the API needs (every statement parameterized)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg2.extras
from guideline_core import db
from guideline_core.db import DatabaseUnavailableError
from guideline_core.resource import Phase
from psycopg2.extensions import connection as PgConnection  # noqa: N812


class Store:
    """A connection pool that makes callers wait (bounded) instead of failing when all
    connections are busy: the threadpool serving requests is larger than the pool."""

    def __init__(self, database: db.Database, slots: int, acquire_timeout: float):
        self.database = database
        self._slots = threading.BoundedSemaphore(slots)
        self._timeout = acquire_timeout

    @contextmanager
    def transaction(self) -> Iterator[PgConnection]:
        """A pooled connection in one transaction (commit on success, rollback on error)."""
        if not self._slots.acquire(timeout=self._timeout):
            raise DatabaseUnavailableError(
                f"no free database connection within {self._timeout:g} s (overloaded)"
            )
        try:
            with self.database.connection() as conn:
                yield conn
        finally:
            self._slots.release()

    def close(self) -> None:
        """Close the pool."""
        self.database.close()


def find_idempotent(
    conn: PgConnection, submitted_by: str, key: str, window_hours: int
) -> dict[str, Any] | None:
    """The job a (client, Idempotency-Key) pair made, with `expired` telling whether it is
    older than the window (then the key may be used again)."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(
            f"SELECT {db.JOB_COLUMNS}, "
            "created_at < now() - make_interval(hours => %s) AS expired "
            "FROM jobs WHERE submitted_by = %s AND idempotency_key = %s",
            (window_hours, submitted_by, key),
        )
        return cur.fetchone()


def release_idempotency_key(conn: PgConnection, event_id: uuid.UUID) -> None:
    """Detach an expired key from its old job so the unique index admits it again."""
    with conn.cursor() as cur:
        cur.execute("UPDATE jobs SET idempotency_key = NULL WHERE event_id = %s", (event_id,))


def set_cr_name(conn: PgConnection, event_id: uuid.UUID, cr_name: str) -> None:
    """Record the name the API server gave the job's GuidelineJob."""
    with conn.cursor() as cur:
        cur.execute("UPDATE jobs SET cr_name = %s WHERE event_id = %s", (cr_name, event_id))


def queue_position(conn: PgConnection, created_at: datetime, event_id: uuid.UUID) -> int:
    """1 + the number of PENDING jobs submitted before this one (submission order is the
    order the operator starts them in)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM jobs WHERE status = %s AND (created_at, event_id) < (%s, %s)",
            (str(Phase.PENDING), created_at, event_id),
        )
        return int(cur.fetchone()[0]) + 1


def latest_heartbeat(conn: PgConnection) -> dict[str, Any] | None:
    """The operator replica seen most recently, with its age in seconds."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(
            "SELECT identity, seen_at, extract(epoch FROM now() - seen_at)::float AS age "
            "FROM operator_heartbeat ORDER BY seen_at DESC LIMIT 1"
        )
        return cur.fetchone()


def add_event(
    conn: PgConnection,
    event_id: uuid.UUID,
    status: str,
    attempts: int,
    reason: str,
    message: str,
) -> None:
    """Append an audit entry (a request made through the API) to the job's history."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO job_events (event_id, status, attempts, reason, message) "
            "VALUES (%s, %s, %s, %s, %s)",
            (event_id, status, attempts, reason, message),
        )
