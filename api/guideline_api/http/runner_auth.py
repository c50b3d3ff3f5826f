"""Who may call the runner routes: the runner pod of that very job, and no one else.

A runner pod presents its projected ServiceAccount token (audience
`runner_token_audience`, mounted by the operator, rotated by the kubelet). The API asks
the API server about it (a TokenReview: signature, expiry, audience, and, for a token
bound to a pod, that the pod still exists), then checks what the review says: the user is
the runner ServiceAccount of the job's namespace, and the pod the token is bound to
(`authentication.kubernetes.io/pod-name` and `pod-uid` in the user's extra) exists with
that uid, has not finished, and carries the job's event-id label. So a runner pod can
read its own job's document and no other; database credentials never reach runner pods.

Positive answers are kept for at most `runner_auth_cache_seconds` (60 s), per token and
job: a pod that ends or is deleted loses access within that time.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from typing import Any

from guideline_core import resource as gj
from guideline_core.settings import ApiSettings

from guideline_api.http.errors import ApiError, Reason
from guideline_api.kubeapi import KubeGateway, KubernetesUnavailableError

POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
_FINISHED_PHASES = frozenset({"Succeeded", "Failed"})
_CACHE_MAX = 10_000


def _refused(message: str) -> ApiError:
    return ApiError(403, Reason.NOT_THIS_JOBS_RUNNER, message)


def _unauthenticated(message: str) -> ApiError:
    return ApiError(
        401,
        Reason.INVALID_RUNNER_TOKEN,
        message,
        headers={"WWW-Authenticate": 'Bearer realm="guideline-ingest-runner"'},
    )


class RunnerAuth:
    """Checks runner tokens against the API server (TokenReview, pod lookup)."""

    def __init__(self, kube: KubeGateway, settings: ApiSettings):
        self._kube = kube
        self._audience = settings.runner_token_audience
        self._service_account = settings.runner_service_account
        self._ttl = settings.runner_auth_cache_seconds
        self._passed: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, token: str | None, event_id: uuid.UUID, namespace: str) -> None:
        """Return if `token` is the token of a live runner pod of job `event_id` in
        `namespace`; 401 `invalid_runner_token` for a missing or unauthenticated token,
        403 `not_this_jobs_runner` for any other token, 503 if the API server cannot say."""
        if not token:
            raise _unauthenticated(
                "a runner route needs `Authorization: Bearer <the runner pod's projected "
                "ServiceAccount token>`"
            )
        key = hashlib.sha256(token.encode()).hexdigest() + str(event_id)
        now = time.monotonic()
        with self._lock:
            passed = self._passed.get(key)
            if passed is not None and now - passed < self._ttl:
                return
        try:
            self._verify(token, event_id, namespace)
        except KubernetesUnavailableError as exc:
            raise ApiError(
                503, Reason.KUBERNETES_UNAVAILABLE, f"cannot check the runner token: {exc}"
            ) from exc
        with self._lock:
            if len(self._passed) >= _CACHE_MAX:
                self._passed = {k: t for k, t in self._passed.items() if now - t < self._ttl}
            self._passed[key] = now

    def _verify(self, token: str, event_id: uuid.UUID, namespace: str) -> None:
        status = self._kube.token_review(token, [self._audience])
        if not status.get("authenticated"):
            raise _unauthenticated(
                "the token is not valid for audience "
                f"{self._audience!r}: {status.get('error') or 'not authenticated'}"
            )
        user = status.get("user") or {}
        expected = f"system:serviceaccount:{namespace}:{self._service_account}"
        if user.get("username") != expected:
            raise _refused(
                f"the token is {user.get('username')!r}, not the runner ServiceAccount {expected!r}"
            )
        extra = user.get("extra") or {}
        pod_name = _one(extra, POD_NAME_EXTRA)
        pod_uid = _one(extra, POD_UID_EXTRA)
        if not pod_name or not pod_uid:
            raise _refused("the token is not bound to a pod (a runner pod's projected token is)")
        pod = self._kube.get_pod(namespace, pod_name)
        meta = (pod or {}).get("metadata") or {}
        if pod is None or meta.get("uid") != pod_uid:
            raise _refused(f"the token's pod {pod_name} no longer exists")
        if ((pod.get("status") or {}).get("phase")) in _FINISHED_PHASES:
            raise _refused(f"the token's pod {pod_name} has finished")
        label = (meta.get("labels") or {}).get(gj.LABEL_EVENT_ID)
        if label != str(event_id):
            raise _refused(
                f"the token's pod {pod_name} is the runner of job {label}, not of {event_id}"
            )


def _one(extra: dict[str, Any], name: str) -> str | None:
    values = extra.get(name) or []
    return values[0] if len(values) == 1 else None
