"""Reading jobs, health and metrics: GET /jobs/{id}, GET /jobs (filters, keyset pages),
/health*, /metrics, authentication on reads. Rows are written straight into the database
(as the operator would), so these tests need PostgreSQL but no cluster; the app points at
a dead Kubernetes API."""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from guideline_core import db
from guideline_core.resource import Phase, new_event_id
from support.api import (
    ADMIN_KEY,
    BOB_KEY,
    api_client,
    auth,
    dead_database_url,
    dead_kubeconfig,
    health_when,
    make_settings,
    problem,
)
from support.rows import T0, add_job


def test_completed_job_shows_result_and_no_error_or_queue(
    client: TestClient, database: db.Database
) -> None:
    result = {
        "summary": "Wash hands.",
        "checklist": [{"item": "Wash hands before contact"}],
        "provider": "extractive",
        "model": "extractive-v1",
    }
    eid = add_job(database, status=Phase.COMPLETED, attempts=2, result=result, title="Hygiene")
    response = client.get(f"/jobs/{eid}", headers=auth())
    assert response.status_code == 200
    job = response.json()
    assert job["event_id"] == str(eid)
    assert job["status"] == "COMPLETED"
    assert job["attempts"] == 2
    assert job["title"] == "Hygiene"
    cost = job["result"]["usage"].pop("cost")
    assert cost["amount"] == 0  # the extractive provider costs nothing
    assert job["result"] == {**result, "usage": {}}
    assert job["provider"] == "extractive" and job["model"] == "extractive-v1"
    for key in ("created_at", "updated_at", "started_at", "completed_at"):
        assert job[key] is not None
    assert "error" not in job and "queue" not in job and "guideline_text" not in job


def test_failed_and_cancelled_jobs_show_error_and_no_result(
    client: TestClient, database: db.Database
) -> None:
    failed = add_job(
        database,
        status=Phase.FAILED,
        attempts=4,
        error={"reason": "BackoffLimitExceeded", "message": "4 attempts failed"},
    )
    cancelled = add_job(database, status=Phase.CANCELLED, attempts=1)
    job = client.get(f"/jobs/{failed}", headers=auth()).json()
    assert job["error"] == {"reason": "BackoffLimitExceeded", "message": "4 attempts failed"}
    assert "result" not in job and "queue" not in job
    job = client.get(f"/jobs/{cancelled}", headers=auth()).json()
    assert job["status"] == "CANCELLED" and job["error"]["reason"] == "Cancelled"


def test_pending_job_reports_its_queue_position_within_its_tenant(
    client: TestClient, database: db.Database
) -> None:
    add_job(database, status=Phase.PROCESSING, created_at=T0)
    first = add_job(database, created_at=T0 + timedelta(seconds=1))
    add_job(database, status=Phase.COMPLETED, created_at=T0 + timedelta(seconds=2))
    # Another tenant's flood does not push alice's jobs back: tenants are admitted in turn.
    bobs = [add_job(database, created_at=T0 + timedelta(seconds=2.5), tenant="bob") for _ in "xy"]
    second = add_job(database, created_at=T0 + timedelta(seconds=3))
    third = add_job(database, created_at=T0 + timedelta(seconds=4))
    bob_view = client.get(f"/jobs/{bobs[1]}", headers=auth(BOB_KEY)).json()["queue"]
    assert bob_view["position"] == 2 and bob_view["tenants_waiting"] == 2
    positions = {}
    for eid in (first, second, third):
        job = client.get(f"/jobs/{eid}", headers=auth()).json()
        assert "result" not in job and "error" not in job
        positions[eid] = job["queue"]
    assert [positions[e]["position"] for e in (first, second, third)] == [1, 2, 3]
    assert positions[third]["ahead"] == 2
    assert positions[third]["pending"] == 3 and positions[third]["running"] == 1
    assert "2 job(s) of tenant alice ahead" in positions[third]["message"]
    assert positions[third]["tenants_waiting"] == 2
    assert "operator is not running" in positions[third]["message"]
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO operator_heartbeat (identity) VALUES ('op-1')")
    job = client.get(f"/jobs/{third}", headers=auth()).json()
    assert "operator is not running" not in job["queue"]["message"]


def test_include_history_and_text_verbatim(client: TestClient, database: db.Database) -> None:
    text = "<script>alert('x')</script> &amp; \"quotes\" caf\u00e9 \U0001f9fc\r\n\ttabbed"
    eid = add_job(
        database,
        status=Phase.FAILED,
        attempts=1,
        text=text,
        error={"reason": "LLMRejected", "message": "401"},
    )
    job = client.get(f"/jobs/{eid}?include=history,text", headers=auth()).json()
    assert job["guideline_text"] == text
    assert [(h["status"], h["reason"]) for h in job["history"]] == [
        ("PENDING", "Accepted"),
        ("FAILED", "LLMRejected"),
    ]
    bad = client.get(f"/jobs/{eid}?include=secrets", headers=auth())
    assert bad.status_code == 422


