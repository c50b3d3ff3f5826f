"""A submission's estimate (no LLM call: the parts the runner will summarize, its LLM calls,
the input tokens counted with the model's tokenizer, their cost) and the tenant budget
checked against it at submission."""

from __future__ import annotations

from dataclasses import asdict

from guideline_core import cost
from guideline_core.resource import Provider
from guideline_core.settings import ApiSettings

from guideline_api.schemas import JobEstimate, SubmitJob


def estimate_of(settings: ApiSettings, job: SubmitJob) -> cost.Estimate:
    """The estimate of `job` with the installation's chunk size and price table; a job
    naming no model or provider gets `default_model` and the LLM provider."""
    return cost.estimate(
        job.guideline_text,
        model=job.model or settings.default_model,
        provider=job.provider or Provider.OPENAI,
        chunk_chars=settings.chunk_chars,
        prices=settings.model_prices,
    )


def to_view(found: cost.Estimate) -> JobEstimate:
    """The API's view of an estimate."""
    return JobEstimate.model_validate({**asdict(found), "llm_calls": found.llm_calls})
