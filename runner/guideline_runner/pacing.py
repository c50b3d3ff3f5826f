"""One job's LLM calls share the provider's rate-limit answers: a 429 with `Retry-After`
pauses every call of the job until then (not only the one that got it), so concurrent
calls do not keep hammering a provider that asked them to wait. The SDK still retries
the refused call itself, within its retry budget (`sdk_max_retries`)."""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from typing import Final

import httpx2

log = logging.getLogger(__name__)

# The openai SDK ignores a longer Retry-After (it backs off on its own then); so does the
# shared pause.
MAX_PAUSE_SECONDS: Final = 60.0


def retry_after_seconds(headers: httpx2.Headers) -> float | None:
    """The wait a rate-limit answer asks for: `retry-after-ms`, else `Retry-After` in
    seconds or as an HTTP date; None if absent, unreadable or not positive."""
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        return seconds if 0 < seconds < float("inf") else None
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError, OverflowError):
        return None
    return seconds if seconds > 0 else None


class RateGate:
    """The pause shared by one job's calls. `wait()` returns once the latest pause asked
    for has passed (or the gate is closed: the job is being abandoned)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = 0.0
        self._closed = threading.Event()

    def pause(self, seconds: float) -> None:
        """Hold every call of the job for `seconds` from now (at most MAX_PAUSE_SECONDS)."""
        with self._lock:
            self._until = max(self._until, time.monotonic() + min(seconds, MAX_PAUSE_SECONDS))

    def wait(self) -> None:
        """Block until no pause is in force."""
        while True:
            with self._lock:
                left = self._until - time.monotonic()
            if left <= 0 or self._closed.wait(left):
                return

    def close(self) -> None:
        """Release every waiting call at once (they then fail on the closed client)."""
        self._closed.set()


class PacedTransport(httpx2.HTTPTransport):
    """The HTTP transport of a job's openai client: each request first waits out the
    job's shared pause, and a 429 answer with a wait in it starts a new pause."""

    def __init__(self, gate: RateGate, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._gate = gate

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        self._gate.wait()
        response = super().handle_request(request)
        if response.status_code == 429:
            delay = retry_after_seconds(response.headers)
            if delay is not None:
                self._gate.pause(delay)
                log.info("rate limited; the job's calls pause", extra={"pause_s": delay})
        return response
