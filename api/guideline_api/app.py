"""The FastAPI application factory and the per-app context its endpoints share."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from guideline_core import db
from guideline_core.settings import ApiSettings
from starlette.types import Scope

from guideline_api.auth import ANONYMOUS, KeyStore, Principal
from guideline_api.errors import ApiError, Reason, install_handlers
from guideline_api.kubeapi import KubeGateway
from guideline_api.limits import BodyLimitMiddleware, RateLimiter
from guideline_api.metrics import ApiMetrics, MetricsMiddleware, route_template

log = logging.getLogger(__name__)

DESCRIPTION = """
Turns long written guidelines into a summary and an actionable checklist.

**Flow.** `POST /jobs` records the job in PostgreSQL and creates a `GuidelineJob` in
Kubernetes, then answers **202** at once with its `event_id` (it never waits for the LLM).
Poll `GET /jobs/{event_id}` until `status` is `COMPLETED` (with `result`), `FAILED` or
`CANCELLED` (with `error`). While `PENDING`, `queue.position` says how many jobs are ahead.

**Authentication.** Send `Authorization: Bearer <api key>` on every `/jobs` request;
`/health*`, `/metrics`, `/docs` and `/openapi.json` are open. Without a valid key: **401**.

**Errors.** Every non-2xx answer has the body
`{"error": {"reason": "<code>", "message": "<text>", "details": [...]}}` where `details`
(field, message, type) appears only for field validation errors. Codes: `malformed_json`,
`invalid_utf8`, `validation_error`, `control_characters` (422), `unsupported_media_type`
(415), `body_too_large`, `text_too_long` (413), `invalid_event_id`, `invalid_cursor`,
`invalid_idempotency_key`, `idempotency_key_reused` (422), `not_found` (404),
`job_finished`, `job_not_retryable` (409), `missing_api_key`, `invalid_api_key` (401),
`backlog_full`, `rate_limited` (429, with `Retry-After`), `database_unavailable`,
`kubernetes_unavailable` (503), `rejected_by_kubernetes` (422).

**Input hygiene.** UTF-8 only. Control characters (U+0000-U+001F, U+007F-U+009F) are
rejected with `control_characters`, except tab, line feed and carriage return in
`guideline_text`. Nothing is stripped or HTML-escaped: text is stored and returned as sent.
Bodies over `max_body_bytes` are refused with 413 before they are parsed.
"""


@dataclass
class Context:
    """Everything an endpoint needs, built once per app."""

    settings: ApiSettings
    store: db.Database  # the job store (PostgreSQL)
    kube: KubeGateway
    keys: KeyStore
    limiter: RateLimiter
    metrics: ApiMetrics


def get_ctx(request: Request) -> Context:
    """The app's context (a FastAPI dependency)."""
    return request.app.state.ctx


bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key issued by the operator of this service (`Bearer <key>`).",
)


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Principal:
    """The caller's principal; 401 with WWW-Authenticate without a valid bearer key."""
    ctx = get_ctx(request)
    if not ctx.settings.auth_enabled:
        return Principal(ANONYMOUS)
    if credentials is None or not credentials.credentials:
        raise ApiError(
            401,
            Reason.MISSING_API_KEY,
            "an API key is required: send `Authorization: Bearer <key>`",
            headers={"WWW-Authenticate": 'Bearer realm="guideline-ingest"'},
        )
    principal = ctx.keys.verify(credentials.credentials)
    if principal is None:
        raise ApiError(
            401,
            Reason.INVALID_API_KEY,
            "the API key is not valid",
            headers={"WWW-Authenticate": 'Bearer realm="guideline-ingest", error="invalid_token"'},
        )
    return principal


Authenticated = Annotated[Principal, Depends(authenticate)]


async def rate_limit(request: Request, principal: Authenticated) -> None:
    """429 with Retry-After when the caller's key exceeded `rate_limit_per_minute`."""
    ctx = get_ctx(request)
    wait = ctx.limiter.acquire(principal.key_id)
    if wait > 0:
        raise ApiError(
            429,
            Reason.RATE_LIMITED,
            f"rate limit of {ctx.limiter.per_minute} submissions per minute per API key "
            "exceeded; retry later",
            headers={"Retry-After": RateLimiter.retry_after(wait)},
        )


def create_app(
    settings: ApiSettings | None = None,
    *,
    database: db.Database | None = None,
    kube: KubeGateway | None = None,
) -> FastAPI:
    """Build the API. Migrations are not applied here (`main` does that at start-up).
    A given `database` is used as it is (its own pool size and acquire timeout)."""
    from guideline_api import health, jobs

    settings = settings or ApiSettings()
    # The threadpool serving requests is larger than the pool: a request waits (bounded)
    # for a free connection instead of failing at once.
    database = database or db.Database(
        settings.database_url,
        minconn=settings.db_pool_min,
        maxconn=settings.db_pool_max,
        acquire_timeout=settings.db_acquire_timeout_seconds,
    )
    ctx = Context(
        settings=settings,
        store=database,
        kube=kube
        or KubeGateway(
            settings.namespace,
            settings.kubeconfig,
            settings.kube_timeout_seconds,
            pool_size=settings.db_pool_max,
        ),
        keys=KeyStore(settings.api_key_hashes, settings.api_keys_file),
        limiter=RateLimiter(settings.rate_limit_per_minute),
        metrics=ApiMetrics(),
    )
    if not settings.auth_enabled:
        log.warning("authentication is OFF: every request is served as 'anonymous'")
    elif ctx.keys.count() == 0:
        log.warning("authentication is on but no API keys are configured: /jobs will answer 401")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        ctx.store.close()
        ctx.kube.close()

    app = FastAPI(
        title="guideline-ingest",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "jobs", "description": "Submit guidelines and follow their jobs."},
            {"name": "operations", "description": "Health checks and Prometheus metrics."},
        ],
    )
    app.state.ctx = ctx

    def count_reject(method: str, route: str, reason: str) -> None:
        if method == "POST" and route == "/jobs":
            ctx.metrics.jobs_rejected.labels(reason).inc()

    # Matched by hand for requests refused before routing (the size cap).
    known_routes = [*jobs.router.routes, *health.router.routes]

    def on_error(request: Request, reason: str) -> None:
        count_reject(request.method, route_template(request.scope, known_routes), reason)

    def on_body_reject(scope: Scope, reason: str) -> None:
        count_reject(scope["method"], route_template(scope, known_routes), reason)

    install_handlers(app, on_error)
    app.include_router(jobs.router)
    app.include_router(health.router)
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, on_reject=on_body_reject
    )
    app.add_middleware(MetricsMiddleware, metrics=ctx.metrics, routes=lambda: known_routes)
    ctx.metrics.add_queue_collector(lambda: health.status_counts(ctx))
    return app
