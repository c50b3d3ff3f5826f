"""What the runner routes do: hand a runner pod its job's stored document, and store the
text it extracted. Every call is checked first (`runner_auth`): only the runner pod of
that job gets through."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from guideline_core import db
from guideline_core.documents import store as documents

from guideline_api.context import Context
from guideline_api.http.errors import ApiError, Reason
from guideline_api.schemas.runner import RunnerText
from guideline_api.service.access import transaction


def _job(ctx: Context, token: str | None, event_id: uuid.UUID) -> db.JobRow:
    """The job's row once the caller is its runner pod (a job that does not exist has no
    runner pod: 403 like any other)."""
    with transaction(ctx) as conn:
        row = db.get_job(conn, event_id)
    namespace = row["namespace"] if row else ctx.kube.namespace
    ctx.runner_auth.check(token, event_id, namespace)
    assert row is not None  # a pod labelled with its event_id exists: so does the job
    return row


def document(
    ctx: Context, token: str | None, event_id: uuid.UUID
) -> tuple[documents.StoredDocument, Iterator[bytes]]:
    """The job's stored document and its bytes, chunk by chunk; 404 for a job without
    one (made by kubectl)."""
    row = _job(ctx, token, event_id)
    doc = None
    document_id = row.get("document_id")
    if document_id is not None:
        with transaction(ctx) as conn:
            doc = documents.get(conn, document_id)
    if doc is None:
        raise ApiError(404, Reason.NOT_FOUND, f"job {event_id} has no stored document")
    return doc, documents.read_chunks(ctx.store.connection, doc.id)


def put_text(ctx: Context, token: str | None, event_id: uuid.UUID, report: RunnerText) -> None:
    """Store the extracted text as the job's text and complete its `document`
    (idempotent: a retried pod puts the same again)."""
    _job(ctx, token, event_id)
    if "\x00" in report.text:
        raise ApiError(
            422, Reason.VALIDATION, "text: contains U+0000 (the runner's hygiene replaces it)"
        )
    with transaction(ctx) as conn:
        db.put_extracted_text(
            conn, event_id, report.text, report.document.model_dump(exclude_none=True)
        )
