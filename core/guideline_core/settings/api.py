"""Settings of the REST API (`guideline-api`)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, model_validator

from guideline_core.resource import MAX_RETRIES_LIMIT
from guideline_core.settings.base import (
    RUNNER_SERVICE_ACCOUNT,
    RUNNER_TOKEN_AUDIENCE,
    CommonSettings,
)
from guideline_core.settings.fields import Count, Seconds, Share, ZeroOrMore
from guideline_core.settings.tenants import TenantLimits, first_set

MAX_TEXT_CHARS = 2_000_000
MAX_DOCUMENT_BYTES = 25 * 1024 * 1024


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
    max_guideline_chars: Count = Field(
        MAX_TEXT_CHARS,
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
    max_document_bytes: Count = Field(
        MAX_DOCUMENT_BYTES,
        description="Largest document accepted in a multipart upload, per file (413 "
        "`document_too_large` beyond). Uploads are spooled to disk, never held in memory.",
    )
    max_upload_bytes: Count = Field(
        128 * 1024 * 1024,
        description="Largest multipart body of `POST /jobs/batch` (all its files and "
        "fields; 413 `body_too_large` beyond). A single upload (`POST /jobs`, "
        "`POST /jobs/estimate`) may be `max_document_bytes` plus 1 MiB of form fields.",
    )
    max_batch_files: Count = Field(
        20, description="Most files in one multipart `POST /jobs/batch` (413 beyond)."
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
    tenant_max_inflight_text_bytes: ZeroOrMore = Field(
        64 * 1024 * 1024,
        description="Input bytes (stored documents: uploads as they came, JSON texts in "
        "UTF-8) one tenant may hold in jobs not finished, and finished within "
        "`cr_retention_seconds`; a submission past it is 429 `tenant_text_quota`. 0 turns "
        "the limit off.",
    )
    tenant_guaranteed_pending_jobs: ZeroOrMore = Field(
        50,
        description="PENDING jobs every tenant may hold whatever the others hold (within "
        "`max_pending_jobs` and its own cap); its jobs beyond this are borrowed from the "
        "shared part of the backlog (see `backlog_reserved_share`).",
    )
    backlog_reserved_share: Share = Field(
        0.25,
        description="Share of `max_pending_jobs` that jobs held beyond their tenant's "
        "guaranteed share may not use: it stays free for tenants within theirs (429 "
        "`backlog_full` for a submission that would borrow it).",
    )
    max_runs_per_job: Count = Field(
        10,
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
    max_batch_size: Count = Field(500, description="Most guidelines in one POST /jobs/batch.")
    callback_dns_budget_seconds: Seconds = Field(
        2.0,
        description="Time one submission may spend resolving its callback hosts (each "
        "distinct host once, after the rate and backlog checks); an item whose host is not "
        "resolved in it gets 422 `callback_url_refused`.",
    )
    audit_read_window_seconds: Seconds = Field(
        3600.0,
        description="Reads of one job's text (`?include=text`) by one key within this are "
        "one audit entry, counting them (`detail.reads`), not one entry each.",
    )
    dispatch_batch_size: Count = Field(
        50, description="Rows the dispatcher claims per pass to create their CRs."
    )
    dispatch_concurrency: Count = Field(
        8, description="Kubernetes calls the dispatcher makes at once."
    )
    dispatch_poll_seconds: Seconds = Field(
        1.0,
        description="How often the dispatcher looks for rows of other API replicas or due "
        "for another try (a submission to this replica wakes it at once).",
    )
    dispatch_lease_seconds: Seconds = Field(
        30.0,
        description="A claimed row is left to its dispatcher this long; then another may "
        "take it (a replica that died mid-dispatch).",
    )
    dispatch_max_backoff_seconds: Seconds = Field(
        30.0, description="Longest wait between tries while Kubernetes is down."
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
    webhook_timeout_seconds: Seconds = Field(
        10.0,
        description="Connect, send and read timeout of each step of a webhook delivery "
        "attempt (the whole attempt is bounded by `webhook_attempt_deadline_seconds`).",
    )
    webhook_attempt_deadline_seconds: Seconds = Field(
        15.0,
        description="Wall-clock limit of one webhook delivery attempt: connecting, sending "
        "and reading the whole response head (a receiver that trickles its answer fails "
        "here, however often it sends a byte).",
    )
    webhook_backoff_base_seconds: Seconds = Field(
        5.0,
        description="Wait after the first failed delivery; doubled after each further "
        "failure (with jitter: a random share between half and all of it).",
    )
    webhook_max_backoff_seconds: Seconds = Field(
        3600.0, description="Longest wait between two tries of one delivery."
    )
    webhook_max_age_seconds: Seconds = Field(
        86_400.0,
        description="A delivery not accepted (2xx) this long after the job finished is "
        "given up (state `failed`).",
    )
    webhook_poll_seconds: Seconds = Field(
        1.0,
        description="How often the delivery worker looks for due deliveries (a cancel through "
        "this replica wakes it at once).",
    )
    webhook_batch_size: Count = Field(20, description="Deliveries claimed per pass.")
    webhook_concurrency: Count = Field(
        8, description="Webhook delivery attempts made at once by one API process."
    )
    webhook_tenant_concurrency: Count = Field(
        2,
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
    idempotency_window_hours: Count = Field(
        24, description="An Idempotency-Key may be reused for a new job after this."
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
    kube_timeout_seconds: Seconds = Field(
        5.0, description="Connect and read timeout of each Kubernetes API call."
    )
    backlog_retry_after_seconds: Count = Field(
        30, description="Retry-After sent with a 429 when the PENDING backlog is full."
    )
    db_acquire_timeout_seconds: Seconds = Field(
        5.0, description="How long a request waits for a free database connection (503)."
    )
    limit_concurrency: int | None = Field(
        256,
        ge=1,
        description="Most connections and requests the HTTP server holds at once; more are "
        "answered 503 at once (uvicorn's limit_concurrency). None: unbounded.",
    )
    timeout_keep_alive_seconds: Count = Field(
        5, description="An idle keep-alive connection is closed after this."
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
    header_timeout_seconds: Seconds = Field(
        10.0,
        description="A request's line and headers must arrive within this from its first byte "
        "(a new connection's first request: from the connection's opening); else 408 and the "
        "connection is closed (slow-headers clients).",
    )
    backlog: Count = Field(
        2048, description="Connections the kernel queues before the server accepts them."
    )
    health_cache_seconds: Seconds = Field(
        2.0,
        description="/health and /metrics answer from figures refreshed in the background this "
        "often (never a count per call); each answer says how old its figures are.",
    )
    sse_heartbeat_seconds: Seconds = Field(
        15.0,
        description="An idle GET /jobs/{event_id}/events stream sends an SSE comment this "
        "often (keeps proxies from closing it; a missing job's stream notices it), and "
        "re-reads the job's events as a safety net for a lost NOTIFY.",
    )
    sse_queue_refresh_seconds: Seconds = Field(
        2.0,
        description="A PENDING job's event stream recomputes its queue position at most this "
        "often, and only after some job's state changed (then a `queue` event if it moved).",
    )
    sse_max_streams_per_key: Count = Field(
        20,
        description="Event streams one API key may hold open in this API process (429 "
        "`too_many_streams` beyond; N replicas allow N times as many).",
    )
    sse_max_streams_per_tenant: Count = Field(
        100,
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
    sse_max_stream_seconds: Seconds = Field(
        900.0,
        description="An event stream ends after this long (a random 90-100 % of it, so "
        "streams opened together do not reconnect together), with an `event: reconnect`; "
        "the client resumes with Last-Event-ID.",
    )
    sse_key_recheck_seconds: Seconds = Field(
        30.0,
        description="An open event stream checks its API key again this often: a revoked "
        "key's stream (or one whose tenant or role changed) ends.",
    )
    graceful_shutdown_seconds: Count = Field(
        10,
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

    def _event_streams_for(self, own: TenantLimits) -> int | None:
        return first_set(own.max_event_streams, self.sse_max_streams_per_tenant)
