"""A job's history (`job_events`) and its NOTIFY channel for event streams."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg2
import psycopg2.extras
from psycopg2.extensions import connection as PgConnection  # noqa: N812

from guideline_core.db.pool import as_unavailable, protect
from guideline_core.db.rows import select_all, select_one

# NOTIFY channel of new `job_events` rows (payload `<event_id> <id>`, migration 0004).
JOB_EVENTS_CHANNEL = "guideline_job_events"


# --- status history ------------------------------------------------------------------------


def add_event(
    conn: PgConnection,
    event_id: uuid.UUID,
    status: str,
    attempts: int,
    reason: str,
    message: str | None = None,
) -> None:
    """Append an entry to the job's history (e.g. a request made through the API) without
    changing its row."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO job_events (event_id, status, attempts, reason, message) "
            "VALUES (%s, %s, %s, %s, %s)",
            (event_id, status, attempts, reason, message),
        )


def job_history(conn: PgConnection, event_id: uuid.UUID) -> list[dict[str, Any]]:
    """The job's status transitions, oldest first (not its progress events)."""
    return select_all(
        conn,
        "SELECT at, status, attempts, reason, message FROM job_events "
        "WHERE event_id = %s AND progress IS NULL ORDER BY id",
        (event_id,),
    )


def events_after(
    conn: PgConnection, event_id: uuid.UUID, after_id: int, limit: int = 100
) -> list[dict[str, Any]]:
    """The job's events with an id above `after_id`, oldest first (its event stream):
    status events, and progress events (`progress` not null)."""
    return select_all(
        conn,
        "SELECT id, at, status, attempts, run, reason, message, progress FROM job_events "
        "WHERE event_id = %s AND id > %s ORDER BY id LIMIT %s",
        (event_id, after_id, limit),
    )


def job_state(conn: PgConnection, event_id: uuid.UUID) -> dict[str, Any] | None:
    """The few columns an event stream needs of a job (status, tenant, created_at, run)."""
    return select_one(
        conn,
        "SELECT event_id, status, tenant, created_at, run, attempts FROM jobs WHERE event_id = %s",
        (event_id,),
    )


def connect_listener(url: str, connect_timeout: int = 3) -> PgConnection:
    """A dedicated autocommit connection LISTENing on JOB_EVENTS_CHANNEL: wait for its
    socket to be readable, then `poll()` and read `notifies`. TCP keepalives make a
    silently vanished server show up as an error within about a minute."""
    protect(url)
    try:
        conn = psycopg2.connect(
            url,
            connect_timeout=connect_timeout,
            application_name="guideline-ingest-listener",
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
        )
    except psycopg2.OperationalError as exc:
        raise as_unavailable(exc) from exc
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"LISTEN {JOB_EVENTS_CHANNEL}")
    return conn
