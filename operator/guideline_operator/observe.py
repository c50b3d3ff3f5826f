"""What a GuidelineJob's state is, computed from its Job and pods: pure functions.

`observe()` reads the CR, the Job of its current run and that Job's pods, and says which
phase the job is in, how many attempts it has made and why it failed; `conditions` turns
that into the operator's status fields. Nothing here talks to the cluster.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from guideline_core import resource as gj
from guideline_core.guidelinejob import Condition, GuidelineJob, metadata_of, status_of
from guideline_core.resource import ConditionType, FailureReason, Phase

from guideline_operator import manifests


class Stage(StrEnum):
    """Where a non-terminal run stands (finer than the phase)."""

    QUEUED = "Queued"  # waiting for a slot; no Job yet
    MISSING = "JobMissing"  # admitted (status.jobName set) but its Job does not exist
    SUSPENDED = "WaitingForKueue"  # the Job exists, suspended, waiting for Kueue
    STARTING = "Starting"  # the Job exists, no runner pod has started yet
    RUNNING = "Running"  # a runner pod started
    DONE = "Done"  # terminal


# --- time --------------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp from the Kubernetes API as an aware datetime."""
    if not value:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def format_time(value: datetime) -> str:
    """A datetime as the API writes timestamps (seconds, UTC, `Z`)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- Jobs and pods -------------------------------------------------------------------------


def _true_condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond
    return None


def job_outcome(job: Mapping[str, Any]) -> str | None:
    """ "Complete" or "Failed" once the Job controller has finished the Job (its pods are
    terminated by then), else None. FailureTarget/SuccessCriteriaMet do not count yet."""
    for kind in ("Complete", "Failed"):
        if _true_condition(job, kind):
            return kind
    return None


def job_suspended(job: Mapping[str, Any]) -> bool:
    """True if the Job is suspended (created so by the operator for Kueue)."""
    return bool((job.get("spec") or {}).get("suspend"))


def job_active(job: Mapping[str, Any]) -> bool:
    """True if the Job takes a slot: not finished, not suspended, not being deleted."""
    return (
        job_outcome(job) is None
        and not job_suspended(job)
        and not (job.get("metadata") or {}).get("deletionTimestamp")
    )


def owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    """True if `obj` has an ownerReference to the object with `uid`."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid for ref in refs)


def _runner_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        if status.get("name") == manifests.RUNNER_CONTAINER:
            return status
    return statuses[0] if statuses else {}


def pod_started(pod: Mapping[str, Any]) -> bool:
    """True if the runner container ever ran: it is running or terminated after starting."""
    state = _runner_status(pod).get("state") or {}
    if "running" in state:
        return True
    terminated = state.get("terminated")
    if terminated is not None and terminated.get("startedAt"):
        return True
    return (pod.get("status") or {}).get("phase") in ("Running", "Succeeded")


def pod_succeeded(pod: Mapping[str, Any]) -> bool:
    """True if the runner pod has succeeded (the kubelet's verdict, or its container exited
    0): the Job controller's own bookkeeping may come later."""
    if (pod.get("status") or {}).get("phase") == "Succeeded":
        return True
    terminated = pod_termination(pod)
    return terminated is not None and terminated.get("exitCode") == 0


def pod_running(pod: Mapping[str, Any]) -> bool:
    """True if the runner pod is running right now."""
    if (pod.get("status") or {}).get("phase") != "Running":
        return False
    return "terminated" not in (_runner_status(pod).get("state") or {})


def pod_start_time(pod: Mapping[str, Any]) -> datetime | None:
    """When the runner container started (else when the pod did)."""
    state = _runner_status(pod).get("state") or {}
    for key in ("running", "terminated"):
        started = parse_time((state.get(key) or {}).get("startedAt"))
        if started:
            return started
    return parse_time((pod.get("status") or {}).get("startTime"))


def pod_termination(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The runner container's `terminated` state, if it has ended."""
    return (_runner_status(pod).get("state") or {}).get("terminated")


def termination_error(pod: Mapping[str, Any]) -> dict[str, str] | None:
    """The runner's {reason, message} from its termination message (JSON per the contract;
    with FallbackToLogsOnError it may be the last log lines instead)."""
    terminated = pod_termination(pod)
    if not terminated or terminated.get("exitCode") in (None, 0):
        return None
    raw = (terminated.get("message") or "").strip()
    if raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and parsed.get("reason"):
            return {"reason": str(parsed["reason"]), "message": str(parsed.get("message") or "")}
        return {"reason": FailureReason.INTERNAL.value, "message": raw[-500:]}
    return {
        "reason": FailureReason.INTERNAL.value,
        "message": f"runner exited with code {terminated.get('exitCode')}"
        + (f" ({terminated['reason']})" if terminated.get("reason") else ""),
    }


def _finish_time(pod: Mapping[str, Any]) -> datetime:
    terminated = pod_termination(pod) or {}
    return parse_time(terminated.get("finishedAt")) or datetime.min.replace(tzinfo=UTC)


def run_attempts(job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]]) -> int:
    """Runner pods started by this Job: distinct started pods, or the Job controller's own
    count of finished pods if some were deleted since."""
    if job is None:
        return 0
    started = {p["metadata"]["uid"] for p in pods if pod_started(p)}
    status = job.get("status") or {}
    return max(len(started), int(status.get("succeeded") or 0) + int(status.get("failed") or 0))


