"""The OpenAPI prose of the `/jobs` operations: each operation's summary, description and
documented answers (problems with example reasons), kept apart from the handlers so that a
route reads as what it does. `routes/jobs.py` spreads these into its decorators."""

from __future__ import annotations

from typing import Any

from guideline_api.http.errors import Reason
from guideline_api.openapi import (
    ALWAYS,
    BAD_EVENT_ID,
    BATCH_UPLOAD_FORM,
    BODY_TOO_LARGE,
    FORBIDDEN_TENANT,
    INVALID_EVENT_ID,
    LIMITED,
    NOT_FOUND,
    TOO_LARGE,
    UNSUPPORTED,
    UPLOAD_FORM,
    problem,
    request_body,
    with_headers,
)
from guideline_api.schemas.batch import SubmitBatch
from guideline_api.schemas.jobs import JobView
from guideline_api.schemas.submission import CONTROL_RULE, SubmitJob

SUBMIT_DESCRIPTION = (
    "Records the job (PENDING) in PostgreSQL and answers **202** with the job and "
    "`Location: /v1/jobs/{event_id}`; it never waits for Kubernetes or the LLM. The API's "
    "dispatcher then creates the job's GuidelineJob (within milliseconds normally; while "
    "Kubernetes is unreachable the job stays PENDING with a `status_reason` saying so, and "
    "runs once it is back).\n\n"
    "**Two ways to send a guideline**: JSON (`SubmitJob`: the text in `guideline_text`), "
    "or `multipart/form-data` with the document in a part named `file` (PDF, DOCX, HTML, "
    "Markdown or plain text in UTF-8 or UTF-16 with a BOM; the type is told by the "
    "content, never the name; anything else is 415 `unsupported_media_type` saying what it "
    "is) and the other fields as form fields (`title`, `provider`, `model`, "
    "`max_retries`, `review` as a JSON string, `callback_url`, `supersedes`). An upload is "
    "spooled to disk, stored in PostgreSQL as it came, and read by the job's runner pod, "
    "never parsed by the API: the job's `document` shows its `media_type`, `bytes` and "
    "`sha256` at once, and the runner's `pages`, `characters`, `extractor` and `warnings` "
    "once it has read it; `?include=text` returns the extracted text then (empty before). "
    "Either way the GuidelineJob carries a reference to the stored document "
    "(`spec.documentRef`), not the text.\n\n"
    "**Idempotency-Key** (optional header, 1-255 printable ASCII characters): within "
    "`idempotency_window_hours` the same key from the same tenant returns the job it "
    "created with **200** and `Idempotent-Replayed: true`, and creates nothing, also when "
    "requests race. The same key with a different body is a 422 "
    "(`idempotency_key_reused`). After the window the key may name a new job.\n\n"
    "**Limits**: JSON bodies over `max_body_bytes` (16 MiB) are refused unread (413 "
    "`body_too_large`); an uploaded file over `max_document_bytes` (25 MiB) is 413 "
    "`document_too_large` (as soon as the body passes it plus 1 MiB of form fields); "
    "a `guideline_text` longer than `max_guideline_chars` (2,000,000 characters) is 413 "
    "`text_too_long`; a "
    "`model` outside the tenant's allowlist is 422 `model_not_allowed`; more than "
    "`max_pending_jobs` PENDING jobs, or more beyond the tenant's guaranteed share than "
    "the backlog shares, is 429 `backlog_full`, more than the tenant's own cap is 429 "
    "`tenant_backlog_full`, more guideline text in the cluster than "
    "`tenant_max_inflight_text_bytes` (bytes of text or uploaded documents; its jobs not "
    "finished or finished within "
    "`cr_retention_seconds`) is 429 `tenant_text_quota`, more than its requests per minute "
    "(counted in PostgreSQL, across API replicas; refused submissions, cancels and retries "
    "count too) is 429 `rate_limited`; each 429 carries `Retry-After`. A `max_retries` above "
    "`max_retries_limit` is 422.\n\n"
    "**Input rule**: " + CONTROL_RULE
)


