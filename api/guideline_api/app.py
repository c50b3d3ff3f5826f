"""The FastAPI application factory and the per-app context its endpoints share."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from guideline_core import db, version
from guideline_core.settings import ApiSettings
from starlette.types import Scope

from guideline_api import openapi, routes, tracing
from guideline_api.auth import KeyStore
from guideline_api.context import Context
from guideline_api.http.authgate import AuthGate
from guideline_api.http.errors import TITLES, install_handlers
from guideline_api.http.limits import BodyLimitMiddleware
from guideline_api.http.runner_auth import RunnerAuth
from guideline_api.http.streamcaps import StreamCaps
from guideline_api.kubeapi import KubeGateway
from guideline_api.metrics import ApiMetrics, Figures, MetricsMiddleware, route_template
from guideline_api.routes import health, webhooks
from guideline_api.service import uploads
from guideline_api.workers.dispatcher import Dispatcher
from guideline_api.workers.monitor import HealthMonitor
from guideline_api.workers.notify import EventHub
from guideline_api.workers.webhook_delivery import DeliveryWorker

log = logging.getLogger(__name__)

SUBMIT_ROUTES = frozenset({"/jobs", "/jobs/batch"})

DESCRIPTION_TEMPLATE = """
Turns long written guidelines into a summary and an actionable checklist.

**Flow.** `POST /v1/jobs` (or `POST /v1/jobs/batch` for many) records the job in PostgreSQL
and answers **202** at once with its `event_id`; it waits neither for Kubernetes nor for the
LLM. The API's dispatcher then creates the job's `GuidelineJob`. Follow
`GET /v1/jobs/{event_id}/events` (Server-Sent Events, resumable with `Last-Event-ID`) or poll
`GET /v1/jobs/{event_id}` until `status` is `COMPLETED` (with `result`), `FAILED` or
`CANCELLED` (with `error`). While `PENDING`, `queue.position` says how many jobs of your
tenant are ahead.

**Versions.** Every `/jobs` and `/audit` operation is served under `/v1`. The unversioned
paths (`/jobs...`, `/audit`) are aliases of the same operations, kept for older clients and
marked deprecated here (tag `unversioned`, operationIds ending in `_unversioned`). `/health*`,
`/metrics` and this document (`/openapi.json`) are not versioned.

