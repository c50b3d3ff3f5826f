"""Cancel and retry through the API against the real control plane: each answers with the
state the job is in now (CANCELLED, or PENDING for a retry) and every later read agrees,
even when a stale state of the old run is mirrored afterwards; the dispatcher carries the
request to the GuidelineJob as the annotations docs/contracts.md defines; finished jobs are
refused with 409; a retry of a job whose GuidelineJob retention deleted re-creates it with
its max_retries. No operator runs here; where the operator would change a job's state, the
test writes that state into the database itself."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from guideline_core import db
from guideline_core import resource as gj
from guideline_core.resource import Phase
from support.api import api_client, auth, dispatched_row, make_settings, problem, submit
from support.cluster import LocalCluster, wait_for
from support.rows import set_state

pytestmark = pytest.mark.cluster
TEXT = "Visitors must sign in at reception.\nBadges shall be worn at all times."


@pytest.fixture
def client(database: db.Database, cluster: LocalCluster, namespace: str) -> Iterator[TestClient]:
    with api_client(make_settings(database.url, cluster.kubeconfig, namespace=namespace)) as c:
        yield c


def submit_dispatched(client: TestClient, database: db.Database, **fields: Any) -> str:
    """Submit and wait until the dispatcher created the GuidelineJob."""
    eid = submit(client, TEXT, **fields)
    dispatched_row(database, eid)
    return eid


def annotation(cluster: LocalCluster, namespace: str, event_id: str, key: str) -> str | None:
    return (the_cr(cluster, namespace, event_id)["metadata"].get("annotations") or {}).get(key)


def carried(
    cluster: LocalCluster, namespace: str, event_id: str, key: str, value: str | None
) -> None:
    """Wait until the dispatcher has set annotation `key` to `value` (None: removed)."""
    wait_for(
        lambda: annotation(cluster, namespace, event_id, key) == value or None,
        30,
        0.1,
        f"{key}={value} on the GuidelineJob",
    )


def the_cr(cluster: LocalCluster, namespace: str, event_id: str) -> dict[str, Any]:
    items = cluster.get_json(
        "guidelinejobs", "-n", namespace, "-l", f"{gj.LABEL_EVENT_ID}={event_id}"
    )["items"]
    assert len(items) == 1, items
    return items[0]


def history(client: TestClient, event_id: str) -> list[tuple[str, str | None]]:
    job = client.get(f"/jobs/{event_id}?include=history", headers=auth()).json()
    return [(h["status"], h["reason"]) for h in job["history"]]


@pytest.mark.parametrize("how", ["delete", "post"])
def test_cancel_answers_cancelled_at_once_and_the_request_reaches_the_cr(
    client: TestClient, database: db.Database, cluster: LocalCluster, namespace: str, how: str
) -> None:
    pending, processing = submit_dispatched(client, database), submit_dispatched(client, database)
    set_state(database, processing, Phase.PROCESSING, 1)
    for eid in (pending, processing):
        assert annotation(cluster, namespace, eid, gj.ANNOTATION_CANCEL_REQUESTED) is None
        if how == "delete":
            response = client.delete(f"/jobs/{eid}", headers=auth())
        else:
            response = client.post(f"/jobs/{eid}/cancel", headers=auth())
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "CANCELLED"
        assert response.json()["error"]["reason"] == "Cancelled"
        wait_for(
            lambda eid=eid: annotation(cluster, namespace, eid, gj.ANNOTATION_CANCEL_REQUESTED),
            30,
            0.1,
            "cancel-requested on the GuidelineJob",
        )
        # The pod finished at that moment and the operator mirrors it: CANCELLED holds.
        set_state(database, eid, Phase.COMPLETED, 1, result={"summary": "s", "checklist": []})
        assert client.get(f"/jobs/{eid}", headers=auth()).json()["status"] == "CANCELLED"
        assert ("CANCELLED", "Cancelled") in history(client, eid)


def test_cancel_of_a_finished_job_is_409(client: TestClient, database: db.Database) -> None:
    eid = submit_dispatched(client, database)
    set_state(database, eid, Phase.COMPLETED, 1, result={"summary": "s", "checklist": []})
    for response in (
        client.delete(f"/jobs/{eid}", headers=auth()),
        client.post(f"/jobs/{eid}/cancel", headers=auth()),
    ):
        assert response.status_code == 409
        assert problem(response)["reason"] == "job_finished"
        assert "COMPLETED" in problem(response)["detail"]
    assert client.get(f"/jobs/{eid}", headers=auth()).json()["status"] == "COMPLETED"


def test_cancel_without_a_guideline_job_leaves_the_outbox(
    client: TestClient, database: db.Database, cluster: LocalCluster, namespace: str
) -> None:
    eid = submit_dispatched(client, database)
    cluster.kubectl("delete", "guidelinejob", gj.cr_name_for(eid), "-n", namespace)
    response = client.delete(f"/jobs/{eid}", headers=auth())
    assert response.status_code == 202
    assert response.json()["status"] == "CANCELLED"
    wait_for(lambda: not _row(database, eid)["dispatch_pending"], 30, 0.1, "dispatch done")
    assert (
        cluster.get_json("guidelinejobs", "-n", namespace, "-l", f"{gj.LABEL_EVENT_ID}={eid}")[
            "items"
        ]
        == []
    )
    assert client.delete(f"/jobs/{eid}", headers=auth()).status_code == 409


def _row(database: db.Database, eid: str) -> dict[str, Any]:
    with database.connection() as conn:
        row = db.get_job(conn, uuid.UUID(eid))
    assert row is not None
    return row


def test_retry_answers_pending_at_once_and_counts_runs(
    client: TestClient, database: db.Database, cluster: LocalCluster, namespace: str
) -> None:
    eid = submit_dispatched(client, database)
    assert client.post(f"/jobs/{eid}/retry", headers=auth()).status_code == 409  # PENDING
    assert client.delete(f"/jobs/{eid}", headers=auth()).json()["status"] == "CANCELLED"
    carried(cluster, namespace, eid, gj.ANNOTATION_CANCEL_REQUESTED, _iso(database, eid))

    response = client.post(f"/jobs/{eid}/retry", headers=auth())
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "PENDING" and "error" not in response.json()
    # The operator, not having seen the retry yet, mirrors the old run's outcome: ignored.
    set_state(database, eid, Phase.CANCELLED, 1, error={"reason": "Cancelled", "message": "x"})
    assert client.get(f"/jobs/{eid}", headers=auth()).json()["status"] == "PENDING"
    carried(cluster, namespace, eid, gj.ANNOTATION_RETRY_REQUESTED, "1")
    carried(cluster, namespace, eid, gj.ANNOTATION_CANCEL_REQUESTED, None)

    # The operator ran the retry (run 1) and it failed again; a second retry counts on.
    set_state(database, eid, Phase.PROCESSING, 2, run=1)
    set_state(
        database,
        eid,
        Phase.FAILED,
        3,
        error={"reason": "BackoffLimitExceeded", "message": "failed"},
        reason="BackoffLimitExceeded",
        run=1,
    )
    assert client.get(f"/jobs/{eid}", headers=auth()).json()["status"] == "FAILED"
    assert client.post(f"/jobs/{eid}/retry", headers=auth()).status_code == 202
    carried(cluster, namespace, eid, gj.ANNOTATION_RETRY_REQUESTED, "2")
    assert [r for _, r in history(client, eid)].count("RetryRequested") == 2
    job = client.get(f"/jobs/{eid}", headers=auth()).json()
    assert job["attempts"] == 3  # attempts keep counting across retries


def _iso(database: db.Database, eid: str) -> str:
    return _row(database, eid)["cancel_requested_at"].isoformat()


def test_retry_counts_on_from_a_retry_made_with_kubectl(
    client: TestClient, database: db.Database, cluster: LocalCluster, namespace: str
) -> None:
    """A user annotated the CR directly four times; the operator mirrored run 4."""
    eid = submit_dispatched(client, database)
    set_state(database, eid, Phase.FAILED, 5, error={"reason": "Timeout", "message": "t"}, run=4)
    assert client.post(f"/jobs/{eid}/retry", headers=auth()).status_code == 202
    carried(cluster, namespace, eid, gj.ANNOTATION_RETRY_REQUESTED, "5")


def test_retry_recreates_a_guideline_job_deleted_by_retention(
    client: TestClient, database: db.Database, cluster: LocalCluster, namespace: str
) -> None:
    eid = submit_dispatched(
        client, database, title="Visitors", provider="extractive", max_retries=1
    )
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

    stored = dispatched_row(database, eid)
    new = the_cr(cluster, namespace, eid)
    assert new["metadata"]["uid"] == stored["cr_uid"] != old["metadata"]["uid"]
    assert new["metadata"]["name"] == gj.cr_name_for(eid)
    # The same stored document: the re-created GuidelineJob carries the same reference.
    assert new["spec"]["documentRef"] == old["spec"]["documentRef"]
    assert new["spec"]["documentRef"]["id"] == str(stored["document_id"])
    assert new["spec"] == {
        "documentRef": old["spec"]["documentRef"],
        "title": "Visitors",
        "provider": "extractive",
        "maxRetries": 1,  # kept across the re-creation
    }
    assert new["metadata"]["annotations"][gj.ANNOTATION_RETRY_REQUESTED] == "1"
    assert new["metadata"]["annotations"][gj.ANNOTATION_SUBMITTED_BY] == "alice"
    assert history(client, eid) == [
        ("PENDING", "Accepted"),
        ("FAILED", "LLMRejected"),
        ("PENDING", "RetryRequested"),
    ]


def test_retry_of_a_completed_job_is_409(client: TestClient, database: db.Database) -> None:
    eid = submit_dispatched(client, database)
    set_state(database, eid, Phase.COMPLETED, 1, result={"summary": "s", "checklist": []})
    response = client.post(f"/jobs/{eid}/retry", headers=auth())
    assert response.status_code == 409
    assert problem(response)["reason"] == "job_not_retryable"
