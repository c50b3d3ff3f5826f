"""GuidelineJob, Job and pod objects as kube-apiserver serves them, for the tests of the
operator's pure functions (manifests, observe, conditions, queue, rows): one GuidelineJob
`cr()` (uid cr-uid-1 in ns1), its first run's Job `job()` and that Job's pods `pod()`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from guideline_core import resource as gj
from guideline_operator import manifests, observe

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
EVENT_ID = "0195a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
JOB0 = manifests.job_name("gj-abcde", "cr-uid-1", 0)  # the first run's Job of `cr()`


def ts(seconds: float) -> str:
    return observe.format_time(NOW + timedelta(seconds=seconds))


def cr(
    name: str = "gj-abcde", status: dict[str, Any] | None = None, **annotations: str
) -> dict[str, Any]:
    return {
        "apiVersion": gj.API_VERSION,
        "kind": gj.KIND,
        "metadata": {
            "name": name,
            "namespace": "ns1",
            "uid": "cr-uid-1",
            "generation": 1,
            "resourceVersion": "100",
            "creationTimestamp": ts(-60),
            "labels": {gj.LABEL_EVENT_ID: EVENT_ID},
            "annotations": annotations,
        },
        "spec": {"guidelineText": "Staff must wash hands."},
        "status": status or {},
    }


def job(
    name: str = JOB0,
    conditions: list[dict[str, Any]] | None = None,
    *,
    suspend: bool = False,
    attempts_before: int = 0,
    failed: int = 0,
    succeeded: int = 0,
) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": "ns1",
            "uid": f"job-uid-{name}",
            "ownerReferences": [{"uid": "cr-uid-1", "kind": gj.KIND, "name": "gj-abcde"}],
            "annotations": {
                manifests.ANNOTATION_ATTEMPTS_BEFORE: str(attempts_before),
                manifests.ANNOTATION_QUEUED_AT: ts(-50),
            },
        },
        "spec": {"suspend": suspend, "backoffLimit": 3, "activeDeadlineSeconds": 300},
        "status": {"conditions": conditions or [], "failed": failed, "succeeded": succeeded},
    }


def condition(kind: str, reason: str = "", message: str = "", at: float = 0) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": ts(at),
    }


def pod(
    uid: str,
    phase: str,
    *,
    started: float | None = None,
    exit_code: int | None = None,
    message: str = "",
    finished: float | None = None,
    job_name: str = JOB0,
) -> dict[str, Any]:
    state: dict[str, Any] = {}
    if exit_code is not None:
        state["terminated"] = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "message": message,
            "startedAt": ts(started) if started is not None else None,
            "finishedAt": ts(finished if finished is not None else (started or 0) + 1),
        }
    elif started is not None:
        state["running"] = {"startedAt": ts(started)}
    else:
        state["waiting"] = {"reason": "ContainerCreating"}
    return {
        "metadata": {
            "name": f"pod-{uid}",
            "uid": uid,
            "ownerReferences": [{"uid": f"job-uid-{job_name}", "kind": "Job"}],
        },
        "status": {
            "phase": phase,
            "containerStatuses": [{"name": manifests.RUNNER_CONTAINER, "state": state}],
        },
    }


def admitted(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return cr(status={"phase": "PENDING", "eventId": EVENT_ID, "jobName": JOB0, **(extra or {})})
