"""The batch/v1 Job that runs one attempt series ("run") of a GuidelineJob: pure functions.

The manifest follows docs/contracts.md ("The Job"): named `<cr>-<hash of uid and run>`
(a fixed-length suffix, so no two GuidelineJobs' Jobs can share a name), owned by the
GuidelineJob (`kopf.adopt`), labelled with the event_id on the Job and its pods (and only
with the CR labels `settings.propagated_labels` allows), and with a pod that meets the
`restricted` Pod Security Standard. Nothing here talks to the cluster; `build_job` is unit-tested.

Time limits, from the inside out: each LLM call has the runner's request timeout and the
SDK's own retries (exponential backoff, honouring Retry-After); one attempt (pod) is bounded
by the runner's soft timeout (`GUIDELINE_SOFT_TIMEOUT_SECONDS`, default 240 s, grown for a
long guideline), after which
it exits 42 (`Timeout`) and the podFailurePolicy fails the Job without a retry; the whole Job,
every attempt and the Job controller's pod backoff between them (10 s, 20 s, 40 s, ...)
included, is bounded by `activeDeadlineSeconds` (default 300 s, grown alike: `hard_deadline`)
-> `DeadlineExceeded`. So
retryable failures only get the retries that fit in the hard limit: the worst case is
min(activeDeadlineSeconds, (backoffLimit + 1) x soft timeout + backoff delays).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import kopf
from guideline_core import resource as gj
from guideline_core import tracing
from guideline_core.settings import OperatorSettings
from guideline_core.splitting import time_limit

from guideline_operator import podtemplate

RUNNER_CONTAINER: Final = "runner"
KUEUE_QUEUE_LABEL: Final = "kueue.x-k8s.io/queue-name"
# Annotations on the Job (and its pods) that let the operator rebuild its view after a
# restart without keeping anything in memory.
ANNOTATION_CR_NAME: Final = f"{gj.GROUP}/guidelinejob-name"
ANNOTATION_RUN: Final = f"{gj.GROUP}/run"
ANNOTATION_ATTEMPTS_BEFORE: Final = f"{gj.GROUP}/attempts-before"
ANNOTATION_QUEUED_AT: Final = f"{gj.GROUP}/queued-at"
TERMINATION_MESSAGE_PATH: Final = "/dev/termination-log"
RUNNER_UID: Final = 10001
MAX_NAME: Final = 63  # a label value's limit.
# A Job's pods are named `<job>-<5 random>` from generateName `<job>-`, which the API server
# truncates beyond 58 characters: with Job names of at most 57 the pod name always starts
# with the whole Job name (the runner's status admission policy relies on it).
MAX_JOB_NAME: Final = 57
JOB_SUFFIX_CHARS: Final = 10
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class JobRequest:
    """Everything about one GuidelineJob run that the Job manifest depends on."""

    cr_name: str
    cr_uid: str
    namespace: str
    event_id: str
    run: int = 0
    max_retries: int | None = None
    attempts_before: int = 0
    queued_at: datetime | None = None
    cr_labels: tuple[tuple[str, str], ...] = ()  # already filtered by `allowed_labels`
    trace_context: tuple[tuple[str, str], ...] = ()  # W3C carrier the runner continues
    tenant: str | None = None  # from the job's row: the runner's chunk cache key
    rounds: int = 2  # rounds of LLM calls the text implies (splitting.planned_rounds)
    text_from: TextFrom | None = None  # spec.guidelineTextFrom: the key the pod mounts


@dataclass(frozen=True)
class TextFrom:
    """The ConfigMap or Secret key of `spec.guidelineTextFrom`."""

    kind: str  # "configMapKeyRef" or "secretKeyRef"
    name: str
    key: str

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> TextFrom | None:
        """The key a spec names, or None (inline text or a documentRef)."""
        ref = spec.get("guidelineTextFrom") or {}
        for kind in ("configMapKeyRef", "secretKeyRef"):
            if isinstance(ref.get(kind), Mapping):
                return cls(kind, str(ref[kind]["name"]), str(ref[kind]["key"]))
        return None

    @property
    def file_name(self) -> str:
        """The mounted file's name: fixed, as a key may be any `[-._a-zA-Z0-9]+`
        (`..` included), which must not become a path."""
        return "guideline"


def hard_deadline(rounds: int, settings: OperatorSettings) -> int:
    """A Job's `activeDeadlineSeconds`: `active_deadline_seconds`, plus
    `active_deadline_per_round_seconds` for each round of LLM calls beyond a short
    guideline's 2, as the runner's soft timeout grows (docs/contracts.md, "Time limits")."""
    return int(
        time_limit(
            settings.active_deadline_seconds, settings.active_deadline_per_round_seconds, rounds
        )
    )


def _shorten(value: str, limit: int) -> str:
    """`value` if it fits in `limit` characters, else a prefix and a stable hash."""
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    return f"{value[: limit - 9].rstrip('-.')}-{digest}"


def job_name(cr_name: str, cr_uid: str, run: int = 0) -> str:
    """The Job of run `run` of a GuidelineJob: `<cr>-<10 hex of sha256(uid/run)>`.

    The suffix has a fixed length and depends on the CR's uid (which the API server picks),
    so two GuidelineJobs never share a Job name: equal names would need equal prefixes, i.e.
    the same CR name in the namespace. (Before, CR `X-r1` collided with CR `X`'s first
    retry.) Long CR names keep a prefix and a hash of the whole name."""
    digest = hashlib.sha256(f"{cr_uid}/{run}".encode()).hexdigest()[:JOB_SUFFIX_CHARS]
    return f"{_shorten(cr_name, MAX_JOB_NAME - JOB_SUFFIX_CHARS - 1)}-{digest}"


def allowed_labels(labels: Mapping[str, str], allowlist: Iterable[str]) -> dict[str, str]:
    """The CR labels that may pass to its Job and pods: only keys in `allowlist`, and
    never one of the operator's own (selectors and ownership rely on those)."""
    own = set(runner_labels("", "")) | {KUEUE_QUEUE_LABEL}
    allowed = set(allowlist) - own
    return {k: v for k, v in labels.items() if k in allowed}


