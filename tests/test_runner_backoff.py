"""The runner's two clients retry what may pass and stop on what will not
(`guideline_runner.backoff`): its GuidelineJob over the fake Kubernetes client
(tests/support/fake_kube.py) with scripted failures in front, and the REST API's runner
endpoints against a local HTTP server that answers a scripted sequence."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from guideline_core import resource as gj
from guideline_core.k8s import KubeError, paths
from guideline_core.k8s.errors import error_for
from guideline_core.resource import FailureReason
from guideline_runner.api_client import RunnerApi
from guideline_runner.errors import ChainError
from guideline_runner.guidelinejob_client import GuidelineJobClient
from support.fake_kube import FakeApiServer, FakeClient
from support.net import free_port

NO_WAIT = (0.0, 0.0, 0.0)


def status(code: int, reason: str) -> KubeError:
    """The error kube-apiserver's Status answer `code`/`reason` becomes."""
    body = json.dumps({"kind": "Status", "code": code, "reason": reason, "message": reason})
    return error_for(code, body)


class Failing:
    """FakeApiServer behind scripted failures: each request first takes the next error of
    `errors` (None: let it through) and counts."""

    def __init__(self, server: FakeApiServer, errors: list[KubeError | None]) -> None:
        self.server = server
        self.errors = errors
        self.requests = 0

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        self.requests += 1
        error = self.errors.pop(0) if self.errors else None
        if error is not None:
            raise error
        return self.server.request(method, path, **kwargs)

    def close(self) -> None:
        self.server.close()


def job_client(
    errors: list[KubeError | None], name: str = "gj-1"
) -> tuple[GuidelineJobClient, Failing]:
    """The runner's client for GuidelineJob ns/`name` (ns/gj-1 exists), behind `errors`."""
    fake = FakeClient()
    fake.create_namespace("ns")
    body = {"metadata": {"name": "gj-1"}, "spec": {"guidelineText": "Wash hands."}}
    fake.create(paths.guidelinejobs("ns"), {"apiVersion": gj.API_VERSION, "kind": gj.KIND, **body})
    failing = Failing(fake.server, errors)
    fake.transport = failing
    return GuidelineJobClient(name, "ns", fake, delays=NO_WAIT), failing


def test_guidelinejob_transient_errors_are_retried_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    no_answer = KubeError("connection refused", status=None)
    client, failing = job_client([status(503, "ServiceUnavailable"), no_answer, None])
    with caplog.at_level(logging.WARNING, logger="guideline_runner.guidelinejob_client"):
        assert client.read()["metadata"]["name"] == "gj-1"
    assert failing.requests == 3
    problems = [r.problem for r in caplog.records]  # type: ignore[attr-defined]
    assert problems == ["503 ServiceUnavailable", "connection refused"]
    assert {r.getMessage() for r in caplog.records} == {"kubernetes API call failed; retrying"}


def test_guidelinejob_unreachable_after_every_try_is_retryable() -> None:
    no_answer = KubeError("connection refused", status=None)
    client, failing = job_client([no_answer] * 4)
    with pytest.raises(ChainError) as raised:
        client.patch_status({"progress": {"step": "summary"}})
    assert failing.requests == 4  # the first try and one per delay
    assert raised.value.retryable and raised.value.reason == FailureReason.INTERNAL
    assert "unreachable on patch the status of GuidelineJob ns/gj-1" in raised.value.message


def test_guidelinejob_forbidden_is_retried_then_final() -> None:
    # A kube-apiserver that has just restarted answers 403 for a moment: that passes...
    client, failing = job_client([status(403, "Forbidden"), None])
    assert client.read()["metadata"]["name"] == "gj-1"
    # ...a 403 that lasts means the runner lacks the right: a new pod would not do better.
    client, failing = job_client([status(403, "Forbidden")] * 4)
    with pytest.raises(ChainError) as raised:
        client.read()
    assert failing.requests == 4
    assert not raised.value.retryable
    assert "may not read GuidelineJob ns/gj-1 (403 Forbidden)" in raised.value.message


def test_guidelinejob_missing_or_refused_is_not_retried() -> None:
    client, failing = job_client([], name="gone")  # a GuidelineJob deleted under the pod
    with pytest.raises(ChainError) as raised:
        client.read()
    assert failing.requests == 1
    assert (raised.value.reason, raised.value.retryable) == (FailureReason.INVALID_INPUT, False)

    client, failing = job_client([status(422, "Invalid")])
    with pytest.raises(ChainError) as raised:
        client.patch_status({"progress": {}})
    assert failing.requests == 1  # a refusal is not worth a second try; a new pod's may be
    assert raised.value.retryable
    assert "422 Invalid" in raised.value.message


class Script:
    """A local HTTP server answering the runner's requests from a list of (status, body)."""

    def __init__(self, answers: list[tuple[int, bytes]]) -> None:
        self.answers = answers
        self.seen: list[tuple[str, str, str]] = []
        script = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                script.seen.append((self.command, self.path, self.headers["Authorization"]))
                code, body = script.answers.pop(0)
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self.answer()

            def do_PUT(self) -> None:
                self.answer()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def token(tmp_path: Path) -> str:
    path = tmp_path / "token"
    path.write_text("pod-token\n")
    return str(path)


@pytest.fixture
def script() -> Iterator[Script]:
    server = Script([])
    yield server
    server.close()


def test_api_transient_answers_are_retried(script: Script, token: str) -> None:
    script.answers += [(503, b"{}"), (429, b"{}"), (200, b"%PDF-1.7 ...")]
    api = RunnerApi(script.url, token, "ev-1", delays=NO_WAIT)
    assert api.document(max_bytes=100) == b"%PDF-1.7 ..."
    assert script.seen == [("GET", "/v1/runner/jobs/ev-1/document", "Bearer pod-token")] * 3


def test_api_that_never_answers_is_retryable(token: str) -> None:
    api = RunnerApi(f"http://127.0.0.1:{free_port()}", token, "ev-1", delays=NO_WAIT)
    with pytest.raises(ChainError) as raised:
        api.put_text("text", {})
    assert raised.value.retryable
    assert raised.value.message.startswith("The API did not answer to store the extracted text")


def test_api_refusals_are_not_retried(script: Script, token: str) -> None:
    api = RunnerApi(script.url, token, "ev-1", delays=NO_WAIT)
    script.answers += [(400, json.dumps({"detail": "text too long"}).encode())]
    with pytest.raises(ChainError) as raised:
        api.put_text("text", {})
    assert (len(script.seen), raised.value.retryable) == (1, False)
    assert "400 text too long" in raised.value.message

    # An expired token: a new pod gets a new one.
    script.answers += [(401, b"{}")]
    with pytest.raises(ChainError) as raised:
        api.put_text("text", {})
    assert (len(script.seen), raised.value.retryable) == (2, True)

    # A document larger than the spec says is the input's fault, at once.
    script.answers += [(200, b"x" * 101)]
    with pytest.raises(ChainError) as raised:
        api.document(max_bytes=100)
    assert (len(script.seen), raised.value.retryable) == (3, False)
    assert raised.value.reason == FailureReason.INVALID_INPUT