# The 413 of a submission (POST /jobs and its estimate): the body, the document, the text.
SUBMISSION_TOO_LARGE = problem(
    413,
    "The body, the uploaded document or the guideline text is too large.",
    BODY_TOO_LARGE,
    (Reason.TEXT_TOO_LONG, "guideline_text has 2000001 characters; the limit is 2000000"),
    (
        Reason.DOCUMENT_TOO_LARGE,
        "the document 'g.pdf' is larger than 26214400 bytes (max_document_bytes)",
    ),
)

SUBMIT_JOB: dict[str, Any] = dict(
    summary="Submit a guideline",
    description=SUBMIT_DESCRIPTION,
    responses={
        200: {
            "model": JobView,
            "description": "Idempotent replay: the job this Idempotency-Key created.",
            **with_headers("Location", "Idempotent-Replayed"),
        },
        202: {"description": "Accepted: the job, PENDING.", **with_headers("Location")},
        **ALWAYS,
        **SUBMISSION_TOO_LARGE,
        **UNSUPPORTED,
        **problem(
            422,
            "Malformed JSON, invalid UTF-8, a missing/blank/mistyped field (guideline_text "
            "with nothing readable once cleaned is blank), a control character in `title`, "
            "a model not allowed, a refused `callback_url`, an unknown "
            "`supersedes` job, or an Idempotency-Key that is invalid or reused with another "
            "body.",
            (Reason.MALFORMED_JSON, "malformed JSON: Expecting value at line 1 column 1"),
            (Reason.INVALID_UTF8, "request body is not valid UTF-8 (byte 12)"),
            (Reason.VALIDATION, "guideline_text: Field required"),
            (
                Reason.CONTROL_CHARACTERS,
                "title: contains control character U+000A at index 3; ...",
            ),
            (Reason.MODEL_NOT_ALLOWED, "model 'gpt-4o' is not allowed for tenant alice"),
            (
                Reason.CALLBACK_URL_REFUSED,
                "callback_url: host '10.1.2.3' resolves to 10.1.2.3, a private address; ...",
            ),
            (
                Reason.INVALID_IDEMPOTENCY_KEY,
                "Idempotency-Key must be 1-255 printable ASCII characters",
            ),
            (Reason.IDEMPOTENCY_KEY_REUSED, "Idempotency-Key 'k1' was already used with ..."),
        ),
        **LIMITED,
    },
    openapi_extra=request_body(SubmitJob, UPLOAD_FORM),
)


ESTIMATE_DESCRIPTION = (
    "Takes the body of `POST /jobs` (JSON, or a multipart upload of plain text or Markdown, "
    "read as its text; a PDF, DOCX or HTML upload is 415 `estimate_needs_text`: the API "
    "does not parse documents, the job's runner pod does, so their text is unknown until "
    "then) and answers **200** with what the job would take, **without any LLM call** "
    "and without recording a job: `sections` (by the text's own headings), `parts` (the "
    "runner's map-reduce parts at `chunk_chars`, cut by the same code), `llm_calls` = "
    "`map_calls` (one per part) + `reduce_calls` (the rounds combining the partial summaries, "
    "assuming 2,000 characters each) + `checklist_calls` (one), `input_tokens` of the parts "
    "counted with the model's tokenizer (o200k_base for gpt-4o/gpt-4.1/o-series and unknown "
    "models, cl100k_base for older ones), and `cost` of those input tokens at the model's "
    "price (`model_prices`; null for a model without one; 0 for the extractive provider). "
    "Prompts, the reduce and checklist inputs and every output come on top: the figure is "
    "a floor. A submission naming no model is estimated for `default_model`. Refused like "
    "a submission for its size (413) or model (422); not charged against the rate."
)


