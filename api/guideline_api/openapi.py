"""What the OpenAPI document says beyond the routes' own models: the problem responses
each operation can answer (with examples and headers) and the Problem schema they use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel

from guideline_api.http.errors import PROBLEM_MEDIA_TYPE, Reason, problem_body
from guideline_api.schemas.batch import SubmitBatch
from guideline_api.schemas.problems import Problem
from guideline_api.schemas.submission import SubmitJob

# Models the document names by `$ref` although no route declares them as its model: the
# request bodies (parsed by hand, see submission.py) and the problem.
COMPONENTS: tuple[type[BaseModel], ...] = (SubmitJob, SubmitBatch, Problem)
REF_TEMPLATE = "#/components/schemas/{model}"


def component_ref(model: type[BaseModel]) -> dict[str, str]:
    """A `$ref` to one of COMPONENTS."""
    assert model in COMPONENTS, model
    return {"$ref": REF_TEMPLATE.format(model=model.__name__)}


PROBLEM_REF = component_ref(Problem)
EXAMPLE_PATH = "/v1/jobs/0193d6a4-7f3e-7c2a-9b1d-2f6e8a4c5b10"

HEADERS: dict[str, dict[str, Any]] = {
    "WWW-Authenticate": {
        "description": 'The scheme to use: `Bearer realm="guideline-ingest"`.',
        "required": True,
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    "Location": {
        "description": "The job's URL (`<the path posted to>/<event_id>`).",
        "required": True,
        "schema": {"type": "string"},
    },
    "Idempotent-Replayed": {
        "description": "`true`: this Idempotency-Key's job, created by an earlier request.",
        "required": True,
        "schema": {"type": "string", "enum": ["true"]},
    },
}


def problem(
    status: int,
    description: str,
    *examples: tuple[str, str],
    headers: tuple[str, ...] = (),
) -> dict[int | str, dict[str, Any]]:
    """The `responses` entry of a problem answer: `examples` are (reason, detail) pairs."""
    content = {
        "schema": PROBLEM_REF,
        "examples": {
            reason: {"summary": reason, "value": problem_body(status, reason, detail, EXAMPLE_PATH)}
            for reason, detail in examples
        },
    }
    entry: dict[str, Any] = {"description": description, "content": {PROBLEM_MEDIA_TYPE: content}}
    if headers:
        entry["headers"] = {name: HEADERS[name] for name in headers}
    return {status: entry}


def with_headers(*names: str) -> dict[str, Any]:
    """The `headers` member of a response declaring these headers."""
    return {"headers": {name: HEADERS[name] for name in names}}


# The answers shared by operations; each operation merges those it can give.
UNAUTHORIZED = problem(
    401,
    "No API key, or one that is not valid (answered before the body is read).",
    (Reason.MISSING_API_KEY, "an API key is required: send `Authorization: Bearer <key>`"),
    (Reason.INVALID_API_KEY, "the API key is not valid"),
    headers=("WWW-Authenticate",),
)
NOT_FOUND = problem(
    404,
    "No such job, or a job of another tenant.",
    (Reason.NOT_FOUND, "no job with event_id 0193d6a4-7f3e-7c2a-9b1d-2f6e8a4c5b10"),
)
BODY_TOO_LARGE = (
    Reason.BODY_TOO_LARGE,
    "request body too large (declared Content-Length 2000000); the limit is 1048576 bytes",
)
TOO_LARGE = problem(413, "The body exceeds `max_body_bytes` (refused unread).", BODY_TOO_LARGE)
INVALID_EVENT_ID = (Reason.INVALID_EVENT_ID, "'abc' is not a valid event_id (a UUID)")
BAD_EVENT_ID = problem(422, "The event_id is not a UUID.", INVALID_EVENT_ID)
LIMITED = problem(
    429,
    "The backlog, the tenant's share of it, the guideline text the tenant holds in the "
    "cluster, the tenant's requests per minute or its LLM budget is exhausted; see "
    "Retry-After.",
    (Reason.BACKLOG_FULL, "1000 jobs are waiting (limit 1000); retry later"),
    (Reason.TENANT_BACKLOG_FULL, "tenant alice has 100 jobs waiting (limit 100); retry later"),
    (
        Reason.TENANT_TEXT_QUOTA,
        "tenant alice holds 67000000 bytes of guideline text in jobs not finished or finished "
        "in the last 3600 s; 400000 more would pass its limit of 67108864; retry later",
    ),
    (Reason.RATE_LIMITED, "rate limit of 60 requests per minute for tenant alice exceeded"),
    (
        Reason.BUDGET_EXCEEDED,
        "tenant alice has spent 49.2 USD of its budget of 50.0 USD this month and 0.5 USD is "
        "reserved by its unfinished jobs; this submission's estimate of 0.4 USD exceeds the "
        "0.3 USD left",
    ),
    headers=("Retry-After",),
)
INTERNAL = problem(
    500, "A bug; the server log has it.", (Reason.INTERNAL, "internal error; see the server log")
)
DB_DOWN = problem(
    503,
    "PostgreSQL is unreachable; nothing was recorded. Safe to retry (with the same "
    "Idempotency-Key).",
    (Reason.DATABASE_UNAVAILABLE, "database unavailable: connection refused"),
)
ALWAYS: dict[int | str, dict[str, Any]] = {**UNAUTHORIZED, **INTERNAL, **DB_DOWN}
UNSUPPORTED = problem(
    415,
    "The body is neither JSON nor multipart/form-data, or an uploaded document is not PDF, "
    "DOCX, HTML, Markdown or plain text (told by its content, not its name).",
    (Reason.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json, not text/plain"),
    (
        Reason.UNSUPPORTED_MEDIA_TYPE,
        "the document 'scan.png' is not PDF, DOCX, HTML, Markdown or plain text: the document "
        "is a PNG image, not a supported format",
    ),
)
DOCUMENT_MEDIA_TYPES = (
    "application/pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "text/html",
    "text/markdown",
    "text/plain",
)
# The form fields of an upload besides `file` (strings, as multipart sends them).
_FORM_FIELDS: dict[str, Any] = {
    "title": {"type": "string", "description": "As in JSON."},
    "model": {"type": "string", "description": "As in JSON."},
    "provider": {"type": "string", "enum": ["openai", "extractive"]},
    "max_retries": {"type": "integer", "minimum": 0, "description": "As in JSON."},
    "supersedes": {"type": "string", "format": "uuid", "description": "As in JSON."},
    "review": {
        "type": "string",
        "description": 'A JSON object as a string: `{"min_grounding": 0.9}`.',
    },
    "callback_url": {"type": "string", "description": "As in JSON."},
}
FILE = {
    "type": "string",
    "format": "binary",
    "description": "The document: PDF, DOCX, HTML, Markdown or plain text (UTF-8, or "
    "UTF-16 with a BOM), told by its content; at most `max_document_bytes` (25 MiB).",
}
UPLOAD_FORM: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "properties": {"file": FILE, **_FORM_FIELDS},
}
BATCH_UPLOAD_FORM: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "array", "items": FILE, "description": "One part per document."},
        "items": {
            "type": "string",
            "description": "Optional: a JSON array with one object per file, in order, of "
            "that file's submission fields (as in JSON, plus `idempotency_key`).",
        },
    },
}


def request_body(json_model: type[BaseModel], form: dict[str, Any]) -> dict[str, Any]:
    """An operation's request body: JSON (`json_model`) or a multipart upload (`form`)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": component_ref(json_model)},
                "multipart/form-data": {"schema": form},
            },
        }
    }