def label_value(value: str) -> str:
    """`value` as a valid label value (<= 63 characters), hashed if it is longer."""
    short = _shorten(value, MAX_NAME)
    return (
        short if _LABEL_VALUE_RE.match(short) else hashlib.sha256(value.encode()).hexdigest()[:16]
    )


def runner_labels(cr_name: str, event_id: str) -> dict[str, str]:
    """Labels on every Job and runner pod of a GuidelineJob."""
    return {
        gj.LABEL_EVENT_ID: event_id,
        gj.LABEL_JOB_NAME: label_value(cr_name),
        gj.LABEL_COMPONENT: gj.RUNNER_COMPONENT,
        gj.LABEL_MANAGED_BY: gj.MANAGED_BY_OPERATOR,
        gj.LABEL_PART_OF: gj.PART_OF,
    }


def managed_selector() -> str:
    """Label selector of every Job and pod this operator manages."""
    return (
        f"{gj.LABEL_MANAGED_BY}={gj.MANAGED_BY_OPERATOR},{gj.LABEL_COMPONENT}={gj.RUNNER_COMPONENT}"
    )


def selector_for(cr_name: str) -> str:
    """Label selector of the Jobs and pods of one GuidelineJob."""
    return f"{managed_selector()},{gj.LABEL_JOB_NAME}={label_value(cr_name)}"


def owner_body(req: JobRequest) -> dict[str, Any]:
    """The minimal GuidelineJob body `kopf.adopt` needs to own a Job (kopf.adopt copies the
    owner's labels onto the child: only the allowed ones are given)."""
    return {
        "apiVersion": gj.API_VERSION,
        "kind": gj.KIND,
        "metadata": {
            "name": req.cr_name,
            "namespace": req.namespace,
            "uid": req.cr_uid,
            "labels": dict(req.cr_labels),
        },
    }


