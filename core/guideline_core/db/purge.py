"""Retention: finished jobs (their history and stored documents go with them) and the
audit entries as old."""

from __future__ import annotations

from psycopg2.extensions import connection as PgConnection  # noqa: N812

from guideline_core.db.audit import purge_audit
from guideline_core.documents import store as document_store
from guideline_core.resource import TERMINAL_PHASES


def purge_finished(conn: PgConnection, older_than_days: int) -> int:
    """Delete rows of jobs that finished more than `older_than_days` days ago (their
    status history and their stored documents go with them); returns how many."""
    with conn.cursor() as cur:
        cur.execute(
            """
            DELETE FROM jobs
             WHERE status = ANY(%s)
               AND completed_at < now() - make_interval(days => %s)
            RETURNING document_id
            """,
            ([p.value for p in TERMINAL_PHASES], older_than_days),
        )
        documents = [doc for (doc,) in cur.fetchall() if doc is not None]
        deleted = cur.rowcount
    document_store.delete_for_jobs(conn, documents)
    # The audit trail is kept no longer than the jobs it speaks of.
    purge_audit(conn, older_than_days)
    return deleted
