"""Request and response models of the REST API, and the input-hygiene rules."""

from __future__ import annotations

import functools
import re
from datetime import datetime
from typing import Any, Literal

from guideline_core.documents.hygiene import CleanText, TextWarning, clean_text
from guideline_core.resource import (
    MAX_MODEL_CHARS,
    MAX_RETRIES_LIMIT,
    MAX_TITLE_CHARS,
)
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from guideline_api.webhooks.targets import MAX_URL_CHARS, TargetRefusedError, check_form

CONTROL_RULE = (
    "Text must be valid Unicode sent as UTF-8. guideline_text is cleaned, not refused: put in "
    "NFC, mojibake (UTF-8 read as Latin-1/Windows-1252) repaired, and stray control "
    "characters (U+0000-U+001F and U+007F-U+009F other than tab, line feed and carriage "
    "return; unpaired surrogates) replaced: form feed and vertical tab by a line feed, the "
    "rest by U+FFFD; each kind of repair is counted in the job's `document.warnings`. A text "
    "with nothing left but whitespace and U+FFFD is refused (422 `validation_error`, type "
    "`blank`). title is not cleaned: a control character or unpaired surrogate in it is "
    "refused (422 `control_characters`)."
)
_READABLE = re.compile(r"[^\s\ufffd]")
_LINE_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$"


def _check_chars(value: str, forbidden: re.Pattern[str]) -> str:
    m = forbidden.search(value)
    if m:
        char = m.group()
        kind = "unpaired surrogate" if "\ud800" <= char <= "\udfff" else "control character"
        raise PydanticCustomError(
            "control_characters",
            "contains {kind} U+{code} at index {index}; " + CONTROL_RULE,
            {"kind": kind, "code": f"{ord(char):04X}", "index": m.start()},
        )
    return value


@functools.lru_cache(maxsize=4)
def _cleaned(text: str) -> CleanText:
    """`clean_text`, remembered for the few texts being validated (the field validator
    checks the cleaned text, the model validator keeps it)."""
    return clean_text(text)


def _readable(text: str) -> bool:
    return _READABLE.search(text) is not None


UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class ReviewThresholds(BaseModel):
    """This job's own review thresholds (each default: the runner's setting)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    min_grounding: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Needs review when fewer items than this share are grounded (default "
        "GUIDELINE_REVIEW_MIN_GROUNDING, 1.0: every item).",
    )
    min_coverage: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Needs review when fewer obligation sentences than this share are "
        "covered by an item's source (default GUIDELINE_REVIEW_MIN_COVERAGE, 0.8).",
    )


class SubmissionFields(BaseModel):
    """What a submission says besides its guideline (JSON body fields, or the form fields
    of a multipart upload)."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
    )

    title: str | None = Field(
        None, max_length=MAX_TITLE_CHARS, description="Optional label shown in listings."
    )
    model: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_MODEL_CHARS,
        pattern=MODEL_PATTERN,
        description="LLM model (e.g. gpt-4o-mini); default: the runner's configured model.",
    )
    provider: Literal["openai", "extractive"] | None = Field(
        None,
        description="`openai` (any OpenAI-compatible endpoint) or `extractive` (offline, "
        "deterministic, no LLM; labelled as such in the result). Default: the runner's.",
    )
    max_retries: int | None = Field(
        None,
        ge=0,
        le=MAX_RETRIES_LIMIT,
        description="Pod retries of this job (the Job's backoffLimit); default: operator's.",
    )
    supersedes: str | None = Field(
        None,
        pattern=UUID_PATTERN,
        description="event_id of the job whose guideline this one replaces (422 if there is "
        "no such job): the result then has `changes` against that job's checklist.",
    )
    review: ReviewThresholds | None = Field(
        None, description="Thresholds of the review gate for this job."
    )
    callback_url: str | None = Field(
        None,
        max_length=MAX_URL_CHARS,
        description="Webhook: on every terminal state (COMPLETED, FAILED, CANCELLED; again "
        "after a retry) the job's JSON is POSTed here, signed as Standard Webhooks says "
        "(`webhook-id`, `webhook-timestamp`, `webhook-signature`). An http(s) URL whose host "
        "resolves only to public addresses (422 `callback_url_refused` otherwise). Default: "
        "the tenant's `callback_url`, if it has one.",
        examples=["https://hooks.example.com/guidelines"],
    )

    @field_validator("title")
    @classmethod
    def _title(cls, value: str | None) -> str | None:
        return None if value is None else _check_chars(value, _LINE_FORBIDDEN)

    @field_validator("callback_url")
    @classmethod
    def _callback_url(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_form(value)
            except TargetRefusedError as exc:
                raise PydanticCustomError(
                    "callback_url", "{problem}", {"problem": str(exc)}
                ) from None
        return value


class SubmitJob(SubmissionFields):
    """A guideline to summarize and turn into a checklist (sent as text)."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "guideline_text": "Staff must wash hands before every patient contact.\n"
                    "Gloves should be changed between patients.",
                    "title": "Hand hygiene",
                }
            ]
        },
    )

    guideline_text: str = Field(
        description="The guideline as plain text: at least one non-blank character, at most "
        "`max_guideline_chars` characters (Unicode code points; default 2,000,000; longer "
        "is 413 `text_too_long`). " + CONTROL_RULE,
    )
    _submitted_text: str = PrivateAttr("")
    _text_warnings: list[TextWarning] = PrivateAttr(default_factory=list)

    @field_validator("guideline_text")
    @classmethod
    def _text(cls, value: str) -> str:
        if not value.strip():
            raise PydanticCustomError("blank", "must not be empty or only whitespace")
        if not _readable(_cleaned(value).text):
            raise PydanticCustomError(
                "blank",
                "has nothing to read once cleaned: only whitespace and control characters "
                "(or U+FFFD)",
            )
        return value

    @model_validator(mode="after")
    def _clean_text(self) -> SubmitJob:
        cleaned = _cleaned(self.guideline_text)
        self._submitted_text = self.guideline_text
        self._text_warnings = cleaned.warnings
        self.guideline_text = cleaned.text
        return self

    @property
    def submitted_text(self) -> str:
        """guideline_text as the client sent it (what the Idempotency-Key's hash covers)."""
        return self._submitted_text or self.guideline_text

    @property
    def text_warnings(self) -> list[TextWarning]:
        """The repairs `clean_text` made to guideline_text (offsets into the submitted text)."""
        return self._text_warnings


class SubmitDocument(SubmissionFields):
    """The form fields of a multipart upload (`file` is the guideline): as `SubmitJob`
    without `guideline_text`."""


class DocumentWarning(BaseModel):
    """One kind of repair made to the submitted text."""

    kind: str = Field(
        description="`mojibake` (UTF-8 read as Latin-1/Windows-1252, repaired with ftfy), "
        "`control_characters` (a stray C0/C1 control or unpaired surrogate replaced) or "
        "`unicode_normalization` (put in NFC)."
    )
    count: int = Field(description="How many places were repaired.")
    first_offset: int = Field(
        description="Offset (code points) of the first one in the text as submitted."
    )


class DocumentInfo(BaseModel):
    """The job's document: what the API knew when it accepted it, completed by the runner's
    extraction (`pages`, `characters`, `extractor`, ... of an upload)."""

    media_type: str = Field(
        description="`text/plain` for a JSON `guideline_text`; for an upload, the type told "
        "by its content: `application/pdf`, `application/vnd.openxmlformats-officedocument."
        "wordprocessingml.document`, `text/html`, `text/markdown` or `text/plain`."
    )
    extractor: str | None = Field(
        None,
        description="How the text was obtained: `json` (sent as text); for an upload, the "
        "runner's extractor once it has read it (absent before).",
    )
    extractor_version: str | None = Field(None, description="The extractor's version.")
    bytes: int = Field(
        description="Size: of the cleaned text in UTF-8 (JSON), of the file (upload)."
    )
    sha256: str = Field(description="SHA-256 (hex) of those bytes.")
    pages: int | None = Field(None, description="Pages (PDF), once extracted.")
    characters: int | None = Field(
        None, description="Code points of the (extracted, cleaned) text; absent before."
    )
    warnings: list[DocumentWarning] = Field(
        default_factory=list,
        description="Each kind of repair the text hygiene made (empty: none was needed).",
    )

    @model_serializer(mode="wrap")
    def _drop_absent(self, handler: Any):  # type: ignore[no-untyped-def]  # see JobView
        return {
            k: v
            for k, v in handler(self).items()
            if v is not None or k not in ("extractor", "extractor_version", "pages", "characters")
        }


class JobError(BaseModel):
    """Why a job failed or was cancelled."""

    reason: str | None = Field(
        None,
        description="Machine-readable: `BackoffLimitExceeded`, `DeadlineExceeded`, `Timeout`, "
        "`LLMError`, `LLMRejected`, `InvalidOutput`, `InvalidInput`, `Cancelled`, "
        "`InternalError`, or for a document that cannot become text `no_text_layer` (a scan: "
        "run OCR first), `document_unreadable`, `document_too_long` (none of these three is "
        "retried).",
    )
    message: str | None = Field(None, description="What happened and what to do about it.")


class QueueInfo(BaseModel):
    """Where a PENDING job stands."""

    position: int = Field(description="1 = next of its tenant to start.")
    ahead: int = Field(description="PENDING jobs of its tenant submitted before this one.")
    pending: int = Field(description="PENDING jobs of its tenant.")
    running: int = Field(description="Jobs PROCESSING now (all tenants).")
    tenants_waiting: int = Field(0, description="Tenants with PENDING jobs, admitted in turn.")
    message: str


class WebhookDelivery(BaseModel):
    """One delivery of a job's terminal state to its callback URL (retried under the same
    `webhook_id`)."""

    webhook_id: str = Field(description="The `webhook-id` header of every attempt.")
    run: int = Field(description="Which run of the job (0, then one more per retry).")
    status: str = Field(description="The terminal status this delivery reports.")
    state: Literal["pending", "delivered", "failed"] = Field(
        description="`pending` (being tried), `delivered` (a 2xx answer), `failed` (given up "
        "after webhook_max_age_seconds)."
    )
    attempts: int
    created_at: datetime
    last_attempt_at: datetime | None = None
    last_status: int | None = Field(None, description="HTTP status of the last attempt.")
    last_error: str | None = Field(None, description="Why the last attempt failed.")
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None


class WebhookInfo(BaseModel):
    """Where the job's terminal states are POSTed, and how that went."""

    url: str
    deliveries: list[WebhookDelivery]


class HistoryEntry(BaseModel):
    """One status transition or API request in a job's history."""

    at: datetime
    status: str
    attempts: int
    reason: str | None = None
    message: str | None = None


_OPTIONAL = (
    "result",
    "error",
    "queue",
    "history",
    "guideline_text",
    "cr_name",
    "status_reason",
    "supersedes",
    "needs_review",
    "webhook",
    "document",
)


JobStatus = Literal["PENDING", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"]

# The `_drop_absent` serializers leave absent members out rather than send them as null.
# They carry no return annotation on purpose: one (`-> dict[str, Any]`) would become the
# model's schema in the document, an untyped object; without it the document shows the
# fields, those with a default as optional.

JOB_EXAMPLE: dict[str, Any] = {
    "event_id": "0193d6a4-7f3e-7c2a-9b1d-2f6e8a4c5b10",
    "status": "PENDING",
    "created_at": "2026-01-05T09:30:00.123456Z",
    "updated_at": "2026-01-05T09:30:00.123456Z",
    "started_at": None,
    "completed_at": None,
    "attempts": 0,
    "title": "Hand hygiene",
    "model": None,
    "provider": None,
    "submitted_by": "alice",
    "tenant": "alice",
    "queue": {
        "position": 1,
        "ahead": 0,
        "pending": 1,
        "running": 0,
        "tenants_waiting": 1,
        "message": "waiting for a free runner slot: 0 job(s) of tenant alice ahead, 0 "
        "running; admission takes the 1 waiting tenant(s) in turn",
    },
}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


# A passage of the guideline an item quotes: guideline_text[start:end] == quote.
SOURCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "quote": {"type": "string"},
        "start": {"type": "integer", "minimum": 0},
        "end": {"type": "integer", "minimum": 0},
        "match": {"type": "string", "enum": ["exact", "normalized"]},
        "page": {
            "type": "integer",
            "minimum": 1,
            "description": "The document's page (1-based, physical) the quote "
            "starts on (PDF); absent for a text without pages.",
        },
        "page_end": {
            "type": "integer",
            "minimum": 1,
            "description": "The page the quote ends on, only when it runs across a page break.",
        },
        "page_label": {
            "type": "string",
            "description": "The printed label of `page` (e.g. `iv`), when the PDF has page labels.",
        },
        "section": {
            "type": "array",
            "items": {"type": "string"},
            "description": "The heading path the quote sits under, outermost "
            "first (DOCX, HTML, Markdown).",
        },
    },
    "required": ["quote", "start", "end"],
}

# One checklist item of `result.checklist`, as the runner writes it (the result itself is
# passed through as stored, so its schema is documentation and the contract tests' check).
CHECKLIST_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An action someone can take or check (never a question, heading, "
    "evidence summary, background or a statement that no recommendation is made).",
    "properties": {
        "item": {"type": "string", "description": "What to do."},
        "priority": {"type": "string", "enum": ["high", "medium", "low"]},
        "category": {"type": "string", "description": "A short grouping label."},
        "source": _nullable(
            {
                **SOURCE_SCHEMA,
                "description": "The passage the item comes from: "
                "guideline_text[start:end] == quote. Null when the quote is not in the text.",
            }
        ),
        "sources": {
            "type": "array",
            "items": SOURCE_SCHEMA,
            "description": "Every place the guideline quotes the item's obligation (the same "
            "obligation quoted twice is one item): the first is `source`. Empty when the "
            "item is not grounded.",
        },
        "grounded": {"type": "boolean"},
        "strength": _nullable(
            {
                "type": "string",
                "enum": ["must", "must_not", "should", "should_not", "may"],
                "description": "How the source words it (must_not / should_not: a "
                "prohibition). Null when it words none or the item is not grounded.",
            }
        ),
        "grade": _nullable(
            {
                "type": "object",
                "description": "The grade or class the guideline states for the item "
                '("Strong", "Class I, Level B", "Grade A"), verbatim from the text '
                "near its quote: guideline_text[start:end] == text. Null when none is stated.",
                "properties": {
                    "text": {"type": "string"},
                    "start": {"type": "integer", "minimum": 0},
                    "end": {"type": "integer", "minimum": 0},
                },
                "required": ["text", "start", "end"],
            }
        ),
    },
    "required": ["item"],
}


class JobProgress(BaseModel):
    """How far a PROCESSING job's current attempt is, as its runner counts it: checklist
    sections and provider calls done of total. `calls_total` is what the runner plans so
    far, so it grows while the summary's rounds of combining are formed; the counts are
    written at most every `progress_interval_seconds` (2 s) and at the end of each round."""

    sections_done: int = Field(ge=0, description="Sections whose checklist answer is in.")
    sections_total: int = Field(ge=0, description="Sections the checklist is drawn from.")
    calls_done: int = Field(ge=0, description="Provider (LLM) calls answered.")
    calls_total: int = Field(ge=0, description="Provider calls planned so far.")


class JobView(BaseModel):
    """A job as the API shows it. `result` only when COMPLETED, `error` only when FAILED or
    CANCELLED, `queue` only when PENDING, `history`/`guideline_text` only when asked for;
    `status_reason`, `cr_name`, `supersedes` and `needs_review` only when they have a value.
    An absent member is left out, never sent as null, except `progress`: always there,
    null unless the job is PROCESSING and its runner has reported a count."""

    model_config = ConfigDict(json_schema_extra={"examples": [JOB_EXAMPLE]})

    event_id: str = Field(description="The job's id (a UUID).")
    status: JobStatus
    status_reason: str | None = Field(
        None,
        description="Why the job is where it is, when the status alone does not say (e.g. "
        "accepted but its GuidelineJob not created yet while Kubernetes is unreachable).",
    )
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    attempts: int
    title: str | None
    model: str | None
    provider: str | None
    submitted_by: str
    tenant: str = Field(description="The tenant the job belongs to.")
    cr_name: str | None = Field(None, description="The GuidelineJob's name in the cluster.")
    supersedes: str | None = Field(None, description="The job this one replaces.")
    needs_review: bool | None = Field(
        None, description="When COMPLETED: whether the result fell below a review threshold."
    )
    result: dict[str, Any] | None = Field(
        None,
        description="`summary`, `checklist` (each item with its `source`, `grounded`, "
        "`strength` and `grade`), `quality`, `needs_review`, `review`, `changes` (when it "
        "supersedes a job), `document` (as the job's `document`) and the runner's metadata "
        "(provider, usage, ...).",
        json_schema_extra={
            "properties": {"checklist": {"type": "array", "items": CHECKLIST_ITEM_SCHEMA}}
        },
    )
    error: JobError | None = None
    queue: QueueInfo | None = None
    progress: JobProgress | None = Field(
        None,
        description="While PROCESSING: sections and calls done of total (null otherwise, "
        "or before the runner's first count).",
    )
    history: list[HistoryEntry] | None = None
    guideline_text: str | None = None
    webhook: WebhookInfo | None = Field(
        None, description="When the job has a callback URL: its webhook deliveries."
    )
    document: DocumentInfo | None = Field(
        None,
        description="The submitted document or text as accepted (media type, size, sha256, "
        "the hygiene's repairs), completed by the runner's extraction of an upload (pages, "
        "characters, extractor), from submission on (also as `result.document` once "
        "COMPLETED). Absent for a job made by kubectl.",
    )

    @model_serializer(mode="wrap")
    def _drop_absent(self, handler: Any):  # type: ignore[no-untyped-def]  # see above
        data = handler(self)
        for key in _OPTIONAL:
            if data.get(key) is None:
                data.pop(key, None)
        return data


class BatchItem(SubmitJob):
    """One guideline of a batch; `idempotency_key` makes retrying the batch safe for it."""

    idempotency_key: str | None = Field(
        None,
        description="Idempotency-Key of this item (else derived from the batch's header).",
    )


class SubmitBatch(BaseModel):
    """Several guidelines in one request, accepted in one transaction."""

    items: list[BatchItem] = Field(description="The submissions, in order.")


class FieldError(BaseModel):
    """One invalid field of a request."""

    field: str = Field(description="Dotted path of the field (`items.3.guideline_text`).")
    message: str
    type: str = Field(description="The kind of violation (`missing`, `string_type`, ...).")
    value: float | None = Field(
        None, description="The figure, where there is one (`budget_exceeded`: amounts)."
    )


class ItemError(BaseModel):
    """Why one item of a batch was not accepted."""

    reason: str = Field(description="A problem `reason` code (see Problem).")
    message: str
    details: list[FieldError] | None = None

    @model_serializer(mode="wrap")
    def _drop_absent(self, handler: Any):  # type: ignore[no-untyped-def]  # see above
        return {k: v for k, v in handler(self).items() if v is not None}


class BatchItemResult(BaseModel):
    """The outcome of one item of a batch: the job it made (or replayed) or its error.
    Absent members are left out, never sent as null."""

    index: int
    event_id: str | None = None
    status: JobStatus | None = None
    replayed: bool | None = Field(None, description="True: an Idempotency-Key replay.")
    error: ItemError | None = None

    @model_serializer(mode="wrap")
    def _drop_absent(self, handler: Any):  # type: ignore[no-untyped-def]  # see above
        return {k: v for k, v in handler(self).items() if v is not None}


class BatchResult(BaseModel):
    """One entry per submitted item, in the order given."""

    items: list[BatchItemResult]
    accepted: int = Field(description="Items that made a new job.")
    rejected: int = Field(description="Items refused (see their `error`).")


class AuditEntry(BaseModel):
    """Who did what, when."""

    id: int
    at: datetime
    tenant: str
    actor: str
    action: str
    event_id: str | None = None
    detail: dict[str, Any] | None = None


class AuditPage(BaseModel):
    """Audit entries newest first; pass `next_cursor` as `cursor` for the next page."""

    items: list[AuditEntry]
    next_cursor: str | None


class Amount(BaseModel):
    """A sum of money in one currency."""

    amount: float
    currency: str


class JobTotals(BaseModel):
    """The jobs a listing's filters match, on every page, and what they cost."""

    jobs: int
    cost: list[Amount] = Field(
        description="The stored `usage.cost` of the matching jobs, summed per currency "
        "(jobs whose model has no price are not in it)."
    )


class JobPage(BaseModel):
    """One page of jobs, newest first. Pass `next_cursor` as `cursor` for the next page;
    it is null on the last page. `totals` on the first page only (null after)."""

    items: list[JobView]
    next_cursor: str | None
    totals: JobTotals | None = None


class CheckResult(BaseModel):
    """One dependency's health."""

    ok: bool
    latency_ms: float | None = None
    error: str | None = None


class OperatorHealth(BaseModel):
    """Whether an operator replica wrote its heartbeat recently."""

    alive: bool
    identity: str | None = None
    last_seen: datetime | None = None
    age_seconds: float | None = None


class Health(BaseModel):
    """Dependencies and queue. 503 when the database or the Kubernetes API is down."""

    status: Literal["ok", "degraded", "unavailable"]
    database: CheckResult
    kubernetes: CheckResult
    operator: OperatorHealth | None = None
    queue_size: int | None = Field(None, description="PENDING jobs.")
    running: int | None = Field(None, description="PROCESSING jobs.")
    figures_age_seconds: float = Field(
        0.0, description="Age of these figures (refreshed in the background)."
    )


class EventQueue(BaseModel):
    """A PENDING job's place, as its event stream reports it."""

    position: int = Field(description="1 = next of its tenant to start.")


class JobEvent(BaseModel):
    """The `data:` of a `status` event of GET /jobs/{event_id}/events (its `id:` is `id`)."""

    id: int = Field(description="Increasing; send it back as Last-Event-ID to resume.")
    event_id: str
    status: str = Field(description="PENDING, PROCESSING, COMPLETED, FAILED or CANCELLED.")
    attempts: int = Field(description="Pod attempts so far (all runs).")
    run: int = Field(description="0 for the first run, N for the N-th retry request.")
    reason: str | None = Field(None, description="Why: Accepted, RetryRequested, a failure...")
    message: str | None = None
    at: datetime
    terminal: bool = Field(description="True for COMPLETED, FAILED and CANCELLED.")
    queue: EventQueue | None = Field(
        None, description="While PENDING, on the job's latest event: its queue position."
    )


class ProgressEvent(BaseModel):
    """The `data:` of a `progress` event (its `id:` is `id`, in the same sequence as the
    status events': resume after either with Last-Event-ID)."""

    id: int = Field(description="Increasing; send it back as Last-Event-ID to resume.")
    event_id: str
    status: str = Field(description="The job's status when it was counted (PROCESSING).")
    attempts: int
    run: int
    at: datetime
    progress: JobProgress


class QueueEvent(BaseModel):
    """The `data:` of a `queue` event (no `id:`): a PENDING job's queue position moved."""

    event_id: str
    status: str
    queue: EventQueue


class ReconnectEvent(BaseModel):
    """The `data:` of a `reconnect` event (no `id:`), the last frame of a stream that reached
    its maximum lifetime: reconnect with Last-Event-ID."""

    event_id: str
    reason: Literal["lifetime"]


class Liveness(BaseModel):
    """The process serves requests."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Whether the database answered at the last refresh; `error` only for an admin key."""

    status: Literal["ok", "unavailable"]
    error: str | None = None


class Problem(BaseModel):
    """An error (RFC 9457 problem details, `application/problem+json`). `reason` and
    `details` are extension members; switch on `reason` (or `type`, its URI)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "https://guideline-ingest.dev/problems/not_found",
                    "title": "Not found",
                    "status": 404,
                    "detail": "no job with event_id 0193d6a4-7f3e-7c2a-9b1d-2f6e8a4c5b10",
                    "instance": "/v1/jobs/0193d6a4-7f3e-7c2a-9b1d-2f6e8a4c5b10",
                    "reason": "not_found",
                }
            ]
        }
    )

    type: str = Field(
        description="`https://guideline-ingest.dev/problems/<reason>`: one stable URI per "
        "reason, listed in docs/api.md (Error reasons)."
    )
    title: str = Field(description="A short summary of the reason (the same for every use).")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request, for humans.")
    instance: str = Field(description="The path of the request that failed.")
    reason: str = Field(description="The machine-readable code (stable), e.g. `not_found`.")
    details: list[FieldError] | None = Field(
        None, description="The invalid fields, for field-level validation errors only."
    )


class CostPrices(BaseModel):
    """The prices a cost was computed with, per million tokens."""

    input_per_million: float
    output_per_million: float


class Cost(BaseModel):
    """An amount of money spent (or to be spent) on LLM calls."""

    amount: float
    currency: str
    prices: CostPrices | None = None


class JobEstimate(BaseModel):
    """What a submission would take, computed without any LLM call."""

    model: str = Field(description="The model assumed (the submission's, else the default).")
    provider: str
    encoding: str = Field(description="The tokenizer encoding the tokens were counted with.")
    sections: int = Field(description="Sections of the text by its own headings (at least 1).")
    parts: int = Field(description="Parts the chain summarizes (map-reduce at `chunk_chars`).")
    llm_calls: int = Field(description="map_calls + reduce_calls + checklist_calls.")
    map_calls: int
    reduce_calls: int
    checklist_calls: int
    input_tokens: int = Field(description="Tokens of the parts, counted with the tokenizer.")
    cost: Cost | None = Field(
        description="The input tokens' cost at the model's price (output not included); "
        "null when the model has no price."
    )
    notes: list[str]


class RunnerDocument(BaseModel):
    """What the runner's extraction found of a job's document (`result.document`)."""

    model_config = ConfigDict(extra="allow")

    media_type: str
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    pages: int | None = Field(None, ge=0)
    characters: int = Field(ge=0)
    extractor: str
    extractor_version: str | None = None
    warnings: list[DocumentWarning] = Field(default_factory=list)


class RunnerText(BaseModel):
    """`PUT /v1/runner/jobs/{event_id}/text`: the job's extracted text and its document."""

    text: str = Field(description="The extracted (and cleaned) text: the job's text.")
    document: RunnerDocument
