"""GET /jobs/{event_id}/events (Server-Sent Events) through two `guideline-api` processes on
one PostgreSQL: a stream served by one replica follows changes made through the other and
by the operator's database path, resumes with Last-Event-ID without gap or duplicate, ends
after the terminal event and sends heartbeats while idle. No cluster: the test writes job
states as the operator would (db.mirror_state)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from guideline_core import db
from guideline_core.resource import Phase
from support.api import ALICE_KEY, BOB_KEY, ApiProcess, auth, problem, submit
from support.cluster import wait_for
from support.events import Event, StreamReader, stored_ids
from support.rows import add_job, mirror


@pytest.fixture(scope="module")
def apis(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Two API replicas on the session database, with fast heartbeats and queue refreshes
    and a small connection pool (4: more streams than connections)."""
    base = tmp_path_factory.mktemp("replicas")
    settings = {
        "GUIDELINE_SSE_HEARTBEAT_SECONDS": "0.5",
        "GUIDELINE_SSE_QUEUE_REFRESH_SECONDS": "0.1",
        "GUIDELINE_DB_POOL_MAX": "4",
    }
    replicas = [ApiProcess(postgres_url, base / name, **settings) for name in ("a", "b")]
    try:
        for replica in replicas:
            replica.start()
        yield replicas
    finally:
        for replica in replicas:
            replica.stop()


def statuses(events: list[Event]) -> list[str]:
    return [e.data["status"] for e in events]


def test_a_stream_follows_changes_made_through_the_other_replica_and_the_operator(
    apis: list[ApiProcess], database: db.Database
) -> None:
    a, b = apis
    event_id = submit(a.url)
    reader = StreamReader(b.url, event_id, ALICE_KEY)
    try:
        assert reader.status_code == 200
        assert reader.content_type is not None
        assert reader.content_type.startswith("text/event-stream")
        accepted = reader.next()
        assert accepted.event == "status" and accepted.id == str(accepted.data["id"])
        assert accepted.data["status"] == "PENDING" and accepted.data["reason"] == "Accepted"
        assert accepted.data["queue"] == {"position": 1} and not accepted.data["terminal"]
        assert accepted.data["event_id"] == event_id and accepted.data["run"] == 0

        assert mirror(database, event_id, Phase.PROCESSING, 1)
        started = reader.next()
        assert (started.data["status"], started.data["attempts"]) == ("PROCESSING", 1)
        assert started.data["queue"] is None
        assert mirror(database, event_id, Phase.PROCESSING, 2)  # the pod failed, a second attempt
        second = reader.next()
        assert (second.data["status"], second.data["attempts"]) == ("PROCESSING", 2)

        cancelled = httpx.post(f"{a.url}/jobs/{event_id}/cancel", headers=auth())
        assert cancelled.status_code == 202
        rest = reader.until_end()
    finally:
        reader.close()
    assert statuses(rest) == ["CANCELLED"] and rest[0].data["terminal"]
    assert rest[0].data["reason"] == "Cancelled"
    # One event per change, ids increasing: exactly the stored history.
    ids = [int(e.id) for e in [accepted, started, second, *rest]]
    assert ids == sorted(ids) == stored_ids(database, event_id)


def test_resuming_with_last_event_id_on_another_replica_has_no_gap_and_no_duplicate(
    apis: list[ApiProcess], database: db.Database
) -> None:
    a, b = apis
    event_id = submit(a.url)
    first = StreamReader(a.url, event_id, ALICE_KEY)
    try:
        seen = [first.next()]
        assert mirror(database, event_id, Phase.PROCESSING, 1)
        seen.append(first.next())
    finally:
        first.close()  # the connection drops; the job goes on meanwhile
    assert mirror(
        database,
        event_id,
        Phase.FAILED,
        1,
        error={"reason": "BackoffLimitExceeded", "message": "pods failed"},
        reason="BackoffLimitExceeded",
    )
    assert httpx.post(f"{b.url}/jobs/{event_id}/retry", headers=auth()).status_code == 202
    assert mirror(database, event_id, Phase.PROCESSING, 2, run=1)
    assert mirror(database, event_id, Phase.COMPLETED, 2, run=1, result={"summary": "ok"})

    resumed = StreamReader(b.url, event_id, ALICE_KEY, last_event_id=seen[-1].id)
    try:
        rest = resumed.until_end()
    finally:
        resumed.close()
    everything = seen + rest
    assert [int(e.id) for e in everything] == stored_ids(database, event_id)
    assert statuses(everything) == [
        "PENDING",
        "PROCESSING",
        "FAILED",
        "PENDING",
        "PROCESSING",
        "COMPLETED",
    ]
    assert [e.data["run"] for e in everything] == [0, 0, 0, 1, 1, 1]
    assert everything[3].data["reason"] == "RetryRequested"


