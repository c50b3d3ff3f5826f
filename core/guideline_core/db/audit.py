"""The audit log (`audit_log`): who did what, and retention."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from psycopg2.extensions import connection as PgConnection  # noqa: N812

from guideline_core.db.rows import jsonb, select_all

# --- audit ---------------------------------------------------------------------------------


AUDIT_COLUMNS = "id, at, tenant, actor, action, event_id, detail"


def add_audit(
    conn: PgConnection,
    *,
    tenant: str,
    actor: str,
    action: str,
    event_id: uuid.UUID | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Record who did what (a state change, a request, a read of a guideline text)."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO audit_log (tenant, actor, action, event_id, detail) "
            "VALUES (%s, %s, %s, %s, %s)",
            (tenant, actor, action, event_id, jsonb(detail)),
        )


def record_text_read(
    conn: PgConnection,
    *,
    tenant: str,
    actor: str,
    event_id: uuid.UUID,
    window_seconds: float,
    detail: Mapping[str, Any],
) -> None:
    """Audit a read of a job's guideline text: the first read by `actor` of this job
    within `window_seconds` adds an entry (`detail.reads` 1); later ones in that window
    count on that entry (`reads`, `last_at`) instead of adding one each."""
    with conn.cursor() as cur:
        cur.execute(
            """
            UPDATE audit_log
               SET detail = coalesce(detail, '{}'::jsonb) || jsonb_build_object(
                       'reads', coalesce((detail ->> 'reads')::bigint, 1) + 1,
                       'last_at', now())
             WHERE id = (SELECT id FROM audit_log
                          WHERE event_id = %s AND action = 'read_text' AND actor = %s
                            AND at > now() - make_interval(secs => %s)
                          ORDER BY id DESC LIMIT 1
                          FOR UPDATE)
            """,
            (event_id, actor, window_seconds),
        )
        if cur.rowcount:
            return
    add_audit(
        conn,
        tenant=tenant,
        actor=actor,
        action="read_text",
        event_id=event_id,
        detail={**detail, "reads": 1},
    )


def list_audit(
    conn: PgConnection,
    *,
    limit: int,
    tenant: str | None = None,
    event_id: uuid.UUID | None = None,
    before_id: int | None = None,
) -> list[dict[str, Any]]:
    """Audit entries newest first, optionally of one tenant or job, below a keyset id."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (("tenant", tenant), ("event_id", event_id)):
        if value is not None:
            clauses.append(f"{column} = %s")
            params.append(value)
    if before_id is not None:
        clauses.append("id < %s")
        params.append(before_id)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return select_all(
        conn,
        f"SELECT {AUDIT_COLUMNS} FROM audit_log {where} ORDER BY id DESC LIMIT %s",
        (*params, limit),
    )


def purge_audit(conn: PgConnection, older_than_days: int) -> int:
    """Delete audit entries older than `older_than_days` days; returns how many."""
    with conn.cursor() as cur:
        cur.execute(
            "DELETE FROM audit_log WHERE at < now() - make_interval(days => %s)",
            (older_than_days,),
        )
        return cur.rowcount
