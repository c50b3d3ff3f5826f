"""Carrying out the API's requests on a GuidelineJob (annotations, as its spec is
immutable; docs/contracts.md, "Cancel and retry"): a cancel request deletes the run's Job
and ends the job CANCELLED, unless it finished first; a retry request on a FAILED or
CANCELLED job puts a new run in the queue, its attempts continuing the job's count."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from guideline_core import resource as gj
from guideline_core.guidelinejob import GuidelineJob, metadata_of, status_of
from guideline_core.resource import FailureReason, Phase

from guideline_operator import conditions, manifests, observe
from guideline_operator.kubeapi import Kube
from guideline_operator.mirror import DatabaseMirror
from guideline_operator.observe import Observation, Stage
from guideline_operator.transitions import Transitions, now

log = logging.getLogger("guideline_operator")


class CancelRetry:
    """Cancel and retry requests, through `kube`, `transitions` and `mirror`."""

    def __init__(self, kube: Kube, mirror: DatabaseMirror, transitions: Transitions):
        self.kube = kube
        self.mirror = mirror
        self.transitions = transitions

    def retry_if_requested(self, cr: GuidelineJob) -> GuidelineJob:
        """A new run if a retry the operator has not carried out yet is requested on a
        FAILED or CANCELLED job (PENDING again, in the queue); `cr` itself otherwise."""
        requested = observe.retry_requested(cr)
        done = int(status_of(cr).get("retryRequests") or 0)
        phase = observe.phase_of(cr)
        if requested is None or requested <= done or phase not in (Phase.FAILED, Phase.CANCELLED):
            return cr
        metadata = cr["metadata"]
        if observe.cancel_requested(cr):
            # The cancel request was honoured by the previous run; it must not cancel this one.
            cr = self.kube.patch_cr(
                metadata["namespace"],
                metadata["name"],
                {"metadata": {"annotations": {gj.ANNOTATION_CANCEL_REQUESTED: None}}},
            )
        pending = conditions.pending_conditions(
            cr,
            {"retryRequests": requested, "phase": Phase.PENDING.value, "jobName": None},
            Stage.QUEUED,
            now=now(),
            queue_message=f"retry {requested}: waiting for a free slot",
        )
        cr = self.transitions.patch_status(
            cr,
            {
                "phase": Phase.PENDING.value,
                "retryRequests": requested,
                "error": None,
                "completedAt": None,
                "jobName": None,
                # The runner's fields of the failed run; status.partial stays so the new
                # run can skip the summary step.
                "result": None,
                "runnerError": None,
                "progress": None,
                "conditions": pending,
                "observedGeneration": metadata.get("generation"),
            },
        )
        new_job = manifests.job_name(metadata["name"], metadata["uid"], requested)
        log.info("retry requested", extra={"retry": requested, "job": new_job})
        self.transitions.event(
            cr,
            "Normal",
            "RetryRequested",
            f"retry {requested}: a new run will start as Job {new_job}",
        )
        self.mirror.sync(cr, reason="RetryRequested", message=f"retry {requested}")
        return cr

    def cancel(
        self,
        cr: GuidelineJob,
        jobs: Mapping[str, Mapping[str, Any]],
        job: Mapping[str, Any] | None,
        run_pods: list[dict[str, Any]],
    ) -> None:
        """Carry out a cancel request on a job not finished: delete its unfinished `jobs`
        and write CANCELLED; a run that finished before the request was seen stands."""
        metadata = metadata_of(cr)
        at = now()
        seen = observe.observe(cr, job, run_pods, at) if job is not None else None
        if seen is not None and seen.phase.terminal:
            self.transitions.apply(cr, seen)  # it finished before the request was seen
            return
        for job_obj in jobs.values():
            if observe.job_outcome(job_obj) is None:
                self.kube.delete_job(metadata["namespace"], job_obj["metadata"]["name"])
                log.info("deleted Job (cancel)", extra={"job": job_obj["metadata"]["name"]})
        requested_at = (metadata.get("annotations") or {}).get(gj.ANNOTATION_CANCEL_REQUESTED)
        message = f"cancelled on request ({requested_at})"
        status = status_of(cr)
        cancelled = Observation(
            Phase.CANCELLED,
            Stage.DONE,
            seen.attempts if seen else int(status.get("attempts") or 0),
            started_at=seen.started_at if seen else observe.parse_time(status.get("startedAt")),
            run_started_at=seen.run_started_at if seen else None,
            completed_at=at,
            error={"reason": FailureReason.CANCELLED.value, "message": message},
            reason=FailureReason.CANCELLED.value,
            message=message,
            job_name=status.get("jobName"),
            queued_at=(seen.queued_at if seen else None) or observe.queued_since(cr),
        )
        self.transitions.apply(cr, cancelled)
