"""Health checks and the Prometheus endpoint (no authentication)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from guideline_core import db
from guideline_core.db import DatabaseUnavailableError
from guideline_core.resource import Phase
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from guideline_api.context import Context
from guideline_api.deps import get_ctx
from guideline_api.kubeapi import KubernetesUnavailableError
from guideline_api.schemas import CheckResult, Health, OperatorHealth

router = APIRouter(tags=["operations"])


def status_counts(ctx: Context) -> dict[str, int] | None:
    """Jobs per status, or None when the database cannot be reached."""
    try:
        with ctx.store.connection() as conn:
            return db.count_by_status(conn)
    except DatabaseUnavailableError:
        return None


def _check_kube(ctx: Context) -> CheckResult:
    start = time.perf_counter()
    try:
        ctx.kube.ping()
    except KubernetesUnavailableError as exc:
        return CheckResult(ok=False, error=str(exc)[:500])
    return CheckResult(ok=True, latency_ms=round((time.perf_counter() - start) * 1000, 2))


@router.get(
    "/health",
    response_model=Health,
    summary="Dependencies, queue and operator",
    responses={503: {"model": Health, "description": "The database is down."}},
)
def health(request: Request) -> JSONResponse:
    """Database and Kubernetes API reachability, queue size (PENDING), running jobs
    (PROCESSING) and whether the operator's heartbeat is fresh. The database down is
    `unavailable` (503); Kubernetes down or a stale operator is `degraded` with 200: the
    API still accepts work, which runs once they are back."""
    ctx = get_ctx(request)
    start = time.perf_counter()
    operator = None
    queue_size = running = None
    try:
        with ctx.store.connection() as conn:
            counts = db.count_by_status(conn)
            beat = db.latest_heartbeat(conn)
        database = CheckResult(ok=True, latency_ms=round((time.perf_counter() - start) * 1000, 2))
        queue_size, running = counts[Phase.PENDING], counts[Phase.PROCESSING]
        stale = ctx.settings.operator_heartbeat_stale_seconds
        operator = OperatorHealth(
            alive=beat is not None and beat["age"] <= stale,
            identity=beat["identity"] if beat else None,
            last_seen=beat["seen_at"] if beat else None,
            age_seconds=round(beat["age"], 1) if beat else None,
        )
    except DatabaseUnavailableError as exc:
        database = CheckResult(ok=False, error=str(exc)[:500])
    kubernetes = _check_kube(ctx)
    # PostgreSQL is the system of record: without it nothing is accepted. Without
    # Kubernetes submissions are still accepted (they wait in the outbox), so that is
    # degraded, not unavailable.
    if not database.ok:
        status = "unavailable"
    elif not kubernetes.ok or operator is None or not operator.alive:
        status = "degraded"
    else:
        status = "ok"
    body = Health(
        status=status,
        database=database,
        kubernetes=kubernetes,
        operator=operator,
        queue_size=queue_size,
        running=running,
    )
    return JSONResponse(
        body.model_dump(mode="json"), status_code=503 if status == "unavailable" else 200
    )


@router.get("/health/live", summary="Liveness (no dependencies)")
async def live() -> dict[str, str]:
    """200 while the process serves requests; checks nothing else."""
    return {"status": "ok"}


@router.get(
    "/health/ready",
    summary="Readiness (database)",
    responses={503: {"description": "The database is unreachable."}},
)
def ready(request: Request) -> JSONResponse:
    """200 when the database answers. Kubernetes is not required: without it the API still
    serves reads, and POST /jobs answers 503 itself."""
    ctx = get_ctx(request)
    try:
        ctx.store.ping()
    except DatabaseUnavailableError as exc:
        return JSONResponse({"status": "unavailable", "error": str(exc)[:500]}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
def metrics(request: Request) -> Response:
    """Prometheus text format: `http_request_duration_seconds`, `queue_size`,
    `jobs_running`, `jobs_by_status`, `jobs_submitted_total`, `jobs_rejected_total` (by
    reason), `jobs_idempotent_replays_total`, `job_requests_total`, `api_database_up`."""
    ctx = get_ctx(request)
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)
