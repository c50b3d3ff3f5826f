"""The operator's database side against a real PostgreSQL: the row of a CR nobody
recorded, mirroring, the heartbeat, deletion and the retention purge."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from guideline_core import db
from guideline_core import resource as gj
from guideline_core.resource import Phase, new_event_id
from guideline_operator import rows
from support.cluster import wait_for


def lock_waiters(database: db.Database) -> int:
    """Sessions of this database waiting on a lock."""
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(cur.fetchone()[0])


def applied_cr(uid: str, **status: Any) -> dict[str, Any]:
    """A GuidelineJob as `kubectl apply` makes it: no event-id label."""
    return {
        "metadata": {
            "name": "hand-hygiene",
            "namespace": "wards",
            "uid": uid,
            "creationTimestamp": "2025-03-01T12:00:00Z",
        },
        "spec": {"guidelineText": "Staff must wash hands.", "title": "Hand hygiene", "model": "m"},
        "status": status,
    }


def ensure_row(conn: Any, cr: dict[str, Any], event_id: str | None = None) -> bool:
    """Record a kubectl-applied CR's row as the operator does (tenant of its namespace)."""
    return db.ensure_job(conn, rows.new_row(cr, event_id or cr["metadata"]["uid"], "wards-team"))


def test_ensure_row_for_a_kubectl_applied_cr(database: db.Database) -> None:
    uid = str(uuid.uuid4())
    with database.connection() as conn:
        assert ensure_row(conn, applied_cr(uid))
        assert not ensure_row(conn, applied_cr(uid))  # idempotent
        row = db.get_job(conn, uuid.UUID(uid))
        text = db.get_guideline_text(conn, uuid.UUID(uid))
    assert row["status"] == "PENDING" and row["cr_name"] == "hand-hygiene"
    assert row["namespace"] == "wards" and row["title"] == "Hand hygiene"
    assert row["submitted_by"] == "kubectl" and row["tenant"] == "wards-team"
    assert row["cr_uid"] == uid
    assert row["created_at"] == datetime(2025, 3, 1, 12, tzinfo=UTC)
    assert text == "Staff must wash hands."


def test_ensure_row_waits_for_the_apis_uncommitted_insert(database: db.Database) -> None:
    event_id = new_event_id()
    body = applied_cr("unused")
    body["metadata"]["labels"] = {gj.LABEL_EVENT_ID: str(event_id)}
    api = database._get_pool().getconn()
    try:
        with api.cursor() as cur:  # the API's transaction: row inserted, CR being created
            db.insert_job(
                api,
                db.NewJob(
                    event_id=event_id,
                    namespace="wards",
                    guideline_text="from the API",
                    submitted_by="alice",
                ),
            )
            cur.execute("SELECT 1")
        outcome: dict[str, Any] = {}

        def operator_side() -> None:
            with database.connection() as conn:
                outcome["inserted"] = ensure_row(conn, body, str(event_id))

        worker = threading.Thread(target=operator_side)
        worker.start()
        wait_for(lambda: lock_waiters(database) > 0, timeout=30, message="operator INSERT waiting")
        api.commit()
        worker.join(30)
    finally:
        database._get_pool().putconn(api)
    assert outcome == {"inserted": False}
    with database.connection() as conn:
        row = db.get_job(conn, event_id)
        assert db.get_guideline_text(conn, event_id) == "from the API"
    assert row["submitted_by"] == "alice"
    assert row["cr_name"] == "hand-hygiene"  # the API could not know the generated name


def test_job_state_mirrors_status(database: db.Database) -> None:
    uid = str(uuid.uuid4())
    failed = applied_cr(
        uid,
        phase="FAILED",
        eventId=uid,
        attempts=4,
        startedAt="2025-03-01T12:00:05Z",
        completedAt="2025-03-01T12:01:00Z",
        error={"reason": "BackoffLimitExceeded", "message": "gave up after 4 attempt(s)"},
        result={"summary": "ignored unless COMPLETED"},
    )
    state = rows.job_state(failed)
    assert state.status == Phase.FAILED and state.attempts == 4
    assert state.result is None and state.reason == "BackoffLimitExceeded"
    with database.connection() as conn:
        ensure_row(conn, failed)
        assert db.mirror_state(conn, state)
        assert not db.mirror_state(conn, state)
        row = db.get_job(conn, uuid.UUID(uid))
        history = db.job_history(conn, uuid.UUID(uid))
    assert row["status"] == "FAILED" and row["attempts"] == 4
    assert row["error"]["reason"] == "BackoffLimitExceeded"
    assert row["completed_at"] == datetime(2025, 3, 1, 12, 1, tzinfo=UTC)
    assert [h["status"] for h in history] == ["PENDING", "FAILED"]


