"""The runner's calls to the REST API's runner endpoints (docs/contracts.md, "The runner's
API"): fetch the job's document, put its extracted text. Authenticated by the pod's projected
ServiceAccount token, read from its file for every request (the kubelet rotates it).
Connection errors, 408, 429 and 5xx are retried with backoff; what remains becomes a
`ChainError` (retryable when a new pod may do better)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from guideline_core.resource import FailureReason

from guideline_runner.backoff import with_backoff
from guideline_runner.errors import ChainError

if TYPE_CHECKING:  # imported only by a pod that calls the API (start-up time)
    import httpx

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS: Final = 30.0
RETRY_DELAYS_SECONDS: Final = (0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0)
_TRANSIENT_STATUS: Final = frozenset({408, 425, 429, 500, 502, 503, 504})
_CHUNK_BYTES: Final = 1024 * 1024
T = TypeVar("T")


class _TransientError(Exception):
    """An answer (or none) worth another try."""


class RunnerApi:
    """The API's runner endpoints for one job."""

    def __init__(
        self,
        base_url: str,
        token_file: str,
        event_id: str,
        *,
        retries: int = 4,
        delays: Sequence[float] = RETRY_DELAYS_SECONDS,
    ) -> None:
        import httpx

        self._client = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=REQUEST_TIMEOUT_SECONDS, follow_redirects=False
        )
        self._token_file = Path(token_file)
        self._path = f"/v1/runner/jobs/{event_id}"
        self._delays = tuple(delays[:retries])

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def _headers(self) -> dict[str, str]:
        try:
            token = self._token_file.read_text().strip()
        except OSError as exc:
            raise ChainError(
                FailureReason.INTERNAL,
                f"The runner's token for the API ({self._token_file}) is unreadable: "
                f"{exc.strerror or exc}",
                retryable=True,
            ) from None
        return {"Authorization": f"Bearer {token}"}

    def _retrying(self, action: str, call: Callable[[], T]) -> T:
        import httpx

        def judge(error: Exception, last: bool) -> str | ChainError:
            problem = str(error) or type(error).__name__
            if last:
                return ChainError(
                    FailureReason.INTERNAL,
                    f"The API did not answer to {action}: {problem}",
                    retryable=True,
                )
            return problem

        return with_backoff(
            call,
            action=action,
            retry_on=(httpx.TransportError, _TransientError),
            judge=judge,
            delays=self._delays,
            log=log,
            message="API call failed; retrying",
        )

    def _check(self, response: httpx.Response, action: str) -> None:
        if response.status_code < 300:
            return
        if response.status_code in _TRANSIENT_STATUS:
            raise _TransientError(f"{response.status_code} {response.reason_phrase}")
        try:
            body = response.json()
            detail = body.get("detail") or body.get("title") or ""
        except ValueError:
            detail = response.text[:200]
        raise ChainError(
            FailureReason.INTERNAL,
            f"The API refused to {action}: {response.status_code} {detail}".strip(),
            # 401 is an expired or not yet valid token: a new pod gets a new one.
            retryable=response.status_code == 401,
        )

    def document(self, max_bytes: int) -> bytes:
        """The job's document; more than `max_bytes` (the spec's size) is not read."""
        action = "send the job's document"

        def fetch() -> bytes:
            with self._client.stream("GET", f"{self._path}/document", headers=self._headers()) as r:
                if r.status_code >= 300:
                    r.read()
                self._check(r, action)
                data = bytearray()
                for chunk in r.iter_bytes(_CHUNK_BYTES):
                    data += chunk
                    if len(data) > max_bytes:
                        raise ChainError(
                            FailureReason.INVALID_INPUT,
                            f"The stored document is larger than documentRef.bytes ({max_bytes})",
                            retryable=False,
                        )
                return bytes(data)

        return self._retrying(action, fetch)

    def put_text(self, text: str, document: dict[str, Any]) -> None:
        """Store the extracted text and the document's metadata as the job's (idempotent)."""
        action = "store the extracted text"

        def put() -> None:
            response = self._client.put(
                f"{self._path}/text",
                json={"text": text, "document": document},
                headers=self._headers(),
            )
            self._check(response, action)

        self._retrying(action, put)
