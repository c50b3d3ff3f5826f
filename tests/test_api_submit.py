"""POST /jobs and POST /jobs/batch against the real control plane and PostgreSQL: the row
is the acceptance and the dispatcher creates the GuidelineJob; idempotency (including a
real race), backlog and tenant-backlog 429s, the per-tenant rate limit shared by API
replicas, authentication and the audit trail, 202 while Kubernetes is down (each job
created exactly once when it is back), 503 only when PostgreSQL is down. No operator runs
here: these assert what the API itself does."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from guideline_api.auth import hash_key
from guideline_api.kubeapi import KubeGateway
from guideline_api.metrics import ApiMetrics
from guideline_api.workers.dispatcher import Dispatcher
from guideline_core import db
from guideline_core import resource as gj
from guideline_core.documents import store as document_store
from guideline_core.resource import Phase
from guideline_core.settings import ApiSettings
from support.api import (
    ALICE2_KEY,
    BOB_KEY,
    api_client,
    api_http,
    auth,
    dead_database_url,
    dead_kubeconfig,
    dispatched_row,
    health_when,
    problem,
    running_server,
    submit,
)
from support.cluster import LocalCluster, wait_for
from support.rows import set_state

pytestmark = pytest.mark.cluster
TEXT = "Staff must wash hands before every patient contact.\nGloves should be changed."


@pytest.fixture
def client(settings: ApiSettings) -> Iterator[TestClient]:
    with api_client(settings) as c:
        yield c


def guideline_jobs(cluster: LocalCluster, namespace: str, event_id: str | None = None) -> list:
    args = ["guidelinejobs", "-n", namespace]
    if event_id:
        args += ["-l", f"{gj.LABEL_EVENT_ID}={event_id}"]
    return cluster.get_json(*args)["items"]


def row(database: db.Database, event_id: str) -> dict[str, Any] | None:
    with database.connection() as conn:
        job = db.get_job(conn, uuid.UUID(event_id))
        if job is not None:
            job["guideline_text"] = db.get_guideline_text(conn, uuid.UUID(event_id))
        return job


def count_rows(database: db.Database) -> int:
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM jobs")
        return cur.fetchone()[0]


def test_submit_records_the_row_and_creates_the_guideline_job(
    client: TestClient, database: db.Database, cluster: LocalCluster, namespace: str
) -> None:
    text = 'Wear <gloves> & "masks" \u2014 caf\u00e9 \U0001f9e4\r\n\tIndented line.'
    response = client.post(
        "/jobs",
        json={"guideline_text": text, "title": "PPE", "provider": "extractive", "max_retries": 2},
        headers=auth(),
    )
    assert response.status_code == 202, response.text
    job = response.json()
    eid = job["event_id"]
    assert uuid.UUID(eid).version == 7
    assert response.headers["Location"] == f"/jobs/{eid}"
    assert job["status"] == "PENDING" and job["attempts"] == 0
    assert job["submitted_by"] == "alice" and job["title"] == "PPE"
    assert job["tenant"] == "alice"

    stored = dispatched_row(database, eid)
    [cr] = guideline_jobs(cluster, namespace, eid)
    assert cr["metadata"]["name"] == gj.cr_name_for(eid)
    assert cr["metadata"]["uid"] == stored["cr_uid"]
    assert cr["metadata"]["labels"][gj.LABEL_EVENT_ID] == eid
    assert cr["metadata"]["labels"][gj.LABEL_TENANT] == "alice"
    assert cr["metadata"]["annotations"][gj.ANNOTATION_SUBMITTED_BY] == "alice"
    # The text is in PostgreSQL; the GuidelineJob carries its reference (issue 20).
    data = text.encode("utf-8")
    assert cr["spec"] == {
        "documentRef": {
            "id": str(stored["document_id"]),
            "sha256": hashlib.sha256(data).hexdigest(),
            "mediaType": "text/plain; charset=utf-8",
            "bytes": len(data),
        },
        "title": "PPE",
        "provider": "extractive",
        "maxRetries": 2,
    }
    assert b"".join(document_store.read_chunks(database.connection, stored["document_id"])) == data

    stored = row(database, eid)
    assert stored is not None
    assert stored["status"] == "PENDING"
    assert stored["cr_name"] == cr["metadata"]["name"]
    assert stored["max_retries"] == 2
    assert stored["namespace"] == namespace
    assert stored["submitted_by"] == "alice"
    assert stored["guideline_text"] == text  # verbatim: no escaping, no normalisation

    got = client.get(f"/jobs/{eid}?include=text", headers=auth()).json()
    assert got["guideline_text"] == text
    assert got["status"] == "PENDING" and got["queue"]["position"] == 1


def test_idempotency_key_replays_the_job_and_rejects_another_body(
    client: TestClient, database: db.Database, cluster: LocalCluster, namespace: str
) -> None:
    key = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    first = client.post("/jobs", json={"guideline_text": TEXT}, headers={**auth(), **key})
    assert first.status_code == 202
    again = client.post("/jobs", json={"guideline_text": TEXT}, headers={**auth(), **key})
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert again.json()["event_id"] == first.json()["event_id"]

    other = client.post(
        "/jobs", json={"guideline_text": TEXT + " Changed."}, headers={**auth(), **key}
    )
    assert other.status_code == 422
    error = problem(other)
    assert error["reason"] == "idempotency_key_reused"
    assert "different request body" in error["detail"]

    # Keys are per tenant: bob's identical key names bob's own job.
    bobs = client.post("/jobs", json={"guideline_text": TEXT}, headers={**auth(BOB_KEY), **key})
    assert bobs.status_code == 202
    assert bobs.json()["event_id"] != first.json()["event_id"]
    assert count_rows(database) == 2
    dispatched_row(database, bobs.json()["event_id"])
    dispatched_row(database, first.json()["event_id"])
    assert len(guideline_jobs(cluster, namespace)) == 2
    metrics = client.get("/metrics").text
    assert "guideline_api_idempotent_replays_total 1.0" in metrics
    assert 'guideline_api_jobs_rejected_total{reason="idempotency_key_reused"} 1.0' in metrics


def race(http: httpx.Client, key: str, racers: int) -> list[httpx.Response]:
    """`racers` identical POSTs with one Idempotency-Key, released together."""
    barrier = threading.Barrier(racers)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def post() -> None:
        barrier.wait()
        response = http.post(
            "/jobs", json={"guideline_text": TEXT}, headers={**auth(), "Idempotency-Key": key}
        )
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=post) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return answers


def test_concurrent_posts_with_one_key_make_one_job(
    settings: ApiSettings, database: db.Database, cluster: LocalCluster, namespace: str
) -> None:
    """Real HTTP requests racing through a real server: one job, one GuidelineJob."""
    rounds, racers = 3, 4
    with running_server(settings) as url, api_http(url, timeout=30) as http:
        for n in range(rounds):
            answers = race(http, f"race-{n}-{uuid.uuid4()}", racers)
            statuses = sorted(r.status_code for r in answers)
            assert statuses == [200] * (racers - 1) + [202], [r.text for r in answers]
            assert len({r.json()["event_id"] for r in answers}) == 1
    assert count_rows(database) == rounds
    wait_for(lambda: len(guideline_jobs(cluster, namespace)) == rounds, 30, message="CRs")


def test_an_expired_key_may_name_a_new_job(
    client: TestClient, database: db.Database, cluster: LocalCluster, namespace: str
) -> None:
    key = {"Idempotency-Key": "daily-report"}
    old = client.post("/jobs", json={"guideline_text": TEXT}, headers={**auth(), **key}).json()
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE jobs SET created_at = now() - interval '25 hours' WHERE event_id = %s",
            (old["event_id"],),
        )
    new = client.post("/jobs", json={"guideline_text": TEXT}, headers={**auth(), **key})
    assert new.status_code == 202
    assert new.json()["event_id"] != old["event_id"]
    assert row(database, old["event_id"])["idempotency_key"] is None
    assert row(database, new.json()["event_id"])["idempotency_key"] == "daily-report"
    replay = client.post("/jobs", json={"guideline_text": TEXT}, headers={**auth(), **key})
    assert replay.status_code == 200 and replay.json()["event_id"] == new.json()["event_id"]


def test_backlog_over_the_limit_is_429_until_it_drains(
    database: db.Database, cluster: LocalCluster, namespace: str, settings: ApiSettings
) -> None:
    limited = settings.model_copy(update={"max_pending_jobs": 2, "backlog_retry_after_seconds": 7})
    with api_client(limited) as client:
        accepted = [
            client.post("/jobs", json={"guideline_text": TEXT}, headers=auth()) for _ in range(2)
        ]
        assert [r.status_code for r in accepted] == [202, 202]
        refused = client.post("/jobs", json={"guideline_text": TEXT}, headers=auth())
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "7"
        assert problem(refused)["reason"] == "backlog_full"
        assert count_rows(database) == 2
        wait_for(lambda: len(guideline_jobs(cluster, namespace)) == 2, 30, message="CRs")
        # The operator takes one job (PENDING -> PROCESSING): room again.
        set_state(database, accepted[0].json()["event_id"], Phase.PROCESSING, 1)
        again = client.post("/jobs", json={"guideline_text": TEXT}, headers=auth())
        assert again.status_code == 202
        assert (
            'guideline_api_jobs_rejected_total{reason="backlog_full"} 1.0'
            in client.get("/metrics").text
        )


def test_tenant_backlog_is_429_while_other_tenants_submit(
    database: db.Database, settings: ApiSettings
) -> None:
    limited = settings.model_copy(update={"tenant_max_pending_jobs": 2})
    with api_client(limited) as client:
        body = {"guideline_text": TEXT}
        assert [client.post("/jobs", json=body, headers=auth()).status_code for _ in range(2)] == [
            202,
            202,
        ]
        refused = client.post("/jobs", json=body, headers=auth())
        assert refused.status_code == 429
        assert problem(refused)["reason"] == "tenant_backlog_full"
        assert "tenant alice" in problem(refused)["detail"]
        assert client.post("/jobs", json=body, headers=auth(BOB_KEY)).status_code == 202
    assert count_rows(database) == 3


def test_a_tenants_guideline_bytes_in_the_cluster_are_bounded(
    database: db.Database, settings: ApiSettings
) -> None:
    """Each GuidelineJob holds its text in etcd: past `tenant_max_inflight_text_bytes` of
    text in jobs not finished or finished within `cr_retention_seconds`, a tenant's
    submissions are 429 `tenant_text_quota`; UTF-8 bytes count, not characters."""
    text = "Hände müssen vor jedem Patientenkontakt desinfiziert werden. " * 100
    size = len(text.encode("utf-8"))
    assert size > len(text)  # umlauts: two bytes each
    limited = settings.model_copy(
        update={"tenant_max_inflight_text_bytes": 3 * size, "cr_retention_seconds": 3600}
    )
    with api_client(limited) as client:
        body = {"guideline_text": text}
        ids = [submit(client, text) for _ in range(3)]
        refused = client.post("/jobs", json=body, headers=auth())
        answer = problem(refused, 429)
        assert answer["reason"] == "tenant_text_quota"
        assert f"holds {3 * size} bytes" in answer["detail"] and "tenant alice" in answer["detail"]
        assert int(refused.headers["Retry-After"]) >= 1
        # A batch that would pass it is refused whole; another tenant has its own bytes.
        batch = client.post("/jobs/batch", json={"items": [body]}, headers=auth(BOB_KEY))
        assert batch.status_code == 202
        two = client.post("/jobs/batch", json={"items": [body, body]}, headers=auth(ALICE2_KEY))
        assert problem(two, 429)["reason"] == "tenant_text_quota"

        def finish(event_id: str, ago: timedelta) -> None:
            set_state(database, event_id, Phase.COMPLETED, 1, completed_at=datetime.now(UTC) - ago)

        # Finished a minute ago: its GuidelineJob (and text) is still in the cluster.
        finish(ids[0], timedelta(minutes=1))
        assert problem(client.post("/jobs", json=body, headers=auth()), 429)["reason"] == (
            "tenant_text_quota"
        )
        # Finished longer ago than the retention: the operator has deleted it; room again.
        finish(ids[1], timedelta(hours=2))
        assert client.post("/jobs", json=body, headers=auth()).status_code == 202
        assert (
            'guideline_api_jobs_rejected_total{reason="tenant_text_quota"} 3.0'
            in client.get("/metrics").text
        )
    assert count_rows(database) == 5


def test_rate_limit_is_per_tenant_and_shared_by_api_replicas(
    settings: ApiSettings, database: db.Database
) -> None:
    """Two apps on one database (two replicas): the tenant's minute is counted once."""
    limited = settings.model_copy(update={"rate_limit_per_minute": 3})
    with api_client(limited) as one, api_client(limited) as two:
        body = {"guideline_text": TEXT}
        codes = [c.post("/jobs", json=body, headers=auth()).status_code for c in (one, two, one)]
        assert codes == [202, 202, 202]
        limited_answer = two.post("/jobs", json=body, headers=auth())
        assert limited_answer.status_code == 429
        assert problem(limited_answer)["reason"] == "rate_limited"
        assert 1 <= int(limited_answer.headers["Retry-After"]) <= 60
        # Another tenant has its own minute; reads are not limited.
        assert one.post("/jobs", json=body, headers=auth(BOB_KEY)).status_code == 202
        assert one.get("/jobs", headers=auth()).status_code == 200
        assert (
            'guideline_api_jobs_rejected_total{reason="rate_limited"} 1.0'
            in two.get("/metrics").text
        )
    assert count_rows(database) == 4


