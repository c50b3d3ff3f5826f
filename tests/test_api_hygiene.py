"""Text hygiene instead of refusal (issue 20): POST /jobs and /jobs/batch clean guideline_text
(mojibake, stray controls, NFC), accept it, and count each repair in the job's `document`.

Through the real app and PostgreSQL; the kubeconfig points at a dead port, so jobs stay
PENDING and the COMPLETED state is written as the operator writes it; the last test creates
the GuidelineJobs on the local control plane."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from guideline_core import db
from guideline_core.documents import store as document_store
from guideline_core.resource import Phase
from support.api import (
    api_client,
    auth,
    dispatched_row,
    make_settings,
    problem,
)
from support.cluster import LocalCluster
from support.rows import mirror

# The issue's case: UTF-8 `™` (E2 84 A2) read as Latin-1, in a disclaimer.
DISCLAIMER = (
    "Staff must wash hands before every patient contact.\n"
    "Disclaimer: AHRQ\u00e2\u0084\u00a2 does not endorse this guideline.\n"
)
REPAIRED = DISCLAIMER.replace("\u00e2\u0084\u00a2", "\u2122")
# NUL, ESC, DEL, a C1 control with no Windows-1252 meaning, and a form feed.
CONTROLS = "Wash\x00 hands.\x1b[1m Gloves\x7f on.\x81\nPage 2\x0cDry hands."
CONTROLS_CLEANED = "Wash\ufffd hands.\ufffd[1m Gloves\ufffd on.\ufffd\nPage 2\nDry hands."


def _submit(client: TestClient, text: str, **headers: str) -> Any:
    body = json.dumps({"guideline_text": text})  # escapes controls as \\uXXXX, as clients do
    return client.post(
        "/jobs", content=body, headers={**auth(), "Content-Type": "application/json", **headers}
    )


def _text(client: TestClient, event_id: str) -> str:
    response = client.get(f"/jobs/{event_id}", params={"include": "text"}, headers=auth())
    assert response.status_code == 200, response.text
    return response.json()["guideline_text"]


def _document_of(text: str, warnings: list[dict[str, Any]]) -> dict[str, Any]:
    data = text.encode("utf-8")
    return {
        "media_type": "text/plain",
        "extractor": "json",
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "characters": len(text),
        "warnings": warnings,
    }


def test_the_issues_mojibake_disclaimer_is_accepted_and_repaired(client: TestClient) -> None:
    response = _submit(client, DISCLAIMER)
    assert response.status_code == 202, response.text
    job = response.json()
    mojibake = {"kind": "mojibake", "count": 1, "first_offset": DISCLAIMER.index("\u00e2")}
    assert job["document"] == _document_of(REPAIRED, [mojibake])
    assert _text(client, job["event_id"]) == REPAIRED


def test_stray_controls_are_replaced_and_counted(client: TestClient) -> None:
    response = _submit(client, CONTROLS)
    assert response.status_code == 202, response.text
    job = response.json()
    controls = {"kind": "control_characters", "count": 5, "first_offset": CONTROLS.index("\x00")}
    assert job["document"] == _document_of(CONTROLS_CLEANED, [controls])
    assert _text(client, job["event_id"]) == CONTROLS_CLEANED


def test_a_clean_text_is_stored_as_sent_with_no_warnings(client: TestClient) -> None:
    text = "Wash hands.\r\n\tThen dry them: caf\u00e9, \u2122, \U0001f9fc.\n"
    job = _submit(client, text).json()
    assert job["document"] == _document_of(text, [])
    assert _text(client, job["event_id"]) == text


def test_a_decomposed_text_is_put_in_nfc(client: TestClient) -> None:
    text = "Cafe\u0301 staff wash hands."
    job = _submit(client, text).json()
    normalized = {"kind": "unicode_normalization", "count": 1, "first_offset": 3}
    assert job["document"] == _document_of("Caf\u00e9 staff wash hands.", [normalized])


def test_the_warnings_are_under_result_document_once_completed(
    client: TestClient, database: db.Database
) -> None:
    event_id = _submit(client, DISCLAIMER).json()["event_id"]
    pending = client.get(f"/jobs/{event_id}", headers=auth()).json()
    assert "result" not in pending
    assert mirror(database, event_id, Phase.COMPLETED, 1, result={"summary": "s", "checklist": []})
    done = client.get(f"/jobs/{event_id}", headers=auth()).json()
    assert done["status"] == "COMPLETED"
    assert done["result"]["document"] == done["document"] == pending["document"]
    assert done["result"]["document"]["warnings"][0]["kind"] == "mojibake"


def test_a_replay_of_the_same_dirty_request_replays_and_a_cleaned_body_is_another(
    client: TestClient,
) -> None:
    first = _submit(client, DISCLAIMER, **{"Idempotency-Key": "dirty-1"})
    again = _submit(client, DISCLAIMER, **{"Idempotency-Key": "dirty-1"})
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["event_id"] == first.json()["event_id"]
    assert again.json()["document"] == first.json()["document"]
    # The hash covers the text as submitted: the repaired text is a different body.
    other = _submit(client, REPAIRED, **{"Idempotency-Key": "dirty-1"})
    assert problem(other, 422)["reason"] == "idempotency_key_reused"


def test_a_batch_with_one_dirty_item_accepts_every_item(client: TestClient) -> None:
    texts = ["Wash hands.", DISCLAIMER, "Change gloves between patients."]
    response = client.post(
        "/jobs/batch", json={"items": [{"guideline_text": t} for t in texts]}, headers=auth()
    )
    assert response.status_code == 202, response.text
    batch = response.json()
    assert (batch["accepted"], batch["rejected"]) == (3, 0)
    stored = [_text(client, item["event_id"]) for item in batch["items"]]
    assert stored == ["Wash hands.", REPAIRED, "Change gloves between patients."]
    dirty = client.get(f"/jobs/{batch['items'][1]['event_id']}", headers=auth()).json()
    assert [w["kind"] for w in dirty["document"]["warnings"]] == ["mojibake"]


def test_a_text_with_nothing_readable_left_is_refused(
    client: TestClient, database: db.Database
) -> None:
    error = problem(_submit(client, "\x00 \x1b\n\x81\t"), 422)
    assert error["reason"] == "validation_error"
    assert error["details"][0] == {
        "field": "guideline_text",
        "message": "has nothing to read once cleaned: only whitespace and control characters "
        "(or U+FFFD)",
        "type": "blank",
    }
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM jobs")
        assert cur.fetchone()[0] == 0


@pytest.mark.cluster
def test_the_guideline_job_of_a_cleaned_text_passes_the_crd(
    database: db.Database, cluster: LocalCluster
) -> None:
    """The CRD refuses these texts as sent (tests/test_security.py); the API stores them
    cleaned, and its GuidelineJob (carrying the stored document's reference) is created."""
    namespace = cluster.create_namespace("api-hygiene")
    try:
        settings = make_settings(database.url, cluster.kubeconfig, namespace=namespace)
        with api_client(settings) as client:
            submitted = {_submit(client, DISCLAIMER).json()["event_id"]: REPAIRED}
            submitted[_submit(client, CONTROLS).json()["event_id"]] = CONTROLS_CLEANED
            for event_id, cleaned in submitted.items():
                row = dispatched_row(database, event_id)
                cr = cluster.get_json("guidelinejobs", row["cr_name"], "-n", namespace)
                data = cleaned.encode("utf-8")
                ref = cr["spec"]["documentRef"]
                assert "guidelineText" not in cr["spec"]
                assert ref["sha256"] == hashlib.sha256(data).hexdigest()
                assert ref["id"] == str(row["document_id"])
                stored = b"".join(
                    document_store.read_chunks(database.connection, row["document_id"])
                )
                assert stored == data
    finally:
        cluster.delete_namespace(namespace)
