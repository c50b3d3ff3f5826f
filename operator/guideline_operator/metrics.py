"""The operator's Prometheus metrics (prometheus-client), served on `metrics_port`.

Terminal transitions are recorded once, by the reconcile pass that writes them; a resync
that finds a job already terminal records nothing. LLM figures come from the result the
runner wrote (`result.usage` and `result.durations`, per chain step).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_JOB_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 90, 120, 180, 240, 300, 600, 1800)
_LLM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)


class Metrics:
    """Every metric the operator exports, registered in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.job_processing_seconds = Histogram(
            "job_processing_seconds",
            "Runner start to terminal state, by outcome (completed, failed, cancelled).",
            ["outcome"],
            buckets=_JOB_BUCKETS,
            registry=r,
        )
        self.jobs_completed = Counter(
            "jobs_completed_total", "Jobs that reached COMPLETED.", registry=r
        )
        self.jobs_failed = Counter(
            "jobs_failed_total", "Jobs that reached FAILED, by reason.", ["reason"], registry=r
        )
        self.jobs_cancelled = Counter(
            "jobs_cancelled_total", "Jobs that reached CANCELLED.", registry=r
        )
        self.queue_size = Gauge(
            "queue_size", "GuidelineJobs waiting for a free slot (PENDING, no Job).", registry=r
        )
        self.jobs_running = Gauge(
            "jobs_running",
            "Jobs holding a slot (created, not finished, not suspended).",
            registry=r,
        )
        self.queue_wait_seconds = Histogram(
            "queue_wait_seconds",
            "Accepted (or retry requested) to the first runner pod start of that run.",
            buckets=_JOB_BUCKETS,
            registry=r,
        )
        self.job_end_to_end_seconds = Histogram(
            "job_end_to_end_seconds",
            "Accepted (or retry requested) to terminal state, by outcome.",
            ["outcome"],
            buckets=_JOB_BUCKETS,
            registry=r,
        )
        self.llm_call_seconds = Histogram(
            "llm_call_seconds",
            "Duration of each LLM chain step of completed jobs, by step and model.",
            ["step", "model"],
            buckets=_LLM_BUCKETS,
            registry=r,
        )
        self.llm_tokens = Counter(
            "llm_tokens_total",
            "Tokens used by completed jobs, by step, model and kind (prompt, completion).",
            ["step", "model", "kind"],
            registry=r,
        )
        self.db_purged_rows = Counter(
            "db_purged_rows_total", "Finished job rows deleted by the retention purge.", registry=r
        )
        self.crs_deleted = Counter(
            "crs_retention_deleted_total",
            "Finished GuidelineJobs deleted from the cluster by retention.",
            registry=r,
        )
        self.reconcile_errors = Counter(
            "reconcile_errors_total",
            "Reconcile passes that raised, by stage.",
            ["stage"],
            registry=r,
        )

    def started(self, queued_at: datetime | None, run_started_at: datetime | None) -> None:
        """A run's first runner pod started."""
        if queued_at and run_started_at:
            self.queue_wait_seconds.observe(max(0.0, (run_started_at - queued_at).total_seconds()))

    def finished(
        self,
        outcome: str,
        *,
        reason: str | None,
        queued_at: datetime | None,
        run_started_at: datetime | None,
        completed_at: datetime | None,
        result: Mapping[str, Any] | None,
    ) -> None:
        """A job reached a terminal phase (`outcome` is completed, failed or cancelled)."""
        if outcome == "completed":
            self.jobs_completed.inc()
            if result:
                self.llm_figures(result)
        elif outcome == "failed":
            self.jobs_failed.labels(reason=reason or "Unknown").inc()
        else:
            self.jobs_cancelled.inc()
        if completed_at and run_started_at:
            self.job_processing_seconds.labels(outcome=outcome).observe(
                max(0.0, (completed_at - run_started_at).total_seconds())
            )
        if completed_at and queued_at:
            self.job_end_to_end_seconds.labels(outcome=outcome).observe(
                max(0.0, (completed_at - queued_at).total_seconds())
            )

    def llm_figures(self, result: Mapping[str, Any]) -> None:
        """Per-step duration and token usage from a runner's result.

        `result.durations` is {step: seconds}; `result.usage` is {step: {prompt_tokens,
        completion_tokens, ...}}. Unknown shapes are skipped, never fatal."""
        model = str(result.get("model") or result.get("provider") or "unknown")
        durations = result.get("durations")
        if isinstance(durations, Mapping):
            for step, seconds in durations.items():
                if isinstance(seconds, int | float) and not isinstance(seconds, bool):
                    self.llm_call_seconds.labels(step=str(step), model=model).observe(seconds)
        usage = result.get("usage")
        if isinstance(usage, Mapping):
            for step, counts in usage.items():
                if not isinstance(counts, Mapping):
                    continue
                for key, value in counts.items():
                    counted = key.endswith("_tokens") and key != "total_tokens"
                    if not counted or not isinstance(value, int) or isinstance(value, bool):
                        continue
                    kind = key.removesuffix("_tokens")
                    self.llm_tokens.labels(step=str(step), model=model, kind=kind).inc(value)