def test_a_model_outside_the_tenants_allowlist_is_422(
    settings: ApiSettings, database: db.Database
) -> None:
    limits = {"alice": {"allowed_models": ["gpt-4o-mini"]}}
    # Any model by default ([] set on purpose), alice's own allowlist for her tenant.
    overrides = {"tenant_limits": limits, "allowed_models": []}
    with api_client(settings.model_copy(update=overrides)) as client:
        ok = client.post(
            "/jobs", json={"guideline_text": TEXT, "model": "gpt-4o-mini"}, headers=auth()
        )
        assert ok.status_code == 202
        refused = client.post(
            "/jobs", json={"guideline_text": TEXT, "model": "o1-pro"}, headers=auth()
        )
        assert refused.status_code == 422
        assert problem(refused)["reason"] == "model_not_allowed"
        bob = client.post(
            "/jobs", json={"guideline_text": TEXT, "model": "o1-pro"}, headers=auth(BOB_KEY)
        )
        assert bob.status_code == 202  # bob's tenant has no allowlist of its own
    assert count_rows(database) == 2


def test_authentication_and_audit_trail(
    settings: ApiSettings,
    database: db.Database,
    cluster: LocalCluster,
    namespace: str,
    tmp_path: Path,
) -> None:
    keys_file = tmp_path / "api-keys"
    keys_file.write_text(f"# mounted Secret\ncarol:{hash_key('carol-key-1')}\n")
    with_file = settings.model_copy(
        update={"api_keys_file": str(keys_file), "api_keys_reload_seconds": 0}
    )
    with api_client(with_file) as client:
        body = {"guideline_text": TEXT}
        missing = client.post("/jobs", json=body)
        assert missing.status_code == 401
        assert missing.headers["WWW-Authenticate"] == 'Bearer realm="guideline-ingest"'
        wrong = client.post("/jobs", json=body, headers=auth("carol-key-2"))
        assert wrong.status_code == 401
        assert problem(wrong)["reason"] == "invalid_api_key"
        assert count_rows(database) == 0

        carol = client.post("/jobs", json=body, headers=auth("carol-key-1"))
        assert carol.status_code == 202
        eid = carol.json()["event_id"]
        assert row(database, eid)["submitted_by"] == "carol"
        dispatched_row(database, eid)
        [cr] = guideline_jobs(cluster, namespace, eid)
        assert cr["metadata"]["annotations"][gj.ANNOTATION_SUBMITTED_BY] == "carol"

        # Rotation: the Secret's file changes, the old key stops working at once.
        keys_file.write_text(f"carol:{hash_key('carol-key-2')}\n")
        assert client.post("/jobs", json=body, headers=auth("carol-key-1")).status_code == 401
        assert client.post("/jobs", json=body, headers=auth("carol-key-2")).status_code == 202

    with api_client(settings.model_copy(update={"auth_enabled": False})) as client:
        anon = client.post("/jobs", json={"guideline_text": TEXT})
        assert anon.status_code == 202
        assert row(database, anon.json()["event_id"])["submitted_by"] == "anonymous"


