"""What every request of one app shares: settings, the job store, the cluster, the keys."""

from __future__ import annotations

from dataclasses import dataclass

from guideline_core import db
from guideline_core.settings import ApiSettings
from guideline_core.tracing import NOOP, Tracer

from guideline_api.auth import KeyStore
from guideline_api.http.runner_auth import RunnerAuth
from guideline_api.http.streamcaps import StreamCaps
from guideline_api.kubeapi import KubeGateway
from guideline_api.metrics import ApiMetrics
from guideline_api.service.callbacks import Resolver
from guideline_api.webhooks import targets
from guideline_api.workers.dispatcher import Dispatcher
from guideline_api.workers.monitor import HealthMonitor
from guideline_api.workers.notify import EventHub
from guideline_api.workers.webhook_delivery import DeliveryWorker


@dataclass
class Context:
    """Everything an endpoint needs, built once per app."""

    settings: ApiSettings
    store: db.Database  # the job store (PostgreSQL), the system of record
    kube: KubeGateway
    keys: KeyStore
    metrics: ApiMetrics
    dispatcher: Dispatcher
    monitor: HealthMonitor  # the cached figures of /health and /metrics
    webhooks: DeliveryWorker  # the webhook outbox's delivery worker
    events: EventHub  # the process's LISTEN connection, waking job event streams
    streams: StreamCaps  # the caps on open event streams (per key, per tenant, in all)
    runner_auth: RunnerAuth  # who may call the runner routes (TokenReview)
    tracer: Tracer = NOOP  # spans of submissions (guideline_api.tracing)
    # Checks a callback URL and resolves its host (tests count the lookups through it).
    resolve_target: Resolver = targets.resolve
