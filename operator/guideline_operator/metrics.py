"""The operator's Prometheus metrics (prometheus-client), served on `metrics_port`.

Names: `guideline_job*` for what happened to jobs (only the operator sees every outcome),
`guideline_llm_*` for the LLM use of completed jobs, `guideline_operator_*` for the operator
process itself; the API's are `guideline_api_*` and `guideline_db_*`, so no name means two
things. Label values are bounded: outcomes and failure reasons are enums, `step` is a known
chain step, `model` a model of `allowed_models` (any other: `other`), since the runner
writes the result these come from, and `tenant` one of at most `metrics_max_tenants` per
process (further ones: `other`).

Terminal transitions are recorded once, by the reconcile pass that writes them; a resync
that finds a job already terminal records nothing. LLM figures come from the result the
runner wrote (`result.usage` and `result.durations`, per chain step), the cost from its
tokens at `model_prices` (the same figure the database stores as `usage.cost`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

from guideline_core.cost import DEFAULT_MODEL_PRICES, result_cost
from guideline_core.resource import FailureReason
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_JOB_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 90, 120, 180, 240, 300, 600, 1800)
_LLM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)
OTHER: Final = "other"
UNKNOWN: Final = "unknown"  # a tenant label for a job whose tenant this process does not know
LLM_STEPS: Final = frozenset({"summarize", "checklist"})
TOKEN_KINDS: Final = frozenset({"prompt", "completion"})
FAILURE_REASONS: Final = frozenset(r.value for r in FailureReason)


class Metrics:
    """Every metric the operator exports, registered in one registry."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        models: Iterable[str] = (),
        prices: Mapping[str, Any] | None = None,
        tenants: Iterable[str] = (),
        max_tenants: int = 100,
    ):
        self.registry = registry or CollectorRegistry()
        self.models = frozenset(models)
        # The `tenant` label's values: `tenants` (those configured), then the first others
        # seen, up to `max_tenants`; later ones are `other` (a bounded label).
        self._tenants: set[str] = set(list(dict.fromkeys(tenants))[:max_tenants])
        self._max_tenants = max_tenants
        self.prices = DEFAULT_MODEL_PRICES if prices is None else prices
        r = self.registry
        self.job_processing_seconds = Histogram(
            "guideline_job_processing_seconds",
            "Runner start to terminal state, by outcome (completed, failed, cancelled).",
            ["outcome"],
            buckets=_JOB_BUCKETS,
            registry=r,
        )
        self.jobs_finished = Counter(
            "guideline_jobs_finished_total",
            "Jobs that reached a terminal state, by outcome (completed, failed, cancelled) "
            "and, for failed, the reason (empty otherwise).",
            ["outcome", "reason"],
            registry=r,
        )
        self.queue_size = Gauge(
            "guideline_operator_queue_length",
            "GuidelineJobs waiting for a free slot (PENDING, no Job).",
            registry=r,
        )
        self.jobs_running = Gauge(
            "guideline_operator_jobs_active",
            "Jobs holding a slot (created, not finished, not suspended).",
            registry=r,
        )
        self.queue_wait_seconds = Histogram(
            "guideline_job_queue_wait_seconds",
            "Accepted (or retry requested) to the first runner pod start of that run.",
            buckets=_JOB_BUCKETS,
            registry=r,
        )
        self.job_end_to_end_seconds = Histogram(
            "guideline_job_end_to_end_seconds",
            "Accepted (or retry requested) to terminal state, by outcome.",
            ["outcome"],
            buckets=_JOB_BUCKETS,
            registry=r,
        )
        self.llm_call_seconds = Histogram(
            "guideline_llm_step_duration_seconds",
            "Duration of each LLM chain step of completed jobs, by step and model.",
            ["step", "model"],
            buckets=_LLM_BUCKETS,
            registry=r,
        )
        self.llm_tokens = Counter(
            "guideline_llm_tokens_total",
            "Tokens used by completed jobs, by step, model and kind (prompt, completion).",
            ["step", "model", "kind"],
            registry=r,
        )
        self.llm_cost = Counter(
            "guideline_llm_cost_total",
            "Cost of completed jobs' LLM tokens at `model_prices` (the `usage.cost` stored "
            "with each result), by tenant, model and currency; models without a price are not "
            "counted.",
            ["tenant", "model", "currency"],
            registry=r,
        )
        self.db_purged_rows = Counter(
            "guideline_operator_db_purged_rows_total",
            "Finished job rows deleted by the retention purge.",
            registry=r,
        )
        self.crs_deleted = Counter(
            "guideline_operator_retention_deleted_total",
            "Finished GuidelineJobs deleted from the cluster by retention.",
            registry=r,
        )
        self.reconcile_errors = Counter(
            "guideline_operator_reconcile_errors_total",
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
        tenant: str | None = None,
    ) -> None:
        """A job reached a terminal phase (`outcome` is completed, failed or cancelled);
        `tenant`: the job's (None: not known to this process)."""
        known = reason if reason in FAILURE_REASONS else OTHER
        self.jobs_finished.labels(
            outcome=outcome, reason=known if outcome == "failed" else ""
        ).inc()
        if outcome == "completed" and result:
            self.llm_figures(result, tenant)
        if completed_at and run_started_at:
            self.job_processing_seconds.labels(outcome=outcome).observe(
                max(0.0, (completed_at - run_started_at).total_seconds())
            )
        if completed_at and queued_at:
            self.job_end_to_end_seconds.labels(outcome=outcome).observe(
                max(0.0, (completed_at - queued_at).total_seconds())
            )

    def tenant_label(self, tenant: str | None) -> str:
        """The `tenant` label of a job's tenant: bounded (see `__init__`)."""
        if not tenant:
            return UNKNOWN
        if tenant not in self._tenants and len(self._tenants) < self._max_tenants:
            self._tenants.add(tenant)
        return tenant if tenant in self._tenants else OTHER

    def llm_figures(self, result: Mapping[str, Any], tenant: str | None = None) -> None:
        """Per-step duration and token usage from a runner's result (and its cost, by
        `tenant`).

        `result.durations` is {step: seconds}; `result.usage` is {step: {prompt_tokens,
        completion_tokens, ...}}. Unknown shapes are skipped, never fatal."""
        model = str(result.get("model") or "")
        model = model if model in self.models else OTHER
        cost = result_cost(result, self.prices)
        if cost is not None and cost["amount"] > 0:
            self.llm_cost.labels(
                tenant=self.tenant_label(tenant), model=model, currency=cost["currency"]
            ).inc(cost["amount"])
        durations = result.get("durations")
        if isinstance(durations, Mapping):
            for step, seconds in durations.items():
                if isinstance(seconds, int | float) and not isinstance(seconds, bool):
                    self.llm_call_seconds.labels(step=_step(step), model=model).observe(seconds)
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
                    if kind in TOKEN_KINDS:
                        self.llm_tokens.labels(step=_step(step), model=model, kind=kind).inc(value)


def _step(step: object) -> str:
    """A chain step's label value: a known step, else `other`."""
    return str(step) if step in LLM_STEPS else OTHER