def test_unknown_job_is_404_and_malformed_id_is_422(client: TestClient) -> None:
    unknown = new_event_id()
    response = client.get(f"/jobs/{unknown}", headers=auth())
    assert response.status_code == 404
    assert response.json() == {
        "type": "https://guideline-ingest.dev/problems/not_found",
        "title": "Not found",
        "status": 404,
        "detail": f"no job with event_id {unknown}",
        "instance": f"/jobs/{unknown}",
        "reason": "not_found",
    }
    assert response.headers["content-type"] == "application/problem+json"
    response = client.get("/jobs/not-a-uuid", headers=auth())
    assert response.status_code == 422
    assert problem(response)["reason"] == "invalid_event_id"
    assert client.post(f"/jobs/{unknown}/cancel", headers=auth()).status_code == 404
    assert client.delete("/jobs/nope", headers=auth()).status_code == 422
    assert client.post(f"/jobs/{unknown}/retry", headers=auth()).status_code == 404
    assert problem(client.get("/nowhere", headers=auth()), 404)["reason"] == "not_found"


def test_list_newest_first_with_status_filter_and_cursor_pages(
    client: TestClient, database: db.Database
) -> None:
    failed, completed, in_order = [], [], []
    for i in range(12):
        status = Phase.FAILED if i % 3 == 0 else Phase.COMPLETED
        eid = str(
            add_job(
                database,
                status=status,
                created_at=T0 + timedelta(minutes=i),
                error={"reason": "Timeout", "message": "Processing timeout"}
                if status == Phase.FAILED
                else None,
                result={"summary": "s", "checklist": []} if status == Phase.COMPLETED else None,
            )
        )
        in_order.append(eid)
        (failed if status == Phase.FAILED else completed).append(eid)
    # Two jobs with the same created_at: the event_id breaks the tie, none is lost.
    twins = [str(add_job(database, created_at=T0 + timedelta(minutes=30))) for _ in range(2)]

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        page = client.get("/jobs", params=params, headers=auth()).json()
        pages += 1
        seen += [item["event_id"] for item in page["items"]]
        assert all("result" not in item for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == sorted(twins, reverse=True) + in_order[::-1]

    page = client.get("/jobs", params={"status": "failed"}, headers=auth()).json()
    assert [i["event_id"] for i in page["items"]] == failed[::-1]
    assert all(i["error"]["message"] == "Processing timeout" for i in page["items"])
    assert page["next_cursor"] is None

    first = client.get("/jobs", params={"status": "COMPLETED", "limit": 3}, headers=auth())
    second = client.get(
        "/jobs",
        params={"status": "COMPLETED", "limit": 3, "cursor": first.json()["next_cursor"]},
        headers=auth(),
    ).json()
    got = [i["event_id"] for i in first.json()["items"] + second["items"]]
    assert got == completed[::-1][:6]


def test_list_rejects_bad_parameters(client: TestClient) -> None:
    for params, reason in (
        ({"limit": 0}, "validation_error"),
        ({"limit": 201}, "validation_error"),
        ({"status": "DONE"}, "validation_error"),
        ({"cursor": "!!!"}, "invalid_cursor"),
        ({"cursor": base64.urlsafe_b64encode(b'{"t": "x"}').decode()}, "invalid_cursor"),
    ):
        response = client.get("/jobs", params=params, headers=auth())
        assert response.status_code == 422, params
        assert problem(response)["reason"] == reason
    assert client.get("/jobs", params={"limit": 200}, headers=auth()).status_code == 200


def test_the_audit_trail_refuses_malformed_cursors(client: TestClient) -> None:
    """`"²".isdigit()` is True but int("²") fails: found by the schemathesis sweep (a 500);
    5,000 digits failed int() (a 500), 20 digits would fail PostgreSQL's bigint."""
    for cursor in ("²", "١٢", "9" * 5000, "9" * 20, str(2**63), "-1", "0", "", "1.5", "x"):
        answer = client.get("/v1/audit", params={"cursor": cursor}, headers=auth(ADMIN_KEY))
        assert problem(answer, 422)["reason"] == "invalid_cursor", cursor
    top = client.get("/v1/audit", params={"cursor": str(2**63 - 1)}, headers=auth(ADMIN_KEY))
    assert top.status_code == 200


def test_the_job_list_refuses_malformed_cursors(client: TestClient) -> None:
    def encoded(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    t = '"2026-01-01T00:00:00+00:00"'
    for cursor in (
        "9" * 5000,
        "-1",
        encoded(b"[" * 5000 + b"]" * 5000),  # nested past the recursion limit
        encoded(b"[1]"),
        encoded(b'{"t": %s, "id": 5}' % t.encode()),
        encoded(b'{"t": %s, "id": "%s"}' % (t.encode(), b"9" * 5000)),
        encoded(b'{"t": %s}' % (b"9" * 5000)),
        encoded(b'{"t": "99999-01-01T00:00:00+00:00", "id": "%s"}' % str(uuid.uuid4()).encode()),
        encoded(b"\xff\xfe"),
    ):
        answer = client.get("/v1/jobs", params={"cursor": cursor}, headers=auth())
        assert problem(answer, 422)["reason"] == "invalid_cursor", cursor[:40]


def test_reads_require_a_valid_key(client: TestClient, database: db.Database) -> None:
    eid = add_job(database)
    missing = client.get(f"/jobs/{eid}")
    assert missing.status_code == 401
    assert problem(missing)["reason"] == "missing_api_key"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = client.get("/jobs", headers=auth("not-the-key"))
    assert wrong.status_code == 401
    assert problem(wrong)["reason"] == "invalid_api_key"
    assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    basic = client.get("/jobs", headers={"Authorization": "Basic YWxpY2U6eA=="})
    assert basic.status_code == 401
    # bob's key is of another tenant: alice's job does not exist for it.
    assert client.get(f"/jobs/{eid}", headers=auth(BOB_KEY)).status_code == 404
    for open_path in ("/health/live", "/metrics", "/docs", "/openapi.json"):
        assert client.get(open_path).status_code == 200, open_path


def test_health_reports_queue_and_operator_and_is_degraded_without_kubernetes(
    client: TestClient, database: db.Database
) -> None:
    add_job(database)
    add_job(database)
    add_job(database, status=Phase.PROCESSING)
    admin = auth(ADMIN_KEY)  # error strings and the operator's identity: admins only
    health = health_when(client, lambda h: (h["queue_size"], h["running"]) == (2, 1), admin)
    # The Kubernetes API is down: jobs wait, none lost.
    assert client.get("/health").status_code == 200
    assert health["status"] == "degraded"
    assert health["database"]["ok"] is True
    assert health["kubernetes"]["ok"] is False and health["kubernetes"]["error"]
    assert health["queue_size"] == 2 and health["running"] == 1
    assert health["operator"]["alive"] is False
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO operator_heartbeat (identity) VALUES ('op-1')")
    operator = health_when(client, lambda h: h["operator"]["alive"], admin)["operator"]
    assert operator["identity"] == "op-1"
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute("UPDATE operator_heartbeat SET seen_at = now() - interval '10 minutes'")
    health_when(client, lambda h: not h["operator"]["alive"], admin)
    # Readiness needs only the database: reads keep working without Kubernetes.
    assert client.get("/health/ready").status_code == 200
    assert client.get("/health/live").json() == {"status": "ok"}


def test_health_and_reads_answer_503_when_the_database_is_down(tmp_path: Path) -> None:
    settings = make_settings(dead_database_url(), dead_kubeconfig(tmp_path))
    with api_client(settings) as client:
        health = client.get("/health")
        assert health.status_code == 503
        assert health.json()["database"]["ok"] is False
        assert client.get("/health/ready").status_code == 503
        assert client.get("/health/live").status_code == 200
        response = client.get(f"/jobs/{new_event_id()}", headers=auth())
        assert response.status_code == 503
        assert problem(response)["reason"] == "database_unavailable"
        metrics = client.get("/metrics").text
        assert "guideline_api_database_up 0.0" in metrics


def test_metrics_expose_the_documented_names(client: TestClient, database: db.Database) -> None:
    add_job(database)
    client.get("/jobs", headers=auth())
    client.get(f"/jobs/{uuid.uuid4()}", headers=auth())
    client.post("/jobs", content=b"{", headers={**auth(), "Content-Type": "application/json"})
    health_when(client, lambda h: h["queue_size"] == 1)  # the gauges' cache caught up
    text = client.get("/metrics").text
    assert "# TYPE guideline_api_http_request_duration_seconds histogram" in text
    assert (
        'guideline_api_http_request_duration_seconds_count{method="GET",route="/jobs/{event_id}",status="404"}'
        " 1.0" in text
    )
    assert (
        'guideline_api_http_request_duration_seconds_count{method="GET",route="/jobs",status="200"}'
        in text
    )
    assert 'guideline_db_jobs{status="PENDING"} 1.0' in text
    assert "# TYPE guideline_api_jobs_submitted_total counter" in text
    assert 'guideline_api_jobs_rejected_total{reason="malformed_json"} 1.0' in text
    assert "guideline_api_database_up 1.0" in text
