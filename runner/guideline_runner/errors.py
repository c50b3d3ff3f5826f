"""Failures of the chain: one exception type carrying the contract's reason and whether a
new pod may succeed, the mapping from openai SDK errors to it, and the redaction that
keeps the API key out of every message the runner writes."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from guideline_core.resource import FailureReason, RunnerExit

if TYPE_CHECKING:  # the SDK is imported only by the openai provider (start-up time)
    import openai

MAX_MESSAGE_CHARS: Final = 600

# Things that look like credentials, in case a server echoes one we were not told about.
_CREDENTIAL_PATTERNS: Final = (
    re.compile(r"\bsk-[A-Za-z0-9_\-*.]{4,}"),
    re.compile(r"(?i)\bbearer\s+[^\s\"',;]+"),
)
_secrets: list[str] = []


def register_secret(value: str | None) -> None:
    """Redact `value` from every message built by `redact` (the API key)."""
    if value and len(value) >= 4 and value not in _secrets:
        _secrets.append(value)


def redact(message: str) -> str:
    """`message` without registered secrets or credential-like tokens, bounded in length
    (the kubelet keeps at most 4 KiB of termination message)."""
    for secret in _secrets:
        message = message.replace(secret, "***")
    for pattern in _CREDENTIAL_PATTERNS:
        message = pattern.sub("***", message)
    message = " ".join(message.split())
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return message


class ChainError(Exception):
    """A failure of the chain with its contract reason; `retryable` decides the exit code."""

    def __init__(self, reason: FailureReason, message: str, *, retryable: bool) -> None:
        self.reason = reason
        self.message = redact(message)
        self.retryable = retryable
        # What `status.partial` should keep with this failure (written in the same patch
        # as runnerError), so that a new pod does not redo the work already done.
        self.keep: dict[str, Any] | None = None
        super().__init__(self.message)

    @property
    def exit_code(self) -> int:
        """The runner's exit code for this failure."""
        return RunnerExit.RETRYABLE if self.retryable else RunnerExit.DO_NOT_RETRY

    def to_status(self) -> dict[str, object]:
        """The termination message and `status.runnerError` body."""
        return {"reason": str(self.reason), "message": self.message, "retryable": self.retryable}


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
    return exc.message


def from_openai_error(exc: openai.OpenAIError, step: str, timeout: float) -> ChainError:
    """Classify an error the SDK raised after its own retries: connection errors,
    timeouts, 408, 429 and 5xx may succeed in a new pod; other 4xx, invalid answers and
    client-side errors (missing credentials) will not."""
    import openai

    where = f"in step {step}"
    if isinstance(exc, openai.APITimeoutError):
        return ChainError(
            FailureReason.LLM_ERROR,
            f"LLM request timed out {where} (per-call timeout {timeout:g} s)",
            retryable=True,
        )
    if isinstance(exc, openai.APIConnectionError):
        return ChainError(
            FailureReason.LLM_ERROR,
            f"Could not reach the LLM endpoint {where}: {exc.message}",
            retryable=True,
        )
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        text = f"LLM API answered {status} {where}: {_server_message(exc)}"
        if status in (408, 429) or status >= 500:
            return ChainError(FailureReason.LLM_ERROR, text, retryable=True)
        return ChainError(FailureReason.LLM_REJECTED, text, retryable=False)
    if isinstance(
        exc,
        openai.APIResponseValidationError
        | openai.LengthFinishReasonError
        | openai.ContentFilterFinishReasonError,
    ):
        return ChainError(
            FailureReason.INVALID_OUTPUT,
            f"Unusable LLM answer {where}: {exc}",
            retryable=False,
        )
    return ChainError(
        FailureReason.LLM_REJECTED, f"LLM client error {where}: {exc}", retryable=False
    )
