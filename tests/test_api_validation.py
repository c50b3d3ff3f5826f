"""POST /jobs input validation and limits, decided before anything is recorded.

The app here points at a kubeconfig of a dead port, so nothing below depends on
Kubernetes; each 4xx is the validator's own and leaves no row."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from guideline_core import db
from guideline_core.resource import MAX_GUIDELINE_CHARS
from guideline_core.settings import ApiSettings
from support.api import api_client, auth, dead_kubeconfig, make_settings, problem


def _error(response) -> dict:
    return problem(response)


def _rows(database: db.Database) -> int:
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM jobs")
        return cur.fetchone()[0]


def _post_raw(client: TestClient, content: bytes, content_type: str = "application/json"):
    return client.post("/jobs", content=content, headers={**auth(), "Content-Type": content_type})


@pytest.mark.parametrize(
    ("content", "reason", "needle"),
    [
        (b'{"guideline_text": "unterminated', "malformed_json", "malformed JSON"),
        (b"", "malformed_json", "empty"),
        (b"[1, 2]", "validation_error", "JSON object"),
        (b"{}", "validation_error", "guideline_text"),
        (b'{"guideline_text": "   \\n\\t  "}', "validation_error", "blank"),
        (b'{"guideline_text": 42}', "validation_error", "guideline_text"),
        (b'{"guideline_text": ["a"]}', "validation_error", "guideline_text"),
        (b'{"guideline_text": "ok", "max_retries": "3"}', "validation_error", "max_retries"),
        (b'{"guideline_text": "ok", "max_retries": 11}', "validation_error", "max_retries"),
        (b'{"guideline_text": "ok", "provider": "gemini"}', "validation_error", "provider"),
        (b'{"guideline_text": "ok", "model": "a b"}', "validation_error", "model"),
        (b'{"guideline_text": "ok", "colour": "red"}', "validation_error", "colour"),
        # Controls are replaced, not refused (tests/test_api_hygiene.py): refused only when
        # nothing readable is left.
        (
            b'{"guideline_text": "\\u0000\\u0007 \\u001b\\n\\u0081"}',
            "validation_error",
            "nothing to read",
        ),
        (b'{"guideline_text": "\\ufffd \\ud800"}', "validation_error", "nothing to read"),
        (b'{"guideline_text": "ok", "title": "two\\nlines"}', "control_characters", "title"),
        ('{"guideline_text": "caf\u00e9"}'.encode("latin-1"), "invalid_utf8", "UTF-8"),
        ('{"guideline_text": "x"}'.encode("utf-16"), "invalid_utf8", "UTF-8"),
    ],
)
def test_invalid_bodies_get_a_clear_422(
    client: TestClient, database: db.Database, content: bytes, reason: str, needle: str
) -> None:
    response = _post_raw(client, content)
    assert response.status_code == 422, response.text
    error = _error(response)
    assert error["reason"] == reason
    assert needle.lower() in json.dumps(error).lower()
    assert _rows(database) == 0


def test_control_character_error_states_the_rule(client: TestClient) -> None:
    error = _error(_post_raw(client, b'{"guideline_text": "ok", "title": "a\\u0000b"}'))
    assert "at index 1" in error["detail"]
    assert "title is not cleaned" in error["detail"]
    assert error["details"][0]["field"] == "title"
    assert error["details"][0]["type"] == "control_characters"
    schema = client.get("/openapi.json").json()
    text_doc = schema["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert text_doc["schema"] == {"$ref": "#/components/schemas/SubmitJob"}
    submit = schema["components"]["schemas"]["SubmitJob"]
    assert "mojibake" in submit["properties"]["guideline_text"]["description"]


def test_non_json_content_type_is_415(client: TestClient) -> None:
    response = _post_raw(client, b"guideline_text=hello", "application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert _error(response)["reason"] == "unsupported_media_type"


def test_text_over_the_character_limit_is_413(client: TestClient, database: db.Database) -> None:
    limit = ApiSettings.model_fields["max_guideline_chars"].default
    assert limit == 2_000_000  # the contract's default, no longer the CRD's inline limit
    response = client.post("/jobs", json={"guideline_text": "a" * (limit + 1)}, headers=auth())
    assert response.status_code == 413
    error = _error(response)
    assert error["reason"] == "text_too_long"
    assert str(limit) in error["detail"]
    assert _rows(database) == 0


def test_text_longer_than_the_crds_inline_limit_is_accepted(
    client: TestClient, database: db.Database
) -> None:
    response = client.post(
        "/jobs", json={"guideline_text": "a" * (MAX_GUIDELINE_CHARS + 1)}, headers=auth()
    )
    assert response.status_code == 202, response.text
    assert _rows(database) == 1


def test_body_over_the_byte_limit_is_413_before_parsing(
    database: db.Database, tmp_path: Path
) -> None:
    settings = make_settings(database.url, dead_kubeconfig(tmp_path), max_body_bytes=1000)
    with api_client(settings) as client:
        # Not even JSON: a parser would say 422, the size cap says 413 first.
        by_length = _post_raw(client, b"x" * 1001)
        assert by_length.status_code == 413
        assert _error(by_length)["reason"] == "body_too_large"
        assert "declared Content-Length 1001" in _error(by_length)["detail"]

        def chunks() -> Iterator[bytes]:  # chunked transfer: no Content-Length
            for _ in range(20):
                yield b"y" * 100

        chunked = client.post(
            "/jobs", content=chunks(), headers={**auth(), "Content-Type": "application/json"}
        )
        assert chunked.status_code == 413
        assert "more than 1000 bytes received" in _error(chunked)["detail"]
        metrics = client.get("/metrics").text
        assert 'guideline_api_jobs_rejected_total{reason="body_too_large"} 2.0' in metrics
    assert _rows(database) == 0


def test_bad_idempotency_key_is_422(client: TestClient) -> None:
    response = client.post(
        "/jobs",
        json={"guideline_text": "Staff must wash hands."},
        headers={**auth(), "Idempotency-Key": "has space"},
    )
    assert response.status_code == 422
    assert _error(response)["reason"] == "invalid_idempotency_key"


def test_valid_body_is_accepted_while_kubernetes_is_down(
    client: TestClient, database: db.Database
) -> None:
    """A valid submission with the Kubernetes API down: 202 and a row waiting in the
    outbox (the dispatcher creates its GuidelineJob once Kubernetes is back)."""
    response = client.post(
        "/jobs",
        json={"guideline_text": "Staff must wash hands.\r\n\tAlways.", "title": "Hygiene"},
        headers=auth(),
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "PENDING"
    assert _rows(database) == 1
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT dispatch_pending, cr_uid FROM jobs")
        assert cur.fetchone() == (True, None)


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"\xff", "malformed_json"), (b"{not json", "validation_error")],
    ids=["not-utf8", "not-json"],
)
def test_a_runner_report_that_is_not_json_is_a_422(
    client: TestClient, content: bytes, reason: str
) -> None:
    """FastAPI's own 400 for a body it cannot decode answers as POST /jobs does (the sweep of
    tests/test_faults.py found it undocumented)."""
    response = client.put(
        f"/v1/runner/jobs/{uuid.uuid4()}/text",
        content=content,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert _error(response)["reason"] == reason
