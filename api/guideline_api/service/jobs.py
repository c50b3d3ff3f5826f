"""What each /jobs request does: submit (one guideline or a batch), read, list, cancel and
retry, and the audit trail. HTTP stays in the routers; this module speaks rows and
principals, and raises ApiError for the caller to translate.

Every write is decided in PostgreSQL alone (the row is the acceptance); the dispatcher
carries it to Kubernetes afterwards, so no request waits for the cluster and what a request
answered is what a later read shows.
"""

from __future__ import annotations

import io
import logging
import math
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, cast

import psycopg2.errors
from guideline_core import db, logs
from guideline_core.db import DatabaseUnavailableError
from guideline_core.db import webhooks as store
from guideline_core.documents import store as documents
from guideline_core.resource import Phase, new_event_id
from psycopg2.extensions import connection as PgConnection  # noqa: N812

from guideline_api import tracing
from guideline_api.auth import Principal
from guideline_api.context import Context
from guideline_api.http.errors import ApiError, Reason
from guideline_api.schemas.estimate import JobEstimate
from guideline_api.schemas.submission import SubmissionFields, SubmitDocument, SubmitJob
from guideline_api.service import callbacks, costs, text_quota
from guideline_api.service.submission import document_info, request_hash, upload_info
from guideline_api.service.uploads import Upload
from guideline_api.service.versions import check_supersedes, with_changes
from guideline_api.service.views import queue_info

log = logging.getLogger(__name__)

INCLUDES = frozenset({"history", "text"})
JSON_TEXT_MEDIA_TYPE = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Submission:
    """One validated guideline and its Idempotency-Key: a JSON text (`job` a SubmitJob),
    or an uploaded file (`upload`; `job` a SubmitJob holding its text for plain text and
    Markdown, else a SubmitDocument of its form fields)."""

    job: SubmitJob | SubmitDocument
    idempotency_key: str | None = None
    callback_url: str | None = None  # the checked webhook URL (the job's or its tenant's)
    upload: Upload | None = None

    @property
    def input_bytes(self) -> int:
        """The size of what the job stores: the upload's, or the text's in UTF-8."""
        if self.upload is not None:
            return self.upload.bytes
        assert isinstance(self.job, SubmitJob)
        return text_quota.text_bytes(self.job.guideline_text)

    @property
    def document_sha256(self) -> str | None:
        return self.upload.sha256 if self.upload is not None else None


@dataclass(frozen=True)
class Outcome:
    """What a submission came to: the job's row, and whether it is new (else a replay)."""

    row: Mapping[str, Any]
    created: bool


@dataclass(frozen=True)
class JobDetail:
    """One job as read, with the extras asked for."""

    row: Mapping[str, Any]
    queue: Any = None
    history: list[dict[str, Any]] | None = None
    text: str | None = None
    deliveries: list[dict[str, Any]] | None = None


# --------------------------------------------------------------------------- plumbing


@contextmanager
def _transaction(ctx: Context) -> Iterator[PgConnection]:
    try:
        with ctx.store.connection() as conn:
            yield conn
    except DatabaseUnavailableError as exc:
        raise ApiError(503, Reason.DATABASE_UNAVAILABLE, f"database unavailable: {exc}") from exc


transaction = _transaction  # for the other request modules (runner_service)


