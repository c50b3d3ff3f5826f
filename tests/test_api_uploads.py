"""Document intake: multipart `POST /jobs`, `/jobs/batch` and `/jobs/estimate` (issue 20).
Real PostgreSQL, the real test guidelines (tests/data/guidelines); no cluster needed (the
dispatcher's side is tests/test_api_submit.py and tests/test_runner_api.py)."""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import zipfile
from typing import Any

import pytest
from fastapi.testclient import TestClient
from guideline_core import db
from guideline_core.documents import store as document_store
from support.api import SettingsFor, api_client, auth, problem
from support.documents import guideline

PDF = guideline("nist-sp800-63b-authentication", ".pdf")
DOCX = guideline("nist-sp800-63a-identity-proofing", ".docx")
HTML = guideline("federal-plain-language-guidelines", ".html")
MARKDOWN = guideline("federal-plain-language-guidelines", ".md")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _upload(
    client: TestClient,
    content: bytes,
    name: str = "guideline",
    path: str = "/v1/jobs",
    headers: dict[str, str] | None = None,
    **fields: str,
) -> Any:
    request = client.build_request(
        "POST",
        path,
        files={"file": (name, content, "application/octet-stream")},
        data=fields,
        headers={**auth(), **(headers or {})},
    )
    # Read whole before sending: the 413 may come before the API read it all, and the
    # contract check looks at the request's body.
    request.read()
    return client.send(request)


def _count(database: db.Database, table: str) -> int:
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table}")
        return cur.fetchone()[0]


def _stored(database: db.Database, event_id: str) -> tuple[dict[str, Any], bytes, str]:
    """The job's row, its stored document's bytes and media type."""
    with database.connection() as conn:
        row = db.get_job(conn, event_id)
        assert row is not None
        doc = document_store.get(conn, row["document_id"])
        text = db.get_guideline_text(conn, event_id)
    assert doc is not None
    data = b"".join(document_store.read_chunks(database.connection, doc.id))
    assert len(data) == doc.bytes and hashlib.sha256(data).hexdigest() == doc.sha256
    return {**row, "guideline_text": text}, data, doc.media_type


def test_a_pdf_upload_is_stored_as_it_came(client: TestClient, database: db.Database) -> None:
    data = PDF.read_bytes()
    response = _upload(client, data, "nist.pdf", title="NIST 800-63B", provider="extractive")
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["title"] == "NIST 800-63B" and job["provider"] == "extractive"
    assert job["document"] == {
        "media_type": "application/pdf",
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "warnings": [],
    }
    row, stored, media = _stored(database, job["event_id"])
    assert stored == data and media == "application/pdf"
    # The text is the runner's extraction: none yet.
    assert row["guideline_text"] == ""
    text = client.get(f"/v1/jobs/{job['event_id']}?include=text", headers=auth()).json()
    assert text["guideline_text"] == ""


@pytest.mark.parametrize(
    ("content", "name", "media_type"),
    [
        (DOCX.read_bytes(), "looks-like.pdf", "application/vnd.openxmlformats-officedocument"
         ".wordprocessingml.document"),
        (HTML.read_bytes(), "page.txt", "text/html"),
        (MARKDOWN.read_bytes(), "notes.docx", "text/markdown"),
        (codecs.BOM_UTF16_LE + "Wash hands.\n".encode("utf-16-le"), "a.md", "text/plain"),
        (b"Wash hands before every patient contact.\n", "scan.png", "text/plain"),
    ],
)  # fmt: skip
def test_the_type_is_told_by_content_not_name(
    client: TestClient, database: db.Database, content: bytes, name: str, media_type: str
) -> None:
    response = _upload(client, content, name)
    assert response.status_code == 202, response.text
    assert response.json()["document"]["media_type"] == media_type
    _, stored, media = _stored(database, response.json()["event_id"])
    assert stored == content and media == media_type


def _zip_without_word() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "not a Word document")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (PNG, "a PNG image"),
        (_zip_without_word(), "not a Word document"),
        (b"caf\xe9 au lait", "not UTF-8"),
        (b"", "empty"),
    ],
)
def test_an_unsupported_upload_is_415_with_the_reason(
    client: TestClient, database: db.Database, content: bytes, needle: str
) -> None:
    error = problem(_upload(client, content, "guideline.pdf"), 415)
    assert error["reason"] == "unsupported_media_type"
    assert needle in error["detail"] and "guideline.pdf" in error["detail"]
    assert _count(database, "jobs") == 0 and _count(database, "documents") == 0


@pytest.mark.parametrize("size", [10_001, 3 * 1024 * 1024])
def test_an_upload_past_max_document_bytes_is_413(
    settings_for: SettingsFor, database: db.Database, size: int
) -> None:
    """Just past the limit: refused once the spooled file is measured; far past it (more
    than the limit and 1 MiB of form fields): refused while it arrives."""
    config = settings_for(max_document_bytes=10_000)
    with api_client(config) as client:
        content = b"Wash hands. " * (size // 12 + 1)
        error = problem(_upload(client, content[:size]), 413)
        assert error["reason"] == "document_too_large"
        assert "10000" in error["detail"]
        assert _upload(client, content[:10_000]).status_code == 202
        # Sent chunked (no Content-Length): counted as it arrives.
        request = client.build_request(
            "POST", "/v1/jobs", files={"file": ("g", content[:size])}, headers=auth()
        )
        body = request.read()
        chunked = client.build_request(
            "POST",
            "/v1/jobs",
            content=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]),
            headers={**auth(), "Content-Type": request.headers["Content-Type"]},
        )
        chunked.read()
        assert "content-length" not in chunked.headers
        error = problem(client.send(chunked), 413)
        assert error["reason"] == "document_too_large" and "10000" in error["detail"]
    assert _count(database, "jobs") == 1 and _count(database, "documents") == 1


