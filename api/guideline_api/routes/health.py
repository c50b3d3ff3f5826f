"""Health checks and the Prometheus endpoint (no authentication).

They answer from the HealthMonitor's cached figures (`service.health`), never from a query
of their own. Error strings and the operator's identity (a pod name) are shown only to a
caller with an admin key: to anyone else they would map the cluster's insides.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from guideline_api.context import Context
from guideline_api.deps import get_ctx
from guideline_api.http.authgate import bearer_token
from guideline_api.schemas.health import Health, Liveness, Readiness
from guideline_api.service.health import report as health_report

router = APIRouter(tags=["operations"])


def _sees_details(ctx: Context, request: Request) -> bool:
    token = bearer_token(request.scope)
    principal = ctx.keys.verify(token) if token else None
    return principal is not None and principal.is_admin


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
    API still accepts work, which runs once they are back. Figures are at most
    `figures_age_seconds` old; `error` and `operator.identity` only for an admin key."""
    ctx = get_ctx(request)
    details = _sees_details(ctx, request)
    stale = ctx.settings.operator_heartbeat_stale_seconds
    body = health_report(ctx.monitor.snapshot(), stale, details)
    return JSONResponse(
        body.model_dump(mode="json"), status_code=503 if body.status == "unavailable" else 200
    )


@router.get("/health/live", response_model=Liveness, summary="Liveness (no dependencies)")
async def live() -> Liveness:
    """200 while the process serves requests; checks nothing else."""
    return Liveness(status="ok")


@router.get(
    "/health/ready",
    response_model=Readiness,
    summary="Readiness (database)",
    responses={503: {"model": Readiness, "description": "The database is unreachable."}},
)
def ready(request: Request) -> JSONResponse:
    """200 when the database answered at the last refresh. Kubernetes is not required:
    without it the API still serves reads and accepts jobs (they wait in the outbox)."""
    ctx = get_ctx(request)
    snap = ctx.monitor.snapshot()
    if not snap.database.ok:
        error = snap.database.error if _sees_details(ctx, request) else None
        return JSONResponse({"status": "unavailable", "error": error}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
def metrics(request: Request) -> Response:
    """Prometheus text format: the `guideline_api_*` and `guideline_db_*` metrics
    (docs/observability.md, "Metrics"); the database gauges come from the last background
    refresh."""
    ctx = get_ctx(request)
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)
