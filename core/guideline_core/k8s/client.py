"""The one Kubernetes client of the components: plain dicts in, plain dicts out (objects
as kube-apiserver serves them, the shape kopf hands to handlers), errors from
`guideline_core.k8s.errors`, paths from `guideline_core.k8s.paths`.

It runs over a transport, an `HttpTransport` with its own HTTP exchange:
`stdlib.StdlibTransport` (the runner pod: no `kubernetes` import, a third of its start-up
budget) or `pooled.PooledTransport` (the API and the operator: the `kubernetes` package's
authentication, TLS and connection pool).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any, Final, NamedTuple, Protocol

from guideline_core.k8s.errors import AlreadyExistsError, NotFoundError, error_for

# Content type of a JSON merge patch (RFC 7386): objects merge, lists are replaced.
MERGE_PATCH: Final = "application/merge-patch+json"
Query = list[tuple[str, Any]]


class Transport(Protocol):
    """One HTTP exchange with kube-apiserver; raises a `KubeError` for anything but a 2xx
    answer (`UnavailableError` when there was no answer)."""

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """The answer's JSON body ({} when empty)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class Answer(NamedTuple):
    """kube-apiserver's answer to one exchange, whatever its status."""

    status: int
    reason: str
    body: bytes | str


class HttpTransport(ABC):
    """A `Transport` over one HTTP exchange (`_exchange`, a transport's own); what every
    transport does around it is here: the JSON it asks for and sends, the JSON it returns
    and the error for an answer that is not a 2xx."""

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """The answer's JSON body ({} when empty)."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        answer = self._exchange(method, path, query or [], body, headers)
        if not 200 <= answer.status <= 299:
            raise error_for(answer.status, answer.body, answer.reason)
        return json.loads(answer.body) if answer.body else {}

    @abstractmethod
    def _exchange(
        self, method: str, path: str, query: Query, body: Any, headers: dict[str, str]
    ) -> Answer:
        """Send the request (`body` as JSON, if any); its answer, or UnavailableError when
        there was none."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


class Client:
    """Reads and writes of Kubernetes objects over `transport`."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One call, for what the verbs below do not say."""
        return self.transport.request(
            method, path, query=query, body=body, content_type=content_type
        )

    def get(self, path: str) -> dict[str, Any]:
        """The object at `path` (NotFoundError if there is none)."""
        return self.request("GET", path)

    def get_or_none(self, path: str) -> dict[str, Any] | None:
        """The object at `path`, or None if it does not exist. A 404 that is not about the
        object (the resource type is unknown: a CRD not installed) still raises."""
        try:
            return self.get(path)
        except NotFoundError as exc:
            if exc.reason == "NotFound":
                return None
            raise

    def list_items(
        self, path: str, selector: str | None = None, limit: int = 500
    ) -> list[dict[str, Any]]:
        """Every item of the collection at `path` (matching a label `selector`), read
        `limit` per page."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            query: Query = [("limit", limit)]
            if selector:
                query.append(("labelSelector", selector))
            if token:
                query.append(("continue", token))
            page = self.request("GET", path, query=query)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create `body` in the collection at `path`; the created object
        (AlreadyExistsError if one of that name exists)."""
        return self.request("POST", path, body=body)

    def create_if_missing(self, path: str, body: dict[str, Any]) -> bool:
        """Create `body`; False if one of that name exists already (idempotent)."""
        try:
            self.create(path, body)
        except AlreadyExistsError:
            return False
        return True

    def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the object at `path`; the object as it is now. A
        `metadata.resourceVersion` in `patch` makes it conditional (ConflictError)."""
        return self.request("PATCH", path, body=patch, content_type=MERGE_PATCH)

    def delete(self, path: str) -> bool:
        """Delete the object at `path`, its dependents in the background (the batch API's
        default for API clients would orphan a Job's pods); False if it was gone."""
        options = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        try:
            self.request("DELETE", path, body=options)
        except NotFoundError:
            return False
        return True

    def close(self) -> None:
        """Release the transport's connections."""
        self.transport.close()
