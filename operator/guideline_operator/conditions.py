"""A GuidelineJob's conditions and the operator's status fields: pure functions.

`desired_status()` turns an `observe.Observation` into the operator's status fields with
honest conditions (lastTransitionTime moves only when a condition's status changes) and
`status_patch()` into the merge patch of what differs. Nothing here talks to the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from guideline_core.guidelinejob import GuidelineJob, as_guidelinejob, metadata_of, status_of
from guideline_core.resource import ConditionType, Phase

from guideline_operator.observe import (
    Observation,
    Stage,
    current_job_name,
    format_time,
    get_condition,
    phase_of,
)

# Condition types every status carries, in this order.
CONDITION_TYPES = (
    ConditionType.ACCEPTED,
    ConditionType.QUEUED,
    ConditionType.RUNNING,
    ConditionType.SUCCEEDED,
    ConditionType.FAILED,
)


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    kind: str,
    status: bool,
    reason: str,
    message: str,
    *,
    now: datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """`conditions` with condition `kind` set; its lastTransitionTime changes only if its
    status does."""
    value = "True" if status else "False"
    result: list[dict[str, Any]] = []
    found = False
    for cond in conditions:
        if cond.get("type") != kind:
            result.append(dict(cond))
            continue
        found = True
        changed = cond.get("status") != value
        updated = {
            "type": kind,
            "status": value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": format_time(now)
            if changed or not cond.get("lastTransitionTime")
            else cond["lastTransitionTime"],
        }
        if generation is not None:
            updated["observedGeneration"] = generation
        result.append(updated)
    if not found:
        new: dict[str, Any] = {
            "type": kind,
            "status": value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": format_time(now),
        }
        if generation is not None:
            new["observedGeneration"] = generation
        result.append(new)
    order = {k.value: i for i, k in enumerate(CONDITION_TYPES)}
    return sorted(result, key=lambda c: order.get(c.get("type", ""), len(order)))


def conditions_for(
    cr: GuidelineJob,
    phase: Phase,
    stage: Stage,
    *,
    now: datetime,
    reason: str = "",
    message: str = "",
    queue_message: str | None = None,
) -> list[dict[str, Any]]:
    """The full list of conditions for a GuidelineJob in `phase` / `stage`."""
    generation = metadata_of(cr).get("generation")
    status = status_of(cr)
    conds: list[dict[str, Any]] = [dict(c) for c in status.get("conditions") or []]
    event_id = status.get("eventId") or ""

    def put(kind: str, value: bool, why: str, text: str) -> None:
        nonlocal conds
        conds = set_condition(conds, kind, value, why, text, now=now, generation=generation)

    put(ConditionType.ACCEPTED, True, "Accepted", f"accepted as event_id {event_id}".strip())
    queued = get_condition(cr, ConditionType.QUEUED)
    if stage in (Stage.QUEUED, Stage.SUSPENDED):
        if queue_message is not None:
            text = queue_message
        elif queued and queued.get("status") == "True" and queued.get("reason") == stage.value:
            text = queued.get("message") or ""  # keep the position the queue wrote
        elif stage == Stage.SUSPENDED:
            text = "waiting for admission by Kueue"
        else:
            text = "waiting for a free slot"
        put(ConditionType.QUEUED, True, stage.value, text)
    elif phase == Phase.CANCELLED and (queued is None or queued.get("status") == "True"):
        put(ConditionType.QUEUED, False, "Cancelled", "cancelled before it started")
    elif stage == Stage.MISSING:
        put(ConditionType.QUEUED, False, "Admitted", "admitted; creating its Job")
    elif (
        stage in (Stage.STARTING, Stage.RUNNING) or queued is None or queued.get("status") == "True"
    ):
        put(ConditionType.QUEUED, False, "Admitted", f"Job {current_job_name(cr)} created")
    if phase == Phase.PROCESSING:
        put(ConditionType.RUNNING, True, "Running", message or "running")
    else:
        why = {
            Stage.QUEUED: ("Queued", "waiting in the queue"),
            Stage.SUSPENDED: ("Queued", "waiting for admission"),
            Stage.MISSING: ("Starting", "creating its Job"),
            Stage.STARTING: ("Starting", "waiting for the runner pod to start"),
        }.get(stage, (phase.value.capitalize(), message or phase.value.lower()))
        put(ConditionType.RUNNING, False, *why)
    if phase == Phase.COMPLETED:
        put(ConditionType.SUCCEEDED, True, "Completed", message or "result written")
        put(ConditionType.FAILED, False, "Completed", "")
    elif phase == Phase.FAILED:
        put(ConditionType.SUCCEEDED, False, "Failed", "")
        put(ConditionType.FAILED, True, reason or "Failed", message)
    elif phase == Phase.CANCELLED:
        put(ConditionType.SUCCEEDED, False, "Cancelled", message)
        put(ConditionType.FAILED, False, "Cancelled", message)
    else:
        put(ConditionType.SUCCEEDED, False, "NotFinished", "")
        put(ConditionType.FAILED, False, "NotFinished", "")
    return conds


def pending_conditions(
    cr: GuidelineJob,
    status_update: Mapping[str, Any],
    stage: Stage,
    *,
    now: datetime,
    queue_message: str | None = None,
) -> list[dict[str, Any]]:
    """The conditions of `cr` once `status_update` is applied and it waits in `stage`
    (PENDING: accepted, retried, or waiting for Kueue)."""
    staged = as_guidelinejob({**cr, "status": {**status_of(cr), **status_update}})
    return conditions_for(staged, Phase.PENDING, stage, now=now, queue_message=queue_message)


def desired_status(cr: GuidelineJob, obs: Observation, *, now: datetime) -> dict[str, Any]:
    """The operator's status fields for `obs` (a full set; see `status_patch`)."""
    status = status_of(cr)
    desired: dict[str, Any] = {
        "phase": obs.phase.value,
        "attempts": obs.attempts,
        "startedAt": format_time(obs.started_at) if obs.started_at else None,
        "completedAt": format_time(obs.completed_at) if obs.completed_at else None,
        "error": obs.error,
        "observedGeneration": metadata_of(cr).get("generation"),
        "conditions": conditions_for(
            cr, obs.phase, obs.stage, now=now, reason=obs.reason, message=obs.message
        ),
    }
    if obs.stage not in (Stage.QUEUED, Stage.SUSPENDED):
        desired["queuePosition"] = None
    if obs.job_name:
        desired["jobName"] = obs.job_name
    if obs.phase.terminal and status.get("completedAt") and obs.phase == phase_of(cr):
        desired["completedAt"] = status["completedAt"]
    return desired


def status_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that turns `current` status into `desired` (only what differs;
    None removes a field)."""
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        if current.get(key) != value and not (value is None and key not in current):
            patch[key] = value
    return patch


def queue_message(position: int, total: int, running: int) -> str:
    """The Queued condition's message for a job at `position` (1 = next)."""
    jobs = "job" if running == 1 else "jobs"
    return f"position {position} of {total} in the queue; {running} {jobs} running"
