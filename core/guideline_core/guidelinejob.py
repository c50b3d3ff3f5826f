"""The GuidelineJob's fields as the operator reads them: TypedDicts over the CRD schema in
crds/, and typed views of a body's parts (`metadata_of`, `spec_of`, `status_of`). The API
server validated a body against that schema before any handler sees it, so a view only
names the type of what is there (the same object, read-only as a kopf Body is); a key
misspelt in a reader is then a type error. Everything is optional (`total=False`): a
status is absent until the operator first writes one, and a newer CRD may add fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict, cast


class ObjectMeta(TypedDict, total=False):
    """The metadata the operator reads."""

    name: str
    namespace: str
    uid: str
    generation: int
    resourceVersion: str
    creationTimestamp: str
    deletionTimestamp: str
    labels: dict[str, str]
    annotations: dict[str, str]
    finalizers: list[str]


class KeyRef(TypedDict):
    """One key of a ConfigMap or Secret."""

    name: str
    key: str


class TextSource(TypedDict, total=False):
    """`spec.guidelineTextFrom`: exactly one of the two."""

    configMapKeyRef: KeyRef
    secretKeyRef: KeyRef


class DocumentRef(TypedDict):
    """`spec.documentRef`: the stored document an API submission made."""

    id: str
    sha256: str
    mediaType: str
    bytes: int


class GuidelineJobSpec(TypedDict, total=False):
    """`spec` (immutable): exactly one input, and the run's choices."""

    guidelineText: str
    guidelineTextFrom: TextSource
    documentRef: DocumentRef
    title: str
    model: str
    provider: str
    maxRetries: int
    supersedes: str


class Condition(TypedDict, total=False):
    """One entry of `status.conditions`."""

    type: str
    status: str
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: int


class GuidelineJobStatus(TypedDict, total=False):
    """`status`: the operator's fields and the runner's (docs/contracts.md, "Who writes
    which status field")."""

    phase: str
    eventId: str
    attempts: int
    jobName: str
    queuePosition: int
    startedAt: str
    completedAt: str
    error: dict[str, Any]
    result: dict[str, Any]
    progress: dict[str, int]
    conditions: list[Condition]
    observedGeneration: int
    retryRequests: int
    runnerError: dict[str, Any]


class GuidelineJob(TypedDict, total=False):
    """A GuidelineJob object."""

    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: GuidelineJobSpec
    status: GuidelineJobStatus


def metadata_of(body: Mapping[str, Any]) -> ObjectMeta:
    """A GuidelineJob's metadata ({} if absent)."""
    return cast(ObjectMeta, body.get("metadata") or {})


def spec_of(body: Mapping[str, Any]) -> GuidelineJobSpec:
    """A GuidelineJob's spec ({} if absent)."""
    return cast(GuidelineJobSpec, body.get("spec") or {})


def status_of(body: Mapping[str, Any]) -> GuidelineJobStatus:
    """A GuidelineJob's status ({} before the operator first writes one)."""
    return cast(GuidelineJobStatus, body.get("status") or {})


def as_guidelinejob(body: Mapping[str, Any]) -> GuidelineJob:
    """A GuidelineJob body (from kube-apiserver or kopf: validated against the CRD's
    schema already) as what it is."""
    return cast(GuidelineJob, body)
