"""Settings of the runner (`guideline-runner`, the process in each Job pod); the operator
passes them through the runner ConfigMap and Secrets."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr

from guideline_core.resource import Provider
from guideline_core.settings.base import CommonSettings
from guideline_core.settings.fields import Count, Seconds, Share, ZeroOrMore


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
    progress_interval_seconds: Seconds = Field(
        2.0,
        description="Least seconds between two writes of a running job's status.progress "
        "(sections and calls done of total); the end of each round of calls writes at once. "
        "Nothing is written in a run's first interval.",
    )
    max_checklist_items: Count = Field(
        1000,
        description="Most checklist items in a result, all sections merged (more are cut, the "
        "higher priorities kept by the extractive provider; `result.quality.capped.total` and "
        "`quality.capped_items` say so).",
    )
    max_items_per_section: Count = Field(
        60,
        description="Most checklist items the LLM gives for one section of a guideline "
        "(result.quality.capped.per_section counts the sections that reached it).",
    )
    fallback_to_extractive: bool = Field(
        False, description="Complete with the extractive provider (degraded) if the LLM fails."
    )
    review_min_grounding: Share = Field(
        1.0,
        description="A result whose share of grounded items (quote found in the text) is "
        "below this needs review (per job: review.min_grounding).",
    )
    review_min_coverage: Share = Field(
        0.8,
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
    max_document_pages: Count = Field(
        1000,
        description="Most pages of a document (PDF) the runner extracts; more: FAILED "
        "document_too_long.",
    )
    max_document_chars: Count = Field(
        2_000_000,
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
    api_retries: ZeroOrMore = Field(
        4, description="Retries of a request to the API on a connection error or 5xx."
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
