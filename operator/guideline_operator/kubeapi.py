"""A small synchronous Kubernetes client speaking plain JSON dicts.

The handlers run in kopf's thread pool and reason about objects as the API serves them
(the same dict shape kopf hands to handlers), so this wraps the official client's
transport (authentication, TLS, connection pool) without its typed models.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from guideline_core import resource as gj
from guideline_core.kube import MERGE_PATCH, new_api_client
from kubernetes import client
from kubernetes.client.exceptions import ApiException


class Kube:
    """JSON-in, JSON-out access to the few resources the operator uses (through
    `api_client`, default: `guideline_core.kube.new_api_client()`)."""

    def __init__(
        self,
        api_client: client.ApiClient | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
    ):
        self.api = api_client or new_api_client()
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One API call; raises ApiException (status, body) for an error status."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        params = self.api.param_serialize(
            method,
            path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*params, _request_timeout=self.timeout)
        response.read()
        if not 200 <= response.status <= 299:
            raise ApiException(
                status=response.status, reason=response.reason, body=(response.data or b"").decode()
            )
        return json.loads(response.data) if response.data else {}

    # --- paths -------------------------------------------------------------------------

    @staticmethod
    def cr_path(namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        """Path of GuidelineJobs in a namespace, or of one (and a subresource)."""
        path = f"/apis/{gj.GROUP}/{gj.VERSION}/namespaces/{quote(namespace)}/{gj.PLURAL}"
        if name:
            path += f"/{quote(name)}"
        if subresource:
            path += f"/{subresource}"
        return path

    @staticmethod
    def jobs_path(namespace: str | None, name: str | None = None) -> str:
        """Path of batch/v1 Jobs (all namespaces if `namespace` is None)."""
        path = (
            f"/apis/batch/v1/namespaces/{quote(namespace)}/jobs"
            if namespace
            else "/apis/batch/v1/jobs"
        )
        return f"{path}/{quote(name)}" if name else path

    @staticmethod
    def pods_path(namespace: str | None) -> str:
        """Path of pods (all namespaces if `namespace` is None)."""
        return f"/api/v1/namespaces/{quote(namespace)}/pods" if namespace else "/api/v1/pods"

    # --- reads ---------------------------------------------------------------------------

    def _list(
        self, path: str, selector: str | None = None, limit: int = 500
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            query: list[tuple[str, Any]] = [("limit", limit)]
            if selector:
                query.append(("labelSelector", selector))
            if token:
                query.append(("continue", token))
            page = self.request("GET", path, query=query)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items

    def get_cr(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A GuidelineJob, or None if it does not exist."""
        try:
            return self.request("GET", self.cr_path(namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        """The labels of a namespace (raises ApiException, e.g. 403 without RBAC)."""
        body = self.request("GET", f"/api/v1/namespaces/{quote(namespace)}")
        return dict((body.get("metadata") or {}).get("labels") or {})

    def list_crs(self, namespace: str | None) -> list[dict[str, Any]]:
        """Every GuidelineJob in a namespace (all namespaces if None), 50 per page."""
        path = (
            self.cr_path(namespace) if namespace else f"/apis/{gj.GROUP}/{gj.VERSION}/{gj.PLURAL}"
        )
        return self._list(path, limit=50)

    def list_jobs(self, namespace: str | None, selector: str) -> list[dict[str, Any]]:
        """Jobs matching a label selector."""
        return self._list(self.jobs_path(namespace), selector)

    def list_pods(self, namespace: str | None, selector: str) -> list[dict[str, Any]]:
        """Pods matching a label selector."""
        return self._list(self.pods_path(namespace), selector)

    # --- writes --------------------------------------------------------------------------

    def patch_cr(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch a GuidelineJob's metadata (labels, annotations)."""
        return self.request(
            "PATCH", self.cr_path(namespace, name), body=patch, content_type=MERGE_PATCH
        )

    def patch_cr_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None
    ) -> dict[str, Any]:
        """Merge-patch fields of a GuidelineJob's status subresource; with
        `resource_version` the write fails with 409 if the object changed since."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return self.request(
            "PATCH", self.cr_path(namespace, name, "status"), body=body, content_type=MERGE_PATCH
        )

    def delete_cr(self, namespace: str, name: str) -> bool:
        """Delete a GuidelineJob (its Jobs and pods follow by garbage collection)."""
        return self._delete(self.cr_path(namespace, name))

    def create_job(self, namespace: str, job: dict[str, Any]) -> bool:
        """Create a Job; False if one with that name already exists (idempotent)."""
        try:
            self.request("POST", self.jobs_path(namespace), body=job)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def delete_job(self, namespace: str, name: str) -> bool:
        """Delete a Job and, in the background, its pods (the batch API's default for
        API clients would orphan them)."""
        return self._delete(self.jobs_path(namespace, name))

    def _delete(self, path: str) -> bool:
        try:
            self.request(
                "DELETE",
                path,
                body={
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "propagationPolicy": "Background",
                },
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def ensure_peering(self, namespace: str | None, name: str) -> bool:
        """Create kopf's (Cluster)KopfPeering object `name` if missing; True if created."""
        plural = "kopfpeerings" if namespace else "clusterkopfpeerings"
        path = (
            f"/apis/kopf.dev/v1/namespaces/{quote(namespace)}/{plural}"
            if namespace
            else f"/apis/kopf.dev/v1/{plural}"
        )
        body = {
            "apiVersion": "kopf.dev/v1",
            "kind": "KopfPeering" if namespace else "ClusterKopfPeering",
            "metadata": {"name": name},
        }
        try:
            self.request("POST", path, body=body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True