def parse_event_id(value: str) -> uuid.UUID:
    """A path's event_id as a UUID; 422 otherwise."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ApiError(
            422, Reason.INVALID_EVENT_ID, f"{value[:80]!r} is not a valid event_id (a UUID)"
        ) from None


def _not_found(event_id: uuid.UUID) -> ApiError:
    return ApiError(404, Reason.NOT_FOUND, f"no job with event_id {event_id}")


def _visible(principal: Principal, row: Mapping[str, Any] | None) -> bool:
    return row is not None and (principal.is_admin or row["tenant"] == principal.tenant)


def _tenant_scope(principal: Principal, tenant: str | None) -> str | None:
    """The tenant a listing is limited to: a member's own; an admin's choice (None: all)."""
    if principal.is_admin:
        return tenant
    if tenant is not None and tenant != principal.tenant:
        raise ApiError(403, Reason.FORBIDDEN, "a member key sees only its own tenant's jobs")
    return principal.tenant


# --------------------------------------------------------------------------- submission


def _check_limits(conn: PgConnection, ctx: Context, tenant: str, new: int) -> None:
    """429 when `new` more PENDING jobs of `tenant` would break the backlog's rule: the
    tenant within its own cap (`tenant_backlog_full`), every tenant together within
    `max_pending_jobs`, and the jobs tenants hold beyond their guaranteed share within the
    part of the backlog not reserved for tenants still within theirs (`backlog_full`).
    Jobs a tenant holds beyond its own cap (only kubectl can put them there) do not count
    against the others."""
    settings = ctx.settings
    retry_after = {"Retry-After": str(settings.backlog_retry_after_seconds)}
    pending = db.pending_by_tenant(conn)
    mine = pending.get(tenant, 0)
    cap = settings.limits_for(tenant).max_pending_jobs
    if cap is not None and mine + new > cap:
        raise ApiError(
            429,
            Reason.TENANT_BACKLOG_FULL,
            f"tenant {tenant} has {mine} jobs waiting (limit {cap}); retry later",
            headers=retry_after,
        )
    held = {t: _held(ctx, t, n) for t, n in pending.items()}
    total = sum(held.values())
    if total + new > settings.max_pending_jobs:
        raise ApiError(
            429,
            Reason.BACKLOG_FULL,
            f"{total} jobs are waiting (limit {settings.max_pending_jobs}); retry later",
            headers=retry_after,
        )
    guaranteed = settings.tenant_guaranteed_pending_jobs
    borrowed = sum(max(0, n - guaranteed) for n in held.values())
    more = max(0, mine + new - guaranteed) - max(0, mine - guaranteed)
    shared = math.floor(settings.max_pending_jobs * (1 - settings.backlog_reserved_share))
    if more and borrowed + more > shared:
        raise ApiError(
            429,
            Reason.BACKLOG_FULL,
            f"tenant {tenant} would hold {mine + new} jobs waiting, beyond its guaranteed "
            f"{guaranteed}, and jobs beyond their tenants' guaranteed share already fill "
            f"{borrowed} of the {shared} the backlog shares (the rest is kept for tenants "
            "within their share); retry later",
            headers=retry_after,
        )


def _held(ctx: Context, tenant: str, pending: int) -> int:
    """The PENDING jobs of `tenant` that count against the backlog: at most its own cap."""
    cap = ctx.settings.limits_for(tenant).max_pending_jobs
    return pending if cap is None else min(pending, cap)


def _spend_rate(conn: PgConnection, ctx: Context, tenant: str, units: int) -> None:
    """Count `units` requests in the tenant's minute (in PostgreSQL, shared by every API
    replica); 429 past its limit (the refused request's transaction rolls back: a request
    refused for the rate costs nothing)."""
    limit = ctx.settings.limits_for(tenant).submissions_per_minute
    if not limit or units == 0:
        return
    total = db.count_submission(conn, tenant, units)
    if total > limit:
        wait = max(1, math.ceil(60 - time.time() % 60))
        raise ApiError(
            429,
            Reason.RATE_LIMITED,
            f"rate limit of {limit} requests per minute for tenant {tenant} exceeded "
            "(submissions, refused ones included, cancels and retries); retry later",
            headers={"Retry-After": str(wait)},
        )


@contextmanager
def _charged(ctx: Context, tenant: str, units: int) -> Iterator[None]:
    """Charge `units` against the tenant's rate before the work, in a transaction of its
    own: what the work then refuses (an invalid item, a finished job, its own backlog)
    stays counted. Refunded when the global backlog refuses it: other tenants' jobs must
    not spend this tenant's rate."""
    if ctx.settings.limits_for(tenant).submissions_per_minute and units:
        with _transaction(ctx) as conn:
            _spend_rate(conn, ctx, tenant, units)
    try:
        yield
    except ApiError as err:
        if err.reason == Reason.BACKLOG_FULL:
            _refund(ctx, tenant, units)
        raise


