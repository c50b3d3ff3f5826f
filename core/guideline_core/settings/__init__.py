"""Configuration of every component, read from the environment (and `.env`) by
pydantic-settings. Each component has one settings class; the shared fields live in
`CommonSettings`. Variables are prefixed `GUIDELINE_` except the OpenAI SDK's own
(`OPENAI_API_KEY`, `OPENAI_BASE_URL`).

One module per concern: `tenants` (a tenant's limits and budget), `base` (the shared
settings and how they are read), `api`, `operator` and `runner` (each component's own).
"""

from guideline_core.settings.api import MAX_DOCUMENT_BYTES, MAX_TEXT_CHARS, ApiSettings
from guideline_core.settings.base import (
    DEFAULT_ALLOWED_MODELS,
    RUNNER_SERVICE_ACCOUNT,
    RUNNER_TOKEN_AUDIENCE,
    CommonSettings,
)
from guideline_core.settings.operator import OperatorSettings
from guideline_core.settings.runner import RunnerSettings
from guideline_core.settings.tenants import Budget, TenantLimits

__all__ = [
    "DEFAULT_ALLOWED_MODELS",
    "MAX_DOCUMENT_BYTES",
    "MAX_TEXT_CHARS",
    "RUNNER_SERVICE_ACCOUNT",
    "RUNNER_TOKEN_AUDIENCE",
    "ApiSettings",
    "Budget",
    "CommonSettings",
    "OperatorSettings",
    "RunnerSettings",
    "TenantLimits",
]