def test_a_finished_job_streams_its_history_and_ends_and_resuming_after_its_end_ends_at_once(
    apis: list[ApiProcess], database: db.Database
) -> None:
    a, _ = apis
    event_id = str(add_job(database, status=Phase.COMPLETED, attempts=1, result={"s": 1}))
    reader = StreamReader(a.url, event_id, ALICE_KEY)
    events = reader.until_end()
    reader.close()
    assert statuses(events) == ["PENDING", "COMPLETED"]
    assert events[-1].data["terminal"] and events[0].data["queue"] is None

    again = StreamReader(a.url, event_id, ALICE_KEY, last_event_id=events[-1].id)
    assert again.until_end() == []
    again.close()


def counts(done: int, total: int = 10) -> dict[str, int]:
    return {"sections_done": done // 2, "sections_total": total // 2, "calls_done": done,
            "calls_total": total}  # fmt: skip


def report(database: db.Database, event_id: str, progress: dict[str, int], run: int = 0) -> bool:
    """Write a runner's count as the operator mirrors it (`db.mirror_progress`)."""
    with database.connection() as conn:
        return db.mirror_progress(conn, uuid.UUID(event_id), run, progress)


def test_progress_is_shown_while_processing_and_streamed_as_resumable_events(
    apis: list[ApiProcess], database: db.Database
) -> None:
    a, b = apis
    event_id = submit(a.url)
    assert not report(database, event_id, counts(1))  # PENDING: no progress yet
    assert httpx.get(f"{a.url}/jobs/{event_id}", headers=auth()).json()["progress"] is None
    reader = StreamReader(b.url, event_id, ALICE_KEY)
    try:
        assert reader.next().data["status"] == "PENDING"
        assert mirror(database, event_id, Phase.PROCESSING, 1)
        assert reader.next().data["status"] == "PROCESSING"
        assert report(database, event_id, counts(2))
        assert not report(database, event_id, counts(2))  # the same count: no event
        first = reader.next()
        assert report(database, event_id, counts(6))
        second = reader.next()
    finally:
        reader.close()
    assert (first.event, second.event) == ("progress", "progress")
    assert first.data["progress"] == counts(2) and second.data["progress"] == counts(6)
    assert int(first.id) < int(second.id) and first.id == str(first.data["id"])
    assert (second.data["status"], second.data["attempts"], second.data["run"]) == (
        "PROCESSING",
        1,
        0,
    )
    shown = httpx.get(f"{a.url}/jobs/{event_id}?include=history", headers=auth()).json()
    assert shown["progress"] == counts(6)
    # The history lists status changes only.
    assert [h["status"] for h in shown["history"]] == ["PENDING", "PROCESSING"]

    # Resumed after the first progress event: the second, then what followed, nothing twice.
    assert report(database, event_id, counts(10))
    assert mirror(database, event_id, Phase.COMPLETED, 1, result={"summary": "ok"})
    assert not report(database, event_id, counts(10, 12))  # a late write of the pod
    resumed = StreamReader(a.url, event_id, ALICE_KEY, last_event_id=first.id)
    try:
        rest = resumed.until_end()
    finally:
        resumed.close()
    assert [(e.event, e.data.get("progress")) for e in rest] == [
        ("progress", counts(6)),
        ("progress", counts(10)),
        ("status", None),
    ]
    assert rest[-1].data["status"] == "COMPLETED"
    assert [int(e.id) for e in rest] == stored_ids(database, event_id)[3:]
    done = httpx.get(f"{a.url}/jobs/{event_id}", headers=auth()).json()
    assert done["status"] == "COMPLETED" and done["progress"] is None


def test_a_retry_starts_without_the_earlier_runs_progress(
    apis: list[ApiProcess], database: db.Database
) -> None:
    a, _ = apis
    event_id = submit(a.url)
    assert mirror(database, event_id, Phase.PROCESSING, 1)
    assert report(database, event_id, counts(4))
    assert mirror(
        database, event_id, Phase.FAILED, 1, error={"reason": "Timeout", "message": "slow"}
    )
    assert httpx.post(f"{a.url}/jobs/{event_id}/retry", headers=auth()).status_code == 202
    assert mirror(database, event_id, Phase.PROCESSING, 2, run=1)
    assert httpx.get(f"{a.url}/jobs/{event_id}", headers=auth()).json()["progress"] is None
    assert not report(database, event_id, counts(8), run=0)  # the old run's pod, late
    assert report(database, event_id, counts(1), run=1)
    assert httpx.get(f"{a.url}/jobs/{event_id}", headers=auth()).json()["progress"] == counts(1)


def test_an_idle_stream_sends_heartbeat_comments(apis: list[ApiProcess]) -> None:
    a, _ = apis
    event_id = submit(a.url)
    lines: list[str] = []
    with httpx.stream(
        "GET", f"{a.url}/jobs/{event_id}/events", headers=auth(), timeout=30
    ) as response:
        assert response.headers["cache-control"] == "no-store"
        for line in response.iter_lines():
            lines.append(line)
            if lines.count(": keep-alive") == 2:
                break
    assert lines[:2] == ["retry: 2000", ""]
    assert lines[2].startswith("id: ") and lines[3] == "event: status"
    assert lines[4].startswith("data: {") and lines[5] == ""
    # Nothing but comments (and the blank lines ending them) after the one event.
    assert set(lines[6:]) == {": keep-alive", ""}


