"""A GuidelineJob's conditions and status patches: pure."""

from __future__ import annotations

from datetime import timedelta

from guideline_operator import conditions, observe
from support.operator_objects import EVENT_ID, NOW, admitted, condition, cr, job, pod, ts


def test_conditions_transition_time_moves_only_on_status_change() -> None:
    first = conditions.set_condition(
        [], "Queued", True, "Queued", "position 2 of 2", now=NOW, generation=1
    )
    later = NOW + timedelta(seconds=30)
    same = conditions.set_condition(
        first, "Queued", True, "Queued", "position 1 of 1", now=later, generation=1
    )
    assert same[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    assert same[0]["message"] == "position 1 of 1"
    flipped = conditions.set_condition(
        same, "Queued", False, "Admitted", "", now=later, generation=1
    )
    assert flipped[0]["lastTransitionTime"] == observe.format_time(later)


def test_desired_status_and_patch_for_each_phase() -> None:
    base = admitted({"attempts": 0, "conditions": []})
    running = observe.observe(base, job(), [pod("p1", "Running", started=-3)], NOW)
    desired = conditions.desired_status(base, running, now=NOW)
    conds = {c["type"]: c for c in desired["conditions"]}
    assert desired["phase"] == "PROCESSING" and desired["attempts"] == 1
    assert desired["startedAt"] == ts(-3) and desired["observedGeneration"] == 1
    assert [c["type"] for c in desired["conditions"]] == [
        t.value for t in conditions.CONDITION_TYPES
    ]
    assert conds["Running"]["status"] == "True"
    assert conds["Queued"]["status"] == "False" and conds["Queued"]["reason"] == "Admitted"
    assert conds["Succeeded"]["status"] == conds["Failed"]["status"] == "False"
    patch = conditions.status_patch(base["status"], desired)
    assert "error" not in patch and "completedAt" not in patch  # absent stays absent
    assert patch["phase"] == "PROCESSING"
    # Applying the same observation again changes nothing.
    applied = {**base, "status": {**base["status"], **patch}}
    again = conditions.desired_status(applied, running, now=NOW + timedelta(seconds=9))
    assert conditions.status_patch(applied["status"], again) == {}

    failed_job = job(conditions=[condition("Failed", "DeadlineExceeded")])
    failed = observe.observe(applied, failed_job, [], NOW)
    desired = conditions.desired_status(applied, failed, now=NOW)
    conds = {c["type"]: c for c in desired["conditions"]}
    assert conds["Failed"]["status"] == "True" and conds["Failed"]["reason"] == "DeadlineExceeded"
    assert conds["Running"]["status"] == "False"
    assert desired["error"]["reason"] == "DeadlineExceeded" and desired["completedAt"] == ts(0)


def test_queued_condition_keeps_the_position_written_by_the_queue() -> None:
    message = conditions.queue_message(3, 7, 4)
    assert message == "position 3 of 7 in the queue; 4 jobs running"
    written = conditions.set_condition([], "Queued", True, "Queued", message, now=NOW, generation=1)
    body = cr(status={"phase": "PENDING", "eventId": EVENT_ID, "conditions": written})
    obs = observe.observe(body, None, [], NOW)
    desired = conditions.desired_status(body, obs, now=NOW + timedelta(seconds=5))
    [queued] = [c for c in desired["conditions"] if c["type"] == "Queued"]
    assert queued["message"] == message and queued["status"] == "True"
    assert "queuePosition" not in desired  # the queue owns it while waiting
