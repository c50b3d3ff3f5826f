"""The GuidelineJob custom resource: its names, labels, finalizer, phases and limits, and
the manifest the API creates for a job, in one place.

The CRD manifest in `crds/` is the schema; this module holds the constants the Python
components use to talk about it. A test checks the two agree.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

GROUP: Final = "ingest.guidelines.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "GuidelineJob"
PLURAL: Final = "guidelinejobs"
SINGULAR: Final = "guidelinejob"
SHORT_NAME: Final = "gj"
GENERATE_NAME: Final = "gj-"

# Labels carried by the CR, its Job and the Job's pods.
LABEL_EVENT_ID: Final = f"{GROUP}/event-id"
LABEL_JOB_NAME: Final = f"{GROUP}/guidelinejob"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
PART_OF: Final = "guideline-ingest"
MANAGED_BY_OPERATOR: Final = "guideline-operator"
RUNNER_COMPONENT: Final = "runner"
# Annotation on a CR naming who submitted it (the API key's id) for the audit trail.
ANNOTATION_SUBMITTED_BY: Final = f"{GROUP}/submitted-by"
# The tenant a job belongs to: a label on the CRs the API creates (for `kubectl get -l`; the
# operator takes the tenant from the row, never from this label), and the namespace label
# that names the tenant of GuidelineJobs applied with kubectl in that namespace.
LABEL_TENANT: Final = f"{GROUP}/tenant"
# Who created a GuidelineJob, as kube-apiserver authenticated the request (set by an
# admission policy, not by the user).
ANNOTATION_CREATED_BY: Final = f"{GROUP}/created-by"
# Prefix of the names of GuidelineJobs the API creates: `gj-<event_id>`, so that a repeated
# create of the same job is recognised as the same object (409 AlreadyExists).
CR_NAME_PREFIX: Final = "gj-"
# The operator's finalizer: kopf adds it, so a deleted CR's job is recorded before it goes;
# the chart's pre-delete hook (guideline-uninstall) removes it when no operator will.
FINALIZER: Final = f"{GROUP}/operator"

# Limits enforced by the CRD schema and, identically, by the API.
MAX_GUIDELINE_CHARS: Final = 100_000
MAX_MODEL_CHARS: Final = 128
MAX_TITLE_CHARS: Final = 200
MAX_RETRIES_LIMIT: Final = 10


def cr_name_for(event_id: object) -> str:
    """The name of the GuidelineJob the API creates for a job (derived, not generated)."""
    return f"{CR_NAME_PREFIX}{event_id}"


class Phase(StrEnum):
    """Lifecycle of a job: PENDING -> PROCESSING -> COMPLETED | FAILED (| CANCELLED)."""

    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        """True for a phase a job never leaves on its own."""
        return self in TERMINAL_PHASES


TERMINAL_PHASES: Final = frozenset({Phase.COMPLETED, Phase.FAILED, Phase.CANCELLED})


class Provider(StrEnum):
    """Where the runner gets its summary and checklist from."""

    OPENAI = "openai"
    EXTRACTIVE = "extractive"


class ConditionType(StrEnum):
    """The standard conditions the operator keeps on a GuidelineJob."""

    ACCEPTED = "Accepted"
    QUEUED = "Queued"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class RunnerExit:
    """Exit codes of the runner: a contract with the Job's podFailurePolicy."""

    OK: Final = 0
    RETRYABLE: Final = 1
    DO_NOT_RETRY: Final = 42


class FailureReason(StrEnum):
    """Machine-readable reasons stored in `status.error.reason` and the database."""

    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    TIMEOUT = "Timeout"
    LLM_ERROR = "LLMError"
    LLM_REJECTED = "LLMRejected"
    INVALID_OUTPUT = "InvalidOutput"
    INVALID_INPUT = "InvalidInput"
    CANCELLED = "Cancelled"
    INTERNAL = "InternalError"
    # A document that cannot become a job's text (the names, hence snake_case).
    NO_TEXT_LAYER = "no_text_layer"
    DOCUMENT_UNREADABLE = "document_unreadable"
    DOCUMENT_TOO_LONG = "document_too_long"


# Requests from the API to the operator, carried as annotations because spec is immutable.
# Cancel: any non-empty value (the request time). Retry: a counter the operator compares
# with status.retryRequests; a larger value on a FAILED or CANCELLED job starts a new attempt.
ANNOTATION_CANCEL_REQUESTED: Final = f"{GROUP}/cancel-requested"
ANNOTATION_RETRY_REQUESTED: Final = f"{GROUP}/retry-requested"

# Environment the operator gives each runner pod (besides the ConfigMap and Secret).
ENV_JOB_NAME: Final = "GUIDELINE_JOB_NAME"
ENV_NAMESPACE: Final = "GUIDELINE_NAMESPACE"
ENV_EVENT_ID: Final = "GUIDELINE_EVENT_ID"
# The job's tenant (from its row, never from a label): the runner's chunk cache key.
ENV_TENANT: Final = "GUIDELINE_TENANT"
ENV_TERMINATION_MESSAGE_PATH: Final = "GUIDELINE_TERMINATION_MESSAGE_PATH"
ENV_OPENAI_API_KEY: Final = "OPENAI_API_KEY"
# The runner's optional per-chunk summary cache: its libpq URL, from a Secret's key.
ENV_CACHE_DATABASE_URL: Final = "GUIDELINE_CACHE_DATABASE_URL"
CACHE_SECRET_KEY: Final = "database-url"
# The runner's way to the API (a documentRef job's document, the extracted text): the base
# URL, and the projected ServiceAccount token (audience: the operator's
# runner_token_audience) the operator mounts read-only in every runner pod.
ENV_API_URL: Final = "GUIDELINE_API_URL"
ENV_RUNNER_TOKEN_FILE: Final = "GUIDELINE_RUNNER_TOKEN_FILE"
RUNNER_TOKEN_DIR: Final = "/var/run/secrets/guideline-ingest/runner"
RUNNER_TOKEN_PATH: Final = f"{RUNNER_TOKEN_DIR}/token"
RUNNER_TOKEN_EXPIRATION_SECONDS: Final = 600
# A guidelineTextFrom job's input: the one key of the ConfigMap or Secret, mounted read-only.
ENV_INPUT_FILE: Final = "GUIDELINE_INPUT_FILE"
INPUT_DIR: Final = "/var/run/guideline-ingest/input"


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
    labels = {LABEL_EVENT_ID: str(event_id), LABEL_PART_OF: PART_OF}
    if tenant and _LABEL_VALUE.match(tenant):
        labels[LABEL_TENANT] = tenant
    metadata: dict[str, Any] = {"name": cr_name_for(event_id), "labels": labels}
    notes = dict(annotations or {})
    if submitted_by:
        notes[ANNOTATION_SUBMITTED_BY] = submitted_by
    if notes:
        metadata["annotations"] = notes
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}


def event_id_of(body: dict[str, Any]) -> str:
    """The event_id of a GuidelineJob: its label when the API made it, else (for one made
    by `kubectl apply`) its metadata.uid."""
    metadata = body.get("metadata") or {}
    labels = metadata.get("labels") or {}
    return str(labels.get(LABEL_EVENT_ID) or metadata["uid"])