def _env(req: JobRequest, settings: OperatorSettings) -> list[dict[str, Any]]:
    trace = [{"name": k, "value": v} for k, v in tracing.to_env(dict(req.trace_context)).items()]
    return [
        {"name": gj.ENV_JOB_NAME, "value": req.cr_name},
        {"name": gj.ENV_NAMESPACE, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": gj.ENV_EVENT_ID, "value": req.event_id},
        # Always set (empty when unknown: no cache), so no ConfigMap or extra env can.
        {"name": gj.ENV_TENANT, "value": req.tenant or ""},
        {
            "name": gj.ENV_OPENAI_API_KEY,
            "valueFrom": {
                "secretKeyRef": {
                    "name": settings.openai_secret_name,
                    "key": settings.openai_secret_key,
                    "optional": True,
                }
            },
        },
        {
            "name": gj.ENV_CACHE_DATABASE_URL,
            "valueFrom": {
                "secretKeyRef": {
                    "name": settings.runner_cache_secret_name,
                    "key": gj.CACHE_SECRET_KEY,
                    "optional": True,
                }
            },
        },
        # The runner's way to the API, and its token for it (docs/contracts.md).
        {"name": gj.ENV_API_URL, "value": settings.runner_api_url},
        {"name": gj.ENV_RUNNER_TOKEN_FILE, "value": gj.RUNNER_TOKEN_PATH},
        *(
            [{"name": gj.ENV_INPUT_FILE, "value": f"{gj.INPUT_DIR}/{req.text_from.file_name}"}]
            if req.text_from
            else []
        ),
        *trace,
    ]


RUNNER_TOKEN_VOLUME: Final = "runner-token"
INPUT_VOLUME: Final = "input"


def _volumes(req: JobRequest, settings: OperatorSettings) -> list[dict[str, Any]]:
    """/tmp, the projected token for the API (its own audience: useless against the
    Kubernetes API and any other service), and a guidelineTextFrom job's one key. That key
    is optional: a missing ConfigMap, Secret or key would keep the pod from starting until
    the deadline; instead the runner finds no file and fails InvalidInput saying which."""
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        {
            "name": RUNNER_TOKEN_VOLUME,
            "projected": {
                "sources": [
                    {
                        "serviceAccountToken": {
                            "audience": settings.runner_token_audience,
                            "expirationSeconds": gj.RUNNER_TOKEN_EXPIRATION_SECONDS,
                            "path": gj.RUNNER_TOKEN_PATH.rsplit("/", 1)[1],
                        }
                    }
                ]
            },
        },
    ]
    ref = req.text_from
    if ref is not None:
        items = [{"key": ref.key, "path": ref.file_name}]
        if ref.kind == "configMapKeyRef":
            source: dict[str, Any] = {
                "configMap": {"name": ref.name, "items": items, "optional": True}
            }
        else:
            source = {"secret": {"secretName": ref.name, "items": items, "optional": True}}
        volumes.append({"name": INPUT_VOLUME, **source})
    return volumes


def _mounts(req: JobRequest) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": RUNNER_TOKEN_VOLUME, "mountPath": gj.RUNNER_TOKEN_DIR, "readOnly": True},
    ]
    if req.text_from is not None:
        mounts.append({"name": INPUT_VOLUME, "mountPath": gj.INPUT_DIR, "readOnly": True})
    return mounts


def build_job(req: JobRequest, settings: OperatorSettings) -> dict[str, Any]:
    """The batch/v1 Job manifest of run `req.run` of a GuidelineJob.

    With `settings.kueue_queue_name` the Job is created suspended and carries Kueue's
    queue-name label, so Kueue admits it; otherwise it starts at once (the operator only
    creates it when a slot is free)."""
    name = job_name(req.cr_name, req.cr_uid, req.run)
    labels = {**dict(req.cr_labels), **runner_labels(req.cr_name, req.event_id)}
    annotations = {
        ANNOTATION_CR_NAME: req.cr_name,
        ANNOTATION_RUN: str(req.run),
        ANNOTATION_ATTEMPTS_BEFORE: str(req.attempts_before),
    }
    if req.queued_at is not None:
        annotations[ANNOTATION_QUEUED_AT] = req.queued_at.isoformat()
    job_labels = dict(labels)
    if settings.kueue_queue_name:
        job_labels[KUEUE_QUEUE_LABEL] = settings.kueue_queue_name
    backoff_limit = req.max_retries if req.max_retries is not None else settings.backoff_limit
    container: dict[str, Any] = {
        "name": RUNNER_CONTAINER,
        "image": settings.runner_image,
        "imagePullPolicy": settings.runner_image_pull_policy,
        "command": list(settings.runner_command),
        "env": _env(req, settings),
        "envFrom": [{"configMapRef": {"name": settings.runner_config_map, "optional": True}}],
        "resources": {
            "requests": {
                "cpu": settings.runner_cpu_request,
                "memory": settings.runner_memory_request,
            },
            "limits": {"cpu": settings.runner_cpu_limit, "memory": settings.runner_memory_limit},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
        },
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": _mounts(req),
    }
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": req.namespace,
            "labels": job_labels,
            "annotations": dict(annotations),
        },
        "spec": {
            "backoffLimit": backoff_limit,
            "activeDeadlineSeconds": hard_deadline(req.rounds, settings),
            "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
            "suspend": bool(settings.kueue_queue_name),
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": RUNNER_CONTAINER,
                            "operator": "In",
                            "values": [gj.RunnerExit.DO_NOT_RETRY],
                        },
                    },
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                ]
            },
            "template": {
                "metadata": {"labels": dict(labels), "annotations": dict(annotations)},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": settings.runner_service_account,
                    "automountServiceAccountToken": True,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUNNER_UID,
                        "runAsGroup": RUNNER_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": _volumes(req, settings),
                },
            },
        },
    }
    # The chart's pull secrets, scheduling, annotations, resources and extra env.
    podtemplate.apply(job["spec"]["template"], podtemplate.load(settings.runner_pod_template_file))
    kopf.adopt(job, owner=owner_body(req), nested="spec.template")  # type: ignore[arg-type]
    return job