def test_kubernetes_down_still_accepts_and_each_job_runs_once_it_is_back(
    settings: ApiSettings,
    database: db.Database,
    cluster: LocalCluster,
    namespace: str,
    tmp_path: Path,
) -> None:
    """PostgreSQL is the system of record: with kube-apiserver unreachable a submission is
    still a 202, reads as PENDING with the reason, and idempotency keeps working; a
    dispatcher that can reach the cluster later creates each GuidelineJob exactly once."""
    dead = settings.model_copy(
        update={"kubeconfig": str(dead_kubeconfig(tmp_path)), "dispatch_poll_seconds": 0.2}
    )
    key = {**auth(), "Idempotency-Key": "retry-me"}
    with api_client(dead) as client:
        answers = [client.post("/jobs", json={"guideline_text": TEXT}, headers=key)]
        answers += [
            client.post("/jobs", json={"guideline_text": f"{TEXT} {n}"}, headers=auth())
            for n in range(3)
        ]
        assert [a.status_code for a in answers] == [202] * 4
        replay = client.post("/jobs", json={"guideline_text": TEXT}, headers=key)
        assert replay.status_code == 200
        eid = answers[0].json()["event_id"]

        def reason() -> str | None:
            said = client.get(f"/jobs/{eid}", headers=auth()).json().get("status_reason", "")
            return said if "Kubernetes" in said else None

        message = wait_for(reason, 30, message="a dispatch failure in status_reason")
        assert "not created yet" in message
        assert client.get(f"/jobs/{eid}", headers=auth()).json()["status"] == "PENDING"
        metrics = client.get("/metrics").text
        assert 'guideline_api_dispatch_failures_total{kind="unavailable"}' in metrics
    assert count_rows(database) == 4
    assert guideline_jobs(cluster, namespace) == []
    with api_client(settings) as client:
        rows = [dispatched_row(database, a.json()["event_id"]) for a in answers]
        got = client.get(f"/jobs/{eid}", headers=auth()).json()
        assert "status_reason" not in got
    crs = guideline_jobs(cluster, namespace)
    assert sorted(cr["metadata"]["uid"] for cr in crs) == sorted(r["cr_uid"] for r in rows)