def _refund(ctx: Context, tenant: str, units: int) -> None:
    if ctx.settings.limits_for(tenant).submissions_per_minute and units:
        with _transaction(ctx) as conn:
            db.refund_submission(conn, tenant, units)


def _check_model(ctx: Context, tenant: str, job: SubmissionFields) -> None:
    allowed = ctx.settings.limits_for(tenant).allowed_models
    if job.model is not None and allowed is not None and job.model not in allowed:
        raise ApiError(
            422,
            Reason.MODEL_NOT_ALLOWED,
            f"model {job.model!r} is not allowed for tenant {tenant}; allowed: "
            f"{', '.join(allowed) or 'none'}",
            details=[{"field": "model", "message": "not in the allowlist", "type": "allowlist"}],
        )


def _check_retries(ctx: Context, job: SubmissionFields) -> None:
    limit = ctx.settings.max_retries_limit
    if job.max_retries is not None and job.max_retries > limit:
        message = f"max_retries is at most {limit}"
        raise ApiError(
            422,
            Reason.VALIDATION,
            f"max_retries: {message}",
            details=[{"field": "max_retries", "message": message, "type": "less_than_equal"}],
        )


def _check_size(ctx: Context, job: SubmitJob | SubmitDocument) -> None:
    if not isinstance(job, SubmitJob):
        return  # an upload's size was checked as it was read
    chars = len(job.guideline_text)
    if chars > ctx.settings.max_guideline_chars:
        raise ApiError(
            413,
            Reason.TEXT_TOO_LONG,
            f"guideline_text has {chars} characters; the limit is "
            f"{ctx.settings.max_guideline_chars}",
        )


def _with_callbacks(
    ctx: Context, tenant: str, items: list[Submission | ApiError]
) -> list[Submission | ApiError]:
    """Each item with its checked callback URL (its own, else its tenant's default), or a
    422 `callback_url_refused` in its place. Runs after the rate charge and a first
    backlog check (a refused request resolves nothing), outside any transaction, each
    distinct host resolved once within `callback_dns_budget_seconds`. An item whose
    Idempotency-Key already names a job replays it: its URL is not looked up."""
    default = ctx.settings.limits_for(tenant).callback_url
    subs = {i: item for i, item in enumerate(items) if isinstance(item, Submission)}
    if not any(item.job.callback_url or default for item in subs.values()):
        return items
    keys = [item.idempotency_key for item in subs.values() if item.idempotency_key]
    with _transaction(ctx) as conn:
        window = ctx.settings.idempotency_window_hours
        known = db.live_idempotency_keys(conn, tenant, keys, window) if keys else set()
        new = {i: item for i, item in subs.items() if item.idempotency_key not in known}
        if new:
            _check_limits(conn, ctx, tenant, len(new))
    wanted = {
        i: url for i, item in new.items() if (url := item.job.callback_url or default) is not None
    }
    verdicts = callbacks.refusals(
        wanted.values(),
        ctx.resolve_target,
        allow_private=ctx.settings.webhook_allow_private,
        budget_seconds=ctx.settings.callback_dns_budget_seconds,
    )
    checked = list(items)
    for index, url in wanted.items():
        item = subs[index]
        refusal = verdicts[url]
        if refusal is None:
            checked[index] = replace(item, callback_url=url)
            continue
        own = item.job.callback_url is not None
        whose = "callback_url" if own else f"the default callback_url of tenant {tenant}"
        checked[index] = ApiError(
            422,
            Reason.CALLBACK_URL_REFUSED,
            f"{whose}: {refusal}",
            details=[{"field": "callback_url", "message": refusal, "type": "callback_url"}],
        )
    return checked


