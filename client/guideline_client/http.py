"""The REST API over HTTP for `guideline-client`: one `Api` object, the API key's lookup, and
the RFC 9457 problems turned into `ClientError`s."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from guideline_core import version

from guideline_client.follow import Follow, StreamRefusedError

DEFAULT_URL = "http://127.0.0.1:8000"
LOCAL_KEY_FILE = Path(".local") / "api-key"


class ClientError(Exception):
    """A request failed; str() is what to print. `retry_after` is set when the failure is
    transient (429, 503, connection lost) and a retry with the same Idempotency-Key is safe."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def api_key(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    if os.environ.get("GUIDELINE_API_KEY"):
        return os.environ["GUIDELINE_API_KEY"]
    if LOCAL_KEY_FILE.is_file():
        return LOCAL_KEY_FILE.read_text().strip() or None
    return None


@dataclass(frozen=True)
class Document:
    """A file to upload (or stdin's bytes, read once), opened afresh for each attempt."""

    name: str
    path: Path | None = None
    data: bytes | None = None

    @classmethod
    def of(cls, file: str) -> Document:
        if file == "-":
            return cls("stdin", data=sys.stdin.buffer.read())
        path = Path(file)
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise ClientError(f"cannot read {file}: {exc.strerror}") from exc
        return cls(path.name, path=path)

    def part(self) -> tuple[str, Any, str]:
        """The multipart `file` part (the API sniffs the type: sent as octet-stream)."""
        content = self.data if self.path is None else self.path.open("rb")
        return (self.name, content, "application/octet-stream")


class Api:
    """A thin HTTP client of the guideline-ingest API."""

    def __init__(self, url: str, api_key: str | None, timeout: float = 30.0):
        headers = {"User-Agent": f"guideline-client/{version()}"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request; raise ClientError with the API's error message on failure."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach {self.http.base_url}: {exc}", 1.0) from exc
        if response.status_code >= 400:
            raise _error_of(response)
        return response

    def _post_safely(
        self, path: str, idempotency_key: str, **content: Callable[[], Any] | Any
    ) -> Any:
        """POST, retrying transient failures (429, 503, a lost connection) with the same
        Idempotency-Key, so a retry never makes a second job. A callable `content` value
        is called for each attempt (files to open again)."""
        for attempt in range(5):
            try:
                fresh = {k: v() if callable(v) else v for k, v in content.items()}
                return self.request(
                    "POST", path, headers={"Idempotency-Key": idempotency_key}, **fresh
                ).json()
            except ClientError as exc:
                if exc.retry_after is None or attempt == 4:
                    raise
                time.sleep(min(exc.retry_after, 30.0))
        raise AssertionError("unreachable")

    def submit(self, body: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        """POST /jobs as JSON (safe to retry, see `_post_safely`)."""
        return self._post_safely("/v1/jobs", idempotency_key, json=body)

    def upload(self, doc: Document, fields: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        """POST /jobs as multipart: the document (any type: the API tells it by its
        content) and the submission fields (safe to retry)."""
        form = {k: str(v) for k, v in fields.items()}
        return self._post_safely(
            "/v1/jobs", idempotency_key, files=lambda: {"file": doc.part()}, data=form
        )

    def submit_batch(self, items: list[dict[str, Any]], idempotency_key: str) -> dict[str, Any]:
        """POST /jobs/batch (item i's key is `<idempotency_key>:<i>`, so it is safe to retry)."""
        return self._post_safely("/v1/jobs/batch", idempotency_key, json={"items": items})

    def upload_batch(
        self, docs: list[Document], items: list[dict[str, Any]], idempotency_key: str
    ) -> dict[str, Any]:
        """POST /jobs/batch as multipart: one `file` part per document, their fields in
        `items` (safe to retry, as submit_batch)."""
        return self._post_safely(
            "/v1/jobs/batch",
            idempotency_key,
            files=lambda: [("file", doc.part()) for doc in docs],
            data={"items": json.dumps(items)},
        )

    def get(self, event_id: str, attempts: int = 1) -> dict[str, Any]:
        """GET /jobs/{event_id}; with `attempts` > 1 transient failures (503, a restarting
        API) are retried."""
        for attempt in range(attempts):
            try:
                return self.request("GET", f"/v1/jobs/{event_id}").json()
            except ClientError as exc:
                if exc.retry_after is None or attempt == attempts - 1:
                    raise
                time.sleep(min(exc.retry_after, 5.0))
        raise AssertionError("unreachable")

    def wait(self, event_id: str, timeout: float) -> dict[str, Any]:
        """Follow the job's event stream until it is terminal (progress on stderr), then
        read it; TimeoutError (with the Progress) after `timeout` seconds."""
        try:
            Follow(self.http, event_id).run(timeout)
        except StreamRefusedError as exc:
            raise _error_of(exc.response) from None
        return self.get(event_id, attempts=10)


def _error_of(response: httpx.Response) -> ClientError:
    try:  # an RFC 9457 problem: `reason` (our code) and `detail`
        error = response.json()
        text = f"HTTP {response.status_code} {error['reason']}: {error['detail']}"
    except (ValueError, KeyError, TypeError):
        text = f"HTTP {response.status_code}: {response.text[:500]}"
    retry_after = None
    if response.status_code in (429, 503):
        try:
            retry_after = float(response.headers.get("Retry-After", "2"))
        except ValueError:
            retry_after = 2.0
    return ClientError(text, retry_after)


# ------------------------------------------------------------------------- formatting