def attempts_before(job: Mapping[str, Any] | None) -> int:
    """Attempts made by earlier runs, recorded on the Job when it was created."""
    if job is None:
        return 0
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    try:
        return int(annotations.get(manifests.ANNOTATION_ATTEMPTS_BEFORE, 0))
    except ValueError:
        return 0


def queued_at(job: Mapping[str, Any] | None) -> datetime | None:
    """When the run the Job belongs to entered the queue (recorded on the Job)."""
    if job is None:
        return None
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    return parse_time(annotations.get(manifests.ANNOTATION_QUEUED_AT))


# --- the GuidelineJob ------------------------------------------------------------------------


def current_run(cr: GuidelineJob) -> int:
    """The run in progress: 0, or the last retry request the operator accepted."""
    return int(status_of(cr).get("retryRequests") or 0)


def current_job_name(cr: GuidelineJob) -> str:
    """The name of the Job of the current run."""
    metadata = cr["metadata"]
    return manifests.job_name(metadata["name"], metadata.get("uid") or "", current_run(cr))


def cancel_requested(cr: GuidelineJob) -> bool:
    """True if the cancel annotation is set."""
    annotations = metadata_of(cr).get("annotations") or {}
    return bool(annotations.get(gj.ANNOTATION_CANCEL_REQUESTED))


def retry_requested(cr: GuidelineJob) -> int | None:
    """The retry counter the API asked for, if it is a valid number."""
    annotations = metadata_of(cr).get("annotations") or {}
    value = annotations.get(gj.ANNOTATION_RETRY_REQUESTED)
    if value is None:
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def phase_of(cr: GuidelineJob) -> Phase | None:
    """The phase in the CR's status, if any."""
    value = status_of(cr).get("phase")
    return Phase(value) if value is not None and value in Phase.__members__.values() else None


@dataclass(frozen=True)
class Observation:
    """The state of a GuidelineJob as computed from its Job and pods."""

    phase: Phase
    stage: Stage
    attempts: int
    started_at: datetime | None = None
    run_started_at: datetime | None = None
    completed_at: datetime | None = None
    error: dict[str, str] | None = None
    reason: str = ""
    message: str = ""
    running_pods: int = 0
    job_name: str | None = None
    queued_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _failure(
    cond: Mapping[str, Any],
    job: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    status: Mapping[str, Any],
    attempts: int,
) -> dict[str, str]:
    reason = cond.get("reason") or ""
    failed = sorted((p for p in pods if pod_termination(p)), key=_finish_time)
    last_pod_error = next(
        (e for p in reversed(failed) if (e := termination_error(p)) is not None), None
    )
    runner_error = status.get("runnerError") or None
    if runner_error and runner_error.get("reason"):
        runner_error = {
            "reason": str(runner_error["reason"]),
            "message": str(runner_error.get("message") or ""),
        }
    else:
        runner_error = None
    spec = job.get("spec") or {}
    if reason == "PodFailurePolicy":
        # The runner said a retry cannot help (exit 42): its own reason is the job's.
        rejected = next(
            (
                termination_error(p)
                for p in reversed(failed)
                if (pod_termination(p) or {}).get("exitCode") == gj.RunnerExit.DO_NOT_RETRY
            ),
            None,
        )
        candidates = [rejected, runner_error, last_pod_error]
        meaningful = [e for e in candidates if e and e["reason"] != FailureReason.INTERNAL.value]
        error = next(iter(meaningful), None) or next((e for e in candidates if e), None)
        return error or {
            "reason": FailureReason.INTERNAL.value,
            "message": cond.get("message") or "the runner failed without a reason",
        }
    if reason == FailureReason.BACKOFF_LIMIT_EXCEEDED:
        last = runner_error or last_pod_error
        message = f"gave up after {attempts} attempt(s) (backoffLimit {spec.get('backoffLimit')})"
        if last:
            message += f"; last error: {last['reason']}: {last['message']}"
        return {"reason": FailureReason.BACKOFF_LIMIT_EXCEEDED.value, "message": message}
    if reason == FailureReason.DEADLINE_EXCEEDED:
        return {
            "reason": FailureReason.DEADLINE_EXCEEDED.value,
            "message": "exceeded the hard time limit of "
            f"{spec.get('activeDeadlineSeconds')} s (activeDeadlineSeconds)",
        }
    return {
        "reason": reason or FailureReason.INTERNAL.value,
        "message": cond.get("message") or "the Job failed",
    }


