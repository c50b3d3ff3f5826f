"""The `openai` provider: any OpenAI-compatible chat-completions endpoint, through the
official SDK. Every call has the per-call timeout; the SDK's own retries (exponential
backoff, `Retry-After` honoured) handle transient failures inside one pod, and what is
left after them is classified by `errors.from_openai_error`. The client is safe to use
from several threads (the chain's concurrent calls); a 429's `Retry-After` pauses all of
them (`pacing`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import openai
import pydantic
from guideline_core.resource import FailureReason

from guideline_runner import tracing
from guideline_runner.errors import ChainError, from_openai_error
from guideline_runner.models import (
    ChecklistAnswer,
    DraftItem,
    Usage,
    checklist_response_format,
)
from guideline_runner.pacing import PacedTransport, RateGate
from guideline_runner.providers import prompts
from guideline_runner.providers.base import Completion

log = logging.getLogger(__name__)

# Header naming the chain step of a request: invisible to the model, handy in proxies'
# logs, and how the test suite's fake server tells the steps apart.
STEP_HEADER = "X-Guideline-Step"


class OpenAIProvider:
    """Summaries and checklists from an OpenAI-compatible endpoint."""

    name = "openai"

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None,
        base_url: str | None,
        timeout: float,
        max_retries: int,
        max_input_chars: int,
        max_items: int,
    ) -> None:
        self.model = model
        self.max_input_chars: int | None = max_input_chars
        self.max_items = max_items
        self.timeout = timeout
        self._gate = RateGate()
        tracing.instrument_openai()  # before the client exists; nothing when tracing is off
        # A missing key fails the first call (not construction), so that the chain's
        # fallback to the extractive provider covers it like any other rejection.
        self._client = (
            openai.OpenAI(
                api_key=api_key,
                base_url=base_url,
                timeout=timeout,
                max_retries=max_retries,
                http_client=openai.DefaultHttpxClient(transport=PacedTransport(self._gate)),
            )
            if api_key
            else None
        )

    def close(self) -> None:
        """Close the SDK's HTTP client; calls waiting out a rate-limit pause end at once."""
        self._gate.close()
        if self._client is not None:
            self._client.close()

    def _call(self, step: str, messages: list[dict[str, str]], **extra: Any) -> tuple[str, Usage]:
        if self._client is None:
            raise ChainError(
                FailureReason.LLM_REJECTED,
                "No API key configured (OPENAI_API_KEY) for the openai provider",
                retryable=False,
            )
        started = time.monotonic()
        try:
            response = self._client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                extra_headers={STEP_HEADER: step},
                **extra,
            )
        except openai.OpenAIError as exc:
            raise from_openai_error(exc, step, self.timeout) from None
        if not response.choices:
            raise ChainError(
                FailureReason.INVALID_OUTPUT,
                f"LLM answer without choices in step {step}",
                retryable=False,
            )
        choice = response.choices[0]
        message = choice.message
        if getattr(message, "refusal", None):
            raise ChainError(
                FailureReason.INVALID_OUTPUT,
                f"The model refused in step {step}: {message.refusal}",
                retryable=False,
            )
        content = (message.content or "").strip()
        if not content:
            raise ChainError(
                FailureReason.INVALID_OUTPUT, f"Empty LLM answer in step {step}", retryable=False
            )
        usage = Usage(calls=1)
        if response.usage is not None:
            usage = Usage(
                prompt_tokens=response.usage.prompt_tokens or 0,
                completion_tokens=response.usage.completion_tokens or 0,
                total_tokens=response.usage.total_tokens or 0,
                calls=1,
            )
        log.info(
            "llm call done",
            extra={
                "llm_step": step,
                "served_model": response.model,
                "finish_reason": choice.finish_reason,
                "duration_s": round(time.monotonic() - started, 3),
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
            },
        )
        if choice.finish_reason == "length":
            log.warning("llm answer cut at the token limit", extra={"llm_step": step})
        return content, usage

    def summarize(self, text: str, *, part: int = 1, parts: int = 1) -> Completion[str]:
        """A summary of `text` (part `part` of `parts`)."""
        content, usage = self._call(
            "summarize",
            [
                {"role": "system", "content": prompts.SUMMARIZE_SYSTEM},
                {"role": "user", "content": prompts.summarize_user(text, part, parts)},
            ],
        )
        return Completion(content, usage)

    def combine(self, summaries: Sequence[str]) -> Completion[str]:
        """One summary from the parts' summaries."""
        content, usage = self._call(
            "combine",
            [
                {"role": "system", "content": prompts.COMBINE_SYSTEM},
                {"role": "user", "content": prompts.combine_user(summaries)},
            ],
        )
        return Completion(content, usage)

    def checklist(
        self, summary: str, *, guideline: str, section: int = 1, sections: int = 1
    ) -> Completion[list[DraftItem]]:
        """Checklist items from `summary` (with `sections` > 1: from section `section` of
        the guideline, `guideline`), each with its verbatim quote of `guideline`,
        answered as JSON of a strict schema and validated; anything else is an
        `InvalidOutput` error."""
        content, usage = self._call(
            "checklist",
            [
                {
                    "role": "system",
                    "content": prompts.CHECKLIST_SYSTEM.format(max_items=self.max_items),
                },
                {
                    "role": "user",
                    "content": prompts.checklist_user(summary, guideline, section, sections),
                },
            ],
            response_format=checklist_response_format(self.max_items),
        )
        try:
            answer = ChecklistAnswer.model_validate_json(content)
        except pydantic.ValidationError as exc:
            raise ChainError(
                FailureReason.INVALID_OUTPUT,
                f"The checklist answer is not valid JSON of the schema: {_describe(exc)}",
                retryable=False,
            ) from None
        items = answer.items
        left_out = max(0, len(items) - self.max_items)
        if left_out:
            log.warning(
                "checklist longer than asked; keeping the first items",
                extra={"items": len(items), "kept": self.max_items},
            )
            items = items[: self.max_items]
        return Completion(items, usage, left_out=left_out)


def _describe(exc: pydantic.ValidationError) -> str:
    """A short account of a validation error (first problems only, no input echo)."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False)[:3]:
        where = ".".join(str(p) for p in error.get("loc", ())) or "answer"
        problems.append(f"{where}: {error.get('msg')}")
    return "; ".join(problems) + (
        f" (+{exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
    )
