"""The runner's Kubernetes client for its GuidelineJob: read it and merge-patch the fields it owns
in the status subresource (`partial`, `progress`, `result`, `runnerError`). Transient API errors are
retried briefly; what remains becomes a `ChainError` (retryable unless the object is
missing or the runner is not allowed to touch it)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

from guideline_core.k8s import Client, KubeError, paths
from guideline_core.k8s import stdlib as k8s_stdlib
from guideline_core.resource import FailureReason

from guideline_runner.backoff import with_backoff
from guideline_runner.errors import ChainError

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS: Final = 10.0
RETRY_DELAYS_SECONDS: Final = (0.5, 1.0, 2.0, 4.0, 4.0)
_TRANSIENT_STATUS: Final = frozenset({408, 409, 429, 500, 502, 503, 504})
T = TypeVar("T")


class GuidelineJobClient:
    """Reads one GuidelineJob and writes the runner's status fields (from any thread: the
    progress is written by its own)."""

    def __init__(
        self,
        name: str,
        namespace: str,
        api: Client | None = None,
        *,
        delays: Sequence[float] = RETRY_DELAYS_SECONDS,
    ) -> None:
        self.name = name
        self.namespace = namespace
        # The standard library's transport: the runner must not import `kubernetes`.
        self._api = api or k8s_stdlib.connect(timeout_seconds=REQUEST_TIMEOUT_SECONDS)
        self._path = paths.guidelinejobs(namespace, name)
        self._status_path = paths.guidelinejobs(namespace, name, "status")
        self._lock = threading.Lock()
        self._delays = tuple(delays)

    def _retrying(self, action: str, call: Callable[[], T]) -> T:
        where = f"GuidelineJob {self.namespace}/{self.name}"

        def judge(error: KubeError, last: bool) -> str | ChainError:
            if error.status is None:  # no answer
                if last:
                    return ChainError(
                        FailureReason.INTERNAL,
                        f"Kubernetes API unreachable on {action} {where}: {error.message}",
                        retryable=True,
                    )
                return error.message
            if error.status == 404:
                return ChainError(
                    FailureReason.INVALID_INPUT, f"{where} not found", retryable=False
                )
            # 401/403 are retried too: a kube-apiserver that has just (re)started answers
            # them until its authentication and RBAC caches have synced (tests/test_faults.py
            # saw a job FAILED by that). Only a lasting one means the runner lacks the right.
            if error.status in (401, 403) and last:
                return ChainError(
                    FailureReason.INTERNAL,
                    f"The runner may not {action} {where} ({error.status} {error.reason})",
                    retryable=False,
                )
            if error.status not in _TRANSIENT_STATUS | {401, 403} or last:
                return ChainError(
                    FailureReason.INTERNAL,
                    f"Kubernetes API error on {action} {where}: {error.status} {error.reason}",
                    retryable=True,
                )
            return f"{error.status} {error.reason}"

        def locked() -> T:
            with self._lock:  # the transport keeps one connection: one call at a time
                return call()

        return with_backoff(
            locked,
            action=action,
            retry_on=(KubeError,),
            judge=judge,
            delays=self._delays,
            log=log,
            message="kubernetes API call failed; retrying",
        )

    def read(self) -> dict[str, Any]:
        """The GuidelineJob as a dict."""
        return self._retrying("read", lambda: self._api.get(self._path))

    def patch_status(self, fields: dict[str, Any]) -> None:
        """Merge-patch `fields` into the status subresource."""
        self._retrying(
            "patch the status of",
            lambda: self._api.merge_patch(self._status_path, {"status": fields}),
        )
