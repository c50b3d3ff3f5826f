"""Providers of summaries and checklists: `openai` (any OpenAI-compatible endpoint) and
`extractive` (offline, deterministic, labelled as such)."""

from __future__ import annotations

from typing import Any

from guideline_core.resource import Provider as ProviderName
from guideline_core.settings import RunnerSettings

from guideline_runner.providers.base import Completion, Provider
from guideline_runner.providers.extractive import ExtractiveProvider

__all__ = ["Completion", "ExtractiveProvider", "OpenAIProvider", "Provider", "make_provider"]


def __getattr__(name: str) -> Any:
    # The openai SDK costs about a second of CPU to import: only the openai provider
    # loads it (docs/benchmarks.md, "Runner start-up").
    if name == "OpenAIProvider":
        from guideline_runner.providers.openai_llm import OpenAIProvider

        return OpenAIProvider
    raise AttributeError(name)


def make_provider(
    settings: RunnerSettings, name: str | None = None, model: str | None = None
) -> Provider:
    """The provider `name` (default: settings.provider) for `model` (default:
    settings.model). Raises `ChainError` if the openai provider has no API key."""
    chosen = ProviderName(name or settings.provider)
    if chosen is ProviderName.EXTRACTIVE:
        return ExtractiveProvider(max_items=settings.max_checklist_items)
    from guideline_runner.providers.openai_llm import OpenAIProvider

    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return OpenAIProvider(
        model=model or settings.model,
        api_key=key,
        base_url=settings.openai_base_url,
        timeout=settings.request_timeout_seconds,
        max_retries=settings.sdk_max_retries,
        max_input_chars=settings.chunk_chars,
        max_items=settings.max_items_per_section,
    )
