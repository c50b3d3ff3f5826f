"""The `/jobs` endpoints: submit, read, list, cancel and retry jobs."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import psycopg2.errors
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from guideline_core import db, kube, logs
from guideline_core import resource as gj
from guideline_core.db import DatabaseUnavailableError
from guideline_core.resource import Phase
from pydantic import ValidationError

from guideline_api.app import Authenticated, Context, get_ctx, rate_limit
from guideline_api.auth import Principal
from guideline_api.errors import ApiError, Reason, summarize, validation_details
from guideline_api.kubeapi import ConflictError, KubernetesRejectedError, KubernetesUnavailableError
from guideline_api.schemas import CONTROL_RULE, JobPage, JobView, QueueInfo, SubmitJob

log = logging.getLogger(__name__)
router = APIRouter(prefix="/jobs", tags=["jobs"])

IDEMPOTENCY_KEY_MAX = 255
REPLAY_HEADER = "Idempotent-Replayed"
_INCLUDES = frozenset({"history", "text"})


def _err(reason: str, message: str, desc: str | None = None) -> dict[str, Any]:
    return {
        "description": desc or message,
        "content": {
            "application/json": {"example": {"error": {"reason": reason, "message": message}}}
        },
    }


AUTH_ERRORS = {401: _err(Reason.MISSING_API_KEY, "an API key is required", "No/bad key.")}
UNAVAILABLE = {
    503: _err(
        Reason.KUBERNETES_UNAVAILABLE,
        "creating the GuidelineJob failed: connection refused",
        "The database or the Kubernetes API is unreachable; nothing was created. Safe to "
        "retry (with the same Idempotency-Key).",
    )
}


# --------------------------------------------------------------------------- helpers


def _parse_event_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ApiError(
            422, Reason.INVALID_EVENT_ID, f"{value[:80]!r} is not a valid event_id (a UUID)"
        ) from None


def _not_found(event_id: uuid.UUID) -> ApiError:
    return ApiError(404, Reason.NOT_FOUND, f"no job with event_id {event_id}")


def _unavailable(exc: Exception) -> ApiError:
    if isinstance(exc, DatabaseUnavailableError):
        return ApiError(503, Reason.DATABASE_UNAVAILABLE, f"database unavailable: {exc}")
    return ApiError(503, Reason.KUBERNETES_UNAVAILABLE, f"Kubernetes API unavailable: {exc}")


def to_view(
    row: dict[str, Any],
    *,
    queue: QueueInfo | None = None,
    history: list[dict[str, Any]] | None = None,
    text: str | None = None,
) -> JobView:
    """The API representation of a job row."""
    status = row["status"]
    result = row.get("result") if status == Phase.COMPLETED else None
    error = None
    if status in (Phase.FAILED, Phase.CANCELLED):
        default = "Cancelled" if status == Phase.CANCELLED else "Unknown"
        error = row.get("error") or {"reason": default, "message": None}
    meta = row.get("result") or {}
    return JobView.model_validate(
        {
            "event_id": str(row["event_id"]),
            "status": status,
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "started_at": row["started_at"],
            "completed_at": row["completed_at"],
            "attempts": row["attempts"],
            "title": row["title"],
            "model": row["model"] or meta.get("model"),
            "provider": row["provider"] or meta.get("provider"),
            "submitted_by": row["submitted_by"],
            "cr_name": row.get("cr_name"),
            "result": result,
            "error": error,
            "queue": queue,
            "history": history,
            "guideline_text": text,
        }
    )


def _queue_info(conn: Any, row: dict[str, Any], stale_after: int) -> QueueInfo:
    position = db.queue_position(conn, row["created_at"], row["event_id"])
    # Two counts on the status index, not count_by_status: that one reads the whole table
    # (3 s a request at 50/s with 100,000 rows in `make bench`).
    pending = db.count_status(conn, Phase.PENDING)
    running = db.count_status(conn, Phase.PROCESSING)
    beat = db.latest_heartbeat(conn)
    ahead = position - 1
    message = f"waiting for a free runner slot: {ahead} job(s) ahead, {running} running"
    if beat is None or beat["age"] > stale_after:
        message += "; the operator is not running, so no job starts until it is back"
    return QueueInfo(
        position=position, ahead=ahead, pending=pending, running=running, message=message
    )


def _encode_cursor(row: dict[str, Any]) -> str:
    raw = json.dumps({"t": row["created_at"].isoformat(), "id": str(row["event_id"])})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        created = datetime.fromisoformat(data["t"])
        if created.tzinfo is None:
            raise ValueError("naive timestamp")
        return created, uuid.UUID(data["id"])
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeEncodeError):
        raise ApiError(
            422, Reason.INVALID_CURSOR, "cursor is not one this API returned as next_cursor"
        ) from None


def parse_submission(raw: bytes, content_type: str | None) -> SubmitJob:
    """Decode and validate a POST /jobs body (already size-capped by the middleware)."""
    if content_type:
        media = content_type.split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise ApiError(
                415,
                Reason.UNSUPPORTED_MEDIA_TYPE,
                f"Content-Type must be application/json, not {media!r}",
            )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            422, Reason.INVALID_UTF8, f"request body is not valid UTF-8 (byte {exc.start})"
        ) from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise ApiError(422, Reason.MALFORMED_JSON, "request body is empty; expected a JSON object")
    try:
        # strict=False admits raw tabs/newlines inside strings; the control-character
        # rule below then applies the same way whether a character was escaped or not.
        data = json.loads(text, strict=False)
    except json.JSONDecodeError as exc:
        raise ApiError(
            422,
            Reason.MALFORMED_JSON,
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None
    except (ValueError, RecursionError) as exc:
        raise ApiError(422, Reason.MALFORMED_JSON, f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(
            422,
            Reason.VALIDATION,
            f"body must be a JSON object, not {type(data).__name__}",
            details=[{"field": "body", "message": "expected a JSON object", "type": "type"}],
        )
    try:
        return SubmitJob.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        details = validation_details(errors)
        control = any(e["type"] == "control_characters" for e in errors)
        raise ApiError(
            422,
            Reason.CONTROL_CHARACTERS if control else Reason.VALIDATION,
            summarize(details),
            details=details,
        ) from None


def request_hash(req: SubmitJob) -> str:
    """SHA-256 of the canonical body (fields given, sorted keys, compact separators)."""
    canonical = json.dumps(
        req.model_dump(exclude_none=True),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not (1 <= len(key) <= IDEMPOTENCY_KEY_MAX) or not all(" " < c <= "~" for c in key):
        raise ApiError(
            422,
            Reason.INVALID_IDEMPOTENCY_KEY,
            f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} printable ASCII characters "
            "without spaces (a UUID is a good choice)",
        )
    return key


async def read_body(request: Request) -> bytes:
    """The raw request body (a dependency, so the sync endpoint gets it without awaiting)."""
    return await request.body()


def _submit(
    ctx: Context, principal: Principal, req: SubmitJob, key: str | None
) -> tuple[dict[str, Any], bool]:
    """Record and create a job; returns (row, created). Raises ApiError."""
    settings = ctx.settings
    digest = request_hash(req)
    # A lost idempotency race shows up as UniqueViolation on INSERT; the next pass then
    # finds the winner's row (committed by then: the index made us wait for it).
    for _ in range(3):
        event_id = kube.new_event_id()
        cr_name: str | None = None
        try:
            with ctx.store.connection() as conn:
                if key is not None:
                    prior = db.find_by_idempotency_key(
                        conn, principal.key_id, key, settings.idempotency_window_hours
                    )
                    if prior is not None and not prior["expired"]:
                        if prior["request_hash"] != digest:
                            raise ApiError(
                                422,
                                Reason.IDEMPOTENCY_KEY_REUSED,
                                f"Idempotency-Key {key!r} was already used with a different "
                                f"request body (job {prior['event_id']}); use a new key for "
                                "a new job",
                            )
                        return prior, False
                    if prior is not None:
                        db.release_idempotency_key(conn, prior["event_id"])
                pending = db.count_status(conn, Phase.PENDING)
                if pending >= settings.max_pending_jobs:
                    raise ApiError(
                        429,
                        Reason.BACKLOG_FULL,
                        f"{pending} jobs are waiting (limit {settings.max_pending_jobs}); "
                        "retry later",
                        headers={"Retry-After": str(settings.backlog_retry_after_seconds)},
                    )
                db.insert_job(
                    conn,
                    db.NewJob(
                        event_id=event_id,
                        namespace=ctx.kube.namespace,
                        guideline_text=req.guideline_text,
                        title=req.title,
                        model=req.model,
                        provider=req.provider,
                        submitted_by=principal.key_id,
                        idempotency_key=key,
                        request_hash=digest,
                    ),
                )
                manifest = kube.guideline_job_manifest(
                    event_id=event_id,
                    guideline_text=req.guideline_text,
                    title=req.title,
                    model=req.model,
                    provider=req.provider,
                    max_retries=req.max_retries,
                    submitted_by=principal.key_id,
                )
                created = ctx.kube.create(manifest)
                cr_name = created["metadata"]["name"]
                db.set_cr_name(conn, event_id, cr_name)
                row = db.get_job(conn, event_id)
                assert row is not None
            return row, True
        except psycopg2.errors.UniqueViolation:
            log.info("idempotency race lost; answering with the winner's job")
            continue
        except DatabaseUnavailableError as exc:
            if cr_name is not None:
                # The CR exists but the row did not commit: the operator mirrors it.
                log.warning(
                    "GuidelineJob created but the row did not commit",
                    extra={"event_id": str(event_id), "cr_name": cr_name},
                )
            raise _unavailable(exc) from exc
        except KubernetesUnavailableError as exc:
            raise _unavailable(exc) from exc
        except KubernetesRejectedError as exc:
            raise ApiError(422, Reason.REJECTED_BY_KUBERNETES, str(exc)) from exc
    raise ApiError(503, Reason.DATABASE_UNAVAILABLE, "could not record the job; retry")


# --------------------------------------------------------------------------- endpoints


@router.post(
    "",
    status_code=202,
    response_model=JobView,
    summary="Submit a guideline",
    description=(
        "Records the job (PENDING) and creates its GuidelineJob in one transaction, then "
        "answers **202** with the job and `Location: /jobs/{event_id}`; it never waits for "
        "the LLM.\n\n"
        "**Idempotency-Key** (optional header, 1-255 printable ASCII characters): within "
        "`idempotency_window_hours` the same key from the same API key returns the job it "
        "created with **200** and `Idempotent-Replayed: true`, and creates nothing, also when "
        "requests race. The same key with a different body is a 422 "
        "(`idempotency_key_reused`). After the window the key may name a new job.\n\n"
        "**Limits**: bodies over `max_body_bytes` are refused unread (413 `body_too_large`); "
        "a `guideline_text` longer than `max_guideline_chars` is 413 `text_too_long`; more "
        "than `max_pending_jobs` PENDING jobs is 429 `backlog_full`; more than "
        "`rate_limit_per_minute` submissions per API key per minute (counted per API "
        "process) is 429 `rate_limited`. Both 429s carry `Retry-After`.\n\n"
        "**Input rule**: " + CONTROL_RULE
    ),
    responses={
        200: {"description": "Idempotent replay: the job this Idempotency-Key created."},
        **AUTH_ERRORS,
        413: _err(Reason.TEXT_TOO_LONG, "guideline_text has 100001 characters", "Too big."),
        415: _err(Reason.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json"),
        422: _err(
            Reason.CONTROL_CHARACTERS,
            "guideline_text: contains control character U+0000 at index 4; ...",
            "Malformed JSON, invalid UTF-8, a missing/blank/mistyped field, a forbidden "
            "control character, or an Idempotency-Key reused with another body.",
        ),
        429: _err(Reason.BACKLOG_FULL, "1000 jobs are waiting (limit 1000); retry later"),
        **UNAVAILABLE,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": SubmitJob.model_json_schema()}},
        }
    },
)
def submit_job(
    request: Request,
    principal: Authenticated,
    response: Response,
    _limited: Annotated[None, Depends(rate_limit)],
    body: Annotated[bytes, Depends(read_body)],
    idempotency_key: str | None = Header(
        None,
        alias="Idempotency-Key",
        description="Makes retries of this request safe: one key, one job.",
    ),
) -> JobView:
    """Submit a guideline for summarizing (see the description above)."""
    ctx = get_ctx(request)
    req = parse_submission(body, request.headers.get("content-type"))
    chars = len(req.guideline_text)
    if chars > ctx.settings.max_guideline_chars:
        raise ApiError(
            413,
            Reason.TEXT_TOO_LONG,
            f"guideline_text has {chars} characters; the limit is "
            f"{ctx.settings.max_guideline_chars}",
        )
    key = _check_idempotency_key(idempotency_key)
    row, created = _submit(ctx, principal, req, key)
    event_id = str(row["event_id"])
    request.state.event_id = event_id  # for the access log line
    response.headers["Location"] = f"/jobs/{event_id}"
    with logs.bind(event_id=event_id):
        if created:
            ctx.metrics.jobs_submitted.labels(req.provider or "default").inc()
            log.info(
                "job accepted",
                extra={
                    "cr_name": row["cr_name"],
                    "submitted_by": principal.key_id,
                    "chars": chars,
                    "idempotency_key": key is not None,
                },
            )
        else:
            response.status_code = 200
            response.headers[REPLAY_HEADER] = "true"
            ctx.metrics.idempotent_replays.inc()
            log.info("idempotent replay", extra={"submitted_by": principal.key_id})
    return to_view(row)


@router.get(
    "/{event_id}",
    response_model=JobView,
    summary="Get a job",
    responses={
        **AUTH_ERRORS,
        404: _err(Reason.NOT_FOUND, "no job with event_id ..."),
        422: _err(Reason.INVALID_EVENT_ID, "'abc' is not a valid event_id (a UUID)"),
        503: _err(Reason.DATABASE_UNAVAILABLE, "database unavailable: ..."),
    },
)
def get_job(
    request: Request,
    _principal: Authenticated,
    event_id: str = Path(description="The job's event_id (a UUID)."),
    include: str | None = Query(
        None,
        description="Comma-separated extras: `history` (status transitions and API "
        "requests, attempts included), `text` (the submitted guideline_text, verbatim).",
    ),
) -> JobView:
    """The job from PostgreSQL (primary-key lookup): `result` when COMPLETED, `error` when
    FAILED or CANCELLED, `queue` (position, jobs ahead, running) when PENDING."""
    ctx = get_ctx(request)
    eid = _parse_event_id(event_id)
    extras = {part.strip() for part in (include or "").split(",") if part.strip()}
    if extras - _INCLUDES:
        raise ApiError(
            422,
            Reason.VALIDATION,
            f"unknown include {sorted(extras - _INCLUDES)}; allowed: history, text",
        )
    try:
        with ctx.store.connection() as conn:
            row = db.get_job(conn, eid)
            if row is None:
                raise _not_found(eid)
            queue = None
            if row["status"] == Phase.PENDING:
                queue = _queue_info(conn, row, ctx.settings.operator_heartbeat_stale_seconds)
            history = db.job_history(conn, eid) if "history" in extras else None
            text = db.get_guideline_text(conn, eid) if "text" in extras else None
    except DatabaseUnavailableError as exc:
        raise _unavailable(exc) from exc
    return to_view(row, queue=queue, history=history, text=text)


@router.get(
    "",
    response_model=JobPage,
    summary="List jobs",
    responses={
        **AUTH_ERRORS,
        422: _err(Reason.INVALID_CURSOR, "cursor is not one this API returned"),
        503: _err(Reason.DATABASE_UNAVAILABLE, "database unavailable: ..."),
    },
)
def list_jobs(
    request: Request,
    _principal: Authenticated,
    status: str | None = Query(
        None,
        description="Only jobs in this status: PENDING, PROCESSING, COMPLETED, FAILED "
        "(the dead-letter queue) or CANCELLED.",
    ),
    limit: int = Query(50, ge=1, le=200, description="Page size (1-200)."),
    cursor: str | None = Query(None, description="`next_cursor` of the previous page."),
) -> JobPage:
    """Jobs newest first (keyset pagination; stable under concurrent inserts). Items carry
    `error` for FAILED/CANCELLED jobs; fetch one job for its `result`."""
    ctx = get_ctx(request)
    phase = None
    if status is not None:
        try:
            phase = Phase(status.upper())
        except ValueError:
            raise ApiError(
                422,
                Reason.VALIDATION,
                f"status must be one of {', '.join(p.value for p in Phase)}",
                details=[{"field": "status", "message": "unknown status", "type": "enum"}],
            ) from None
    before = _decode_cursor(cursor) if cursor else None
    try:
        with ctx.store.connection() as conn:
            rows = db.list_jobs(conn, status=phase, limit=limit + 1, before=before)
    except DatabaseUnavailableError as exc:
        raise _unavailable(exc) from exc
    page = rows[:limit]
    next_cursor = _encode_cursor(page[-1]) if len(rows) > limit else None
    items = [to_view(r).model_copy(update={"result": None}) for r in page]
    return JobPage(items=items, next_cursor=next_cursor)


def _load(ctx: Context, eid: uuid.UUID) -> dict[str, Any]:
    try:
        with ctx.store.connection() as conn:
            row = db.get_job(conn, eid)
    except DatabaseUnavailableError as exc:
        raise _unavailable(exc) from exc
    if row is None:
        raise _not_found(eid)
    return row


def _cancel(ctx: Context, principal: Principal, event_id: str) -> JobView:
    eid = _parse_event_id(event_id)
    row = _load(ctx, eid)
    if Phase(row["status"]).terminal:
        raise ApiError(
            409, Reason.JOB_FINISHED, f"job {eid} is already {row['status']}; nothing to cancel"
        )
    with logs.bind(event_id=str(eid)):
        try:
            cr = ctx.kube.find(str(eid), row["cr_name"])
            if cr is not None:
                ctx.kube.patch_annotations(
                    cr["metadata"]["name"],
                    {gj.ANNOTATION_CANCEL_REQUESTED: datetime.now(UTC).isoformat()},
                )
            with ctx.store.connection() as conn:
                if cr is None:
                    # Nothing left on the cluster to stop: record the outcome ourselves.
                    message = f"cancelled by {principal.key_id}; its GuidelineJob no longer existed"
                    db.finish_if_active(
                        conn,
                        db.JobState(
                            event_id=eid,
                            status=Phase.CANCELLED,
                            attempts=row["attempts"],
                            started_at=row["started_at"],
                            completed_at=datetime.now(UTC),
                            error={"reason": gj.FailureReason.CANCELLED, "message": message},
                            reason=gj.FailureReason.CANCELLED,
                            message=message,
                        ),
                    )
                else:
                    db.add_event(
                        conn,
                        eid,
                        row["status"],
                        row["attempts"],
                        "CancelRequested",
                        f"cancel requested by {principal.key_id}",
                    )
                row = db.get_job(conn, eid) or row
        except (DatabaseUnavailableError, KubernetesUnavailableError) as exc:
            raise _unavailable(exc) from exc
        except ConflictError as exc:
            raise ApiError(
                409, Reason.JOB_FINISHED, f"the GuidelineJob went away meanwhile: {exc}"
            ) from exc
        ctx.metrics.job_requests.labels("cancel").inc()
        log.info("cancel requested", extra={"submitted_by": principal.key_id})
    return to_view(row)


CANCEL_DOC = dict(
    status_code=202,
    response_model=JobView,
    responses={
        **AUTH_ERRORS,
        404: _err(Reason.NOT_FOUND, "no job with event_id ..."),
        409: _err(Reason.JOB_FINISHED, "job ... is already COMPLETED; nothing to cancel"),
        **UNAVAILABLE,
    },
)
CANCEL_DESCRIPTION = (
    "Cancels a PENDING or PROCESSING job: sets the `cancel-requested` annotation on its "
    "GuidelineJob; the operator deletes the Job and its pod and sets CANCELLED. Answers 202 "
    "with the job as it is now (poll it for CANCELLED). A finished job is a 409. If the "
    "GuidelineJob no longer exists, the job is marked CANCELLED at once."
)


@router.delete("/{event_id}", summary="Cancel a job", description=CANCEL_DESCRIPTION, **CANCEL_DOC)
def delete_job(
    request: Request,
    principal: Authenticated,
    event_id: str = Path(description="The job's event_id."),
) -> JobView:
    """Cancel a job (same as POST /jobs/{event_id}/cancel)."""
    return _cancel(get_ctx(request), principal, event_id)


@router.post(
    "/{event_id}/cancel",
    summary="Cancel a job",
    description=CANCEL_DESCRIPTION,
    **CANCEL_DOC,
)
def cancel_job(
    request: Request,
    principal: Authenticated,
    event_id: str = Path(description="The job's event_id."),
) -> JobView:
    """Cancel a job (same as DELETE /jobs/{event_id})."""
    return _cancel(get_ctx(request), principal, event_id)


@router.post(
    "/{event_id}/retry",
    status_code=202,
    response_model=JobView,
    summary="Retry a failed or cancelled job",
    description=(
        "Starts a new attempt of a FAILED or CANCELLED job (the dead-letter queue): bumps the "
        "`retry-requested` counter annotation of its GuidelineJob (and clears a pending "
        "cancel request); the operator runs a new Job with the same event_id, `attempts` keeps "
        "counting and `?include=history` keeps every attempt. If retention already deleted "
        "the GuidelineJob, it is re-created from the stored job (same event_id label) and "
        "the job is PENDING again. Any other status is a 409."
    ),
    responses={
        **AUTH_ERRORS,
        404: _err(Reason.NOT_FOUND, "no job with event_id ..."),
        409: _err(Reason.JOB_NOT_RETRYABLE, "job ... is COMPLETED; only FAILED ..."),
        **UNAVAILABLE,
    },
)
def retry_job(
    request: Request,
    principal: Authenticated,
    event_id: str = Path(description="The job's event_id."),
) -> JobView:
    """Retry a FAILED or CANCELLED job."""
    ctx = get_ctx(request)
    eid = _parse_event_id(event_id)
    row = _load(ctx, eid)
    if row["status"] not in (Phase.FAILED, Phase.CANCELLED):
        raise ApiError(
            409,
            Reason.JOB_NOT_RETRYABLE,
            f"job {eid} is {row['status']}; only FAILED or CANCELLED jobs can be retried",
        )
    with logs.bind(event_id=str(eid)):
        try:
            cr = ctx.kube.find(str(eid), row["cr_name"])
            count = _bump_retry(ctx, cr) if cr is not None else None
            if count is not None:
                with ctx.store.connection() as conn:
                    db.add_event(
                        conn,
                        eid,
                        row["status"],
                        row["attempts"],
                        "RetryRequested",
                        f"retry #{count} requested by {principal.key_id}",
                    )
            else:
                row = _recreate(ctx, principal, row)
        except (DatabaseUnavailableError, KubernetesUnavailableError) as exc:
            raise _unavailable(exc) from exc
        except KubernetesRejectedError as exc:
            raise ApiError(422, Reason.REJECTED_BY_KUBERNETES, str(exc)) from exc
        ctx.metrics.job_requests.labels("retry").inc()
        log.info("retry requested", extra={"submitted_by": principal.key_id})
    return to_view(row)


def _bump_retry(ctx: Context, cr: dict[str, Any]) -> int | None:
    """Raise the retry-requested counter with a resourceVersion precondition, so two
    concurrent retries both count; returns the new value, None if the CR vanished."""
    name = cr["metadata"]["name"]
    for _ in range(5):
        annotations = cr["metadata"].get("annotations") or {}
        try:
            current = int(annotations.get(gj.ANNOTATION_RETRY_REQUESTED, "0"))
        except ValueError:
            current = 0
        done = int((cr.get("status") or {}).get("retryRequests") or 0)
        count = max(current, done) + 1
        try:
            ctx.kube.patch_annotations(
                name,
                {gj.ANNOTATION_RETRY_REQUESTED: str(count), gj.ANNOTATION_CANCEL_REQUESTED: None},
                resource_version=cr["metadata"]["resourceVersion"],
            )
            return count
        except ConflictError:
            fresh = ctx.kube.find(kube.event_id_of(cr), name)
            if fresh is None:
                return None
            cr = fresh
    raise KubernetesUnavailableError(f"GuidelineJob {name} keeps changing; retry later")


def _recreate(ctx: Context, principal: Principal, row: dict[str, Any]) -> dict[str, Any]:
    """Re-create a retained-away GuidelineJob from the stored job, in the same
    row-first-then-CR transaction as a submission."""
    eid = row["event_id"]
    with ctx.store.connection() as conn:
        text = db.get_guideline_text(conn, eid)
        message = f"retry requested by {principal.key_id}; GuidelineJob re-created"
        db.mirror_state(
            conn,
            db.JobState(
                event_id=eid,
                status=Phase.PENDING,
                attempts=row["attempts"],
                started_at=row["started_at"],
                reason="RetryRequested",
                message=message,
            ),
        )
        created = ctx.kube.create(
            kube.guideline_job_manifest(
                event_id=eid,
                guideline_text=text or "",
                title=row["title"],
                model=row["model"],
                provider=row["provider"],
                submitted_by=row["submitted_by"],
            )
        )
        db.set_cr_name(conn, eid, created["metadata"]["name"])
        fresh = db.get_job(conn, eid)
    log.info("GuidelineJob re-created for retry", extra={"cr_name": created["metadata"]["name"]})
    return fresh or row