def test_database_down_is_503_and_creates_no_guideline_job(
    settings: ApiSettings, cluster: LocalCluster, namespace: str
) -> None:
    before = len(guideline_jobs(cluster, namespace))
    down = settings.model_copy(update={"database_url": dead_database_url()})
    with api_client(down) as client:
        response = client.post("/jobs", json={"guideline_text": TEXT}, headers=auth())
        assert response.status_code == 503
        assert problem(response)["reason"] == "database_unavailable"
        health = client.get("/health")
        assert health.status_code == 503
        assert health.json()["database"]["ok"] is False
        assert health.json()["kubernetes"]["ok"] is True
    assert len(guideline_jobs(cluster, namespace)) == before


def test_health_is_200_with_both_dependencies_up(client: TestClient, database: db.Database) -> None:
    client.post("/jobs", json={"guideline_text": TEXT}, headers=auth())
    body = health_when(client, lambda h: h["queue_size"] == 1)
    assert client.get("/health").status_code == 200
    assert body["database"]["ok"] and body["kubernetes"]["ok"]
    assert body["queue_size"] == 1 and body["running"] == 0
    assert body["status"] == "degraded"  # no operator heartbeat in this test
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO operator_heartbeat (identity) VALUES ('op-a')")
    health_when(client, lambda h: h["status"] == "ok")
    metrics = client.get("/metrics").text
    assert 'guideline_api_jobs_submitted_total{provider="default"} 1.0' in metrics
    assert 'guideline_db_jobs{status="PENDING"} 1.0' in metrics


