"""One error body for every non-2xx answer of the API: RFC 9457 problem details.

Every error is `application/problem+json` of the form::

    {"type": "https://guideline-ingest.dev/problems/<reason>", "title": "<the reason's title>",
     "status": <HTTP status>, "detail": "<what went wrong this time>",
     "instance": "<the request path>", "reason": "<machine-readable code>",
     "details": [{"field": "...", "message": "...", "type": "..."}]}

`reason` (one of `Reason`, stable) and `details` (only for field-level validation errors)
are extension members. Headers such as Retry-After and WWW-Authenticate accompany 429 and
401.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from enum import StrEnum
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://guideline-ingest.dev/problems/"


class Reason(StrEnum):
    """The `reason` codes of a problem (stable; clients may switch on them). A StrEnum: each
    member is its string, in JSON, f-strings and comparisons alike."""

    MALFORMED_JSON = "malformed_json"
    INVALID_UTF8 = "invalid_utf8"
    VALIDATION = "validation_error"
    CONTROL_CHARACTERS = "control_characters"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    BODY_TOO_LARGE = "body_too_large"
    HEADERS_TOO_LARGE = "headers_too_large"
    TOO_MANY_HEADERS = "too_many_headers"
    HEADERS_TIMEOUT = "headers_timeout"
    TEXT_TOO_LONG = "text_too_long"
    DOCUMENT_TOO_LARGE = "document_too_large"
    ESTIMATE_NEEDS_TEXT = "estimate_needs_text"
    INVALID_RUNNER_TOKEN = "invalid_runner_token"
    NOT_THIS_JOBS_RUNNER = "not_this_jobs_runner"
    INVALID_EVENT_ID = "invalid_event_id"
    INVALID_CURSOR = "invalid_cursor"
    INVALID_LAST_EVENT_ID = "invalid_last_event_id"
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    JOB_FINISHED = "job_finished"
    JOB_NOT_RETRYABLE = "job_not_retryable"
    JOB_NOT_COMPLETED = "job_not_completed"
    UNKNOWN_EXPORT_FORMAT = "unknown_export_format"
    NOT_ACCEPTABLE = "not_acceptable"
    TOO_MANY_RUNS = "too_many_runs"
    MODEL_NOT_ALLOWED = "model_not_allowed"
    CALLBACK_URL_REFUSED = "callback_url_refused"
    FORBIDDEN = "forbidden"
    MISSING_API_KEY = "missing_api_key"
    INVALID_API_KEY = "invalid_api_key"
    BACKLOG_FULL = "backlog_full"
    TENANT_BACKLOG_FULL = "tenant_backlog_full"
    TENANT_TEXT_QUOTA = "tenant_text_quota"
    BATCH_TOO_LARGE = "batch_too_large"
    RATE_LIMITED = "rate_limited"
    BUDGET_EXCEEDED = "budget_exceeded"
    TOO_MANY_STREAMS = "too_many_streams"
    DATABASE_UNAVAILABLE = "database_unavailable"
    KUBERNETES_UNAVAILABLE = "kubernetes_unavailable"
    INTERNAL = "internal_error"


TITLES: dict[str, str] = {
    Reason.MALFORMED_JSON: "The body is not valid JSON",
    Reason.INVALID_UTF8: "The body is not valid UTF-8",
    Reason.VALIDATION: "The request is invalid",
    Reason.CONTROL_CHARACTERS: "The title contains a control character",
    Reason.UNSUPPORTED_MEDIA_TYPE: "The body or the document is of an unsupported type",
    Reason.BODY_TOO_LARGE: "The request body is too large",
    Reason.HEADERS_TOO_LARGE: "The request line and headers are too large",
    Reason.TOO_MANY_HEADERS: "The request has too many header fields",
    Reason.HEADERS_TIMEOUT: "The request line and headers arrived too slowly",
    Reason.TEXT_TOO_LONG: "The guideline text is too long",
    Reason.DOCUMENT_TOO_LARGE: "The uploaded document is too large",
    Reason.ESTIMATE_NEEDS_TEXT: "This document type cannot be estimated before extraction",
    Reason.INVALID_RUNNER_TOKEN: "A valid runner pod token is required",
    Reason.NOT_THIS_JOBS_RUNNER: "The token is not the runner pod of this job",
    Reason.INVALID_EVENT_ID: "The event_id is not a UUID",
    Reason.INVALID_CURSOR: "The cursor is not one this API returned",
    Reason.INVALID_LAST_EVENT_ID: "The Last-Event-ID is not one this stream sent",
    Reason.INVALID_IDEMPOTENCY_KEY: "The Idempotency-Key is invalid",
    Reason.IDEMPOTENCY_KEY_REUSED: "The Idempotency-Key was used with another body",
    Reason.NOT_FOUND: "Not found",
    Reason.METHOD_NOT_ALLOWED: "Method not allowed",
    Reason.JOB_FINISHED: "The job is already finished",
    Reason.JOB_NOT_RETRYABLE: "The job cannot be retried",
    Reason.JOB_NOT_COMPLETED: "The job has no result yet",
    Reason.UNKNOWN_EXPORT_FORMAT: "The export format is unknown or missing",
    Reason.NOT_ACCEPTABLE: "No export format matches the Accept header",
    Reason.TOO_MANY_RUNS: "The job has had as many runs as allowed",
    Reason.MODEL_NOT_ALLOWED: "The model is not allowed for this tenant",
    Reason.CALLBACK_URL_REFUSED: "The callback_url is not an allowed target",
    Reason.FORBIDDEN: "Forbidden for this API key",
    Reason.MISSING_API_KEY: "An API key is required",
    Reason.INVALID_API_KEY: "The API key is not valid",
    Reason.BACKLOG_FULL: "The backlog is full",
    Reason.TENANT_BACKLOG_FULL: "The tenant's backlog is full",
    Reason.TENANT_TEXT_QUOTA: "The tenant holds too much guideline text in the cluster",
    Reason.BATCH_TOO_LARGE: "The batch has too many items",
    Reason.RATE_LIMITED: "The tenant's request rate is exceeded",
    Reason.BUDGET_EXCEEDED: "The tenant's LLM budget would be exceeded",
    Reason.TOO_MANY_STREAMS: "Too many event streams are open",
    Reason.DATABASE_UNAVAILABLE: "The database is unavailable",
    Reason.KUBERNETES_UNAVAILABLE: "The Kubernetes API is unavailable",
    Reason.INTERNAL: "Internal server error",
}


def problem_type(reason: str) -> str:
    """The stable `type` URI of a reason."""
    return PROBLEM_TYPE_BASE + reason


class ApiError(Exception):
    """Raised anywhere in a request to answer with the standard error body."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        details: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.details = list(details) if details else None
        self.headers = dict(headers or {})


