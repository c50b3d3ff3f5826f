"""The document store (core/guideline_core/documents/store.py, migration 0013) on real
PostgreSQL: chunked writes and reads, the size cap, and deletion with the job's row."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from guideline_core import db
from guideline_core.documents import store
from guideline_core.resource import Phase, new_event_id


def _chunks(database: db.Database, doc_id: uuid.UUID) -> list[int]:
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT octet_length(data) FROM document_chunks WHERE document_id = %s ORDER BY seq",
            (doc_id,),
        )
        return [n for (n,) in cur.fetchall()]


def test_a_document_is_written_and_read_in_chunks(database: db.Database) -> None:
    data = os.urandom(3 * store.CHUNK_BYTES + 12345)
    with database.connection() as conn:
        doc = store.write(conn, io.BytesIO(data), tenant="alice", media_type="application/pdf")
    assert (doc.bytes, doc.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert _chunks(database, doc.id) == [store.CHUNK_BYTES] * 3 + [12345]
    pieces = list(store.read_chunks(database.connection, doc.id))
    assert [len(p) for p in pieces] == [store.CHUNK_BYTES] * 3 + [12345]
    assert b"".join(pieces) == data
    with database.connection() as conn:
        assert store.get(conn, doc.id) == doc


def test_a_write_past_its_cap_is_refused(database: db.Database) -> None:
    with pytest.raises(store.DocumentTooLargeError), database.connection() as conn:
        source = io.BytesIO(b"x" * (store.CHUNK_BYTES + 1))
        store.write(conn, source, tenant="a", media_type="text/plain", max_bytes=store.CHUNK_BYTES)
    with database.connection() as conn, conn.cursor() as cur:  # rolled back: nothing left
        cur.execute("SELECT count(*) FROM documents")
        assert cur.fetchone()[0] == 0


def _job_with_document(database: db.Database, data: bytes, finished_days_ago: int) -> uuid.UUID:
    event_id = new_event_id()
    with database.connection() as conn:
        doc = store.write(conn, io.BytesIO(data), tenant="alice", media_type="text/plain")
        db.insert_job(
            conn,
            db.NewJob(
                event_id=event_id,
                namespace="default",
                guideline_text="",
                tenant="alice",
                document_id=doc.id,
            ),
        )
        db.mirror_state(
            conn,
            db.JobState(
                event_id=event_id,
                status=Phase.COMPLETED,
                attempts=1,
                completed_at=datetime.now(UTC) - timedelta(days=finished_days_ago),
            ),
        )
    return event_id


def test_documents_go_with_their_jobs_rows(database: db.Database) -> None:
    _job_with_document(database, b"old guideline", finished_days_ago=40)
    kept = _job_with_document(database, b"recent guideline", finished_days_ago=1)
    with database.connection() as conn:
        assert db.purge_finished(conn, 30) == 1
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM documents")
        assert cur.fetchone()[0] == 1
        cur.execute("SELECT count(*) FROM document_chunks")
        assert cur.fetchone()[0] == 1
        row = db.get_job(conn, kept)
        assert row is not None and row["document_id"] is not None


def test_the_tenants_held_bytes_count_documents(database: db.Database) -> None:
    _job_with_document(database, b"x" * 5000, finished_days_ago=0)
    with database.connection() as conn:
        db.insert_job(  # made by kubectl: its text counts
            conn,
            db.NewJob(
                event_id=new_event_id(),
                namespace="default",
                guideline_text="é" * 10,
                tenant="alice",
            ),
        )
        assert db.tenant_text_bytes(conn, "alice", 3600) == 5000 + 20