def test_batch_accepts_valid_items_in_one_transaction_and_reports_each_error_by_index(
    client: TestClient, database: db.Database, cluster: LocalCluster, namespace: str
) -> None:
    items = [{"guideline_text": f"{TEXT} Section {n}.", "title": f"S{n}"} for n in range(3)] + [
        {"guideline_text": "   "},  # blank
        {"guideline_text": TEXT, "title": "Bad \x00 byte"},  # a control in the title
        {"guideline_text": TEXT, "colour": "red"},  # unknown field
        "not an object",
        {"guideline_text": TEXT, "idempotency_key": "item-7"},
    ]
    response = client.post("/jobs/batch", json={"items": items}, headers=auth())
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 4 and body["rejected"] == 4
    results = body["items"]
    assert [r["index"] for r in results] == list(range(8))
    accepted = [r for r in results if "event_id" in r]
    assert [r["index"] for r in accepted] == [0, 1, 2, 7]
    assert all(r["status"] == "PENDING" for r in accepted)
    errors = {r["index"]: r["error"] for r in results if "error" in r}
    assert errors[3]["reason"] == "validation_error"
    assert errors[3]["details"][0]["field"] == "items.3.guideline_text"
    assert errors[4]["reason"] == "control_characters"
    assert errors[4]["details"][0]["field"] == "items.4.title"
    assert errors[5]["details"][0]["field"] == "items.5.colour"
    assert "must be a JSON object" in errors[6]["message"]
    assert count_rows(database) == 4
    for r in accepted:
        dispatched_row(database, r["event_id"])
    assert len(guideline_jobs(cluster, namespace)) == 4
    titles = {row(database, r["event_id"])["title"] for r in accepted}
    assert titles == {"S0", "S1", "S2", None}

    # The same batch again with the item's own key: item 7 is a replay, the rest new.
    again = client.post("/jobs/batch", json={"items": items[7:]}, headers=auth()).json()
    assert again["items"][0]["replayed"] is True
    assert again["items"][0]["event_id"] == results[7]["event_id"]


