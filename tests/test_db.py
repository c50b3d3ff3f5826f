"""The shared database layer against a real PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from guideline_core import db
from guideline_core.resource import Phase, new_event_id


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
    job = db.NewJob(
        new_event_id(), "default", "Text.", submitted_by="al", tenant="alice", idempotency_key="k1"
    )
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


def _outbox_job(conn: Any, **kw: Any) -> uuid.UUID:
    event_id = new_event_id()
    db.insert_job(
        conn, db.NewJob(event_id, "default", "Text.", tenant="t", dispatch_pending=True, **kw)
    )
    return event_id


def test_concurrent_claims_take_disjoint_rows_and_a_lease_hides_them(
    database: db.Database,
) -> None:
    """Two dispatchers (two API replicas) claiming at once never get the same row."""
    with database.connection() as conn:
        ids = {_outbox_job(conn) for _ in range(6)}
    other = db.Database(database.url)
    try:
        with database.connection() as one, other.connection() as two:
            first = {r["event_id"] for r in db.claim_dispatch(one, 4, 30)}
            second = {r["event_id"] for r in db.claim_dispatch(two, 4, 30)}  # while one holds
        assert len(first) == 4 and len(second) == 2 and not first & second
        assert first | second == ids
        with database.connection() as conn:
            assert db.claim_dispatch(conn, 10, 30) == []  # all leased
            assert db.outbox_size(conn) == 6
    finally:
        other.close()


def test_a_dispatch_pass_keeps_a_row_that_got_a_newer_request(database: db.Database) -> None:
    with database.connection() as conn:
        eid = _outbox_job(conn)
        [claimed] = db.claim_dispatch(conn, 1, 0.001)
        row = db.lock_job(conn, eid)
        db.request_cancel(conn, row, "alice", "cancelled by alice")  # arrives mid-pass
        assert not db.finish_dispatch(
            conn, eid, claimed["dispatch_seq"], cr_name="gj-x", cr_uid="u"
        )
        again = db.get_job(conn, eid)
        assert again["dispatch_pending"] and again["cr_uid"] == "u"
        assert db.finish_dispatch(conn, eid, again["dispatch_seq"])
        assert db.outbox_size(conn) == 0


def test_a_deferred_row_waits_for_its_backoff(database: db.Database) -> None:
    with database.connection() as conn:
        eid = _outbox_job(conn)
        db.claim_dispatch(conn, 1, 0.001)
        db.defer_dispatch(conn, eid, "connection refused", 60)
        assert db.claim_dispatch(conn, 1, 30) == []
        assert db.get_job(conn, eid)["dispatch_error"] == "connection refused"


def test_mirror_ignores_older_runs_and_keeps_a_terminal_state_of_its_run(
    database: db.Database,
) -> None:
    with database.connection() as conn:
        eid = _outbox_job(conn)
        db.request_cancel(conn, db.lock_job(conn, eid), "alice", "by alice")
        done = db.JobState(eid, Phase.COMPLETED, 1, result={"summary": "s"})
        assert not db.mirror_state(conn, done)  # CANCELLED by the API holds
        db.request_retry(conn, db.lock_job(conn, eid), "alice", "again")
        assert not db.mirror_state(conn, db.JobState(eid, Phase.CANCELLED, 1))  # run 0: stale
        assert db.get_job(conn, eid)["status"] == "PENDING"
        assert db.mirror_state(conn, db.JobState(eid, Phase.PROCESSING, 2, run=1))
        assert db.mirror_state(conn, db.JobState(eid, Phase.FAILED, 2, run=1))
        # A retry a user made on the CR directly (run 3) moves the row's run on.
        assert db.mirror_state(conn, db.JobState(eid, Phase.PENDING, 2, run=3))
        assert db.get_job(conn, eid)["run"] == 3


def test_submissions_per_minute_are_counted_per_tenant(database: db.Database) -> None:
    with database.connection() as conn:
        assert db.count_submission(conn, "a") == 1
        assert db.count_submission(conn, "a", 3) == 4
        assert db.count_submission(conn, "b") == 1