def _replay(
    conn: PgConnection, ctx: Context, tenant: str, sub: Submission, digest: str
) -> Mapping[str, Any] | None:
    """The job this tenant's Idempotency-Key already made, if it is still in its window;
    422 if the key came with another body."""
    key = sub.idempotency_key
    if key is None:
        return None
    prior = db.find_by_idempotency_key(conn, tenant, key, ctx.settings.idempotency_window_hours)
    if prior is None:
        return None
    if prior["expired"]:
        db.release_idempotency_key(conn, prior["event_id"])
        return None
    if prior["request_hash"] != digest:
        raise ApiError(
            422,
            Reason.IDEMPOTENCY_KEY_REUSED,
            f"Idempotency-Key {key!r} was already used with a different request body "
            f"(job {prior['event_id']}); use a new key for a new job",
        )
    return prior


def _insert(
    conn: PgConnection,
    ctx: Context,
    principal: Principal,
    sub: Submission,
    digest: str,
    trace_context: dict[str, str] | None = None,
) -> Outcome:
    """Insert one job (inside a savepoint, so a lost idempotency race leaves the rest of the
    transaction intact and finds the winner's job instead)."""
    job = sub.job
    event_id = new_event_id()
    with conn.cursor() as cur:
        cur.execute("SAVEPOINT submission")
    try:
        # In the savepoint: a lost idempotency race leaves no document behind either.
        doc = _store_document(conn, ctx, principal.tenant, sub)
        db.insert_job(
            conn,
            db.NewJob(
                event_id=event_id,
                namespace=ctx.kube.namespace,
                guideline_text=job.guideline_text if isinstance(job, SubmitJob) else "",
                title=job.title,
                model=job.model,
                provider=job.provider,
                max_retries=job.max_retries,
                submitted_by=principal.key_id,
                tenant=principal.tenant,
                idempotency_key=sub.idempotency_key,
                request_hash=digest,
                dispatch_pending=True,
                supersedes=uuid.UUID(job.supersedes) if job.supersedes else None,
                review_thresholds=job.review.model_dump(exclude_none=True) if job.review else None,
                callback_url=sub.callback_url,
                trace_context=trace_context,
                document=(
                    upload_info(job, sub.upload)
                    if sub.upload is not None
                    else document_info(cast(SubmitJob, job))  # no upload: a JSON text
                ),
                document_id=doc.id,
            ),
        )
    except psycopg2.errors.UniqueViolation:
        # The unique index made us wait for the winner's commit; its row is visible now.
        with conn.cursor() as cur:
            cur.execute("ROLLBACK TO SAVEPOINT submission")
        prior = _replay(conn, ctx, principal.tenant, sub, digest)
        if prior is None:
            raise ApiError(
                503, Reason.DATABASE_UNAVAILABLE, "could not record the job; retry"
            ) from None
        return Outcome(prior, created=False)
    row = db.get_job(conn, event_id)
    assert row is not None
    return Outcome(row, created=True)


def _store_document(
    conn: PgConnection, ctx: Context, tenant: str, sub: Submission
) -> documents.StoredDocument:
    """Store the submission's document: the uploaded file as it came, or a JSON text (as
    cleaned) as `text/plain; charset=utf-8`. The GuidelineJob will carry its reference."""
    if sub.upload is not None:
        sub.upload.file.seek(0)
        return documents.write(
            conn, sub.upload.file, tenant=tenant, media_type=str(sub.upload.media_type)
        )
    assert isinstance(sub.job, SubmitJob)
    text = io.BytesIO(sub.job.guideline_text.encode("utf-8"))
    return documents.write(conn, text, tenant=tenant, media_type=JSON_TEXT_MEDIA_TYPE)


