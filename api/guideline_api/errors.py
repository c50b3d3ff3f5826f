"""One error body for every non-2xx answer of the API.

Every error is JSON of the form::

    {"error": {"reason": "<machine-readable code>", "message": "<human-readable text>",
               "details": [{"field": "...", "message": "...", "type": "..."}]}}

`details` appears only for field-level validation errors. Headers such as Retry-After and
WWW-Authenticate accompany 429 and 401.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class Reason:
    """The `error.reason` codes (stable; clients may switch on them)."""

    MALFORMED_JSON = "malformed_json"
    INVALID_UTF8 = "invalid_utf8"
    VALIDATION = "validation_error"
    CONTROL_CHARACTERS = "control_characters"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    BODY_TOO_LARGE = "body_too_large"
    TEXT_TOO_LONG = "text_too_long"
    INVALID_EVENT_ID = "invalid_event_id"
    INVALID_CURSOR = "invalid_cursor"
    INVALID_LAST_EVENT_ID = "invalid_last_event_id"
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    JOB_FINISHED = "job_finished"
    JOB_NOT_RETRYABLE = "job_not_retryable"
    MODEL_NOT_ALLOWED = "model_not_allowed"
    CALLBACK_URL_REFUSED = "callback_url_refused"
    FORBIDDEN = "forbidden"
    MISSING_API_KEY = "missing_api_key"
    INVALID_API_KEY = "invalid_api_key"
    BACKLOG_FULL = "backlog_full"
    TENANT_BACKLOG_FULL = "tenant_backlog_full"
    BATCH_TOO_LARGE = "batch_too_large"
    RATE_LIMITED = "rate_limited"
    DATABASE_UNAVAILABLE = "database_unavailable"
    KUBERNETES_UNAVAILABLE = "kubernetes_unavailable"
    REJECTED_BY_KUBERNETES = "rejected_by_kubernetes"
    INTERNAL = "internal_error"


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


def error_body(
    reason: str, message: str, details: Sequence[Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """The JSON body of an error answer."""
    error: dict[str, Any] = {"reason": reason, "message": message}
    if details:
        error["details"] = list(details)
    return {"error": error}


def error_response(err: ApiError) -> JSONResponse:
    """The response for an ApiError."""
    return JSONResponse(
        error_body(err.reason, err.message, err.details),
        status_code=err.status,
        headers=err.headers or None,
    )


def validation_details(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic/FastAPI error dicts turned into `{"field", "message", "type"}` entries."""
    details = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "header")]
        details.append(
            {"field": ".".join(loc) or "body", "message": e.get("msg", ""), "type": e.get("type")}
        )
    return details


def summarize(details: Sequence[Mapping[str, Any]]) -> str:
    """A one-line message naming each invalid field."""
    return "; ".join(f"{d['field']}: {d['message']}" for d in details)


def install_handlers(app: FastAPI, on_error: Any = None) -> None:
    """Make FastAPI's own errors (unknown route, 405, query-parameter validation) and
    ApiError use the standard body. `on_error(request, reason)` is told of each one."""

    def notify(request: Request, reason: str) -> None:
        if on_error is not None:
            on_error(request, reason)

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        notify(request, exc.reason)
        return error_response(exc)

    async def request_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = validation_details(exc.errors())
        notify(request, Reason.VALIDATION)
        return JSONResponse(
            error_body(Reason.VALIDATION, summarize(details), details), status_code=422
        )

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        reason = {404: Reason.NOT_FOUND, 405: Reason.METHOD_NOT_ALLOWED}.get(
            exc.status_code, f"http_{exc.status_code}"
        )
        notify(request, reason)
        return JSONResponse(
            error_body(reason, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return JSONResponse(
            error_body(Reason.INTERNAL, "internal error; see the server log"), status_code=500
        )

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(Exception, unexpected)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
