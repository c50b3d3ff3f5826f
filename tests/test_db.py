"""The shared database layer against a real PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from guideline_core import db
from guideline_core.kube import new_event_id
from guideline_core.resource import Phase


def test_migrations_are_idempotent(postgres_url: str) -> None:
    assert db.migrate(postgres_url) == 0


def test_insert_mirror_and_history(database: db.Database) -> None:
    event_id = new_event_id()
    with database.connection() as conn:
        assert db.insert_job(
            conn,
            db.NewJob(
                event_id=event_id, namespace="default", guideline_text="Staff must wash hands."
            ),
        )
        assert not db.insert_job(
            conn, db.NewJob(event_id=event_id, namespace="default", guideline_text="again")
        )
    state = db.JobState(
        event_id=event_id,
        status=Phase.COMPLETED,
        attempts=1,
        result={"summary": "s", "checklist": []},
    )
    with database.connection() as conn:
        assert db.mirror_state(conn, state)
        assert not db.mirror_state(conn, state)
        row = db.get_job(conn, event_id)
        history = db.job_history(conn, event_id)
    assert row["status"] == "COMPLETED" and row["result"]["summary"] == "s"
    assert [h["status"] for h in history] == ["PENDING", "COMPLETED"]


@pytest.mark.parametrize(
    ("acquire_timeout", "error"),
    [(0.2, "no free database connection within 0.2 s"), (None, "pool exhausted")],
)
def test_a_caller_finding_every_connection_in_use(
    postgres_url: str, acquire_timeout: float | None, error: str
) -> None:
    """With `acquire_timeout` a caller waits that long for a free connection, else it
    fails at once; either way with DatabaseUnavailableError."""
    database = db.Database(postgres_url, maxconn=1, acquire_timeout=acquire_timeout)
    try:
        with (
            database.connection(),  # the only one, held
            pytest.raises(db.DatabaseUnavailableError, match=error),
            database.connection(),
        ):
            pass
        database.ping()  # the connection (and its slot) came back
    finally:
        database.close()


def test_idempotency_key_lookup_tells_an_expired_key(database: db.Database) -> None:
    thirty_hours_ago = datetime.now(UTC) - timedelta(hours=30)
    job = db.NewJob(new_event_id(), "default", "Text.", submitted_by="alice", idempotency_key="k1")
    with database.connection() as conn:
        db.insert_job(conn, replace(job, created_at=thirty_hours_ago))
        assert db.find_by_idempotency_key(conn, "bob", "k1") is None
        assert db.find_by_idempotency_key(conn, "alice", "k1")["expired"] is False
        assert db.find_by_idempotency_key(conn, "alice", "k1", 48)["expired"] is False
        assert db.find_by_idempotency_key(conn, "alice", "k1", 24)["expired"] is True
        db.release_idempotency_key(conn, job.event_id)
        assert db.find_by_idempotency_key(conn, "alice", "k1") is None


def test_finish_if_active_never_overwrites_a_terminal_outcome(database: db.Database) -> None:
    event_id = new_event_id()
    with database.connection() as conn:
        db.insert_job(conn, db.NewJob(event_id=event_id, namespace="default", guideline_text="x"))
        done = db.JobState(event_id=event_id, status=Phase.COMPLETED, attempts=1, result={"s": 1})
        assert db.mirror_state(conn, done)
        cancel = db.JobState(event_id=event_id, status=Phase.CANCELLED, attempts=1)
        assert not db.finish_if_active(conn, cancel)
        assert db.get_job(conn, event_id)["status"] == "COMPLETED"
    other = new_event_id()
    with database.connection() as conn:
        db.insert_job(conn, db.NewJob(event_id=other, namespace="default", guideline_text="y"))
        assert db.finish_if_active(
            conn, db.JobState(event_id=other, status=Phase.CANCELLED, attempts=0)
        )
        assert db.get_job(conn, other)["status"] == "CANCELLED"