def test_batch_with_an_idempotency_key_header_is_safe_to_retry(
    client: TestClient, database: db.Database
) -> None:
    items = [{"guideline_text": f"{TEXT} {n}"} for n in range(5)]
    key = {"Idempotency-Key": f"corpus-{uuid.uuid4()}"}
    first = client.post("/jobs/batch", json={"items": items}, headers={**auth(), **key})
    retried = client.post("/jobs/batch", json={"items": items}, headers={**auth(), **key})
    assert first.status_code == retried.status_code == 202
    assert first.json()["accepted"] == 5 and retried.json()["accepted"] == 0
    assert [r["event_id"] for r in first.json()["items"]] == [
        r["event_id"] for r in retried.json()["items"]
    ]
    assert all(r["replayed"] for r in retried.json()["items"])
    assert count_rows(database) == 5


def test_batch_limits_apply_to_the_whole_batch(
    settings: ApiSettings, database: db.Database
) -> None:
    limited = settings.model_copy(update={"max_pending_jobs": 3, "max_batch_size": 4})
    with api_client(limited) as client:
        too_many = [{"guideline_text": TEXT}] * 5
        big = client.post("/jobs/batch", json={"items": too_many}, headers=auth())
        assert big.status_code == 413 and problem(big)["reason"] == "batch_too_large"
        over = client.post("/jobs/batch", json={"items": too_many[:4]}, headers=auth())
        assert over.status_code == 429 and problem(over)["reason"] == "backlog_full"
        assert count_rows(database) == 0  # all or nothing for a limit
        fits = client.post("/jobs/batch", json={"items": too_many[:3]}, headers=auth())
        assert fits.status_code == 202 and fits.json()["accepted"] == 3
        empty = client.post("/jobs/batch", json={"items": []}, headers=auth())
        assert empty.status_code == 422
        unauth = client.post("/jobs/batch", json={"items": too_many[:1]})
        assert unauth.status_code == 401
    assert count_rows(database) == 3


def test_the_dispatcher_knows_its_own_guideline_job_by_the_document_reference(
    settings: ApiSettings, database: db.Database, cluster: LocalCluster, namespace: str
) -> None:
    """A create whose answer was lost is recognised by its `spec.documentRef`; an object
    squatting the name with another reference is not (the job FAILS, never runs another
    document)."""
    quiet = settings.model_copy(update={"dispatcher_enabled": False})
    with api_client(quiet) as client:
        own, squatted = (
            client.post("/v1/jobs", json={"guideline_text": t}, headers=auth()).json()["event_id"]
            for t in (TEXT, TEXT + " Twice.")
        )
    with database.connection() as conn:
        rows = {str(r["event_id"]): r for r in db.claim_dispatch(conn, 10, 60)}
    for eid, sha in ((own, rows[own]["document_ref"]["sha256"]), (squatted, "0" * 64)):
        ref = {**rows[eid]["document_ref"], "sha256": sha}
        cluster.create(
            gj.guideline_job_manifest(event_id=uuid.UUID(eid), document_ref=ref), namespace
        )
    kube_api = KubeGateway(namespace, str(cluster.kubeconfig))
    dispatcher = Dispatcher(database, kube_api, quiet, ApiMetrics())
    try:
        for eid in (own, squatted):
            dispatcher.dispatch(rows[eid])
    finally:
        kube_api.close()
    [cr] = guideline_jobs(cluster, namespace, own)
    assert row(database, own)["cr_uid"] == cr["metadata"]["uid"]
    failed = row(database, squatted)
    assert failed["status"] == "FAILED" and failed["cr_uid"] is None
    assert "taken by an object this job did not create" in failed["error"]["message"]