def submit_many(
    ctx: Context, principal: Principal, items: Sequence[Submission | ApiError]
) -> list[Outcome | ApiError]:
    """Accept a batch in one transaction: each valid item becomes a job (or replays the
    job of its Idempotency-Key); items already refused (an ApiError) and items refused here
    (a model not allowed, a refused callback URL, a key reused with another body, also by
    an earlier item of the batch) are answered as errors in place. Every item is charged
    against the tenant's rate first (replays are refunded); a limit the whole batch would
    exceed is a 429 for the batch, and no job is recorded."""
    tenant = principal.tenant
    with _charged(ctx, tenant, len(items)):
        checked = _with_callbacks(ctx, tenant, list(items))
        valid = any(isinstance(item, Submission) for item in checked)
        answers: list[Outcome | ApiError] = (
            _record(ctx, principal, checked)
            if valid
            else [item for item in checked if isinstance(item, ApiError)]  # every one
        )
    created = sum(isinstance(a, Outcome) and a.created for a in answers)
    if created:
        ctx.dispatcher.wake()
    for answer in answers:
        if isinstance(answer, Outcome) and answer.created:
            ctx.metrics.jobs_submitted.labels(answer.row["provider"] or "default").inc()
            with logs.bind(event_id=str(answer.row["event_id"])):
                log.info(
                    "job accepted",
                    extra={"submitted_by": principal.key_id, "tenant": tenant},
                )
        elif isinstance(answer, Outcome):
            ctx.metrics.idempotent_replays.inc()
    return answers


def _record(
    ctx: Context, principal: Principal, items: list[Submission | ApiError]
) -> list[Outcome | ApiError]:
    """The transaction of submit_many: check each item, insert the new jobs."""
    tenant = principal.tenant
    answers: list[Outcome | ApiError | None] = []
    with tracing.Submissions(ctx.tracer, tenant, len(items)) as spans, _transaction(ctx) as conn:
        todo: list[tuple[int, Submission, str]] = []
        batch_keys: dict[str, tuple[int, str]] = {}  # key -> (first item, its body's digest)
        for index, item in enumerate(items):
            answers.append(item if isinstance(item, ApiError) else None)
            if isinstance(item, ApiError):
                continue
            try:
                _check_size(ctx, item.job)
                _check_model(ctx, tenant, item.job)
                _check_retries(ctx, item.job)
                check_supersedes(conn, item.job.supersedes, lambda r: _visible(principal, r))
                digest = request_hash(item.job, item.document_sha256)
                _check_batch_key(batch_keys, index, item.idempotency_key, digest)
                prior = _replay(conn, ctx, tenant, item, digest)
            except ApiError as err:
                answers[index] = err
                continue
            if prior is not None:
                answers[index] = Outcome(prior, created=False)
            else:
                todo.append((index, item, digest))
        estimates: list[dict[str, Any] | None] = []
        if todo:
            _check_limits(conn, ctx, tenant, len(todo))
            text_quota.check(conn, ctx.settings, tenant, [i.input_bytes for _, i, _ in todo])
            estimates = _reserve_budget(conn, ctx, principal, [i.job for _, i, _ in todo])
        for (index, item, digest), estimated in zip(todo, estimates, strict=True):
            span = spans.start(index)
            try:
                outcome = _insert(conn, ctx, principal, item, digest, span.carrier())
            except ApiError as err:
                answers[index] = err
                continue
            if estimated is not None and outcome.created:
                db.set_estimated_cost(conn, outcome.row["event_id"], estimated)
            spans.accepted(span, outcome.row, outcome.created)
            answers[index] = outcome
        replays = sum(isinstance(a, Outcome) and not a.created for a in answers)
        if replays and ctx.settings.limits_for(tenant).submissions_per_minute:
            db.refund_submission(conn, tenant, replays)
    return [a for a in answers if a is not None]


def _reserve_budget(
    conn: PgConnection, ctx: Context, principal: Principal, jobs: list[SubmitJob | SubmitDocument]
) -> list[dict[str, Any] | None]:
    """`costs.reserve_budget`; a refusal is written to the audit log in a transaction of
    its own (the submission's rolls back)."""
    try:
        return costs.reserve_budget(conn, ctx.settings, principal.tenant, jobs)
    except costs.BudgetExceededError as err:
        with _transaction(ctx) as audit:
            db.add_audit(
                audit,
                tenant=principal.tenant,
                actor=principal.key_id,
                action="budget_exceeded",
                detail={**err.figures, "jobs": len(jobs)},
            )
        raise


