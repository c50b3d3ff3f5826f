"""Configuration of every component, read from the environment (and `.env`) by
pydantic-settings. Each component has one settings class; the shared fields live in
`CommonSettings`. Variables are prefixed `GUIDELINE_` except the OpenAI SDK's own
(`OPENAI_API_KEY`, `OPENAI_BASE_URL`)."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from guideline_core.cost import DEFAULT_MODEL_PRICES, ModelPrice
from guideline_core.resource import MAX_RETRIES_LIMIT, Provider

# Models a submission may name unless `allowed_models` says otherwise: the runner's
# default and the mainstream ones, not the expensive reasoning models.
MAX_TEXT_CHARS = 2_000_000
MAX_DOCUMENT_BYTES = 25 * 1024 * 1024
RUNNER_TOKEN_AUDIENCE = "guideline-ingest.dev/runner"
RUNNER_SERVICE_ACCOUNT = "guideline-runner"
DEFAULT_ALLOWED_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-nano", "gpt-4.1-mini", "gpt-4.1")


class Budget(BaseModel):
    """What a tenant may spend on LLM calls per day or per calendar month (UTC)."""

    model_config = ConfigDict(extra="forbid")

    amount: float = Field(ge=0)
    currency: str = Field("USD", min_length=3, max_length=3)
    period: Literal["day", "month"] = "month"


class TenantLimits(BaseModel):
    """Limits of one tenant; a field left out takes the installation-wide default."""

    model_config = ConfigDict(extra="forbid")

    max_pending_jobs: int | None = Field(None, ge=0)
    max_running_jobs: int | None = Field(None, ge=1)
    submissions_per_minute: int | None = Field(None, ge=0)
    allowed_models: list[str] | None = None
    callback_url: str | None = Field(
        None,
        max_length=2048,
        description="Webhook URL of the tenant's jobs that name none themselves (checked "
        "like a submission's `callback_url` at each submission).",
    )
    max_event_streams: int | None = Field(
        None,
        ge=0,
        description="Event streams the tenant may hold open in one API process (the API's "
        "`sse_max_streams_per_tenant` when left out).",
    )
    budget: Budget | None = Field(
        None, description="The tenant's LLM budget (`tenant_budget` when left out)."
    )


class CommonSettings(BaseSettings):
    """Settings every component shares."""

    model_config = SettingsConfigDict(
        env_prefix="GUIDELINE_", env_file=".env", extra="ignore", populate_by_name=True
    )

    database_url: str = Field(
        "postgresql://guideline@127.0.0.1:5432/guideline",
        description="PostgreSQL database (system of record): a libpq URL or keyword string "
        "(`host=... dbname=... password=...`); its password never reaches a log line.",
        repr=False,  # no password in a repr of the settings
    )
    namespace: str = Field("default", description="Namespace holding the GuidelineJobs.")
    log_level: str = Field("INFO", description="Python log level of the JSON logs.")
    # Read by the runner (how it cuts and calls), the operator (a Job's hard deadline grows
    # with the rounds of calls they imply) and the API (its estimate cuts the same parts).
    # Defined once (a second definition further down used to replace this one's text).
    chunk_chars: int = Field(
        24_000,
        ge=1,
        description="Guidelines longer than this are summarized in parts (map-reduce) by the "
        "runner; the API's estimate cuts the same parts, so set it alike for both.",
    )
    llm_concurrency: int = Field(
        4,
        ge=1,
        description="LLM calls of one job in flight at once (the map-reduce parts); a 429 "
        "with Retry-After pauses all of the job's calls. Runner and operator.",
    )
    rate_limit_per_minute: int = Field(
        600,
        description="Requests per tenant per minute, counted in PostgreSQL (so across API "
        "replicas): each submitted guideline (refused ones included, idempotent replays "
        "not), each cancel and each retry; 0 turns the limit off. Per tenant: "
        "`tenant_limits`.",
    )
    tenant_max_pending_jobs: int = Field(
        500,
        ge=0,
        description="PENDING jobs one tenant may have (429 `tenant_backlog_full` beyond). "
        "The global backlog is shared fairly on top of this (see "
        "`tenant_guaranteed_pending_jobs`).",
    )
    tenant_max_running_jobs: int | None = Field(
        None,
        ge=1,
        description="Jobs of one tenant running at once; default: no limit below "
        "`max_concurrent_jobs`.",
    )
    allowed_models: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALLOWED_MODELS),
        description="Models a submission may name (JSON list; 422 `model_not_allowed` for "
        "any other); a job naming none gets the runner's `model`. Set `[]` explicitly to "
        "allow any model.",
    )
    cr_retention_seconds: int = Field(
        3600,
        ge=0,
        description="Finished GuidelineJobs (and the guideline text in their spec) are deleted "
        "from the cluster this long after they finished (by the operator); their rows and "
        "results stay in PostgreSQL (db_retention_days). The API counts their text against "
        "`tenant_max_inflight_text_bytes` until then.",
    )
    tenant_limits: dict[str, TenantLimits] = Field(
        default_factory=dict,
        description='Per-tenant overrides, JSON: `{"team-a": {"max_pending_jobs": 50, '
        '"max_running_jobs": 2, "submissions_per_minute": 60, "allowed_models": '
        '["gpt-4o-mini"], "callback_url": "https://hooks.example.com/guidelines", '
        '"max_event_streams": 20, "budget": {"amount": 50, "currency": "USD", "period": '
        '"month"}}}`.',
    )
    tenant_budget: Budget | None = Field(
        None,
        description='LLM budget of every tenant without its own, JSON: `{"amount": 50, '
        '"currency": "USD", "period": "day"|"month"}` (UTC days and calendar months). A '
        "submission whose estimated cost exceeds what is left (the budget less the cost of the "
        "jobs completed in the period and the estimates of the tenant's unfinished jobs) is 429 "
        "`budget_exceeded`. Unset: no budget.",
    )
    model_prices: dict[str, ModelPrice | None] = Field(
        default_factory=lambda: dict[str, ModelPrice | None](DEFAULT_MODEL_PRICES),
        description='Price per million tokens of each model, JSON: `{"gpt-4o-mini": '
        '{"input_per_million": 0.15, "output_per_million": 0.6, "currency": "USD"}}`; a model '
        "absent or `null` has no known cost (`usage.cost` null). The default holds OpenAI's list "
        "prices of 2026-12-01 for gpt-4o-mini, gpt-4o, gpt-4.1, gpt-4.1-mini and gpt-4.1-nano: "
        "prices change, set your own. The extractive provider costs 0.",
    )

    def limits_for(self, tenant: str) -> TenantLimits:
        """The limits in force for `tenant`: its overrides over the defaults."""
        own = TenantLimits.model_validate(self.tenant_limits.get(tenant) or {})
        return TenantLimits(
            max_pending_jobs=_first(own.max_pending_jobs, self.tenant_max_pending_jobs),
            max_running_jobs=_first(own.max_running_jobs, self.tenant_max_running_jobs),
            submissions_per_minute=_first(own.submissions_per_minute, self.rate_limit_per_minute),
            allowed_models=_first(own.allowed_models, self.allowed_models or None),
            callback_url=own.callback_url,
            budget=_first(own.budget, self.tenant_budget),
        )


def _first(*values: object) -> object:
    return next((v for v in values if v is not None), None)


class ApiSettings(CommonSettings):
    """Settings of the REST API."""

    host: str = Field("127.0.0.1", description="Address the HTTP server listens on.")
    port: int = Field(8000, description="Port the HTTP server listens on.")
    db_pool_min: int = Field(
        1, description="Idle database connections kept open (more open as needed)."
    )
    db_pool_max: int = Field(
        20,
        description="Most database connections at once (more requests wait); also the size "
        "of the Kubernetes connection pool.",
    )
    max_guideline_chars: int = Field(
        MAX_TEXT_CHARS,
        ge=1,
        description="Longest JSON guideline_text accepted, in characters (413 "
        "`text_too_long` beyond). The text goes to PostgreSQL, not into the GuidelineJob "
        "(which carries a reference), so it is not bound by the CRD's inline limit.",
    )
    max_body_bytes: int = Field(
        # A 2,000,000-character text of BMP characters escaped as \uXXXX (json.dumps'
        # default) is 12 MB; 8 MB as raw UTF-8 whatever its characters.
        16 * 1024 * 1024,
        description="JSON request bodies larger than this are refused (413) unread; they "
        "are buffered whole, unlike multipart uploads (see `max_upload_bytes`).",
    )
    max_document_bytes: int = Field(
        MAX_DOCUMENT_BYTES,
        ge=1,
        description="Largest document accepted in a multipart upload, per file (413 "
        "`document_too_large` beyond). Uploads are spooled to disk, never held in memory.",
    )
    max_upload_bytes: int = Field(
        128 * 1024 * 1024,
        ge=1,
        description="Largest multipart body of `POST /jobs/batch` (all its files and "
        "fields; 413 `body_too_large` beyond). A single upload (`POST /jobs`, "
        "`POST /jobs/estimate`) may be `max_document_bytes` plus 1 MiB of form fields.",
    )
    max_batch_files: int = Field(
        20, ge=1, description="Most files in one multipart `POST /jobs/batch` (413 beyond)."
    )
    runner_token_audience: str = Field(
        RUNNER_TOKEN_AUDIENCE,
        min_length=1,
        description="Audience the runner pods' projected ServiceAccount tokens must carry "
        "for the runner routes (`/v1/runner/...`): checked with a TokenReview.",
    )
    runner_service_account: str = Field(
        RUNNER_SERVICE_ACCOUNT,
        min_length=1,
        description="ServiceAccount of the runner pods (the operator's "
        "`runner_service_account`): only its tokens may use the runner routes.",
    )
    runner_auth_cache_seconds: float = Field(
        60.0,
        ge=0,
        le=60,
        description="How long a runner token's positive check is reused for one job "
        "(at most 60 s: a deleted pod's token stops working within this time).",
    )
    auth_enabled: bool = Field(True, description="Require a bearer API key on /jobs.")
    api_keys_file: str | None = Field(
        None,
        description="File of API keys (a mounted Secret, or kept by `guideline-api keys`), one "
        "`key_id:sha256hex:tenant:role` per line; `key_id:sha256hex` is a member of tenant "
        "key_id.",
    )
    api_keys_reload_seconds: float = Field(
        1.0,
        ge=0,
        description="The keys file is checked for changes at most this often (a revoked key "
        "stops working within this time).",
    )
    api_key_hashes: str = Field(
        "", description="Comma-separated entries as in api_keys_file, added to its keys."
    )
    max_pending_jobs: int = Field(
        1000, description="Backlog of PENDING jobs above which POST /jobs answers 429."
    )
    tenant_max_inflight_text_bytes: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="Input bytes (stored documents: uploads as they came, JSON texts in "
        "UTF-8) one tenant may hold in jobs not finished, and finished within "
        "`cr_retention_seconds`; a submission past it is 429 `tenant_text_quota`. 0 turns "
        "the limit off.",
    )
    tenant_guaranteed_pending_jobs: int = Field(
        50,
        ge=0,
        description="PENDING jobs every tenant may hold whatever the others hold (within "
        "`max_pending_jobs` and its own cap); its jobs beyond this are borrowed from the "
        "shared part of the backlog (see `backlog_reserved_share`).",
    )
    backlog_reserved_share: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Share of `max_pending_jobs` that jobs held beyond their tenant's "
        "guaranteed share may not use: it stays free for tenants within theirs (429 "
        "`backlog_full` for a submission that would borrow it).",
    )
    max_runs_per_job: int = Field(
        10,
        ge=1,
        description="Runs one job may have (the first and its retries); a retry beyond is "
        "409 `too_many_runs`.",
    )
    max_retries_limit: int = Field(
        3,
        ge=0,
        le=MAX_RETRIES_LIMIT,
        description="Largest `max_retries` a submission may ask for (422 beyond): one job "
        "costs at most (max_retries_limit + 1) x max_runs_per_job pod attempts.",
    )
    max_batch_size: int = Field(500, ge=1, description="Most guidelines in one POST /jobs/batch.")
    callback_dns_budget_seconds: float = Field(
        2.0,
        gt=0,
        description="Time one submission may spend resolving its callback hosts (each "
        "distinct host once, after the rate and backlog checks); an item whose host is not "
        "resolved in it gets 422 `callback_url_refused`.",
    )
    audit_read_window_seconds: float = Field(
        3600.0,
        gt=0,
        description="Reads of one job's text (`?include=text`) by one key within this are "
        "one audit entry, counting them (`detail.reads`), not one entry each.",
    )
    dispatch_batch_size: int = Field(
        50, ge=1, description="Rows the dispatcher claims per pass to create their CRs."
    )
    dispatch_concurrency: int = Field(
        8, ge=1, description="Kubernetes calls the dispatcher makes at once."
    )
    dispatch_poll_seconds: float = Field(
        1.0,
        gt=0,
        description="How often the dispatcher looks for rows of other API replicas or due "
        "for another try (a submission to this replica wakes it at once).",
    )
    dispatch_lease_seconds: float = Field(
        30.0,
        gt=0,
        description="A claimed row is left to its dispatcher this long; then another may "
        "take it (a replica that died mid-dispatch).",
    )
    dispatch_max_backoff_seconds: float = Field(
        30.0, gt=0, description="Longest wait between tries while Kubernetes is down."
    )
    dispatcher_enabled: bool = Field(
        True, description="Run the outbox dispatcher in this API process."
    )
    webhook_enabled: bool = Field(
        True, description="Run the webhook delivery worker in this API process."
    )
    webhook_allow_private: bool = Field(
        False,
        description="Allow callback URLs whose host resolves to a private, loopback, "
        "link-local or otherwise non-global address (refused by default, at submission and "
        "again at each delivery).",
    )
    webhook_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="Connect, send and read timeout of each step of a webhook delivery "
        "attempt (the whole attempt is bounded by `webhook_attempt_deadline_seconds`).",
    )
    webhook_attempt_deadline_seconds: float = Field(
        15.0,
        gt=0,
        description="Wall-clock limit of one webhook delivery attempt: connecting, sending "
        "and reading the whole response head (a receiver that trickles its answer fails "
        "here, however often it sends a byte).",
    )
    webhook_backoff_base_seconds: float = Field(
        5.0,
        gt=0,
        description="Wait after the first failed delivery; doubled after each further "
        "failure (with jitter: a random share between half and all of it).",
    )
    webhook_max_backoff_seconds: float = Field(
        3600.0, gt=0, description="Longest wait between two tries of one delivery."
    )
    webhook_max_age_seconds: float = Field(
        86_400.0,
        gt=0,
        description="A delivery not accepted (2xx) this long after the job finished is "
        "given up (state `failed`).",
    )
    webhook_poll_seconds: float = Field(
        1.0,
        gt=0,
        description="How often the delivery worker looks for due deliveries (a cancel through "
        "this replica wakes it at once).",
    )
    webhook_batch_size: int = Field(20, ge=1, description="Deliveries claimed per pass.")
    webhook_concurrency: int = Field(
        8, ge=1, description="Webhook delivery attempts made at once by one API process."
    )
    webhook_tenant_concurrency: int = Field(
        2,
        ge=1,
        description="Webhook delivery attempts of one tenant in flight at once, over all "
        "API replicas (its other due deliveries wait; other tenants' go out). Keep it below "
        "`webhook_concurrency`.",
    )
    webhook_secret_grace_seconds: float = Field(
        86_400.0,
        ge=0,
        description="After `guideline-api webhook-secret rotate`, the previous secret keeps "
        "signing (next to the new one) this long.",
    )
    idempotency_window_hours: int = Field(
        24, ge=1, description="An Idempotency-Key may be reused for a new job after this."
    )
    default_model: str = Field(
        "gpt-4o-mini",
        description="The model an estimate and a budget check assume for a submission naming "
        "none (a job that names no model gets the runner's `model`: keep them equal).",
    )
    operator_heartbeat_stale_seconds: int = Field(
        60,
        description="An operator heartbeat older than this means no operator runs "
        "(/health `degraded`; noted in a queued job's queue message).",
    )
    kubeconfig: str | None = Field(
        None,
        validation_alias=AliasChoices("GUIDELINE_KUBECONFIG", "KUBECONFIG"),
        description="Kubeconfig file; default: in-cluster ServiceAccount, else ~/.kube/config.",
    )
    kube_timeout_seconds: float = Field(
        5.0, gt=0, description="Connect and read timeout of each Kubernetes API call."
    )
    backlog_retry_after_seconds: int = Field(
        30, ge=1, description="Retry-After sent with a 429 when the PENDING backlog is full."
    )
    db_acquire_timeout_seconds: float = Field(
        5.0, gt=0, description="How long a request waits for a free database connection (503)."
    )
    limit_concurrency: int | None = Field(
        256,
        ge=1,
        description="Most connections and requests the HTTP server holds at once; more are "
        "answered 503 at once (uvicorn's limit_concurrency). None: unbounded.",
    )
    timeout_keep_alive_seconds: int = Field(
        5, ge=1, description="An idle keep-alive connection is closed after this."
    )
    max_header_bytes: int = Field(
        16 * 1024,
        ge=1024,
        description="Largest request line and headers, counted as they arrive (before they "
        "are buffered); a larger head is answered 431 and its connection closed.",
    )
    max_header_fields: int = Field(
        100,
        ge=10,
        description="Most header fields of a request; more are answered 431.",
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="A request's line and headers must arrive within this from its first byte "
        "(a new connection's first request: from the connection's opening); else 408 and the "
        "connection is closed (slow-headers clients).",
    )
    backlog: int = Field(
        2048, ge=1, description="Connections the kernel queues before the server accepts them."
    )
    health_cache_seconds: float = Field(
        2.0,
        gt=0,
        description="/health and /metrics answer from figures refreshed in the background this "
        "often (never a count per call); each answer says how old its figures are.",
    )
    sse_heartbeat_seconds: float = Field(
        15.0,
        gt=0,
        description="An idle GET /jobs/{event_id}/events stream sends an SSE comment this "
        "often (keeps proxies from closing it; a missing job's stream notices it), and "
        "re-reads the job's events as a safety net for a lost NOTIFY.",
    )
    sse_queue_refresh_seconds: float = Field(
        2.0,
        gt=0,
        description="A PENDING job's event stream recomputes its queue position at most this "
        "often, and only after some job's state changed (then a `queue` event if it moved).",
    )
    sse_max_streams_per_key: int = Field(
        20,
        ge=1,
        description="Event streams one API key may hold open in this API process (429 "
        "`too_many_streams` beyond; N replicas allow N times as many).",
    )
    sse_max_streams_per_tenant: int = Field(
        100,
        ge=1,
        description="Event streams one tenant's keys may hold open in this API process "
        "(429 `too_many_streams` beyond). Per tenant: `tenant_limits`' `max_event_streams`.",
    )
    sse_max_streams: int | None = Field(
        None,
        ge=1,
        description="Event streams open in this API process, all tenants together (429 "
        "`too_many_streams` beyond). Must be below `limit_concurrency`, which counts each "
        "open stream: what is left stays for probes and ordinary requests. Default: three "
        "quarters of `limit_concurrency` (192 of 256); unbounded if that is None.",
    )
    sse_max_stream_seconds: float = Field(
        900.0,
        gt=0,
        description="An event stream ends after this long (a random 90-100 % of it, so "
        "streams opened together do not reconnect together), with an `event: reconnect`; "
        "the client resumes with Last-Event-ID.",
    )
    sse_key_recheck_seconds: float = Field(
        30.0,
        gt=0,
        description="An open event stream checks its API key again this often: a revoked "
        "key's stream (or one whose tenant or role changed) ends.",
    )
    graceful_shutdown_seconds: int = Field(
        10,
        ge=1,
        description="On shutdown, requests still running after this are cancelled: event "
        "streams, which last up to `sse_max_stream_seconds` (their clients resume with "
        "Last-Event-ID on another replica). Keep it below the pod's termination grace period "
        "(30 s).",
    )

    @model_validator(mode="after")
    def _streams_below_the_server_limit(self) -> ApiSettings:
        cap, limit = self.sse_max_streams, self.limit_concurrency
        if cap is not None and limit is not None and cap >= limit:
            raise ValueError(
                f"sse_max_streams ({cap}) must be below limit_concurrency ({limit}): else open "
                "event streams can take every connection and the probes get 503"
            )
        return self

    @property
    def stream_capacity(self) -> int | None:
        """Event streams this process serves at once (None: no process-wide cap)."""
        if self.sse_max_streams is not None:
            return self.sse_max_streams
        if self.limit_concurrency is None:
            return None
        return max(1, self.limit_concurrency * 3 // 4)

    def limits_for(self, tenant: str) -> TenantLimits:
        """The limits in force for `tenant`, with its cap of event streams."""
        limits = super().limits_for(tenant)
        own = TenantLimits.model_validate(self.tenant_limits.get(tenant) or {})
        cap = _first(own.max_event_streams, self.sse_max_streams_per_tenant)
        return limits.model_copy(update={"max_event_streams": cap})


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
    active_deadline_per_round_seconds: int = Field(
        75,
        ge=0,
        description="Added to a Job's hard time limit for each round of LLM calls beyond 2 "
        '(docs/contracts.md, "Time limits").',
    )
    ttl_seconds_after_finished: int = Field(
        3600, ge=0, description="A finished Job and its pods are deleted after this."
    )
    max_concurrent_jobs: int = Field(4, ge=1, description="Jobs running at once; more queue.")
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
        "guideline-ingest.dev/runner",
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
    chunk_cache_retention_days: int = Field(
        30,
        ge=0,
        description="Per-chunk summaries (chunk_summaries) written longer ago than this are "
        "purged (every db_purge_interval_seconds); 0 keeps them forever.",
    )
    heartbeat_interval_seconds: float = Field(
        10.0, description="Period of the operator's heartbeat row (the API's /health reads it)."
    )
    metrics_port: int = Field(
        9101, description="Port of the operator's Prometheus metrics; 0 turns them off."
    )
    metrics_max_tenants: int = Field(
        100,
        ge=0,
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
    audit_retention_days: int = Field(
        90,
        ge=0,
        description="Audit entries older than this are purged (also when db_retention_days "
        "keeps the jobs); 0 keeps them as long as the jobs.",
    )
    db_purge_interval_seconds: float = Field(
        3600.0,
        gt=0,
        description="Period of the database retention purges (db_retention_days, "
        "audit_retention_days, chunk_cache_retention_days).",
    )


class RunnerSettings(CommonSettings):
    """Settings of the runner (the process inside each Job pod)."""

    provider: Provider = Field(Provider.OPENAI, description="`openai` or `extractive`.")
    model: str = Field("gpt-4o-mini", description="Model of a job whose spec names none.")
    openai_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("OPENAI_API_KEY", "GUIDELINE_OPENAI_API_KEY"),
        description="API key of the OpenAI-compatible endpoint.",
    )
    openai_base_url: str | None = Field(
        None,
        validation_alias=AliasChoices("OPENAI_BASE_URL", "GUIDELINE_OPENAI_BASE_URL"),
        description="Base URL of an OpenAI-compatible endpoint; default: OpenAI's.",
    )
    request_timeout_seconds: float = Field(60.0, description="Per LLM call.")
    sdk_max_retries: int = Field(2, description="The openai SDK's own in-process retries.")
    soft_timeout_seconds: float = Field(
        240.0,
        description="Whole chain of a short guideline (2 rounds of LLM calls); then `Timeout`.",
    )
    soft_timeout_per_round_seconds: float = Field(
        60.0,
        ge=0,
        description="Added to the soft timeout for each round of LLM calls beyond 2 "
        '(docs/contracts.md, "Time limits").',
    )
    progress_interval_seconds: float = Field(
        2.0,
        gt=0,
        description="Least seconds between two writes of a running job's status.progress "
        "(sections and calls done of total); the end of each round of calls writes at once. "
        "Nothing is written in a run's first interval.",
    )
    max_checklist_items: int = Field(
        1000,
        ge=1,
        description="Most checklist items in a result, all sections merged (more are cut, the "
        "higher priorities kept by the extractive provider; `result.quality.capped.total` and "
        "`quality.capped_items` say so).",
    )
    max_items_per_section: int = Field(
        60,
        ge=1,
        description="Most checklist items the LLM gives for one section of a guideline "
        "(result.quality.capped.per_section counts the sections that reached it).",
    )
    fallback_to_extractive: bool = Field(
        False, description="Complete with the extractive provider (degraded) if the LLM fails."
    )
    review_min_grounding: float = Field(
        1.0,
        ge=0,
        le=1,
        description="A result whose share of grounded items (quote found in the text) is "
        "below this needs review (per job: review.min_grounding).",
    )
    review_min_coverage: float = Field(
        0.8,
        ge=0,
        le=1,
        description="A result whose share of obligation sentences covered by an item's "
        "source is below this needs review (per job: review.min_coverage).",
    )
    drop_ungrounded_items: bool = Field(
        False,
        description="Leave items whose quote is not in the text out of the checklist "
        "(else they are kept with grounded: false); counted in quality either way.",
    )
    cache_database_url: SecretStr | None = Field(
        None,
        description="libpq URL for the per-chunk summary cache (a role that may only SELECT "
        "and INSERT chunk_summaries); unset: no cache. The operator passes it from the "
        "optional Secret `runner_cache_secret_name`.",
    )
    tenant: str | None = Field(
        None,
        description="The job's tenant, set by the operator from the job's row: the chunk "
        "cache serves only summaries stored for it (unset: no cache).",
    )
    max_document_pages: int = Field(
        1000,
        ge=1,
        description="Most pages of a document (PDF) the runner extracts; more: FAILED "
        "document_too_long.",
    )
    max_document_chars: int = Field(
        2_000_000,
        ge=1,
        description="Most characters of text extracted from a document; more: FAILED "
        "document_too_long.",
    )
    max_result_bytes: int = Field(
        1_048_576,
        ge=65_536,
        le=1_441_792,
        description="Most bytes of status.result (JSON, UTF-8) the runner writes: etcd takes "
        "at most 1.5 MiB per object. Past it `quality.uncovered` is shortened "
        "(quality.uncovered_omitted), then checklist items are cut from the end "
        "(quality.capped.result_bytes; the result needs review). The room the rest of the "
        "GuidelineJob leaves is also respected.",
    )
    api_url: str = Field(
        "",
        description="Base URL of the REST API's runner endpoints (the operator sets it from "
        "runner_api_url): a documentRef job's document is fetched there and the extracted "
        "text put back. Empty: documentRef jobs fail InvalidInput.",
    )
    runner_token_file: str = Field(
        "/var/run/secrets/guideline-ingest/runner/token",
        description="The pod's projected ServiceAccount token for the API (re-read for every "
        "request: the kubelet rotates it).",
    )
    input_file: str | None = Field(
        None,
        description="The file holding a guidelineTextFrom job's text or document (the key the "
        "operator mounts).",
    )
    api_retries: int = Field(
        4, ge=0, description="Retries of a request to the API on a connection error or 5xx."
    )
    job_name: str | None = Field(None, description="The GuidelineJob this pod runs.")
    event_id: str | None = Field(
        None, description="The job's event_id for the logs (else read from the GuidelineJob)."
    )
    termination_message_path: str = Field(
        "/dev/termination-log",
        description="File the failure (reason, message, retryable) is written to as the "
        "pod's termination message.",
    )