def problem_body(
    status: int,
    reason: str,
    detail: str,
    instance: str,
    details: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The JSON body of an error answer (see the module docstring)."""
    title = TITLES.get(reason)
    if title is None:
        try:
            title = HTTPStatus(status).phrase
        except ValueError:
            title = "Error"
    body: dict[str, Any] = {
        "type": problem_type(reason),
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        "reason": reason,
    }
    if details:
        body["details"] = list(details)
    return body


def problem_response(
    status: int,
    reason: str,
    detail: str,
    instance: str,
    details: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An `application/problem+json` response."""
    return JSONResponse(
        problem_body(status, reason, detail, instance, details),
        status_code=status,
        headers=dict(headers) if headers else None,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def problem_bytes(status: int, reason: str, detail: str, instance: str) -> bytes:
    """A problem body encoded, for middleware answering with raw ASGI messages."""
    return json.dumps(problem_body(status, reason, detail, instance)).encode()


def error_response(err: ApiError, instance: str) -> JSONResponse:
    """The response for an ApiError raised while serving `instance` (the request path)."""
    return problem_response(
        err.status, err.reason, err.message, instance, err.details, err.headers or None
    )


def validation_details(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic/FastAPI error dicts turned into `{"field", "message", "type"}` entries."""
    details = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "header")]
        details.append(
            {
                "field": ".".join(loc) or "body",
                "message": e.get("msg", ""),
                "type": str(e.get("type") or "invalid"),
            }
        )
    return details


def summarize(details: Sequence[Mapping[str, Any]]) -> str:
    """A one-line message naming each invalid field."""
    return "; ".join(f"{d['field']}: {d['message']}" for d in details)


# What FastAPI's HTTPException says when a JSON body parameter cannot be decoded.
FASTAPI_BODY_PARSE_ERROR = "There was an error parsing the body"


def install_handlers(app: FastAPI, on_error: Any = None) -> None:
    """Make FastAPI's own errors (unknown route, 405, query-parameter validation), ApiError
    and unexpected exceptions answer with a problem. `on_error(request, reason)` is told of
    each one."""

    def notify(request: Request, reason: str) -> None:
        if on_error is not None:
            on_error(request, reason)

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        notify(request, exc.reason)
        return error_response(exc, request.url.path)

    async def request_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = validation_details(exc.errors())
        notify(request, Reason.VALIDATION)
        return problem_response(
            422, Reason.VALIDATION, summarize(details), request.url.path, details
        )

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        path = request.url.path
        if exc.status_code == 400 and exc.detail == FASTAPI_BODY_PARSE_ERROR:
            # A JSON body FastAPI could not decode (not UTF-8, not JSON): the same answer as
            # POST /jobs gives for one, not an undocumented 400.
            notify(request, Reason.MALFORMED_JSON)
            return problem_response(
                422, Reason.MALFORMED_JSON, "malformed JSON: the body is not UTF-8 JSON", path
            )
        reason, detail = {
            404: (Reason.NOT_FOUND, f"nothing is served at {path}"),
            405: (Reason.METHOD_NOT_ALLOWED, f"{request.method} is not allowed on {path}"),
        }.get(exc.status_code, (f"http_{exc.status_code}", str(exc.detail)))
        notify(request, reason)
        return problem_response(
            exc.status_code, reason, detail, path, headers=getattr(exc, "headers", None)
        )

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return problem_response(
            500, Reason.INTERNAL, "internal error; see the server log", request.url.path
        )

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(Exception, unexpected)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