def _check_batch_key(
    seen: dict[str, tuple[int, str]], index: int, key: str | None, digest: str
) -> None:
    """422 for an item whose Idempotency-Key an earlier item of the same request used
    with another body (the same body replays that item's job)."""
    if key is None:
        return
    first, first_digest = seen.setdefault(key, (index, digest))
    if first_digest != digest:
        raise ApiError(
            422,
            Reason.IDEMPOTENCY_KEY_REUSED,
            f"Idempotency-Key {key!r} is used by item {first} of this batch with a "
            "different body; use a new key for a new job",
        )


def estimate(ctx: Context, principal: Principal, job: SubmitJob) -> JobEstimate:
    """What `job` would take (parts, LLM calls, input tokens, cost), without any LLM call
    and without recording anything; refused as a submission would be for its size or
    model."""
    _check_size(ctx, job)
    _check_model(ctx, principal.tenant, job)
    return costs.to_view(costs.estimate_of(ctx.settings, job))


def submit(ctx: Context, principal: Principal, sub: Submission | ApiError) -> Outcome:
    """Accept one guideline: the committed row is the acceptance (see submit_many). A
    submission already refused (`sub` an ApiError) is charged against the rate, then
    raised."""
    (answer,) = submit_many(ctx, principal, [sub])
    if isinstance(answer, ApiError):
        raise answer
    return answer


def submit_batch(
    ctx: Context, principal: Principal, items: list[Submission | ApiError] | ApiError
) -> list[Outcome | ApiError]:
    """A batch's items (see submit_many). A batch refused as a whole (`items` an ApiError)
    is charged against the rate as one submission, then raised."""
    if isinstance(items, ApiError):
        submit(ctx, principal, items)  # raises it
        raise items
    return submit_many(ctx, principal, items)


# --------------------------------------------------------------------------- reads


def get(
    ctx: Context, principal: Principal, event_id: uuid.UUID, include: frozenset[str]
) -> JobDetail:
    """One job of the caller's tenant (another tenant's is a 404, like a missing one)."""
    unknown = include - INCLUDES
    if unknown:
        raise ApiError(
            422, Reason.VALIDATION, f"unknown include {sorted(unknown)}; allowed: history, text"
        )
    with _transaction(ctx) as conn:
        found = db.get_job(conn, event_id)
        if found is None or not _visible(principal, found):
            raise _not_found(event_id)
        row = with_changes(conn, found)
        queue = None
        if row["status"] == Phase.PENDING:
            queue = queue_info(conn, row, ctx.settings.operator_heartbeat_stale_seconds)
        history = db.job_history(conn, event_id) if "history" in include else None
        deliveries = store.deliveries_of(conn, event_id) if row.get("callback_url") else None
        text = None
        if "text" in include:
            text = db.get_guideline_text(conn, event_id)
            db.record_text_read(
                conn,
                tenant=row["tenant"],
                actor=principal.key_id,
                event_id=event_id,
                window_seconds=ctx.settings.audit_read_window_seconds,
                detail={"principal_tenant": principal.tenant},
            )
    return JobDetail(row=row, queue=queue, history=history, text=text, deliveries=deliveries)


def get_visible_state(ctx: Context, principal: Principal, event_id: uuid.UUID) -> dict[str, Any]:
    """A job's status columns if the caller may see it (404 like a missing one otherwise)."""
    with _transaction(ctx) as conn:
        row = db.job_state(conn, event_id)
    if not _visible(principal, row):
        raise _not_found(event_id)
    assert row is not None
    return row