def test_a_pending_job_hears_when_its_queue_position_moves(
    apis: list[ApiProcess], database: db.Database
) -> None:
    a, b = apis
    ahead = submit(a.url)
    event_id = submit(a.url)
    submit(a.url, key=BOB_KEY)  # another tenant's queue does not count
    reader = StreamReader(b.url, event_id, ALICE_KEY)
    try:
        first = reader.next()
        assert first.data["queue"] == {"position": 2}
        assert mirror(database, ahead, Phase.PROCESSING, 1)
        moved = reader.next()
    finally:
        reader.close()
    # No `id:` of its own: the client's last event id stays that of the status event.
    assert moved.event == "queue" and moved.id == first.id
    assert moved.data == {"event_id": event_id, "status": "PENDING", "queue": {"position": 1}}


def test_a_change_that_recorded_no_event_is_still_an_event(
    apis: list[ApiProcess], database: db.Database
) -> None:
    """Whoever writes the row (here a bare UPDATE, as a writer outside db.py would), the
    change is an event: the deferred trigger of migration 0004 adds it."""
    a, _ = apis
    event_id = submit(a.url)
    reader = StreamReader(a.url, event_id, ALICE_KEY)
    try:
        reader.next()
        with database.connection() as conn, conn.cursor() as cur:
            cur.execute(
                "UPDATE jobs SET status = 'PROCESSING', attempts = 1 WHERE event_id = %s",
                (uuid.UUID(event_id),),
            )
        changed = reader.next()
    finally:
        reader.close()
    assert (changed.data["status"], changed.data["reason"]) == ("PROCESSING", "StateChanged")


def test_many_streams_share_one_listener_and_no_pooled_connection(
    apis: list[ApiProcess], database: db.Database
) -> None:
    a, _ = apis
    event_id = submit(a.url)
    readers = [StreamReader(a.url, event_id, ALICE_KEY) for _ in range(12)]
    try:
        assert all(r.next().data["status"] == "PENDING" for r in readers)
        with database.connection() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = 'guideline-ingest-listener'"
            )
            assert cur.fetchone()[0] == 2  # one per replica
        # 12 open streams on a pool of 4 connections, and the API still answers.
        assert httpx.get(f"{a.url}/jobs/{event_id}", headers=auth()).status_code == 200
        metrics = httpx.get(f"{a.url}/metrics").text
        assert "\nguideline_api_event_streams 12.0\n" in metrics
        assert mirror(database, event_id, Phase.COMPLETED, 1, result={"s": 1})
        assert all(statuses(r.until_end()) == ["COMPLETED"] for r in readers)
    finally:
        for reader in readers:
            reader.close()


@pytest.mark.parametrize(
    ("key", "path_id", "headers", "status", "reason"),
    [
        (BOB_KEY, None, {}, 404, "not_found"),  # another tenant's job
        (ALICE_KEY, str(uuid.uuid4()), {}, 404, "not_found"),
        (ALICE_KEY, "not-a-uuid", {}, 422, "invalid_event_id"),
        (ALICE_KEY, None, {"Last-Event-ID": "x1"}, 422, "invalid_last_event_id"),
        (None, None, {}, 401, "missing_api_key"),
    ],
)
def test_refused_streams(
    apis: list[ApiProcess],
    key: str | None,
    path_id: str | None,
    headers: dict[str, str],
    status: int,
    reason: str,
) -> None:
    a, _ = apis
    event_id = path_id or submit(a.url)
    sent = {**headers, **(auth(key) if key else {})}
    response = httpx.get(f"{a.url}/v1/jobs/{event_id}/events", headers=sent, timeout=10)
    assert problem(response, status)["reason"] == reason


def test_the_events_path_is_in_the_openapi_document(apis: list[ApiProcess]) -> None:
    document = httpx.get(f"{apis[0].url}/openapi.json").json()
    # /jobs/... or, with versioned paths, /v1/jobs/...
    (path,) = [p for p in document["paths"] if p.endswith("/jobs/{event_id}/events")][:1]
    operation = document["paths"][path]["get"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert any(p["name"] == "Last-Event-ID" for p in operation["parameters"])


def test_a_lost_listener_connection_comes_back_and_streams_go_on(
    apis: list[ApiProcess], database: db.Database
) -> None:
    a, _ = apis
    event_id = submit(a.url)
    reader = StreamReader(a.url, event_id, ALICE_KEY)
    try:
        reader.next()
        listeners = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'guideline-ingest-listener'"
        )
        with database.connection() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'guideline-ingest-listener'"
            )
            assert cur.fetchone()[0] == 2

        def listening_again() -> bool:
            with database.connection() as conn, conn.cursor() as cur:
                cur.execute(listeners)
                return cur.fetchone()[0] == 2

        wait_for(listening_again, timeout=30, interval=0.1, message="listeners back")
        assert mirror(database, event_id, Phase.COMPLETED, 1, result={"s": 1})
        assert statuses(reader.until_end()) == ["COMPLETED"]
    finally:
        reader.close()