FORBIDDEN_TENANT = problem(
    403,
    "A member key asked for another tenant.",
    (Reason.FORBIDDEN, "a member key sees only its own tenant's jobs"),
)


def alias_id(route: APIRoute) -> str:
    """operationId of an unversioned alias (the /v1 operation's id is the function name)."""
    return f"{route.name}_unversioned"


def versioned_id(route: APIRoute) -> str:
    """operationId of a /v1 operation: its function's name (`get_job`), which a generated
    client makes its function name."""
    return route.name


def install(app: FastAPI) -> None:
    """Serve the document with COMPONENTS in its components."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        _drop_fastapi_validation_errors(document)
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for model in COMPONENTS:
            schema = model.model_json_schema(ref_template=REF_TEMPLATE)
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


FASTAPI_422 = "#/components/schemas/HTTPValidationError"


def _drop_fastapi_validation_errors(document: dict[str, Any]) -> None:
    """Remove the 422 FastAPI adds to an operation with parameters that declares none: the
    API's operations all declare their 422 problem, so it remains only on the documented
    webhook, where it would claim the receiver answers FastAPI's body. Its schemas go too."""
    for path_item in [*document.get("paths", {}).values(), *document.get("webhooks", {}).values()]:
        for operation in path_item.values():
            answer = operation.get("responses", {}).get("422", {})
            if (
                answer.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
                == FASTAPI_422
            ):
                del operation["responses"]["422"]
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
