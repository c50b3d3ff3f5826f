"""Health checks and the Prometheus endpoint (no authentication).

They answer from the HealthMonitor's cached figures, never from a query of their own.
Error strings and the operator's identity (a pod name) are shown only to a caller with an
admin key: to anyone else they would map the cluster's insides.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from guideline_core.resource import Phase
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from guideline_api.context import Context
from guideline_api.deps import get_ctx
from guideline_api.http.authgate import bearer_token
from guideline_api.schemas import CheckResult, Health, Liveness, OperatorHealth, Readiness
from guideline_api.workers.monitor import Check

router = APIRouter(tags=["operations"])


def _sees_details(ctx: Context, request: Request) -> bool:
    token = bearer_token(request.scope)
    principal = ctx.keys.verify(token) if token else None
    return principal is not None and principal.is_admin


def _result(check: Check, details: bool) -> CheckResult:
    return CheckResult(
        ok=check.ok, latency_ms=check.latency_ms, error=check.error if details else None
    )


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
    snap = ctx.monitor.snapshot()
    age = snap.age()
    operator = None
    if snap.database.ok:
        beat = snap.heartbeat
        beat_age = beat["age"] + age if beat else None
        stale = ctx.settings.operator_heartbeat_stale_seconds
        operator = OperatorHealth(
            alive=beat_age is not None and beat_age <= stale,
            identity=beat["identity"] if beat and details else None,
            last_seen=beat["seen_at"] if beat else None,
            age_seconds=round(beat_age, 1) if beat_age is not None else None,
        )
    # PostgreSQL is the system of record: without it nothing is accepted. Without
    # Kubernetes submissions are still accepted (they wait in the outbox), so that is
    # degraded, not unavailable.
    if not snap.database.ok:
        status = "unavailable"
    elif not snap.kubernetes.ok or operator is None or not operator.alive:
        status = "degraded"
    else:
        status = "ok"
    counts = snap.counts or {}
    body = Health(
        status=status,
        database=_result(snap.database, details),
        kubernetes=_result(snap.kubernetes, details),
        operator=operator,
        queue_size=counts.get(Phase.PENDING) if snap.counts else None,
        running=counts.get(Phase.PROCESSING) if snap.counts else None,
        figures_age_seconds=round(age, 3),
    )
    return JSONResponse(
        body.model_dump(mode="json"), status_code=503 if status == "unavailable" else 200
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
    """Prometheus text format: the `guideline_api_*` and `guideline_db_*` metrics (README,
    "Metrics"); the database gauges come from the last background refresh."""
    ctx = get_ctx(request)
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)