ESTIMATE_JOB: dict[str, Any] = dict(
    summary="Estimate a submission's LLM calls, tokens and cost",
    description=ESTIMATE_DESCRIPTION,
    responses={
        **ALWAYS,
        **SUBMISSION_TOO_LARGE,
        **problem(
            415,
            "The body is neither JSON nor multipart, the upload is not a supported type, or "
            "it is a PDF, DOCX or HTML document, whose text the API cannot know (the runner "
            "pod extracts it).",
            (Reason.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json, not ..."),
            (
                Reason.ESTIMATE_NEEDS_TEXT,
                "a application/pdf document cannot be estimated before it is read: ...",
            ),
        ),
        **problem(
            422,
            "Malformed JSON, a missing/blank/mistyped field or a model not allowed.",
            (Reason.MALFORMED_JSON, "malformed JSON: Expecting value at line 1 column 1"),
            (Reason.VALIDATION, "guideline_text: Field required"),
            (Reason.MODEL_NOT_ALLOWED, "model 'gpt-4o' is not allowed for tenant alice"),
        ),
    },
    openapi_extra=request_body(SubmitJob, UPLOAD_FORM),
)


SUBMIT_BATCH: dict[str, Any] = dict(
    summary="Submit many guidelines at once",
    description="Up to `max_batch_size` submissions (each as for `POST /jobs`, plus an optional "
    "`idempotency_key`) accepted in **one transaction**: the answer lists, in order, "
    "each item's job (`event_id`, `status`, `replayed` for an Idempotency-Key replay) "
    "or its error (`reason`, `message`, `details` naming `items.<index>.<field>`). An "
    "invalid item does not stop the others, nor does an item reusing an earlier item's "
    "key with another body (422 `idempotency_key_reused` in its place). An "
    "`Idempotency-Key` header gives item *i* the key `<header>:<i>` (`sha256:<hex of "
    "the header>:<i>` when that would exceed 255 characters) unless it has its own, so "
    "a retried batch creates nothing twice. Every item counts against the tenant's "
    "rate (replays excepted); a limit the whole batch would exceed (backlog, tenant "
    "backlog, rate) is a 429 for the batch and records nothing, checked before any "
    "callback host is resolved (each distinct host once, within "
    "`callback_dns_budget_seconds`). This is how a corpus is ingested.\n\n"
    "**Files**: as `multipart/form-data`, up to `max_batch_files` (20) parts named "
    "`file` (each as the `file` of `POST /jobs`, at most `max_document_bytes`) and an "
    "optional `items` field: a JSON array with one object per file, in the same order, "
    "of that file's fields (`title`, `provider`, ..., `idempotency_key`). The answer is "
    "the same; a file of a type not supported, or too large, is that item's error "
    "(415 `unsupported_media_type`, 413 `document_too_large`). The whole body is at most "
    "`max_upload_bytes` (128 MiB; 413 `body_too_large`).",
    responses={
        202: {"description": "Each item's job or error, in order."},
        **ALWAYS,
        **problem(
            413,
            "The body is too large, or the batch has more than `max_batch_size` items.",
            BODY_TOO_LARGE,
            (Reason.BATCH_TOO_LARGE, "a batch holds at most 500 items, not 501"),
        ),
        **UNSUPPORTED,
        **problem(
            422,
            "The body is not an object with a non-empty `items` list, or the "
            "Idempotency-Key header is invalid (item errors are in the 202 answer).",
            (Reason.MALFORMED_JSON, "malformed JSON: Expecting value at line 1 column 1"),
            (Reason.VALIDATION, "`items` must be a non-empty list of submissions"),
            (
                Reason.INVALID_IDEMPOTENCY_KEY,
                "Idempotency-Key must be 1-255 printable ASCII characters",
            ),
        ),
        **LIMITED,
    },
    openapi_extra=request_body(SubmitBatch, BATCH_UPLOAD_FORM),
)


GET_JOB: dict[str, Any] = dict(
    summary="Get a job",
    responses={
        **ALWAYS,
        **NOT_FOUND,
        **problem(
            422,
            "The event_id is not a UUID, or `include` names an unknown extra.",
            INVALID_EVENT_ID,
            (Reason.VALIDATION, "unknown include ['x']; allowed: history, text"),
        ),
    },
)


EVENTS_DESCRIPTION = (
    "The job's status changes as **Server-Sent Events** (`text/event-stream`), from "
    "PostgreSQL (its stored history, then LISTEN/NOTIFY), so any API replica serves it:\n\n"
    "- `event: status`, `id: <n>`, `data:` a JobEvent (status, attempts, run, reason, "
    "`queue.position` on the latest event while PENDING), one per change (PENDING, "
    "PROCESSING, each new attempt, COMPLETED/FAILED/CANCELLED; a retry starts again at "
    "PENDING);\n"
    "- `event: progress`, `id: <n>` (the same sequence), `data:` a ProgressEvent: while "
    "PROCESSING, the runner's count of checklist sections and provider calls done of total "
    "(`progress`: sections_done, sections_total, calls_done, calls_total), at most every "
    "`progress_interval_seconds` (2 s) and at the end of each round of calls;\n"
    "- `event: queue` (no `id:`), `data:` a QueueEvent: a PENDING job's position moved;\n"
    "- `: keep-alive` comments every `sse_heartbeat_seconds` (15 s) while idle.\n\n"
    "Ids increase; send the last one you got as `Last-Event-ID` to resume with every later "
    "event (no gap, no duplicate). The stream ends after the event that made the job "
    "terminal (at once if it is terminal and nothing is newer than `Last-Event-ID`); on any "
    "other end (a dropped connection, a restarted replica, PostgreSQL lost) reconnect with "
    "`Last-Event-ID`. `retry:` suggests 2 s.\n\n"
    "A stream lasts at most `sse_max_stream_seconds` (15 min): it then ends with "
    "`event: reconnect` (no `id:`, `data:` a ReconnectEvent); reconnect with "
    "`Last-Event-ID`. It ends without a word once its API key is revoked (checked every "
    "`sse_key_recheck_seconds`, 30 s). Open streams are capped per API process: per key "
    "(`sse_max_streams_per_key`, 20), per tenant (`sse_max_streams_per_tenant`, 100) and in "
    "all (`sse_max_streams`, below the server's `limit_concurrency`); beyond, 429 "
    "`too_many_streams` with Retry-After."
)


JOB_EVENTS: dict[str, Any] = dict(
    summary="Follow a job (Server-Sent Events)",
    description=EVENTS_DESCRIPTION,
    responses={
        200: {
            "description": "The event stream.",
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string"},
                    "example": (
                        "retry: 2000\n\n"
                        'id: 41\nevent: status\ndata: {"id":41,"status":"PENDING",'
                        '"attempts":0,"run":0,"reason":"Accepted","terminal":false,'
                        '"queue":{"position":3},...}\n\n'
                        'id: 44\nevent: progress\ndata: {"id":44,"status":"PROCESSING",'
                        '"progress":{"sections_done":2,"sections_total":9,"calls_done":14,'
                        '"calls_total":31},...}\n\n'
                        ": keep-alive\n\n"
                        'id: 57\nevent: status\ndata: {"id":57,"status":"COMPLETED",'
                        '"terminal":true,...}\n\n'
                    ),
                }
            },
        },
        **ALWAYS,
        **NOT_FOUND,
        **problem(
            429,
            "Too many event streams open in this API process: the key's, the tenant's or the "
            "process's cap; see Retry-After.",
            (
                Reason.TOO_MANY_STREAMS,
                "API key 'alice' has 20 event streams open, the most allowed; close one or "
                "retry later",
            ),
            headers=("Retry-After",),
        ),
        **problem(
            422,
            "The event_id is not a UUID, or Last-Event-ID is not an id this stream sent.",
            INVALID_EVENT_ID,
            (Reason.INVALID_LAST_EVENT_ID, "Last-Event-ID 'x' is not an id this stream sent"),
        ),
    },
)


