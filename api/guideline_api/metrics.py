"""Prometheus metrics of the API (one registry per app) and the request-timing middleware,
which also writes one structured log line per request.

Names: `guideline_api_*` for what this process does, `guideline_webhook_*` for the webhooks
it delivers, `guideline_db_*` for figures it reads from PostgreSQL (the same in every
replica: aggregate them with max, not sum); the operator's are `guideline_job*`,
`guideline_llm_*` and `guideline_operator_*`."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from guideline_core.resource import Phase
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("guideline_api.access")
UNMATCHED = "<unmatched>"


class ApiMetrics:
    """The API's metric families."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_duration = Histogram(
            "guideline_api_http_request_duration_seconds",
            "HTTP request latency by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.jobs_submitted = Counter(
            "guideline_api_jobs_submitted_total",
            "Jobs accepted by POST /jobs (idempotent replays not counted).",
            ["provider"],
            registry=self.registry,
        )
        self.jobs_rejected = Counter(
            "guideline_api_jobs_rejected_total",
            "POST /jobs requests refused, by error reason.",
            ["reason"],
            registry=self.registry,
        )
        self.idempotent_replays = Counter(
            "guideline_api_idempotent_replays_total",
            "POST /jobs answered with the job an Idempotency-Key already created.",
            registry=self.registry,
        )
        self.job_requests = Counter(
            "guideline_api_job_requests_total",
            "Cancel and retry requests accepted, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.dispatch_lag = Histogram(
            "guideline_api_dispatch_lag_seconds",
            "Time from a job's acceptance to its GuidelineJob created by the dispatcher.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.dispatch_failures = Counter(
            "guideline_api_dispatch_failures_total",
            "Dispatch attempts that failed: `unavailable` (retried with backoff) or "
            "`rejected` (the job FAILED).",
            ["kind"],
            registry=self.registry,
        )
        self.webhook_deliveries = Counter(
            "guideline_webhook_deliveries",
            "Webhook delivery attempts by outcome: `delivered` (a 2xx answer) or `failed` "
            "(another answer, no answer, or a refused target; tried again with backoff).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("delivered", "failed"):
            self.webhook_deliveries.labels(outcome)  # present (at 0) before the first one
        self.webhook_abandoned = Counter(
            "guideline_webhook_deliveries_abandoned",
            "Webhook deliveries given up: no 2xx within webhook_max_age_seconds.",
            registry=self.registry,
        )

        self.event_streams = Gauge(
            "guideline_api_event_streams",
            "Job event streams (GET /jobs/{event_id}/events) open in this process.",
            registry=self.registry,
        )
        self.event_streams_refused = Counter(
            "guideline_api_event_streams_refused",
            "Job event streams refused (429 too_many_streams), by the cap reached: `key`, "
            "`tenant` or `process`.",
            ["cap"],
            registry=self.registry,
        )

    def add_queue_collector(self, figures: Callable[[], Figures]) -> None:
        """Register gauges read at scrape time from `figures()` (a cache refreshed in the
        background, never a query per scrape)."""
        self.registry.register(_QueueCollector(figures))


@dataclass(frozen=True)
class Figures:
    """What the background refresh last read: jobs per status (None when the database could
    not be reached), the age of the figures, and the newest operator heartbeat's age now
    (None: no heartbeat row at all)."""

    counts: dict[str, int] | None
    age: float
    heartbeat_age: float | None


class _QueueCollector(Collector):
    def __init__(self, figures: Callable[[], Figures]):
        self._figures = figures

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        figures = self._figures()
        fresh = GaugeMetricFamily(
            "guideline_api_figures_age_seconds",
            "Age of the database figures (refreshed in the background).",
        )
        fresh.add_metric([], figures.age)
        yield fresh
        up = GaugeMetricFamily(
            "guideline_api_database_up", "1 if the database answered at the last refresh, else 0."
        )
        up.add_metric([], 0.0 if figures.counts is None else 1.0)
        yield up
        if figures.counts is None:
            return
        by_status = GaugeMetricFamily(
            "guideline_db_jobs",
            "Jobs in the database by status (the same in every API replica: use max).",
            labels=["status"],
        )
        for status in Phase:
            by_status.add_metric([status.value], float(figures.counts.get(status.value, 0)))
        yield by_status
        beat = GaugeMetricFamily(
            "guideline_db_operator_heartbeat_age_seconds",
            "Age of the newest operator heartbeat row (+Inf: none); the operator writes it "
            "every heartbeat interval, so this alerts also when no operator runs at all.",
        )
        beat.add_metric([], math.inf if figures.heartbeat_age is None else figures.heartbeat_age)
        yield beat


def route_template(scope: Scope, routes: Iterable[BaseRoute], prefixes: Sequence[str] = ()) -> str:
    """The path template of the route serving `scope` (bounded label values). A router
    served under several prefixes (`/v1` and none) has one template, without the prefix:
    FastAPI's routes keep their own path, and `routes` are matched without the prefix."""
    route = scope.get("route")
    if route is not None and hasattr(route, "path"):
        return str(route.path)
    path = scope.get("path", "")
    for prefix in prefixes:
        if path.startswith(f"{prefix}/"):
            scope = {**scope, "path": path.removeprefix(prefix)}
            break
    for candidate in routes:
        match, _ = candidate.matches(scope)
        if match == Match.FULL and hasattr(candidate, "path"):
            return str(candidate.path)
    return UNMATCHED


class MetricsMiddleware:
    """Times every HTTP request into `guideline_api_http_request_duration_seconds`; logs it."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: ApiMetrics,
        routes: Callable[[], list[BaseRoute]],
        prefixes: Sequence[str] = (),
    ):
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = route_template(scope, self.routes(), self.prefixes)
            self.metrics.request_duration.labels(scope["method"], route, str(status)).observe(
                elapsed
            )
            quiet = route.startswith(("/health", "/metrics"))
            # The job a request made (set by POST /jobs) or named in its path.
            event_id = (scope.get("state") or {}).get("event_id") or (
                scope.get("path_params") or {}
            ).get("event_id")
            log.log(
                logging.DEBUG if quiet else logging.INFO,
                "request",
                extra={
                    "method": scope["method"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    **({"event_id": event_id} if event_id else {}),
                },
            )
