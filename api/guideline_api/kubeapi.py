"""The API's Kubernetes calls on GuidelineJobs (and the runner pods' tokens), each with a
bounded timeout, over the one client of `guideline_core.k8s`.

The API owns its own client (rather than the global configuration) so that one process
can serve several apps pointed at different clusters, which the tests rely on. Its four
errors are `guideline_core.k8s`'s, under the names the API's callers use; every other
failure (forbidden, an unknown resource type: the CRD is not installed) is, for the API,
Kubernetes being unavailable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import urllib3
from guideline_core.k8s import (
    AlreadyExistsError,
    Client,
    ConflictError,
    KubeError,
    NotFoundError,
    RejectedError,
    UnavailableError,
    paths,
)
from guideline_core.k8s import pooled as k8s_pooled

KubernetesUnavailableError = UnavailableError
KubernetesRejectedError = RejectedError
__all__ = [
    "AlreadyExistsError",
    "ConflictError",
    "KubeGateway",
    "KubernetesRejectedError",
    "KubernetesUnavailableError",
]
T = TypeVar("T")
_CRD_MISSING = "GuidelineJob API not found (is the CRD installed?)"


class KubeGateway:
    """GuidelineJob operations in one namespace."""

    def __init__(
        self,
        namespace: str,
        kubeconfig: str | None = None,
        timeout_seconds: float = 5.0,
        pool_size: int = 20,
    ):
        self.namespace = namespace
        self._kubeconfig = kubeconfig
        self._timeout = (min(timeout_seconds, 3.0), timeout_seconds)
        self._pool_size = pool_size
        self._client: Client | None = None
        self._lock = threading.Lock()

    def _api(self) -> Client:
        with self._lock:
            if self._client is None:
                self._client = k8s_pooled.connect(
                    self._kubeconfig,
                    timeout=self._timeout,
                    pool_size=self._pool_size,
                    # Connection errors are retried once, quickly; reads never (a POST
                    # that reached the server must not be sent twice).
                    retries=urllib3.Retry(total=1, connect=1, read=0, status=0, other=0),
                )
            return self._client

    def close(self) -> None:
        """Release the HTTP connection pool."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    @staticmethod
    def _call(what: str, call: Callable[[], T], not_found: str | None = None) -> T:
        """`call()`, its errors in the API's terms: a 404 becomes UnavailableError with
        `not_found` (default: the CRD is missing), any other failure but a conflict or a
        rejected object UnavailableError."""
        try:
            return call()
        except AlreadyExistsError as exc:
            raise AlreadyExistsError(f"{what}: already exists", status=exc.status) from exc
        except ConflictError as exc:
            raise ConflictError(f"{what}: conflict", status=exc.status) from exc
        except RejectedError as exc:
            raise RejectedError(f"{what}: {exc.message}", status=exc.status) from exc
        except NotFoundError as exc:
            raise UnavailableError(
                f"{not_found or _CRD_MISSING}: {exc.message}", status=exc.status
            ) from exc
        except KubeError as exc:
            answer = f"HTTP {exc.status} {exc.message}" if exc.status else exc.message
            raise UnavailableError(f"{what} failed: {answer}".strip(), status=exc.status) from exc

    def ping(self) -> None:
        """Raise KubernetesUnavailableError unless GuidelineJobs can be listed (API server
        reachable, CRD installed, permission granted)."""
        api = self._api()
        path = paths.guidelinejobs(self.namespace)
        self._call("listing GuidelineJobs", lambda: api.request("GET", path, query=[("limit", 1)]))

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create a GuidelineJob; returns the created object."""
        api = self._api()
        path = paths.guidelinejobs(self.namespace)
        return self._call("creating the GuidelineJob", lambda: api.create(path, manifest))

    def get(self, name: str) -> dict[str, Any] | None:
        """The GuidelineJob `name`, or None if there is none."""
        api = self._api()
        path = paths.guidelinejobs(self.namespace, name)
        return self._call("reading the GuidelineJob", lambda: api.get_or_none(path))

    def patch_annotations(
        self, name: str, annotations: dict[str, str | None], resource_version: str | None = None
    ) -> dict[str, Any]:
        """Merge-patch annotations (None removes one). With `resource_version` the patch is
        conditional and a concurrent change raises ConflictError."""
        metadata: dict[str, Any] = {"annotations": annotations}
        if resource_version:
            metadata["resourceVersion"] = resource_version
        api = self._api()
        path = paths.guidelinejobs(self.namespace, name)
        try:
            return self._call(
                "annotating the GuidelineJob",
                lambda: api.merge_patch(path, {"metadata": metadata}),
            )
        except UnavailableError as exc:
            if isinstance(exc.__cause__, NotFoundError):  # deleted meanwhile
                raise ConflictError(f"GuidelineJob {name} disappeared", status=404) from exc
            raise

    def token_review(self, token: str, audiences: list[str]) -> dict[str, Any]:
        """The `status` of a TokenReview (authentication.k8s.io/v1) of `token` for
        `audiences`: who the token names, if the API server authenticates it."""
        api = self._api()
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": audiences},
        }
        review = self._call(
            "reviewing a runner token", lambda: api.create(paths.TOKEN_REVIEWS, body)
        )
        return review.get("status") or {}

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The pod `name` in `namespace` (as JSON), or None if there is none."""
        api = self._api()
        path = paths.pods(namespace, name)
        return self._call(
            "reading a runner pod", lambda: api.get_or_none(path), f"reading pod {name}"
        )