LIST_JOBS: dict[str, Any] = dict(
    summary="List jobs",
    responses={
        **ALWAYS,
        **FORBIDDEN_TENANT,
        **problem(
            422,
            "A bad filter, limit or cursor.",
            (Reason.VALIDATION, "limit: Input should be less than or equal to 200"),
            (Reason.INVALID_CURSOR, "cursor is not one this API returned as next_cursor"),
        ),
    },
)


CANCEL_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "The job, CANCELLED."},
    **ALWAYS,
    **NOT_FOUND,
    **problem(
        409,
        "The job is already finished.",
        (Reason.JOB_FINISHED, "job ... is already COMPLETED; nothing to cancel"),
    ),
    **BAD_EVENT_ID,
    **LIMITED,
}


CANCEL_DESCRIPTION = (
    "Cancels a PENDING or PROCESSING job: it is **CANCELLED at once** (the answer and every "
    "later read say so); the dispatcher then sets the `cancel-requested` annotation on its "
    "GuidelineJob and the operator deletes the Job and its pod. A finished job is a 409. "
    "Each cancel counts against the tenant's requests per minute (429 `rate_limited`)."
)


DELETE_JOB: dict[str, Any] = dict(
    summary="Cancel a job",
    description=CANCEL_DESCRIPTION,
    responses=CANCEL_RESPONSES,
)


