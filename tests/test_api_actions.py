"""Cancel and retry through the API against the real control plane: the requests reach
the GuidelineJob as the annotations docs/contracts.md defines, finished jobs are refused
with 409, and a retry of a job whose GuidelineJob retention already deleted re-creates it.
No operator runs here; where the operator would change a job's state, the test writes
that state into the database itself."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from guideline_core import db
from guideline_core import resource as gj
from guideline_core.resource import Phase
from support.api import api_client, auth, make_settings
from support.cluster import LocalCluster

pytestmark = pytest.mark.cluster
TEXT = "Visitors must sign in at reception.\nBadges shall be worn at all times."


@pytest.fixture(scope="module")
def namespace(cluster: LocalCluster) -> Iterator[str]:
    name = cluster.create_namespace("api-actions")
    yield name
    cluster.delete_namespace(name)


@pytest.fixture
def client(database: db.Database, cluster: LocalCluster, namespace: str) -> Iterator[TestClient]:
    with api_client(make_settings(database.url, cluster.kubeconfig, namespace=namespace)) as c:
        yield c


def submit(client: TestClient, **extra: Any) -> str:
    response = client.post("/jobs", json={"guideline_text": TEXT, **extra}, headers=auth())
    assert response.status_code == 202, response.text
    return response.json()["event_id"]


def the_cr(cluster: LocalCluster, namespace: str, event_id: str) -> dict[str, Any]:
    items = cluster.get_json(
        "guidelinejobs", "-n", namespace, "-l", f"{gj.LABEL_EVENT_ID}={event_id}"
    )["items"]
    assert len(items) == 1, items
    return items[0]


def set_state(
    database: db.Database, event_id: str, status: Phase, attempts: int, **kw: Any
) -> None:
    """What the operator would mirror into the row."""
    with database.connection() as conn:
        db.mirror_state(
            conn,
            db.JobState(event_id=uuid.UUID(event_id), status=status, attempts=attempts, **kw),
        )


def history(client: TestClient, event_id: str) -> list[tuple[str, str | None]]:
    job = client.get(f"/jobs/{event_id}?include=history", headers=auth()).json()
    return [(h["status"], h["reason"]) for h in job["history"]]


@pytest.mark.parametrize("how", ["delete", "post"])
def test_cancel_annotates_pending_and_processing_jobs(
    client: TestClient, database: db.Database, cluster: LocalCluster, namespace: str, how: str
) -> None:
    pending, processing = submit(client), submit(client)
    set_state(database, processing, Phase.PROCESSING, 1)
    for eid, status in ((pending, "PENDING"), (processing, "PROCESSING")):
        assert gj.ANNOTATION_CANCEL_REQUESTED not in (
            the_cr(cluster, namespace, eid)["metadata"].get("annotations") or {}
        )
        if how == "delete":
            response = client.delete(f"/jobs/{eid}", headers=auth())
        else:
            response = client.post(f"/jobs/{eid}/cancel", headers=auth())
        assert response.status_code == 202, response.text
        assert response.json()["status"] == status  # the operator makes it CANCELLED
        annotations = the_cr(cluster, namespace, eid)["metadata"]["annotations"]
        assert annotations[gj.ANNOTATION_CANCEL_REQUESTED]
        assert ("PENDING" if status == "PENDING" else "PROCESSING", "CancelRequested") in (
            history(client, eid)
        )


def test_cancel_of_a_finished_job_is_409(client: TestClient, database: db.Database) -> None:
    eid = submit(client)
    set_state(database, eid, Phase.COMPLETED, 1, result={"summary": "s", "checklist": []})
    for response in (
        client.delete(f"/jobs/{eid}", headers=auth()),
        client.post(f"/jobs/{eid}/cancel", headers=auth()),
    ):
        assert response.status_code == 409
        assert response.json()["error"]["reason"] == "job_finished"
        assert "COMPLETED" in response.json()["error"]["message"]
    assert client.get(f"/jobs/{eid}", headers=auth()).json()["status"] == "COMPLETED"


def test_cancel_without_a_guideline_job_marks_the_row_cancelled(
    client: TestClient, cluster: LocalCluster, namespace: str
) -> None:
    eid = submit(client)
    cluster.kubectl(
        "delete",
        "guidelinejob",
        the_cr(cluster, namespace, eid)["metadata"]["name"],
        "-n",
        namespace,
    )
    response = client.delete(f"/jobs/{eid}", headers=auth())
    assert response.status_code == 202
    job = response.json()
    assert job["status"] == "CANCELLED"
    assert job["error"]["reason"] == "Cancelled"
    assert "no longer existed" in job["error"]["message"]
    assert client.delete(f"/jobs/{eid}", headers=auth()).status_code == 409


def test_retry_bumps_the_counter_and_clears_a_cancel_request(
    client: TestClient, database: db.Database, cluster: LocalCluster, namespace: str
) -> None:
    eid = submit(client)
    assert client.post(f"/jobs/{eid}/retry", headers=auth()).status_code == 409  # PENDING
    client.delete(f"/jobs/{eid}", headers=auth())
    set_state(
        database,
        eid,
        Phase.CANCELLED,
        1,
        error={"reason": "Cancelled", "message": "cancelled by alice"},
        reason="Cancelled",
    )
    response = client.post(f"/jobs/{eid}/retry", headers=auth())
    assert response.status_code == 202, response.text
    annotations = the_cr(cluster, namespace, eid)["metadata"]["annotations"]
    assert annotations[gj.ANNOTATION_RETRY_REQUESTED] == "1"
    assert gj.ANNOTATION_CANCEL_REQUESTED not in annotations

    # The operator ran the retry and it failed again; a second retry counts on.
    set_state(database, eid, Phase.PENDING, 1)
    set_state(
        database,
        eid,
        Phase.FAILED,
        3,
        error={"reason": "BackoffLimitExceeded", "message": "failed"},
        reason="BackoffLimitExceeded",
    )
    assert client.post(f"/jobs/{eid}/retry", headers=auth()).status_code == 202
    cr = the_cr(cluster, namespace, eid)
    assert cr["metadata"]["annotations"][gj.ANNOTATION_RETRY_REQUESTED] == "2"
    assert [r for _, r in history(client, eid)].count("RetryRequested") == 2
    job = client.get(f"/jobs/{eid}", headers=auth()).json()
    assert job["attempts"] == 3  # attempts keep counting across retries


def test_retry_uses_the_operators_count_when_it_is_ahead(
    client: TestClient, database: db.Database, cluster: LocalCluster, namespace: str
) -> None:
    eid = submit(client)
    name = the_cr(cluster, namespace, eid)["metadata"]["name"]
    cluster.kubectl(
        "patch",
        "guidelinejob",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"phase": "FAILED", "retryRequests": 4}}',
    )
    set_state(database, eid, Phase.FAILED, 5, error={"reason": "Timeout", "message": "t"})
    assert client.post(f"/jobs/{eid}/retry", headers=auth()).status_code == 202
    annotations = the_cr(cluster, namespace, eid)["metadata"]["annotations"]
    assert annotations[gj.ANNOTATION_RETRY_REQUESTED] == "5"


def test_retry_recreates_a_guideline_job_deleted_by_retention(
    client: TestClient, database: db.Database, cluster: LocalCluster, namespace: str
) -> None:
    eid = submit(client, title="Visitors", provider="extractive")
    old = the_cr(cluster, namespace, eid)
    set_state(
        database,
        eid,
        Phase.FAILED,
        2,
        error={"reason": "LLMRejected", "message": "401"},
        reason="LLMRejected",
    )
    cluster.kubectl("delete", "guidelinejob", old["metadata"]["name"], "-n", namespace)

    response = client.post(f"/jobs/{eid}/retry", headers=auth())
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "PENDING" and job["attempts"] == 2
    assert "error" not in job

    new = the_cr(cluster, namespace, eid)
    assert new["metadata"]["name"] != old["metadata"]["name"]
    assert new["metadata"]["labels"][gj.LABEL_EVENT_ID] == eid
    assert new["spec"] == {"guidelineText": TEXT, "title": "Visitors", "provider": "extractive"}
    assert gj.ANNOTATION_RETRY_REQUESTED not in new["metadata"].get("annotations", {})
    assert new["metadata"]["annotations"][gj.ANNOTATION_SUBMITTED_BY] == "alice"
    with database.connection() as conn:
        stored = db.get_job(conn, uuid.UUID(eid))
    assert stored["cr_name"] == new["metadata"]["name"]
    assert history(client, eid) == [
        ("PENDING", "Accepted"),
        ("FAILED", "LLMRejected"),
        ("PENDING", "RetryRequested"),
    ]


def test_retry_of_a_completed_job_is_409(client: TestClient, database: db.Database) -> None:
    eid = submit(client)
    set_state(database, eid, Phase.COMPLETED, 1, result={"summary": "s", "checklist": []})
    response = client.post(f"/jobs/{eid}/retry", headers=auth())
    assert response.status_code == 409
    assert response.json()["error"]["reason"] == "job_not_retryable"