def list_page(
    ctx: Context,
    principal: Principal,
    *,
    status: Phase | None,
    limit: int,
    before: Any,
    tenant: str | None,
    needs_review: bool | None = None,
) -> tuple[list[db.JobRow], dict[str, Any] | None]:
    """Up to `limit` + 1 jobs newest first, of the tenants the caller may see (the extra
    row tells the router there is a next page); `needs_review` filters on the review gate.
    With them, on the first page (no cursor), the totals of every job the filters match."""
    scope = _tenant_scope(principal, tenant)
    with _transaction(ctx) as conn:
        rows = db.list_jobs(
            conn,
            status=status,
            limit=limit + 1,
            before=before,
            tenant=scope,
            needs_review=needs_review,
        )
        totals = None
        if before is None:
            totals = db.job_totals(conn, status=status, tenant=scope, needs_review=needs_review)
        return rows, totals


# --------------------------------------------------------------------------- requests


def _locked_visible(conn: PgConnection, principal: Principal, eid: uuid.UUID) -> db.JobRow:
    row = db.lock_job(conn, eid)
    if not _visible(principal, row):
        raise _not_found(eid)
    assert row is not None
    return row


def cancel(ctx: Context, principal: Principal, eid: uuid.UUID) -> Mapping[str, Any]:
    """Cancel an unfinished job: CANCELLED at once; the dispatcher then has the operator
    remove its Job and pod. A finished job is a 409. Charged against the caller's rate."""
    with _charged(ctx, principal.tenant, 1), _transaction(ctx) as conn:
        row = _locked_visible(conn, principal, eid)
        if Phase(row["status"]).terminal:
            raise ApiError(
                409, Reason.JOB_FINISHED, f"job {eid} is already {row['status']}; nothing to cancel"
            )
        db.request_cancel(conn, row, principal.key_id, f"cancelled by {principal.key_id}")
        fresh = db.get_job(conn, eid)
    ctx.dispatcher.wake()
    ctx.webhooks.wake()  # its delivery, if it has a callback URL, was queued by the trigger
    ctx.metrics.job_requests.labels("cancel").inc()
    with logs.bind(event_id=str(eid)):
        log.info("cancel requested", extra={"submitted_by": principal.key_id})
    return fresh or row


def retry(ctx: Context, principal: Principal, eid: uuid.UUID) -> Mapping[str, Any]:
    """Start a new run of a FAILED or CANCELLED job: PENDING at once (same event_id,
    attempts keep counting, its max_retries kept); any other status is a 409, and so is a
    job that has had `max_runs_per_job` runs. Charged against the caller's rate."""
    with _charged(ctx, principal.tenant, 1), _transaction(ctx) as conn:
        row = _locked_visible(conn, principal, eid)
        if row["status"] not in (Phase.FAILED, Phase.CANCELLED):
            raise ApiError(
                409,
                Reason.JOB_NOT_RETRYABLE,
                f"job {eid} is {row['status']}; only FAILED or CANCELLED jobs can be retried",
            )
        runs = int(row["run"]) + 1
        if runs >= ctx.settings.max_runs_per_job:
            raise ApiError(
                409,
                Reason.TOO_MANY_RUNS,
                f"job {eid} has had {runs} runs (limit {ctx.settings.max_runs_per_job}); "
                "submit it again as a new job",
            )
        _check_limits(conn, ctx, row["tenant"], 1)
        run = db.request_retry(
            conn, row, principal.key_id, f"retry requested by {principal.key_id}"
        )
        fresh = db.get_job(conn, eid)
    ctx.dispatcher.wake()
    ctx.metrics.job_requests.labels("retry").inc()
    with logs.bind(event_id=str(eid)):
        log.info("retry requested", extra={"submitted_by": principal.key_id, "run": run})
    return fresh or row


# --------------------------------------------------------------------------- audit


def audit_page(
    ctx: Context,
    principal: Principal,
    *,
    tenant: str | None,
    event_id: uuid.UUID | None,
    limit: int,
    before_id: int | None,
) -> list[dict[str, Any]]:
    """Up to `limit` + 1 audit entries newest first; for admin keys only (403 otherwise)."""
    if not principal.is_admin:
        raise ApiError(403, Reason.FORBIDDEN, "the audit trail is for admin keys")
    with _transaction(ctx) as conn:
        return db.list_audit(
            conn, limit=limit + 1, tenant=tenant, event_id=event_id, before_id=before_id
        )
