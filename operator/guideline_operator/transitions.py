"""Writing what a reconcile pass decided about a GuidelineJob: the status patch (the queue's
registry learns it at once), the phase transition's metrics and Event, a new runner attempt's
Event, and the first runner pod of a run starting (its queue wait; no write: the admission
already wrote what the running pod's status says). The pass decides, this module writes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from guideline_core.guidelinejob import GuidelineJob, metadata_of, status_of
from guideline_core.resource import Phase
from guideline_core.tracing import Tracer

from guideline_operator import conditions, observe
from guideline_operator import tracing as op_tracing
from guideline_operator.kubeapi import Kube
from guideline_operator.metrics import Metrics
from guideline_operator.mirror import DatabaseMirror
from guideline_operator.observe import Observation
from guideline_operator.queue import Registry

log = logging.getLogger("guideline_operator")

# Posts a Kubernetes Event on an object: (object, type, reason, message).
EventSink = Callable[[Mapping[str, Any], str, str, str], None]


def kopf_event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    """Post a Kubernetes Event on `body` through kopf's background poster."""
    import kopf

    try:
        kopf.event(dict(body), type=type_, reason=reason, message=message[:1000])  # type: ignore[arg-type]
    except LookupError:  # outside an operator context (e.g. a script): log only
        log.info("event", extra={"reason": reason, "event_message": message})


def now() -> datetime:
    """The current time, to the second (the precision the API stores)."""
    return datetime.now(UTC).replace(microsecond=0)


class Transitions:
    """Status writes, transitions and their Events, through `kube`, `registry`, `mirror`,
    `metrics` and `events`; `tracer` makes the outcome spans."""

    def __init__(
        self,
        kube: Kube,
        registry: Registry,
        mirror: DatabaseMirror,
        metrics: Metrics,
        events: EventSink,
        tracer: Tracer,
    ):
        self.kube = kube
        self.registry = registry
        self.mirror = mirror
        self.metrics = metrics
        self.events = events
        self.tracer = tracer
        self._started_runs: set[tuple[str, int]] = set()  # (uid, run) whose pod start was seen

    def event(self, cr: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Post an Event on the GuidelineJob."""
        self.events(cr, type_, reason, message)

    def patch_status(self, cr: GuidelineJob, patch: dict[str, Any]) -> GuidelineJob:
        """Merge-patch the GuidelineJob's status; the object as written (also in the
        registry, so the admission pass sees it before its watch event comes)."""
        metadata = cr["metadata"]
        updated = self.kube.patch_cr_status(metadata["namespace"], metadata["name"], patch)
        self.registry.upsert(updated)
        return updated

    @op_tracing.traced_outcome
    def apply(self, cr: GuidelineJob, obs: Observation) -> GuidelineJob:
        """Write the status `obs` implies (only what differs), its transition and Events,
        and mirror it into the job's row."""
        status = status_of(cr)
        previous = observe.phase_of(cr)
        previous_attempts = int(status.get("attempts") or 0)
        desired = conditions.desired_status(cr, obs, now=now())
        patch = conditions.status_patch(status, desired)
        if patch:
            cr = self.patch_status(cr, patch)
        if obs.phase != previous:
            self.transition(cr, previous, obs)
        elif obs.phase == Phase.PROCESSING and obs.attempts > previous_attempts:
            log.info("runner attempt started", extra={"attempt": obs.attempts})
            self.event(cr, "Normal", "AttemptStarted", f"runner attempt {obs.attempts} started")
        self.pod_started(cr, obs)
        self.mirror.sync(cr, reason=obs.reason, message=obs.message)
        return cr

    def transition(self, cr: GuidelineJob, previous: Phase | None, obs: Observation) -> None:
        """The phase changed from `previous` to `obs.phase`: a log line and, when it ends
        the job, its metrics and Event."""
        new = obs.phase
        log.info(
            "phase changed",
            extra={
                "from": previous.value if previous else None,
                "to": new.value,
                "attempts": obs.attempts,
                "reason": obs.reason,
            },
        )
        metadata = metadata_of(cr)
        queued_at = obs.queued_at or observe.parse_time(metadata.get("creationTimestamp"))
        if new.terminal:
            outcome = {Phase.COMPLETED: "completed", Phase.FAILED: "failed"}.get(new, "cancelled")
            self.metrics.finished(
                outcome,
                reason=obs.reason,
                queued_at=queued_at,
                run_started_at=obs.run_started_at,
                completed_at=obs.completed_at,
                result=status_of(cr).get("result"),
                tenant=self.registry.tenant(metadata["uid"]),
            )
            if new == Phase.COMPLETED:
                self.event(cr, "Normal", "Completed", obs.message or "completed")
            elif new == Phase.FAILED:
                self.event(cr, "Warning", "Failed", f"{obs.reason}: {obs.message}")
            else:
                self.event(cr, "Normal", "Cancelled", obs.message)

    def pod_started(self, cr: GuidelineJob, obs: Observation) -> None:
        """The first runner pod of a run started: its queue wait and an Event (no write)."""
        if obs.run_started_at is None:
            return
        metadata = metadata_of(cr)
        key = (metadata["uid"], observe.current_run(cr))
        if key in self._started_runs:
            return
        self._started_runs.add(key)
        queued_at = obs.queued_at or observe.parse_time(metadata.get("creationTimestamp"))
        self.metrics.started(queued_at, obs.run_started_at)
        self.event(cr, "Normal", "Processing", f"runner pod started (attempt {obs.attempts})")
