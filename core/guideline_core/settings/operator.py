"""Settings of the operator (`guideline-operator`) and of the Jobs it creates."""

from __future__ import annotations

from pydantic import Field

from guideline_core.settings.base import (
    RUNNER_SERVICE_ACCOUNT,
    RUNNER_TOKEN_AUDIENCE,
    CommonSettings,
)
from guideline_core.settings.fields import Count, Seconds, ZeroOrMore


class OperatorSettings(CommonSettings):
    """Settings of the kopf operator process and the Jobs it creates."""

    runner_image: str = Field(
        "guideline-ingest:0.1.0", description="Image of the runner pods' container."
    )
    runner_image_pull_policy: str = Field(
        "IfNotPresent", description="imagePullPolicy of the runner pods' container."
    )
    runner_command: list[str] = Field(
        default_factory=lambda: ["guideline-runner"],
        description="Command of the runner pods' container.",
    )
    runner_service_account: str = Field(
        RUNNER_SERVICE_ACCOUNT, description="ServiceAccount the runner pods run as."
    )
    backoff_limit: int = Field(3, ge=0, le=10, description="Pod retries of one job.")
    active_deadline_seconds: int = Field(
        300,
        ge=10,
        description="Hard time limit of a Job of a short guideline (2 rounds of LLM calls).",
    )
    active_deadline_per_round_seconds: ZeroOrMore = Field(
        75,
        description="Added to a Job's hard time limit for each round of LLM calls beyond 2 "
        '(docs/contracts.md, "Time limits").',
    )
    ttl_seconds_after_finished: ZeroOrMore = Field(
        3600, description="A finished Job and its pods are deleted after this."
    )
    max_concurrent_jobs: Count = Field(4, description="Jobs running at once; more queue.")
    kueue_queue_name: str | None = Field(
        None, description="If set, Jobs get this kueue.x-k8s.io/queue-name and Kueue admits them."
    )
    openai_secret_name: str = Field(
        "guideline-openai",
        description="Secret with the runner pods' OpenAI key (may be absent: no key).",
    )
    openai_secret_key: str = Field(
        "api-key", description="The key in `openai_secret_name` holding the OpenAI key."
    )
    runner_cache_secret_name: str = Field(
        "guideline-runner-cache",
        description="Secret (may be absent: no chunk cache) whose key `database-url` becomes "
        "the runner pods' GUIDELINE_CACHE_DATABASE_URL.",
    )
    runner_config_map: str = Field(
        "guideline-runner-config", description="ConfigMap whose keys become runner env."
    )
    runner_cpu_request: str = Field("100m", description="CPU request of a runner pod.")
    runner_cpu_limit: str = Field("1", description="CPU limit of a runner pod.")
    runner_memory_request: str = Field(
        "192Mi",
        description="Memory request of a runner pod: the largest document allowed peaks at "
        "about 160 MiB (python -m bench.runner_memory).",
    )
    runner_memory_limit: str = Field(
        "512Mi", description="Memory limit of a runner pod (3x the largest document's peak)."
    )
    runner_api_url: str = Field(
        "",
        description="Base URL of the REST API as runner pods reach it (given to them as "
        "GUIDELINE_API_URL): they fetch a documentRef job's document and put its extracted "
        "text there. Empty: documentRef jobs fail InvalidInput; the chart sets the API "
        "Service's in-cluster URL.",
    )
    runner_token_audience: str = Field(
        RUNNER_TOKEN_AUDIENCE,
        description="Audience of the projected ServiceAccount token each runner pod presents "
        "to the API (which checks it with a TokenReview for this audience).",
    )
    runner_pod_template_file: str = Field(
        "",
        description="JSON file (the chart's mounted ConfigMap `<release>-runner-pod`) with the "
        "runner pods' pull secrets, scheduling, annotations, resources and extra env; "
        "empty: none.",
    )
    resync_interval_seconds: float = Field(30.0, description="Period of the reconcile timer.")
    db_retention_days: int = Field(
        0, description="Rows of finished jobs older than this are purged; 0 keeps them forever."
    )
    chunk_cache_retention_days: ZeroOrMore = Field(
        30,
        description="Per-chunk summaries (chunk_summaries) written longer ago than this are "
        "purged (every db_purge_interval_seconds); 0 keeps them forever.",
    )
    heartbeat_interval_seconds: float = Field(
        10.0, description="Period of the operator's heartbeat row (the API's /health reads it)."
    )
    metrics_port: int = Field(
        9101, description="Port of the operator's Prometheus metrics; 0 turns them off."
    )
    metrics_max_tenants: ZeroOrMore = Field(
        100,
        description="Distinct `tenant` label values of `guideline_llm_cost_total` in one "
        "operator process (the tenants of `tenant_limits` first, then as jobs complete); "
        "the jobs of further tenants count as `other`.",
    )
    liveness_port: int = Field(8081, description="Port of kopf's liveness endpoint /healthz.")
    # How the operator process runs (the command-line flags of `guideline-operator`
    # override these).
    standalone: bool = Field(
        False, description="Run without peering (one operator only: tests, the local stack)."
    )
    peering_name: str | None = Field(
        None,
        description="kopf peering object to join when replicated (KopfPeering per namespace, "
        "ClusterKopfPeering with all_namespaces); the highest priority replica is active.",
    )
    peering_priority: int = Field(0, description="This replica's peering priority.")
    all_namespaces: bool = Field(False, description="Serve every namespace, not `namespace`.")
    handler_workers: int = Field(16, ge=2, description="kopf's thread pool for handlers.")
    watch_timeout_seconds: int = Field(
        300, gt=0, description="Watch requests are renewed after this (server side)."
    )
    default_tenant: str = Field(
        "default",
        description="Tenant of GuidelineJobs applied with kubectl in a namespace without the "
        "label ingest.guidelines.dev/tenant.",
    )
    propagated_labels: list[str] = Field(
        default_factory=list,
        description="Label keys copied from a GuidelineJob to its Job and pods (JSON list); "
        "no other label of a GuidelineJob reaches them.",
    )
    audit_retention_days: ZeroOrMore = Field(
        90,
        description="Audit entries older than this are purged (also when db_retention_days "
        "keeps the jobs); 0 keeps them as long as the jobs.",
    )
    db_purge_interval_seconds: Seconds = Field(
        3600.0,
        description="Period of the database retention purges (db_retention_days, "
        "audit_retention_days, chunk_cache_retention_days).",
    )
