"""Accepting submissions: one guideline or a batch, checked (size, model, retries,
supersedes, Idempotency-Key, callback URL, backlog, text quota, budget) and recorded in one
transaction; and the estimate of a submission, refused as the submission would be.

Every write is decided in PostgreSQL alone (the row is the acceptance); the dispatcher
carries it to Kubernetes afterwards, so no request waits for the cluster and what a request
answered is what a later read shows. The other request modules: `reads`, `listing`,
`actions` (cancel, retry); what they share is in `access` and `limits`.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import psycopg2.errors
from guideline_core import db, logs
from guideline_core.documents import store as documents
from guideline_core.resource import new_event_id
from psycopg2.extensions import connection as PgConnection  # noqa: N812

from guideline_api import tracing
from guideline_api.auth import Principal
from guideline_api.context import Context
from guideline_api.http.errors import ApiError, Reason
from guideline_api.schemas.estimate import JobEstimate
from guideline_api.schemas.submission import SubmissionFields, SubmitDocument, SubmitJob
from guideline_api.service import callbacks, costs, text_quota
from guideline_api.service.access import transaction, visible
from guideline_api.service.limits import charged, check_backlog
from guideline_api.service.submission import document_info, request_hash, upload_info
from guideline_api.service.uploads import Upload
from guideline_api.service.versions import check_supersedes

log = logging.getLogger(__name__)

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
    with transaction(ctx) as conn:
        window = ctx.settings.idempotency_window_hours
        known = db.live_idempotency_keys(conn, tenant, keys, window) if keys else set()
        new = {i: item for i, item in subs.items() if item.idempotency_key not in known}
        if new:
            check_backlog(conn, ctx, tenant, len(new))
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
    with charged(ctx, tenant, len(items)):
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
    with tracing.Submissions(ctx.tracer, tenant, len(items)) as spans, transaction(ctx) as conn:
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
                check_supersedes(conn, item.job.supersedes, lambda r: visible(principal, r))
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
            check_backlog(conn, ctx, tenant, len(todo))
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
        with transaction(ctx) as audit:
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
