"""The operator replicas' liveness: their heartbeat (`operator_heartbeat`)."""

from __future__ import annotations

from typing import Any

from psycopg2.extensions import connection as PgConnection  # noqa: N812

from guideline_core.db.rows import select_one

# --- the operator's heartbeat --------------------------------------------------------------


def heartbeat(conn: PgConnection, identity: str) -> None:
    """Record that the operator replica `identity` is alive now."""
    with conn.cursor() as cur:
        cur.execute(
            """
            INSERT INTO operator_heartbeat (identity, seen_at) VALUES (%s, now())
            ON CONFLICT (identity) DO UPDATE SET seen_at = excluded.seen_at
            """,
            (identity,),
        )


def latest_heartbeat(conn: PgConnection) -> dict[str, Any] | None:
    """The operator replica seen most recently (`identity`, `seen_at`) with its `age` in
    seconds; None if no operator ever ran."""
    return select_one(
        conn,
        "SELECT identity, seen_at, extract(epoch FROM now() - seen_at)::float AS age "
        "FROM operator_heartbeat ORDER BY seen_at DESC LIMIT 1",
    )
