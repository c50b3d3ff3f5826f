"""The settings every component shares, and how they are read: from the environment (and
`.env`), variables prefixed `GUIDELINE_`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from guideline_core.cost import DEFAULT_MODEL_PRICES, ModelPrice
from guideline_core.settings.fields import Count, ZeroOrMore
from guideline_core.settings.tenants import Budget, TenantLimits, first_set

RUNNER_TOKEN_AUDIENCE = "guideline-ingest.dev/runner"
RUNNER_SERVICE_ACCOUNT = "guideline-runner"
# Models a submission may name unless `allowed_models` says otherwise: the runner's
# default and the mainstream ones, not the expensive reasoning models.
DEFAULT_ALLOWED_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-nano", "gpt-4.1-mini", "gpt-4.1")


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
    chunk_chars: Count = Field(
        24_000,
        description="Guidelines longer than this are summarized in parts (map-reduce) by the "
        "runner; the API's estimate cuts the same parts, so set it alike for both.",
    )
    llm_concurrency: Count = Field(
        4,
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
    tenant_max_pending_jobs: ZeroOrMore = Field(
        500,
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
    cr_retention_seconds: ZeroOrMore = Field(
        3600,
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
            max_pending_jobs=first_set(own.max_pending_jobs, self.tenant_max_pending_jobs),
            max_running_jobs=first_set(own.max_running_jobs, self.tenant_max_running_jobs),
            submissions_per_minute=first_set(
                own.submissions_per_minute, self.rate_limit_per_minute
            ),
            allowed_models=first_set(own.allowed_models, self.allowed_models or None),
            callback_url=own.callback_url,
            budget=first_set(own.budget, self.tenant_budget),
            max_event_streams=self._event_streams_for(own),
        )

    def _event_streams_for(self, own: TenantLimits) -> int | None:
        """A tenant's cap of event streams: none outside the API, which serves them."""
        return None