def test_mark_deleted_only_touches_unfinished_rows(database: db.Database) -> None:
    running, done = str(uuid.uuid4()), str(uuid.uuid4())
    with database.connection() as conn:
        ensure_row(conn, applied_cr(running))
        ensure_row(conn, applied_cr(done))
        db.mirror_state(
            conn,
            rows.job_state(applied_cr(done, phase="COMPLETED", eventId=done, result={"s": 1})),
        )
        assert db.mark_deleted(conn, running, 2, None)
        assert not db.mark_deleted(conn, running, 2, None)
        assert not db.mark_deleted(conn, done, 1, None)
        assert not db.mark_deleted(conn, str(uuid.uuid4()), 0, None)  # no row at all
        deleted = db.get_job(conn, uuid.UUID(running))
        kept = db.get_job(conn, uuid.UUID(done))
    assert deleted["status"] == "CANCELLED" and deleted["error"]["reason"] == "Deleted"
    assert deleted["attempts"] == 2 and deleted["completed_at"] is not None
    assert kept["status"] == "COMPLETED"


def test_purge_deletes_only_old_finished_rows(database: db.Database) -> None:
    now = datetime.now(UTC)
    ids = {
        name: str(uuid.uuid4()) for name in ("old_done", "old_failed", "new_done", "old_pending")
    }
    with database.connection() as conn:
        for uid in ids.values():
            ensure_row(conn, applied_cr(uid))
        for name, phase, age in (
            ("old_done", Phase.COMPLETED, 40),
            ("old_failed", Phase.FAILED, 31),
            ("new_done", Phase.COMPLETED, 29),
        ):
            db.mirror_state(
                conn,
                db.JobState(
                    event_id=uuid.UUID(ids[name]),
                    status=phase,
                    attempts=1,
                    completed_at=now - timedelta(days=age),
                ),
            )
        with conn.cursor() as cur:  # a stuck old PENDING row is not "finished": kept
            cur.execute(
                "UPDATE jobs SET created_at = now() - interval '90 days' WHERE event_id = %s",
                (uuid.UUID(ids["old_pending"]),),
            )
        assert db.purge_finished(conn, 30) == 2
        assert db.purge_finished(conn, 30) == 0
        left = {str(r["event_id"]) for r in db.list_jobs(conn, status=None, limit=10)}
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM job_events WHERE event_id = %s", (uuid.UUID(ids["old_done"]),)
            )
            orphan_events = cur.fetchone()[0]
    assert left == {ids["new_done"], ids["old_pending"]}
    assert orphan_events == 0


def test_heartbeat_upserts(database: db.Database) -> None:
    with database.connection() as conn:
        db.heartbeat(conn, "operator-0")
        with conn.cursor() as cur:
            cur.execute("SELECT seen_at FROM operator_heartbeat WHERE identity = 'operator-0'")
            first = cur.fetchone()[0]
    with database.connection() as conn:
        db.heartbeat(conn, "operator-0")
        with conn.cursor() as cur:
            cur.execute("SELECT count(*), max(seen_at) FROM operator_heartbeat")
            count, latest = cur.fetchone()
    assert count == 1 and latest > first


def test_the_operators_purge_counts_in_its_metric(database: db.Database) -> None:
    from guideline_operator.housekeeping import Heartbeat
    from guideline_operator.metrics import Metrics

    uid = str(uuid.uuid4())
    with database.connection() as conn:
        ensure_row(conn, applied_cr(uid))
        db.mirror_state(
            conn,
            db.JobState(
                event_id=uuid.UUID(uid),
                status=Phase.FAILED,
                attempts=1,
                completed_at=datetime.now(UTC) - timedelta(days=8),
            ),
        )
    metrics = Metrics()

    def heartbeat(days: int) -> Heartbeat:
        return Heartbeat(
            database, metrics, identity="t", interval=1, retention_days=days, purge_interval=1
        )

    kept = heartbeat(0)
    assert kept.purge() == 0  # 0 days: keep forever
    rec = heartbeat(7)
    assert rec.purge() == 1
    assert metrics.registry.get_sample_value("guideline_operator_db_purged_rows_total") == 1
    with database.connection() as conn:
        assert db.get_job(conn, uuid.UUID(uid)) is None
