"""The runner's API: `/v1/runner/jobs/{event_id}/document` and `.../text`, for runner
pods only (their projected ServiceAccount token, not an API key; see runner_auth)."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from guideline_api.deps import CtxDep
from guideline_api.http.authgate import bearer_token
from guideline_api.http.errors import Reason
from guideline_api.openapi import (
    BAD_EVENT_ID,
    DOCUMENT_MEDIA_TYPES,
    INTERNAL,
    INVALID_EVENT_ID,
    NOT_FOUND,
    TOO_LARGE,
    problem,
)
from guideline_api.schemas.runner import RunnerText
from guideline_api.service import runner as runner_service
from guideline_api.service.access import parse_event_id

router = APIRouter(prefix="/runner", tags=["runner"])

AUTH = (
    "**For runner pods only**, not under an API key: `Authorization: Bearer <token>`, the "
    "pod's projected ServiceAccount token with audience `runner_token_audience` (default "
    "`guideline-ingest.dev/runner`). The API checks it with a TokenReview and answers only "
    "the runner pod of this job: user `system:serviceaccount:<namespace>:"
    "<runner_service_account>`, bound to a pod that exists (same uid), has not finished and "
    "carries the label `ingest.guidelines.dev/event-id` = the path's event_id. Positive "
    "checks are reused for at most 60 s."
)
RUNNER_REFUSED = {
    **problem(
        401,
        "No token, or one the API server does not authenticate for the audience.",
        (Reason.INVALID_RUNNER_TOKEN, "the token is not valid for audience ..."),
        headers=("WWW-Authenticate",),
    ),
    **problem(
        403,
        "A valid token, but not of this job's runner pod.",
        (
            Reason.NOT_THIS_JOBS_RUNNER,
            "the token's pod guideline-x-1-abcde is the runner of job <another>, not of <this>",
        ),
    ),
    **INTERNAL,
    **problem(
        503,
        "PostgreSQL is unreachable, or the API server could not be asked about the token. "
        "Safe to retry.",
        (Reason.DATABASE_UNAVAILABLE, "database unavailable: connection refused"),
        (Reason.KUBERNETES_UNAVAILABLE, "cannot check the runner token: ..."),
    ),
}
EVENT_ID = Path(description="The job's event_id.")


@router.get(
    "/jobs/{event_id}/document",
    summary="A job's stored document (for its runner pod)",
    description="The bytes the job was submitted with, streamed, as `Content-Type` its media "
    "type, with `X-Document-Sha256` (the runner checks it against `spec.documentRef`). " + AUTH,
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The document's bytes.",
            "content": {
                media: {"schema": {"type": "string", "format": "binary"}}
                for media in DOCUMENT_MEDIA_TYPES
            },
            "headers": {
                "X-Document-Sha256": {
                    "description": "SHA-256 (hex) of the bytes.",
                    "required": True,
                    "schema": {"type": "string"},
                }
            },
        },
        **RUNNER_REFUSED,
        **NOT_FOUND,
        **BAD_EVENT_ID,
    },
)
async def get_runner_document(
    request: Request, ctx: CtxDep, event_id: str = EVENT_ID
) -> StreamingResponse:
    """Stream the job's document to its runner pod."""
    eid = parse_event_id(event_id)
    doc, chunks = await run_in_threadpool(
        runner_service.document, ctx, bearer_token(request.scope), eid
    )
    return StreamingResponse(
        chunks,
        media_type=doc.media_type,
        headers={"X-Document-Sha256": doc.sha256, "Content-Length": str(doc.bytes)},
    )


@router.put(
    "/jobs/{event_id}/text",
    status_code=204,
    response_class=Response,
    summary="Store a job's extracted text (for its runner pod)",
    description="The runner's extraction becomes the job's text (`?include=text`) and "
    "completes its `document` (pages, characters, extractor, warnings). Idempotent. " + AUTH,
    responses={
        204: {"description": "Stored."},
        **RUNNER_REFUSED,
        **TOO_LARGE,
        **BAD_EVENT_ID,
        **problem(
            422,
            "The body is not a valid report (or not UTF-8 JSON), or the event_id is not a UUID.",
            (Reason.VALIDATION, "document.sha256: String should match pattern ..."),
            (Reason.MALFORMED_JSON, "malformed JSON: the body is not UTF-8 JSON"),
            INVALID_EVENT_ID,
        ),
    },
)
async def put_runner_text(
    request: Request, ctx: CtxDep, report: RunnerText, event_id: str = EVENT_ID
) -> Response:
    """Store the text a runner pod extracted."""
    eid = parse_event_id(event_id)
    await run_in_threadpool(runner_service.put_text, ctx, bearer_token(request.scope), eid, report)
    return Response(status_code=204)