def test_form_fields_are_the_json_fields(client: TestClient) -> None:
    review = json.dumps({"min_grounding": 0.5})
    response = _upload(
        client, b"Wash hands.", title="Hands", max_retries="2", review=review, model="gpt-4o"
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert (job["title"], job["model"]) == ("Hands", "gpt-4o")

    def refused(**fields: str) -> dict[str, Any]:
        return problem(_upload(client, b"Wash hands.", **fields), 422)

    assert refused(max_retries="two")["details"][0]["field"] == "max_retries"
    assert refused(max_retries="11")["details"][0]["field"] == "max_retries"
    assert refused(review="{")["details"][0]["field"] == "review"
    assert refused(colour="red")["details"][0]["field"] == "colour"
    assert refused(guideline_text="also text")["details"][0]["field"] == "guideline_text"
    assert refused(title="a\nb")["reason"] == "control_characters"
    two = client.post(
        "/v1/jobs",
        files=[("file", ("a", b"one", "text/plain")), ("file", ("b", b"two", "text/plain"))],
        headers=auth(),
    )
    assert "Too many files" in problem(two, 422)["detail"]
    none = client.post(
        "/v1/jobs", data={"title": "no file"}, files={"x": ("x", b"")}, headers=auth()
    )
    assert problem(none, 422)["reason"] == "validation_error"


def test_an_idempotency_key_replays_the_same_upload(
    client: TestClient, database: db.Database
) -> None:
    key = {"Idempotency-Key": "upload-1"}
    first = _upload(client, PDF.read_bytes(), headers=key, title="t")
    assert first.status_code == 202
    again = _upload(client, PDF.read_bytes(), headers=key, title="t")
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["event_id"] == first.json()["event_id"]
    other = _upload(client, DOCX.read_bytes(), headers=key, title="t")
    assert problem(other, 422)["reason"] == "idempotency_key_reused"
    assert _count(database, "jobs") == 1 and _count(database, "documents") == 1


def test_the_tenant_quota_counts_document_bytes(
    settings_for: SettingsFor, database: db.Database
) -> None:
    data = PDF.read_bytes()
    config = settings_for(tenant_max_inflight_text_bytes=len(data) + 100)
    with api_client(config) as client:
        assert _upload(client, data).status_code == 202
        error = problem(_upload(client, data), 429)
        assert error["reason"] == "tenant_text_quota"
        assert str(len(data)) in error["detail"]
        assert (
            client.post("/v1/jobs", json={"guideline_text": "x" * 50}, headers=auth()).status_code
            == 202
        )
    assert _count(database, "documents") == 2


def test_a_multipart_batch_answers_each_file(client: TestClient, database: db.Database) -> None:
    items = [{"title": "pdf"}, {"title": "docx", "idempotency_key": "b-1"}, {"title": "png"}]
    response = client.post(
        "/v1/jobs/batch",
        files=[
            ("file", ("a.pdf", PDF.read_bytes(), "application/pdf")),
            ("file", ("b.docx", DOCX.read_bytes(), "application/octet-stream")),
            ("file", ("c.png", PNG, "image/png")),
        ],
        data={"items": json.dumps(items)},
        headers=auth(),
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    first, second, third = body["items"]
    assert third["error"]["reason"] == "unsupported_media_type"
    for answer, path, title in ((first, PDF, "pdf"), (second, DOCX, "docx")):
        row, stored, _ = _stored(database, answer["event_id"])
        assert stored == path.read_bytes() and row["title"] == title
    assert row["idempotency_key"] == "b-1"

    # Without `items`; and `items` that do not match the files.
    plain = client.post(
        "/v1/jobs/batch", files=[("file", ("a", b"Wash hands.", "text/plain"))], headers=auth()
    )
    assert plain.status_code == 202 and plain.json()["accepted"] == 1
    mismatch = client.post(
        "/v1/jobs/batch",
        files=[("file", ("a", b"Wash hands.", "text/plain"))],
        data={"items": "[{}, {}]"},
        headers=auth(),
    )
    assert problem(mismatch, 422)["details"][0]["field"] == "items"


def test_estimate_reads_text_uploads_and_says_why_not_documents(client: TestClient) -> None:
    text = MARKDOWN.read_text(encoding="utf-8")
    as_upload = _upload(client, MARKDOWN.read_bytes(), path="/v1/jobs/estimate", model="gpt-4o")
    assert as_upload.status_code == 200, as_upload.text
    as_json = client.post(
        "/v1/jobs/estimate", json={"guideline_text": text, "model": "gpt-4o"}, headers=auth()
    )
    assert as_upload.json() == as_json.json()
    error = problem(_upload(client, PDF.read_bytes(), path="/v1/jobs/estimate"), 415)
    assert error["reason"] == "estimate_needs_text"
    assert "does not parse documents" in error["detail"]


def test_refused_uploads_count_against_the_rate(
    settings_for: SettingsFor, database: db.Database
) -> None:
    config = settings_for(rate_limit_per_minute=2)
    with api_client(config) as client:
        assert problem(_upload(client, PNG), 415)["reason"] == "unsupported_media_type"
        broken = client.post(
            "/v1/jobs",
            content=b"--x\r\nnot a part",
            headers={**auth(), "Content-Type": "multipart/form-data"},  # no boundary
        )
        assert "malformed multipart body" in problem(broken, 422)["detail"]
        limited = problem(_upload(client, b"Wash hands."), 429)
        assert limited["reason"] == "rate_limited"
    assert _count(database, "jobs") == 0
