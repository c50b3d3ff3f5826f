"""The API's Kubernetes calls on GuidelineJobs, each with a bounded timeout.

The API owns its own ApiClient (rather than the global configuration) so that one process
can serve several apps pointed at different clusters, which the tests rely on.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import urllib3
from guideline_core import resource as gj
from guideline_core.kube import new_api_client
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

log = logging.getLogger(__name__)


class KubernetesUnavailableError(RuntimeError):
    """The Kubernetes API could not be reached or refused to serve the request."""


class KubernetesRejectedError(RuntimeError):
    """The Kubernetes API refused the object itself (e.g. schema validation, 422)."""


class ConflictError(RuntimeError):
    """An optimistic-concurrency precondition (resourceVersion) failed."""


class AlreadyExistsError(ConflictError):
    """A GuidelineJob of that name exists already (409 AlreadyExists on create)."""


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
        self._client: client.ApiClient | None = None
        self._lock = threading.Lock()

    def _api(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self._api_client())

    def _api_client(self) -> client.ApiClient:
        with self._lock:
            if self._client is None:
                try:
                    self._client = new_api_client(
                        self._kubeconfig,
                        pool_size=self._pool_size,
                        # Connection errors are retried once, quickly; reads never (a POST
                        # that reached the server must not be sent twice).
                        retries=urllib3.Retry(total=1, connect=1, read=0, status=0, other=0),
                    )
                except (ConfigException, OSError) as exc:
                    raise KubernetesUnavailableError(f"no Kubernetes configuration: {exc}") from exc
            return self._client

    def close(self) -> None:
        """Release the HTTP connection pool."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, _request_timeout=self._timeout, **kwargs)
        except ApiException as exc:
            if exc.status == 409 and _api_reason(exc) == "AlreadyExists":
                raise AlreadyExistsError(f"{what}: already exists") from exc
            if exc.status == 409:
                raise ConflictError(f"{what}: conflict") from exc
            if exc.status in (400, 422):
                raise KubernetesRejectedError(f"{what}: {_api_message(exc)}") from exc
            if exc.status == 404:
                raise
            raise KubernetesUnavailableError(
                f"{what} failed: HTTP {exc.status} {_api_message(exc)}".strip()
            ) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubernetesUnavailableError(f"{what} failed: {_short(exc)}") from exc

    def ping(self) -> None:
        """Raise KubernetesUnavailableError unless GuidelineJobs can be listed (API server
        reachable, CRD installed, permission granted)."""
        api = self._api()
        try:
            self._call(
                "listing GuidelineJobs",
                api.list_namespaced_custom_object,
                gj.GROUP,
                gj.VERSION,
                self.namespace,
                gj.PLURAL,
                limit=1,
            )
        except ApiException as exc:
            raise KubernetesUnavailableError(
                f"GuidelineJob API not found (is the CRD installed?): {_api_message(exc)}"
            ) from exc

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create a GuidelineJob; returns the created object."""
        api = self._api()
        try:
            return self._call(
                "creating the GuidelineJob",
                api.create_namespaced_custom_object,
                gj.GROUP,
                gj.VERSION,
                self.namespace,
                gj.PLURAL,
                manifest,
            )
        except ApiException as exc:  # 404: the CRD is not installed
            raise KubernetesUnavailableError(
                f"GuidelineJob API not found (is the CRD installed?): {_api_message(exc)}"
            ) from exc

    def get(self, name: str) -> dict[str, Any] | None:
        """The GuidelineJob `name`, or None if there is none."""
        api = self._api()
        try:
            return self._call(
                "reading the GuidelineJob",
                api.get_namespaced_custom_object,
                gj.GROUP,
                gj.VERSION,
                self.namespace,
                gj.PLURAL,
                name,
            )
        except ApiException as exc:
            if exc.status == 404 and _api_reason(exc) == "NotFound":
                return None
            raise KubernetesUnavailableError(
                f"GuidelineJob API not found (is the CRD installed?): {_api_message(exc)}"
            ) from exc

    def patch_annotations(
        self, name: str, annotations: dict[str, str | None], resource_version: str | None = None
    ) -> dict[str, Any]:
        """Merge-patch annotations (None removes one). With `resource_version` the patch is
        conditional and a concurrent change raises ConflictError."""
        metadata: dict[str, Any] = {"annotations": annotations}
        if resource_version:
            metadata["resourceVersion"] = resource_version
        api = self._api()
        try:
            return self._call(
                "annotating the GuidelineJob",
                api.patch_namespaced_custom_object,
                gj.GROUP,
                gj.VERSION,
                self.namespace,
                gj.PLURAL,
                name,
                {"metadata": metadata},
            )
        except ApiException as exc:  # 404: deleted meanwhile
            raise ConflictError(f"GuidelineJob {name} disappeared") from exc

    def token_review(self, token: str, audiences: list[str]) -> dict[str, Any]:
        """The `status` of a TokenReview (authentication.k8s.io/v1) of `token` for
        `audiences`: who the token names, if the API server authenticates it."""
        api = client.AuthenticationV1Api(self._api_client())
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": audiences},
        }
        response = self._call(
            "reviewing a runner token", api.create_token_review, body, _preload_content=False
        )
        return json.loads(response.data).get("status") or {}

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The pod `name` in `namespace` (as JSON), or None if there is none."""
        api = client.CoreV1Api(self._api_client())
        try:
            response = self._call(
                "reading a runner pod",
                api.read_namespaced_pod,
                name,
                namespace,
                _preload_content=False,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise KubernetesUnavailableError(f"reading pod {name}: {_api_message(exc)}") from exc
        return json.loads(response.data)


def _api_reason(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("reason") or "")
    except (ValueError, AttributeError):
        return ""


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason or "")
    except (ValueError, AttributeError):
        return str(exc.reason or "")


def _short(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc)[:300]
