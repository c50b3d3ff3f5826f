"""The `/jobs` endpoints: dependencies in, a service call, the answer out. Their OpenAPI prose
is in `descriptions`, reading a submission from the request in `intake`.

The busiest ones (submit, batch, get) are coroutines that hand only the service call (its
blocking database work) to the thread pool: a sync endpoint costs FastAPI two thread hops
(the call and the response's validation), each a wait for a thread on busy cores."""

from __future__ import annotations

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from guideline_api.deps import CtxDep, CurrentPrincipal, IdempotencyKeyHeader
from guideline_api.http.authgate import bearer_token
from guideline_api.routes import descriptions as docs
from guideline_api.routes import intake
from guideline_api.schemas.batch import BatchResult
from guideline_api.schemas.estimate import JobEstimate
from guideline_api.schemas.jobs import JobPage, JobView
from guideline_api.service import accept, actions, events, listing, reads, views
from guideline_api.service.access import parse_event_id

router = APIRouter(prefix="/jobs", tags=["jobs"])

REPLAY_HEADER = "Idempotent-Replayed"


@router.post("", status_code=202, response_model=JobView, **docs.SUBMIT_JOB)
async def submit_job(
    request: Request,
    response: Response,
    ctx: CtxDep,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobView:
    """Submit a guideline for summarizing (see the description above)."""
    async with intake.submission(request, ctx.settings, idempotency_key) as item:
        outcome = await run_in_threadpool(accept.submit, ctx, principal, item)
    event_id = str(outcome.row["event_id"])
    request.state.event_id = event_id  # for the access log line
    response.headers["Location"] = f"{request.url.path.rstrip('/')}/{event_id}"
    if not outcome.created:
        response.status_code = 200
        response.headers[REPLAY_HEADER] = "true"
    return views.to_view(outcome.row)


@router.post("/estimate", response_model=JobEstimate, **docs.ESTIMATE_JOB)
async def estimate_job(request: Request, ctx: CtxDep, principal: CurrentPrincipal) -> JobEstimate:
    """Estimate a submission (see the description above)."""
    job = await intake.estimate(request, ctx.settings)
    return await run_in_threadpool(accept.estimate, ctx, principal, job)


@router.post("/batch", status_code=202, response_model=BatchResult, **docs.SUBMIT_BATCH)
async def submit_batch(
    request: Request,
    ctx: CtxDep,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKeyHeader = None,
) -> BatchResult:
    """Submit a batch (see the description above)."""
    async with intake.batch(request, ctx.settings, idempotency_key) as items:
        answers = await run_in_threadpool(accept.submit_batch, ctx, principal, items)
    return views.batch_result(answers)


@router.get("/{event_id}", response_model=JobView, **docs.GET_JOB)
async def get_job(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    event_id: str = Path(description=docs.EVENT_ID_UUID),
    include: str | None = Query(None, description=docs.INCLUDE),
) -> JobView:
    """The job from PostgreSQL (primary-key lookup): `result` when COMPLETED, `error` when
    FAILED or CANCELLED, `queue` (position in its tenant's queue) when PENDING, `webhook`
    (its deliveries) when it has a callback URL. A job of another tenant is a 404, exactly
    like one that does not exist."""
    eid = parse_event_id(event_id)
    extras = views.parse_include(include)
    detail = await run_in_threadpool(reads.get, ctx, principal, eid, extras)
    return views.detail_view(detail)


class EventStreamResponse(StreamingResponse):
    """The stream's response: closes the stream however the response ends (the last event
    sent, the client gone, cancelled at shutdown, an error)."""

    def __init__(self, stream: events.EventStream) -> None:
        super().__init__(
            stream.frames(),
            media_type="text/event-stream",
            # No caching, and no buffering by a reverse proxy (nginx honours this header).
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.stream.close()


@router.get(
    "/{event_id}/events",
    response_class=StreamingResponse,
    **docs.JOB_EVENTS,
)
async def job_events(
    request: Request,
    ctx: CtxDep,
    principal: CurrentPrincipal,
    event_id: str = Path(description=docs.EVENT_ID_UUID),
    last_event_id: str | None = Header(None, alias="Last-Event-ID", description=docs.LAST_EVENT_ID),
) -> StreamingResponse:
    """Stream a job's events (see the description above)."""
    eid = parse_event_id(event_id)
    request.state.event_id = str(eid)
    credential = bearer_token(request.scope)  # checked again while the stream is open
    stream = await events.open_stream(ctx, principal, credential, eid, last_event_id)
    return EventStreamResponse(stream)


@router.get("", response_model=JobPage, **docs.LIST_JOBS)
def list_jobs(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    status: str | None = Query(None, description=docs.STATUS),
    tenant: str | None = Query(None, description=docs.TENANT),
    limit: int = Query(50, ge=1, le=200, description=docs.LIMIT),
    cursor: str | None = Query(None, description=docs.CURSOR),
    needs_review: bool | None = Query(None, description=docs.NEEDS_REVIEW),
) -> JobPage:
    """Jobs of the caller's tenant (all tenants for an admin key) newest first (keyset
    pagination; stable under concurrent inserts). Items carry `error` for FAILED/CANCELLED
    jobs; fetch one job for its `result`. The first page (no cursor) carries `totals`: the
    jobs the filters match on every page and their cost (`usage.cost`) per currency."""
    rows, totals = listing.list_page(
        ctx,
        principal,
        status=views.parse_status(status),
        limit=limit,
        before=views.decode_cursor(cursor) if cursor else None,
        tenant=tenant,
        needs_review=needs_review,
    )
    return views.job_page(rows, limit, totals)


# One body, two routes: DELETE /jobs/{id} and POST /jobs/{id}/cancel (each its operationId).
@router.post("/{event_id}/cancel", status_code=202, response_model=JobView, **docs.CANCEL_JOB)
@router.delete(
    "/{event_id}", status_code=202, response_model=JobView, name="delete_job", **docs.DELETE_JOB
)
def cancel_job(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    event_id: str = Path(description=docs.EVENT_ID),
) -> JobView:
    """Cancel a job (DELETE /jobs/{event_id} and POST /jobs/{event_id}/cancel alike)."""
    return views.to_view(actions.cancel(ctx, principal, parse_event_id(event_id)))


@router.post("/{event_id}/retry", status_code=202, response_model=JobView, **docs.RETRY_JOB)
def retry_job(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    event_id: str = Path(description=docs.EVENT_ID),
) -> JobView:
    """Retry a FAILED or CANCELLED job."""
    return views.to_view(actions.retry(ctx, principal, parse_event_id(event_id)))
