"""The published contract: a client generated from the served OpenAPI document by a
third-party generator drives jobs against the real server, errors are RFC 9457 problems,
/v1 and the unversioned aliases serve the same operations, and the response check every API
test runs (support.contract) fails on a response the document does not allow.

The API points at a dead Kubernetes API: submitting, reading, listing, cancelling and
retrying are decided in PostgreSQL alone (the jobs wait PENDING for the cluster)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from guideline_api.app import create_app
from guideline_api.http.errors import install_handlers
from guideline_core import db
from guideline_core.resource import Phase
from schemathesis.core.failures import FailureGroup
from support.api import (
    ALICE_KEY,
    api_client,
    api_http,
    auth,
    dead_database_url,
    dead_kubeconfig,
    make_settings,
    problem,
    running_server,
)
from support.contract import contract_for
from support.rows import add_job

TEXT = "Staff must wash hands before every patient contact.\nGloves should be changed."
PACKAGE = "guideline_generated_client"


def generate_client(document: dict[str, Any], directory: Path) -> ModuleType:
    """The package openapi-python-client generates from `document`, imported."""
    directory.mkdir(parents=True, exist_ok=True)
    spec = directory / "openapi.json"
    spec.write_text(json.dumps(document))
    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            str(spec),
            "--meta",
            "none",
            "--output-path",
            str(directory / PACKAGE),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
        # Its post-generation step formats the code with ruff, found on PATH.
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    sys.path.insert(0, str(directory))
    try:
        return importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(directory))


@pytest.fixture
def generated() -> Iterator[None]:
    """Forget the generated package afterwards (each test generates its own)."""
    yield
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
        del sys.modules[name]


def test_a_generated_client_drives_a_job_through_its_life(
    database: db.Database, tmp_path: Path, generated: None
) -> None:
    settings = make_settings(database.url, dead_kubeconfig(tmp_path))
    with running_server(settings) as url:
        document = httpx.get(f"{url}/openapi.json", timeout=30).json()
        client_pkg = generate_client(document, tmp_path / "gen")
        api = importlib.import_module(f"{PACKAGE}.api.jobs")
        for name in ("submit_job", "get_job", "list_jobs", "cancel_job", "retry_job"):
            importlib.import_module(f"{PACKAGE}.api.jobs.{name}")
        models = importlib.import_module(f"{PACKAGE}.models")
        contract = contract_for(document)
        seen = contract.checked
        hooks = {"event_hooks": {"response": [contract.check]}}  # checked like every test
        client = client_pkg.AuthenticatedClient(base_url=url, token=ALICE_KEY, httpx_args=hooks)

        submitted = api.submit_job.sync_detailed(
            client=client,
            body=models.SubmitJob(guideline_text=TEXT, title="Hand hygiene"),
            idempotency_key=f"gen-{uuid.uuid4()}",
        )
        assert submitted.status_code == 202
        job = submitted.parsed
        assert isinstance(job, models.JobView)
        assert job.status == models.JobViewStatus.PENDING and job.title == "Hand hygiene"
        assert submitted.headers["Location"] == f"/v1/jobs/{job.event_id}"

        read = api.get_job.sync(job.event_id, client=client, include="text")
        assert isinstance(read, models.JobView)
        assert read.event_id == job.event_id and read.guideline_text == TEXT
        assert read.queue.position == 1 and read.tenant == "alice"

        page = api.list_jobs.sync(client=client, status="PENDING", limit=10)
        assert isinstance(page, models.JobPage)
        assert [item.event_id for item in page.items] == [job.event_id]
        assert page.next_cursor is None

        cancelled = api.cancel_job.sync(job.event_id, client=client)
        assert isinstance(cancelled, models.JobView)
        assert cancelled.status == models.JobViewStatus.CANCELLED
        assert cancelled.error.reason == "Cancelled"

        retried = api.retry_job.sync(job.event_id, client=client)
        assert isinstance(retried, models.JobView)
        assert retried.status == models.JobViewStatus.PENDING

        # Errors come back as the typed problem model.
        again = api.retry_job.sync_detailed(job.event_id, client=client)
        assert again.status_code == 409
        refused = again.parsed
        assert isinstance(refused, models.Problem)
        assert refused.reason == "job_not_retryable" and refused.status == 409
        assert refused.type_ == "https://guideline-ingest.dev/problems/job_not_retryable"
        assert refused.instance == f"/v1/jobs/{job.event_id}/retry"
        missing = api.get_job.sync(str(uuid.uuid4()), client=client)
        assert isinstance(missing, models.Problem) and missing.reason == "not_found"
        nobody = client_pkg.AuthenticatedClient(base_url=url, token="not-a-key")
        denied = api.get_job.sync(job.event_id, client=nobody)
        assert isinstance(denied, models.Problem) and denied.reason == "invalid_api_key"
        assert contract.checked - seen == 7  # every answer but the last (no hook) checked


def test_every_error_path_answers_a_problem(database: db.Database, tmp_path: Path) -> None:
    settings = make_settings(database.url, dead_kubeconfig(tmp_path), max_body_bytes=1000)
    with running_server(settings) as url, api_http(url) as http:
        unauthorized = problem(http.get("/v1/jobs"), 401)  # the AuthGate, before routing
        assert unauthorized["reason"] == "missing_api_key"
        assert http.get("/v1/jobs").headers["WWW-Authenticate"].startswith("Bearer")
        too_big = http.post("/v1/jobs", content=b"x" * 1001, headers=auth())  # the size cap
        assert problem(too_big, 413)["reason"] == "body_too_large"
        nowhere = problem(http.get("/v1/nowhere", headers=auth()), 404)  # FastAPI's 404
        assert nowhere["reason"] == "not_found" and nowhere["instance"] == "/v1/nowhere"
        wrong_method = http.put("/v1/jobs", headers=auth())  # FastAPI's 405
        assert problem(wrong_method, 405)["reason"] == "method_not_allowed"
        bad_limit = problem(http.get("/v1/jobs?limit=0", headers=auth()), 422)  # FastAPI's 422
        assert bad_limit["reason"] == "validation_error"
        assert bad_limit["details"][0]["field"] == "limit"
        invalid = problem(http.post("/v1/jobs", json={}, headers=auth()), 422)  # our own
        assert invalid["details"] == [
            {"field": "guideline_text", "message": "Field required", "type": "missing"}
        ]
    with api_client(make_settings(dead_database_url(), dead_kubeconfig(tmp_path))) as client:
        down = problem(client.get(f"/v1/jobs/{uuid.uuid4()}", headers=auth()), 503)
        assert down["reason"] == "database_unavailable"


def test_v1_and_the_unversioned_aliases_serve_the_same_operations(
    database: db.Database, tmp_path: Path
) -> None:
    with api_client(make_settings(database.url, dead_kubeconfig(tmp_path))) as client:
        posted = client.post("/v1/jobs", json={"guideline_text": TEXT}, headers=auth())
        assert posted.status_code == 202
        event_id = posted.json()["event_id"]
        assert posted.headers["Location"] == f"/v1/jobs/{event_id}"
        old = client.post("/jobs", json={"guideline_text": TEXT}, headers=auth())
        assert old.headers["Location"] == f"/jobs/{old.json()['event_id']}"
        # A finished job (the dispatcher's retries with Kubernetes down change a PENDING one).
        done = add_job(database, status=Phase.FAILED, error={"reason": "Timeout", "message": "t"})
        for path in (f"/jobs/{done}", "/jobs?status=FAILED"):
            aliased, versioned = (
                client.get(path, headers=auth()),
                client.get(f"/v1{path}", headers=auth()),
            )
            assert aliased.status_code == versioned.status_code == 200
            assert aliased.json() == versioned.json()
        document = client.get("/openapi.json").json()
    paths = document["paths"]
    # The runner's API is new, for runner pods only: /v1 without an alias.
    runner_paths = {p for p in paths if p.startswith("/v1/runner/")}
    assert runner_paths == {
        "/v1/runner/jobs/{event_id}/document",
        "/v1/runner/jobs/{event_id}/text",
    }
    versioned_paths = [p for p in paths if p.startswith("/v1/") and p not in runner_paths]
    assert {p.removeprefix("/v1") for p in versioned_paths} == {
        p for p in paths if p.startswith(("/jobs", "/audit"))
    }
    for path in versioned_paths:
        for method, operation in paths[path].items():
            alias = paths[path.removeprefix("/v1")][method]
            assert alias["deprecated"] is True and "deprecated" not in operation
            assert alias["responses"] == operation["responses"]
            assert alias["operationId"] == operation["operationId"] + "_unversioned"
    assert "/health" in paths and "/v1/health" not in paths


def _forged(method: str, path: str, status: int, body: Any, **headers: str) -> httpx.Response:
    media = headers.pop("content_type", "application/json")
    response = httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"content-type": media, **headers},
        request=httpx.Request(method, f"http://api{path}"),
    )
    response.elapsed = timedelta(0)  # as if received
    return response


def test_the_response_check_fails_on_what_the_document_does_not_allow(
    database: db.Database, tmp_path: Path
) -> None:
    app = create_app(make_settings(database.url, dead_kubeconfig(tmp_path)))
    with TestClient(app) as client:
        real = client.post("/v1/jobs", json={"guideline_text": TEXT}, headers=auth())
    contract = contract_for(app.openapi())
    contract.check(real)  # what the server answered conforms
    job = real.json()
    path = f"/v1/jobs/{job['event_id']}"
    gone = {
        "type": "https://guideline-ingest.dev/problems/not_found",
        "title": "Not found",
        "status": 404,
        "detail": "no job",
        "instance": path,
        "reason": "not_found",
    }
    contract.check(_forged("GET", path, 404, gone, content_type="application/problem+json"))
    wrong = [
        _forged("GET", path, 200, {**job, "status": "DONE"}),  # not a status
        _forged("GET", path, 200, {k: v for k, v in job.items() if k != "tenant"}),  # missing
        _forged("GET", path, 404, gone),  # a problem sent as application/json
        _forged(
            "GET",
            path,
            404,
            {"error": {"reason": "not_found"}},  # the old error body
            content_type="application/problem+json",
        ),
        _forged("GET", path, 418, gone, content_type="application/problem+json"),  # undeclared
        _forged(
            "GET",
            "/v1/jobs",
            401,
            {**gone, "status": 401, "reason": "missing_api_key"},
            content_type="application/problem+json",
        ),  # without WWW-Authenticate
    ]
    for response in wrong:
        with pytest.raises(FailureGroup):
            contract.check(response)
    with pytest.raises(AssertionError):  # no operation: still must be a problem
        contract.check(_forged("GET", "/v1/nowhere", 404, {"detail": "Not Found"}))


def test_an_unexpected_exception_is_a_500_problem() -> None:
    """The handlers the API installs (errors.install_handlers), on an app with a route that
    fails: no route of the API fails on purpose."""
    app = FastAPI()
    install_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        failed = problem(client.get("/boom"), 500)
    assert failed["reason"] == "internal_error" and "a bug" not in failed["detail"]
