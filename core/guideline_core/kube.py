"""Kubernetes access shared by the components: loading credentials, and building and
reading GuidelineJob objects."""

from __future__ import annotations

import os
import uuid
from typing import Any

from kubernetes import client, config

from guideline_core import resource as gj


def load_config() -> None:
    """Use the in-cluster ServiceAccount when running in a pod, else the kubeconfig
    (`KUBECONFIG` or ~/.kube/config)."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
    else:
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))


def custom_objects() -> client.CustomObjectsApi:
    """A CustomObjectsApi on the loaded configuration."""
    return client.CustomObjectsApi()


def new_event_id() -> uuid.UUID:
    """A time-ordered UUID (version 7): sortable by creation time, so the primary-key
    index stays append-mostly, and known before the CR exists."""
    from uuid_utils.compat import uuid7

    return uuid7()


def guideline_job_manifest(
    *,
    event_id: uuid.UUID,
    guideline_text: str,
    title: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    max_retries: int | None = None,
    submitted_by: str | None = None,
) -> dict[str, Any]:
    """The GuidelineJob body the API creates for a submission (named by generateName)."""
    spec: dict[str, Any] = {"guidelineText": guideline_text}
    optional = {"title": title, "model": model, "provider": provider, "maxRetries": max_retries}
    spec.update({k: v for k, v in optional.items() if v is not None})
    metadata: dict[str, Any] = {
        "generateName": gj.GENERATE_NAME,
        "labels": {gj.LABEL_EVENT_ID: str(event_id), gj.LABEL_PART_OF: gj.PART_OF},
    }
    if submitted_by:
        metadata["annotations"] = {gj.ANNOTATION_SUBMITTED_BY: submitted_by}
    return {"apiVersion": gj.API_VERSION, "kind": gj.KIND, "metadata": metadata, "spec": spec}


def event_id_of(body: dict[str, Any]) -> str:
    """The event_id of a GuidelineJob: its label when the API made it, else (for one made
    by `kubectl apply`) its metadata.uid."""
    metadata = body.get("metadata") or {}
    labels = metadata.get("labels") or {}
    return labels.get(gj.LABEL_EVENT_ID) or metadata["uid"]
