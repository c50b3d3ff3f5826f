"""Kubernetes access shared by the components: loading credentials into an API client,
and building and reading GuidelineJob objects."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from guideline_core import resource as gj

if TYPE_CHECKING:  # the kubernetes package is imported only by those who make a client
    import urllib3
    from kubernetes import client

# Content type of a JSON merge patch (RFC 7386): objects merge, lists are replaced.
MERGE_PATCH: Final = "application/merge-patch+json"


def uses_service_account(kubeconfig: str | None = None) -> bool:
    """Whether a client takes the pod's ServiceAccount (in a pod, KUBERNETES_SERVICE_HOST
    set, and no explicit `kubeconfig`) rather than a kubeconfig."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not kubeconfig


def new_api_client(
    kubeconfig: str | None = None,
    *,
    pool_size: int | None = None,
    retries: urllib3.Retry | int | None = None,
) -> client.ApiClient:
    """An ApiClient with its own configuration (the global one is left alone): the
    in-cluster ServiceAccount when running in a pod (KUBERNETES_SERVICE_HOST set) and no
    `kubeconfig` is given, else that kubeconfig (default: `KUBECONFIG` or ~/.kube/config).

    `pool_size` sets the HTTP connection pool's size and `retries` urllib3's retries
    (both: the client's defaults when None). Raises kubernetes' ConfigException (or
    OSError) when there are no usable credentials."""
    from kubernetes import client, config

    cfg = client.Configuration()
    if uses_service_account(kubeconfig):
        config.load_incluster_config(client_configuration=cfg)
    else:
        config.load_kube_config(
            config_file=kubeconfig or os.environ.get("KUBECONFIG"),
            client_configuration=cfg,
            persist_config=False,
        )
    if retries is not None:
        cfg.retries = retries
    if pool_size is not None:
        cfg.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration=cfg)


def new_event_id() -> uuid.UUID:
    """A time-ordered UUID (version 7): sortable by creation time, so the primary-key
    index stays append-mostly, and known before the CR exists."""
    from uuid_utils.compat import uuid7

    return uuid7()


_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")


@dataclass(frozen=True)
class DocumentRef:
    """A document in the API's store, as a GuidelineJob's `spec.documentRef` names it."""

    id: uuid.UUID | str
    sha256: str
    media_type: str
    bytes: int

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> DocumentRef:
        """A `spec.documentRef` mapping (`id`, `sha256`, `mediaType`, `bytes`)."""
        return cls(
            id=str(spec["id"]),
            sha256=spec["sha256"],
            media_type=spec["mediaType"],
            bytes=int(spec["bytes"]),
        )

    def to_spec(self) -> dict[str, Any]:
        """`spec.documentRef`."""
        return {
            "id": str(self.id),
            "sha256": self.sha256,
            "mediaType": self.media_type,
            "bytes": self.bytes,
        }


def guideline_job_manifest(
    *,
    event_id: uuid.UUID,
    guideline_text: str | None = None,
    document_ref: DocumentRef | Mapping[str, Any] | None = None,
    title: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    max_retries: int | None = None,
    submitted_by: str | None = None,
    tenant: str | None = None,
    annotations: dict[str, str] | None = None,
    supersedes: uuid.UUID | str | None = None,
    review: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The GuidelineJob the API's dispatcher creates for a job, named after its event_id
    (so that creating it twice is recognised as the same object). `review` holds the
    job's own thresholds (`min_grounding`, `min_coverage`). Its input is exactly one of
    `guideline_text` (inline) and `document_ref` (a stored document, as a `DocumentRef` or
    its `spec.documentRef` mapping: the spec stays small)."""
    if (guideline_text is None) == (document_ref is None):
        raise ValueError("exactly one of guideline_text and document_ref is needed")
    if document_ref is None:
        spec: dict[str, Any] = {"guidelineText": guideline_text}
    else:
        ref = (
            document_ref
            if isinstance(document_ref, DocumentRef)
            else DocumentRef.from_spec(document_ref)
        )
        spec = {"documentRef": ref.to_spec()}
    thresholds = {
        camel: review[snake]
        for snake, camel in (("min_grounding", "minGrounding"), ("min_coverage", "minCoverage"))
        if review and review.get(snake) is not None
    }
    optional = {
        "title": title,
        "model": model,
        "provider": provider,
        "maxRetries": max_retries,
        "supersedes": str(supersedes) if supersedes else None,
        "review": thresholds or None,
    }
    spec.update({k: v for k, v in optional.items() if v is not None})
    labels = {gj.LABEL_EVENT_ID: str(event_id), gj.LABEL_PART_OF: gj.PART_OF}
    if tenant and _LABEL_VALUE.match(tenant):
        labels[gj.LABEL_TENANT] = tenant
    metadata: dict[str, Any] = {"name": gj.cr_name_for(event_id), "labels": labels}
    notes = dict(annotations or {})
    if submitted_by:
        notes[gj.ANNOTATION_SUBMITTED_BY] = submitted_by
    if notes:
        metadata["annotations"] = notes
    return {"apiVersion": gj.API_VERSION, "kind": gj.KIND, "metadata": metadata, "spec": spec}


def event_id_of(body: dict[str, Any]) -> str:
    """The event_id of a GuidelineJob: its label when the API made it, else (for one made
    by `kubectl apply`) its metadata.uid."""
    metadata = body.get("metadata") or {}
    labels = metadata.get("labels") or {}
    return str(labels.get(gj.LABEL_EVENT_ID) or metadata["uid"])