def observe(
    cr: GuidelineJob,
    job: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    now: datetime,
) -> Observation:
    """The state of a non-terminal GuidelineJob's current run.

    `job` is the current run's Job (None if it does not exist) and `pods` that Job's pods.
    Phases: PENDING until a runner pod starts, PROCESSING from then until the Job
    finishes, COMPLETED when the Job is Complete and the runner wrote `status.result`,
    FAILED when the Job failed (reason from its condition or the runner's own error)."""
    status = status_of(cr)
    previous = phase_of(cr) or Phase.PENDING
    known_attempts = int(status.get("attempts") or 0)
    started_at = parse_time(status.get("startedAt"))
    expected = current_job_name(cr)
    if job is None:
        if status.get("jobName") != expected:
            return Observation(
                Phase.PENDING, Stage.QUEUED, known_attempts, started_at, reason="Queued"
            )
        if status.get("result"):
            # The Job vanished (TTL, or deleted by someone) after the runner finished.
            return Observation(
                Phase.COMPLETED,
                Stage.DONE,
                known_attempts,
                started_at,
                completed_at=now,
                reason="Completed",
                message="the runner wrote its result; its Job is gone",
                job_name=expected,
            )
        # Admitted, and its Job was never created (a crash in between) or removed before
        # its pod finished: the run's Job is (re)created.
        return Observation(
            previous if previous == Phase.PROCESSING else Phase.PENDING,
            Stage.MISSING,
            known_attempts,
            started_at,
            reason="JobMissing",
            job_name=expected,
        )

    started = [p for p in pods if pod_started(p)]
    attempts = max(known_attempts, attempts_before(job) + run_attempts(job, pods))
    starts = [t for p in started if (t := pod_start_time(p)) is not None]
    run_started_at = min(starts) if starts else None
    started_at = started_at or run_started_at
    running = sum(1 for p in pods if pod_running(p))
    common = {
        "attempts": attempts,
        "started_at": started_at,
        "run_started_at": run_started_at,
        "running_pods": running,
        "job_name": job["metadata"]["name"],
        "queued_at": queued_at(job),
    }
    outcome = job_outcome(job)
    succeeded = sorted((p for p in pods if pod_succeeded(p)), key=_finish_time)
    if outcome is None and succeeded and status.get("result"):
        # The runner wrote its result and its pod succeeded: done, without waiting for the
        # Job controller to mark the Job Complete.
        return Observation(
            Phase.COMPLETED,
            Stage.DONE,
            completed_at=parse_time((pod_termination(succeeded[0]) or {}).get("finishedAt")) or now,
            reason="Completed",
            message=f"completed after {attempts} attempt(s)",
            **common,
        )
    if outcome is not None:
        cond = _true_condition(job, outcome) or {}
        completed_at = parse_time(cond.get("lastTransitionTime")) or now
        if outcome == "Complete":
            if status.get("result"):
                return Observation(
                    Phase.COMPLETED,
                    Stage.DONE,
                    completed_at=completed_at,
                    reason="Completed",
                    message=f"completed after {attempts} attempt(s)",
                    **common,
                )
            error = {
                "reason": FailureReason.INTERNAL.value,
                "message": "the Job completed but the runner wrote no result",
            }
        else:
            error = _failure(cond, job, pods, status, attempts)
        return Observation(
            Phase.FAILED,
            Stage.DONE,
            completed_at=completed_at,
            error=error,
            reason=error["reason"],
            message=error["message"],
            **common,
        )
    if started or previous == Phase.PROCESSING:
        return Observation(
            Phase.PROCESSING,
            Stage.RUNNING if started else Stage.STARTING,
            reason="Running",
            message=processing_message(attempts, job["metadata"]["name"]),
            **common,
        )
    if job_suspended(job):
        return Observation(Phase.PENDING, Stage.SUSPENDED, reason="WaitingForKueue", **common)
    return Observation(Phase.PENDING, Stage.STARTING, reason="Starting", **common)


def processing_message(attempts: int, job_name: str) -> str:
    """The Running condition's message: the same from admission to the pod's end, so the
    pod starting costs no write."""
    return f"attempt {attempts} in Job {job_name}"


def admitted(cr: GuidelineJob, now: datetime) -> Observation:
    """The state written when the current run is admitted, just before its Job is created:
    PROCESSING, its first attempt counted, startedAt now (if the job had not started)."""
    status = status_of(cr)
    name = current_job_name(cr)
    attempts = int(status.get("attempts") or 0) + 1
    return Observation(
        Phase.PROCESSING,
        Stage.STARTING,
        attempts,
        started_at=parse_time(status.get("startedAt")) or now,
        reason="Running",
        message=processing_message(attempts, name),
        job_name=name,
        queued_at=queued_since(cr),
    )


# --- conditions read ---------------------------------------------------------------------


def get_condition(cr: GuidelineJob, kind: str) -> Condition | None:
    """The condition `kind` of a GuidelineJob, if set."""
    for cond in status_of(cr).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def queued_since(cr: GuidelineJob) -> datetime | None:
    """When the current run entered the queue: the Queued condition's transition to True."""
    cond = get_condition(cr, ConditionType.QUEUED)
    if cond and cond.get("status") == "True":
        return parse_time(cond.get("lastTransitionTime"))
    return None
