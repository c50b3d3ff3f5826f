"""The operator's Kubernetes calls, over the one client of `guideline_core.k8s` (dicts in,
dicts out: the handlers reason about objects as the API serves them, the shape kopf hands
them). Errors are `guideline_core.k8s` errors."""

from __future__ import annotations

from typing import Any

from guideline_core.guidelinejob import GuidelineJob, as_guidelinejob
from guideline_core.k8s import Client, ConflictError, NotFoundError, paths
from guideline_core.k8s import pooled as k8s_pooled


class Kube:
    """The few resources the operator uses, through `client` (default: the pooled
    transport with `guideline_core.k8s.credentials.new_api_client()`'s credentials)."""

    def __init__(self, client: Client | None = None) -> None:
        self.client = client or k8s_pooled.connect()

    # --- reads ---------------------------------------------------------------------------

    def get_cr(self, namespace: str, name: str) -> GuidelineJob | None:
        """A GuidelineJob, or None if it does not exist."""
        try:
            return as_guidelinejob(self.client.get(paths.guidelinejobs(namespace, name)))
        except NotFoundError:
            return None

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        """The labels of a namespace (ForbiddenError without RBAC)."""
        body = self.client.get(paths.namespace(namespace))
        return dict((body.get("metadata") or {}).get("labels") or {})

    def list_crs(self, namespace: str | None) -> list[GuidelineJob]:
        """Every GuidelineJob in a namespace (all namespaces if None), 50 per page."""
        items = self.client.list_items(paths.guidelinejobs(namespace), limit=50)
        return [as_guidelinejob(item) for item in items]

    def list_jobs(self, namespace: str | None, selector: str) -> list[dict[str, Any]]:
        """Jobs matching a label selector."""
        return self.client.list_items(paths.jobs(namespace), selector)

    def list_pods(self, namespace: str | None, selector: str) -> list[dict[str, Any]]:
        """Pods matching a label selector."""
        return self.client.list_items(paths.pods(namespace), selector)

    # --- writes --------------------------------------------------------------------------

    def patch_cr(self, namespace: str, name: str, patch: dict[str, Any]) -> GuidelineJob:
        """Merge-patch a GuidelineJob's metadata (labels, annotations)."""
        return as_guidelinejob(self.client.merge_patch(paths.guidelinejobs(namespace, name), patch))

    def patch_cr_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None
    ) -> GuidelineJob:
        """Merge-patch fields of a GuidelineJob's status subresource; with
        `resource_version` the write fails with ConflictError if the object changed since."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        path = paths.guidelinejobs(namespace, name, "status")
        return as_guidelinejob(self.client.merge_patch(path, body))

    def delete_cr(self, namespace: str, name: str) -> bool:
        """Delete a GuidelineJob (its Jobs and pods follow by garbage collection)."""
        return self.client.delete(paths.guidelinejobs(namespace, name))

    def create_job(self, namespace: str, job: dict[str, Any]) -> bool:
        """Create a Job; False if one with that name already exists (idempotent)."""
        try:
            self.client.create(paths.jobs(namespace), job)
        except ConflictError:
            return False
        return True

    def delete_job(self, namespace: str, name: str) -> bool:
        """Delete a Job and, in the background, its pods (the batch API's default for
        API clients would orphan them)."""
        return self.client.delete(paths.jobs(namespace, name))

    def ensure_peering(self, namespace: str | None, name: str) -> bool:
        """Create kopf's (Cluster)KopfPeering object `name` if missing; True if created."""
        plural = "kopfpeerings" if namespace else "clusterkopfpeerings"
        body = {
            "apiVersion": "kopf.dev/v1",
            "kind": "KopfPeering" if namespace else "ClusterKopfPeering",
            "metadata": {"name": name},
        }
        try:
            self.client.create(paths.path("kopf.dev/v1", plural, namespace), body)
        except ConflictError:
            return False
        return True
