"""The runner's API against the real control plane: a runner pod's projected
ServiceAccount token reads its own job's document and no other (docs/contracts.md, "The
runner's API").

The tokens are made as a kubelet makes them: the TokenRequest API with the pod as the bound
object (`kubectl create token --bound-object-kind Pod`), so the TokenReview the API asks
for sees the pod's name and uid. The pods are real Pod objects held unscheduled (a node
selector nothing matches): a token is bound to the object, not to a running process.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from guideline_core import db
from guideline_core import resource as gj
from support.api import api_client, auth, dispatched_row, make_settings, problem, submit
from support.cluster import LocalCluster, wait_for
from support.documents import guideline

pytestmark = pytest.mark.cluster

AUDIENCE = "guideline-ingest.dev/runner"
RUNNER_SA = "guideline-runner"
TEXT = "Staff must wash hands before every patient contact.\nGloves must be changed."
PDF = guideline("nist-sp800-63b-authentication", ".pdf")


@pytest.fixture
def namespace(cluster: LocalCluster) -> Iterator[str]:
    name = cluster.create_namespace("runner-api")
    for account in (RUNNER_SA, "other"):
        cluster.kubectl("create", "serviceaccount", account, "-n", name)
    try:
        yield name
    finally:
        cluster.delete_namespace(name)


@pytest.fixture
def client(database: db.Database, cluster: LocalCluster, namespace: str) -> Iterator[TestClient]:
    # No positive answer reused: each request below is checked afresh.
    settings = make_settings(
        database.url, cluster.kubeconfig, namespace=namespace, runner_auth_cache_seconds=0
    )
    with api_client(settings) as client:
        yield client


def _pod(
    cluster: LocalCluster, namespace: str, event_id: str, account: str = RUNNER_SA
) -> dict[str, Any]:
    """A runner-like pod of job `event_id` (labelled as the operator labels them)."""
    return cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": "runner-",
                "labels": {gj.LABEL_EVENT_ID: event_id},
            },
            "spec": {
                "serviceAccountName": account,
                "nodeSelector": {"guideline-ingest.dev/no-such-node": "true"},
                "containers": [{"name": "runner", "image": "registry.invalid/none:0"}],
            },
        },
        namespace,
    )


def _token(
    cluster: LocalCluster,
    namespace: str,
    pod: dict[str, Any],
    *,
    audience: str = AUDIENCE,
    account: str = RUNNER_SA,
) -> str:
    """A token of `account` bound to `pod`, as the kubelet requests one for a projected
    volume."""
    meta = pod["metadata"]
    return cluster.kubectl(
        "create", "token", account, "-n", namespace, "--audience", audience,
        "--bound-object-kind", "Pod", "--bound-object-name", meta["name"],
        "--bound-object-uid", meta["uid"], "--duration", "10m",
    ).stdout.strip()  # fmt: skip


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _document(client: TestClient, event_id: str, token: str | None) -> Any:
    headers = _bearer(token) if token is not None else {}
    return client.get(f"/v1/runner/jobs/{event_id}/document", headers=headers)


def _submit_pdf(client: TestClient) -> str:
    with PDF.open("rb") as handle:
        response = client.post(
            "/v1/jobs",
            files={"file": ("guideline.pdf", handle, "application/octet-stream")},
            data={"title": "NIST 800-63B"},
            headers=auth(),
        )
    assert response.status_code == 202, response.text
    return response.json()["event_id"]


def test_a_runner_pod_reads_its_own_jobs_document_and_no_other(
    client: TestClient, cluster: LocalCluster, namespace: str, database: db.Database
) -> None:
    mine, theirs = _submit_pdf(client), submit(client, TEXT, path="/v1/jobs")
    ref = dispatched_row(database, mine)  # its GuidelineJob exists, carrying the reference
    cr = cluster.get_json("guidelinejobs", ref["cr_name"], "-n", namespace)
    pod = _pod(cluster, namespace, mine)
    token = _token(cluster, namespace, pod)

    answer = _document(client, mine, token)
    assert answer.status_code == 200, answer.text
    data = PDF.read_bytes()
    assert answer.content == data
    assert answer.headers["content-type"] == "application/pdf"
    assert answer.headers["x-document-sha256"] == hashlib.sha256(data).hexdigest()
    assert cr["spec"]["documentRef"] == {
        "id": str(ref["document_id"]),
        "sha256": hashlib.sha256(data).hexdigest(),
        "mediaType": "application/pdf",
        "bytes": len(data),
    }

    refused = problem(_document(client, theirs, token), 403)
    assert refused["reason"] == "not_this_jobs_runner"
    assert mine in refused["detail"] and theirs in refused["detail"]
    # Nor a job that does not exist (no pod of it can exist).
    assert problem(_document(client, str(uuid.uuid4()), token), 403)["reason"] == (
        "not_this_jobs_runner"
    )

    # The other job's own runner reads its text, stored as a document.
    other = _token(cluster, namespace, _pod(cluster, namespace, theirs))
    text = _document(client, theirs, other)
    assert text.status_code == 200 and text.content == TEXT.encode()
    assert text.headers["content-type"] == "text/plain; charset=utf-8"


def test_tokens_that_are_not_the_jobs_runner_are_refused(
    client: TestClient, cluster: LocalCluster, namespace: str
) -> None:
    job = submit(client, TEXT, path="/v1/jobs")
    pod = _pod(cluster, namespace, job)

    # No token, and a token that is not one.
    assert problem(_document(client, job, None), 401)["reason"] == "invalid_runner_token"
    assert problem(_document(client, job, "not-a-token"), 401)["reason"] == "invalid_runner_token"
    # The pod's token for another audience (e.g. the API server's own).
    wrong_audience = _token(cluster, namespace, pod, audience="https://kubernetes.default.svc")
    assert problem(_document(client, job, wrong_audience), 401)["reason"] == (
        "invalid_runner_token"
    )
    # A token of another ServiceAccount, bound to a pod labelled as this job's runner.
    impostor = _pod(cluster, namespace, job, account="other")
    foreign = _token(cluster, namespace, impostor, account="other")
    assert problem(_document(client, job, foreign), 403)["reason"] == "not_this_jobs_runner"

    # A finished pod's token: refused although the API server still authenticates it.
    finished = _pod(cluster, namespace, job)
    finished_token = _token(cluster, namespace, finished)
    assert _document(client, job, finished_token).status_code == 200
    cluster.kubectl(
        "patch", "pod", finished["metadata"]["name"], "-n", namespace,
        "--subresource=status", "--type=merge", "-p", '{"status": {"phase": "Succeeded"}}',
    )  # fmt: skip
    assert problem(_document(client, job, finished_token), 403)["reason"] == (
        "not_this_jobs_runner"
    )

    # A deleted pod's token: the API server no longer authenticates it.
    token = _token(cluster, namespace, pod)
    assert _document(client, job, token).status_code == 200
    cluster.kubectl("delete", "pod", pod["metadata"]["name"], "-n", namespace, "--wait=true")
    refused = wait_for(
        lambda: (r := _document(client, job, token)).status_code != 200 and r,
        timeout=30,
        message="the deleted pod's token refused",
    )
    assert problem(refused)["reason"] in ("invalid_runner_token", "not_this_jobs_runner")


def test_the_runner_puts_the_extracted_text(
    client: TestClient, cluster: LocalCluster, namespace: str
) -> None:
    job, other_job = _submit_pdf(client), submit(client, TEXT, path="/v1/jobs")
    token = _token(cluster, namespace, _pod(cluster, namespace, job))
    assert client.get(f"/v1/jobs/{job}?include=text", headers=auth()).json()["guideline_text"] == ""
    data = PDF.read_bytes()
    report = {
        "text": "Extracted text of the guideline.",
        "document": {
            "media_type": "application/pdf",
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "pages": 3,
            "characters": 32,
            "extractor": "pypdfium2",
            "extractor_version": "5.0.0",
            "warnings": [{"kind": "mojibake", "count": 1, "first_offset": 4}],
        },
    }
    for _ in range(2):  # idempotent: a retried pod puts again
        answer = client.put(f"/v1/runner/jobs/{job}/text", json=report, headers=_bearer(token))
        assert answer.status_code == 204, answer.text
    view = client.get(f"/v1/jobs/{job}?include=text", headers=auth()).json()
    assert view["guideline_text"] == report["text"]
    assert view["document"] == report["document"]

    # A report that does not hold up is refused, and changes nothing.
    for bad in (
        {**report, "document": {**report["document"], "sha256": "not-hex"}},
        {**report, "text": "a\x00b"},
    ):
        answer = client.put(f"/v1/runner/jobs/{job}/text", json=bad, headers=_bearer(token))
        assert problem(answer, 422)["reason"] == "validation_error"
    assert (
        client.get(f"/v1/jobs/{job}?include=text", headers=auth()).json()["guideline_text"]
        == report["text"]
    )

    # Not another job's text.
    refused = client.put(f"/v1/runner/jobs/{other_job}/text", json=report, headers=_bearer(token))
    assert problem(refused, 403)["reason"] == "not_this_jobs_runner"
    assert (
        client.get(f"/v1/jobs/{other_job}?include=text", headers=auth()).json()["guideline_text"]
        == TEXT
    )