CANCEL_JOB: dict[str, Any] = dict(
    summary="Cancel a job",
    description=CANCEL_DESCRIPTION,
    responses={**CANCEL_RESPONSES, **TOO_LARGE},
)


RETRY_JOB: dict[str, Any] = dict(
    summary="Retry a failed or cancelled job",
    description="Starts a new attempt of a FAILED or CANCELLED job (the dead-letter queue): it is "
    "**PENDING at once** (the answer and every later read say so, never the old "
    "outcome); the dispatcher bumps the `retry-requested` counter annotation of its "
    "GuidelineJob (re-creating it, with its `max_retries`, if retention deleted it) and "
    "the operator runs a new Job with the same event_id; `attempts` keeps counting and "
    "`?include=history` keeps every attempt. Any other status is a 409, and so is a "
    "job that has had `max_runs_per_job` runs (`too_many_runs`). Each retry counts "
    "against the tenant's requests per minute (429 `rate_limited`).",
    responses={
        202: {"description": "The job, PENDING again."},
        **ALWAYS,
        **NOT_FOUND,
        **problem(
            409,
            "The job is neither FAILED nor CANCELLED, or has had `max_runs_per_job` runs.",
            (
                Reason.JOB_NOT_RETRYABLE,
                "job ... is COMPLETED; only FAILED or CANCELLED jobs can be retried",
            ),
            (Reason.TOO_MANY_RUNS, "job ... has had 10 runs (limit 10); submit it again ..."),
        ),
        **TOO_LARGE,
        **BAD_EVENT_ID,
        **LIMITED,
    },
)


# Parameters
EVENT_ID = "The job's event_id."
EVENT_ID_UUID = "The job's event_id (a UUID)."
INCLUDE = (
    "Comma-separated extras: `history` (status transitions and API "
    "requests, attempts included), `text` (the submitted guideline_text, verbatim; "
    "recorded in the audit trail: one entry per key and job per "
    "`audit_read_window_seconds`, counting the reads)."
)
LAST_EVENT_ID = "The `id:` of the last event received: resume after it."
STATUS = (
    "Only jobs in this status: PENDING, PROCESSING, COMPLETED, FAILED "
    "(the dead-letter queue) or CANCELLED."
)
TENANT = "Admin keys: only this tenant's jobs (members see only their own)."
LIMIT = "Page size (1-200)."
CURSOR = "`next_cursor` of the previous page."
NEEDS_REVIEW = (
    "true: only COMPLETED jobs whose result needs review (grounding or "
    "coverage below its thresholds); false: only COMPLETED jobs that do not."
)
