"""The shared database layer against a real PostgreSQL."""

from __future__ import annotations

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