**Webhooks.** Instead of polling, give `callback_url` (or have a tenant default): every
terminal state is POSTed there as the job's JSON, signed as the Standard Webhooks
specification says (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64
HMAC-SHA256>` with your tenant's `whsec_` secret), retried with backoff for up to 24 h
under the same `webhook-id`; `GET /v1/jobs/{event_id}` shows each delivery under `webhook`.

**Tenants.** Every API key belongs to a tenant and is a `member` (sees, cancels and retries
only its tenant's jobs; another tenant's job is a 404) or an `admin` (all tenants,
`?tenant=` filters, `GET /v1/audit`).

**Authentication.** Send `Authorization: Bearer <api key>` on every `/v1/jobs` request;
`/health*`, `/metrics`, `/docs` and `/openapi.json` are open. Without a valid key: **401**,
on every other path (also one that does not exist), before the request body is read.
`/health` shows dependency errors and the operator's identity only to an admin key.

**Errors.** Every error answer is an RFC 9457 problem, `application/problem+json`:
`{"type", "title", "status", "detail", "instance", "reason", "details"?}`. `type` is
`https://guideline-ingest.dev/problems/<reason>` (one stable URI per reason), `title` the
reason's summary, `detail` what went wrong this time, `instance` the request's path;
`reason` (a stable code to switch on) and `details` (field, message, type; only for field
validation errors) are extension members. Each operation's error answers below give the
reasons it may answer with, one example each; every reason, with its status and title, is
listed in the repository's docs/api.md ("Error reasons", generated from the code):
{reasons}. A 429 carries `Retry-After`, a 401 `WWW-Authenticate`; `invalid_runner_token` and
`not_this_jobs_runner` are answered on the runner routes only. Kubernetes being down is no
error: jobs wait PENDING (see `status_reason`).

**Input hygiene.** UTF-8 only. `guideline_text` is cleaned, not refused: put in NFC,
mojibake repaired, stray control characters (other than tab, line feed, carriage return)
replaced; the job's `document.warnings` counts each kind of repair. A `title` with a
control character is refused with `control_characters`. Nothing is HTML-escaped.
JSON bodies over `max_body_bytes` (16 MiB) are refused with 413 before they are parsed.

**Documents.** `POST /v1/jobs` (and `/jobs/batch`, `/jobs/estimate`) also take
`multipart/form-data`: the document in a part named `file` (PDF, DOCX, HTML, Markdown, plain
text; told by content; at most `max_document_bytes`, 25 MiB), the other fields as form
fields. Uploads are spooled to disk and stored in PostgreSQL; the API never parses them:
the job's runner pod fetches its document from the `runner` routes (its ServiceAccount
token, checked with a TokenReview; no API key) and puts the extracted text back.
"""
# The reasons are listed from the code, so this text cannot drift from `Reason`.
DESCRIPTION = DESCRIPTION_TEMPLATE.replace(
    "{reasons}", ", ".join(f"`{reason}`" for reason in TITLES)
)


def create_app(
    settings: ApiSettings | None = None,
    *,
    database: db.Database | None = None,
    kube: KubeGateway | None = None,
) -> FastAPI:
    """Build the API. Migrations are not applied here (`main` does that at start-up).
    A given `database` is used as it is (its own pool size and acquire timeout)."""
    settings = settings or ApiSettings()
    # The threadpool serving requests is larger than the pool: a request waits (bounded)
    # for a free connection instead of failing at once.
    database = database or db.Database(
        settings.database_url,
        minconn=settings.db_pool_min,
        maxconn=settings.db_pool_max,
        acquire_timeout=settings.db_acquire_timeout_seconds,
    )
    kube_api = kube or KubeGateway(
        settings.namespace,
        settings.kubeconfig,
        settings.kube_timeout_seconds,
        pool_size=max(settings.db_pool_max, settings.dispatch_concurrency),
    )
    metrics = ApiMetrics()
    tracer = tracing.setup()
    ctx = Context(
        settings=settings,
        store=database,
        kube=kube_api,
        keys=KeyStore(
            settings.api_key_hashes, settings.api_keys_file, settings.api_keys_reload_seconds
        ),
        metrics=metrics,
        dispatcher=Dispatcher(database, kube_api, settings, metrics, tracer=tracer),
        runner_auth=RunnerAuth(kube_api, settings),
        webhooks=DeliveryWorker(database, settings, metrics),
        monitor=HealthMonitor(
            database,
            kube_api,
            interval=settings.health_cache_seconds,
            # A refresh may wait for a database connect and a Kubernetes call.
            stale_after=3 * settings.health_cache_seconds
            + settings.db_acquire_timeout_seconds
            + 2 * settings.kube_timeout_seconds,
        ),
        tracer=tracer,
        events=EventHub(database.url),
        streams=StreamCaps(settings, lambda cap: metrics.event_streams_refused.labels(cap).inc()),
    )
    if not settings.auth_enabled:
        log.warning("authentication is OFF: every request is served as 'anonymous'")
    elif ctx.keys.count() == 0:
        log.warning("authentication is on but no API keys are configured: /jobs will answer 401")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.dispatcher_enabled:
            ctx.dispatcher.start()
        if settings.webhook_enabled:
            ctx.webhooks.start()
        ctx.monitor.start()
        ctx.events.start()
        yield
        ctx.events.stop()
        ctx.monitor.stop()
        ctx.webhooks.stop()
        ctx.dispatcher.stop()
        ctx.store.close()
        ctx.kube.close()
        ctx.tracer.shutdown()

    app = FastAPI(
        title="guideline-ingest",
        version=version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "jobs", "description": "Submit guidelines and follow their jobs."},
            {"name": "audit", "description": "Who did what (admin keys)."},
            {"name": "operations", "description": "Health checks and Prometheus metrics."},
            {"name": "webhooks", "description": "What the API POSTs to a job's callback_url."},
            {
                "name": "unversioned",
                "description": "Deprecated aliases of the `/v1` operations at their old paths.",
            },
        ],
    )
    app.state.ctx = ctx

    def count_reject(method: str, route: str, reason: str) -> None:
        if method == "POST" and route in SUBMIT_ROUTES:
            ctx.metrics.jobs_rejected.labels(reason).inc()

    # Matched by hand for requests refused before routing (the size cap, the AuthGate);
    # under /v1 too (see metrics.route_template).
    known_routes = [r for router in routes.VERSIONED for r in router.routes]
    known_routes += health.router.routes
    prefixes = (routes.VERSION_PREFIX,)

    def on_error(request: Request, reason: str) -> None:
        count_reject(request.method, route_template(request.scope, known_routes, prefixes), reason)

    def on_body_reject(scope: Scope, reason: str) -> None:  # also the AuthGate's 401s
        count_reject(scope["method"], route_template(scope, known_routes, prefixes), reason)

    install_handlers(app, on_error)
    routes.mount(app)
    app.include_router(health.router, generate_unique_id_function=openapi.versioned_id)
    app.webhooks.include_router(webhooks.router)  # documented, not served
    openapi.install(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        on_reject=on_body_reject,
        upload_cap=functools.partial(uploads.upload_cap, settings),
    )
    if settings.auth_enabled:
        # Outside the size cap: an unauthenticated body is never buffered.
        app.add_middleware(AuthGate, verify=ctx.keys.verify, on_reject=on_body_reject)
    app.add_middleware(
        MetricsMiddleware, metrics=ctx.metrics, routes=lambda: known_routes, prefixes=prefixes
    )
    if tracer.enabled:
        app.add_middleware(tracing.CallerContext)

    def figures() -> Figures:
        snap = ctx.monitor.snapshot()
        beat = (snap.heartbeat or {}).get("age")
        # The heartbeat's age when the figures were read, plus the time since.
        heartbeat_age = None if beat is None else float(beat) + snap.age()
        return Figures(snap.counts, snap.age(), heartbeat_age)

    ctx.metrics.add_queue_collector(figures)
    ctx.metrics.event_streams.set_function(ctx.streams.open_count)
    return app
