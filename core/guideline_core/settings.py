"""Configuration of every component, read from the environment (and `.env`) by
pydantic-settings. Each component has one settings class; the shared fields live in
`CommonSettings`. Variables are prefixed `GUIDELINE_` except the OpenAI SDK's own
(`OPENAI_API_KEY`, `OPENAI_BASE_URL`)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from guideline_core.resource import MAX_GUIDELINE_CHARS, Provider


class CommonSettings(BaseSettings):
    """Settings every component shares."""

    model_config = SettingsConfigDict(
        env_prefix="GUIDELINE_", env_file=".env", extra="ignore", populate_by_name=True
    )

    database_url: str = Field(
        "postgresql://guideline@127.0.0.1:5432/guideline",
        description="libpq URL of the PostgreSQL database (system of record).",
    )
    namespace: str = Field("default", description="Namespace holding the GuidelineJobs.")
    log_level: str = Field("INFO", description="Python log level of the JSON logs.")


class ApiSettings(CommonSettings):
    """Settings of the REST API."""

    host: str = "127.0.0.1"
    port: int = 8000
    db_pool_min: int = 1
    db_pool_max: int = 20
    max_guideline_chars: int = Field(MAX_GUIDELINE_CHARS, le=MAX_GUIDELINE_CHARS)
    max_body_bytes: int = Field(
        # A maximum-length text escaped as \uXXXX (json.dumps' default) is ~600 KB.
        1024 * 1024,
        description="Request bodies larger than this are refused (413) unread.",
    )
    auth_enabled: bool = Field(True, description="Require a bearer API key on /jobs.")
    api_keys_file: str | None = Field(
        None,
        description="File of API keys, one `key_id:sha256hex` per line (a mounted Secret).",
    )
    api_key_hashes: str = Field(
        "", description="Comma-separated `key_id:sha256hex` pairs, added to api_keys_file."
    )
    max_pending_jobs: int = Field(
        1000, description="Backlog of PENDING jobs above which POST /jobs answers 429."
    )
    rate_limit_per_minute: int = Field(
        600, description="POST /jobs per API key per minute; 0 turns the limit off."
    )
    idempotency_window_hours: int = Field(
        24, ge=1, description="An Idempotency-Key may be reused for a new job after this."
    )
    default_model: str = "gpt-4o-mini"
    operator_heartbeat_stale_seconds: int = 60
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


class OperatorSettings(CommonSettings):
    """Settings of the kopf operator and the Jobs it creates."""

    runner_image: str = Field(
        "guideline-ingest:0.1.0", description="Image of the runner pods' container."
    )
    runner_image_pull_policy: str = "IfNotPresent"
    runner_command: list[str] = Field(default_factory=lambda: ["guideline-runner"])
    runner_service_account: str = "guideline-runner"
    backoff_limit: int = Field(3, ge=0, le=10, description="Pod retries of one job.")
    active_deadline_seconds: int = Field(300, ge=10, description="Hard time limit of a Job.")
    ttl_seconds_after_finished: int = Field(3600, ge=0)
    max_concurrent_jobs: int = Field(4, ge=1, description="Jobs running at once; more queue.")
    kueue_queue_name: str | None = Field(
        None, description="If set, Jobs get this kueue.x-k8s.io/queue-name and Kueue admits them."
    )
    openai_secret_name: str = Field(
        "guideline-openai", description="Secret holding the OpenAI key (key `api-key`)."
    )
    openai_secret_key: str = "api-key"
    runner_config_map: str = Field(
        "guideline-runner-config", description="ConfigMap whose keys become runner env."
    )
    runner_cpu_request: str = "100m"
    runner_cpu_limit: str = "1"
    runner_memory_request: str = "128Mi"
    runner_memory_limit: str = "512Mi"
    resync_interval_seconds: float = Field(30.0, description="Period of the reconcile timer.")
    cr_retention_seconds: int = Field(
        86_400, description="Finished GuidelineJobs are deleted from the cluster after this."
    )
    db_retention_days: int = Field(
        0, description="Rows of finished jobs older than this are purged; 0 keeps them forever."
    )
    heartbeat_interval_seconds: float = 10.0
    metrics_port: int = 9101
    liveness_port: int = 8081


class RunnerSettings(CommonSettings):
    """Settings of the runner (the process inside each Job pod)."""

    provider: Provider = Field(Provider.OPENAI, description="`openai` or `extractive`.")
    model: str = "gpt-4o-mini"
    openai_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("OPENAI_API_KEY", "GUIDELINE_OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        None, validation_alias=AliasChoices("OPENAI_BASE_URL", "GUIDELINE_OPENAI_BASE_URL")
    )
    request_timeout_seconds: float = Field(60.0, description="Per LLM call.")
    sdk_max_retries: int = Field(2, description="The openai SDK's own in-process retries.")
    soft_timeout_seconds: float = Field(240.0, description="Whole chain; then `Timeout`.")
    chunk_chars: int = Field(
        24_000, description="Guidelines longer than this are summarized in parts (map-reduce)."
    )
    max_checklist_items: int = 30
    fallback_to_extractive: bool = Field(
        False, description="Complete with the extractive provider (degraded) if the LLM fails."
    )
    job_name: str | None = Field(None, description="The GuidelineJob this pod runs.")
    event_id: str | None = Field(
        None, description="The job's event_id for the logs (else read from the GuidelineJob)."
    )
    termination_message_path: str = "/dev/termination-log"


@lru_cache
def api_settings() -> ApiSettings:
    """The API's settings, read once."""
    return ApiSettings()


@lru_cache
def operator_settings() -> OperatorSettings:
    """The operator's settings, read once."""
    return OperatorSettings()


@lru_cache
def runner_settings() -> RunnerSettings:
    """The runner's settings, read once."""
    return RunnerSettings()
