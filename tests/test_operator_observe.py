"""A GuidelineJob's state computed from its Job and pods (`guideline_operator.observe`): pure."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from guideline_core import resource as gj
from guideline_core.resource import FailureReason, Phase
from guideline_operator import manifests, observe
from guideline_operator.observe import Stage
from support.operator_objects import EVENT_ID, NOW, admitted, condition, cr, job, pod, ts


def test_queued_without_job() -> None:
    obs = observe.observe(cr(status={"phase": "PENDING", "eventId": EVENT_ID}), None, [], NOW)
    assert (obs.phase, obs.stage, obs.attempts) == (Phase.PENDING, Stage.QUEUED, 0)


def test_pending_until_a_runner_pod_runs_then_processing() -> None:
    the_job = job()
    obs = observe.observe(admitted(), the_job, [pod("p1", "Pending")], NOW)
    assert (obs.phase, obs.stage, obs.attempts) == (Phase.PENDING, Stage.STARTING, 0)
    obs = observe.observe(admitted(), the_job, [pod("p1", "Running", started=-5)], NOW)
    assert (obs.phase, obs.stage, obs.attempts) == (Phase.PROCESSING, Stage.RUNNING, 1)
    assert obs.started_at == obs.run_started_at == NOW - timedelta(seconds=5)
    assert obs.running_pods == 1
    assert obs.queued_at == NOW - timedelta(seconds=50)


def test_attempts_count_started_pods_across_runs_and_never_decrease() -> None:
    pods = [
        pod("p1", "Failed", started=-30, exit_code=1),
        pod("p2", "Failed", started=-20, exit_code=1),
        pod("p3", "Running", started=-5),
        pod("p4", "Pending"),  # not started: not an attempt
    ]
    obs = observe.observe(admitted(), job(attempts_before=2), pods, NOW)
    assert obs.attempts == 2 + 3
    assert obs.run_started_at == NOW - timedelta(seconds=30)
    # Pods gone (deleted) but the Job controller counted them; status already said 7.
    obs = observe.observe(admitted({"attempts": 7}), job(failed=2), [], NOW)
    assert obs.attempts == 7
    obs = observe.observe(admitted({"attempts": 1}), job(failed=3), [], NOW)
    assert obs.attempts == 3


def test_complete_with_result_is_completed_without_result_is_failed() -> None:
    done = job(conditions=[condition("Complete", at=-1)], succeeded=1)
    pods = [pod("p1", "Succeeded", started=-10, exit_code=0)]
    with_result = admitted({"result": {"summary": "s", "checklist": []}, "phase": "PROCESSING"})
    obs = observe.observe(with_result, done, pods, NOW)
    assert (obs.phase, obs.attempts, obs.error) == (Phase.COMPLETED, 1, None)
    assert obs.completed_at == NOW - timedelta(seconds=1)
    obs = observe.observe(admitted({"phase": "PROCESSING"}), done, pods, NOW)
    assert obs.phase == Phase.FAILED
    assert obs.error["reason"] == FailureReason.INTERNAL


def test_backoff_limit_exceeded_names_the_last_error() -> None:
    failed = job(conditions=[condition("Failed", "BackoffLimitExceeded", "Job has reached...")])
    term = json.dumps({"reason": "LLMError", "message": "HTTP 500 from the LLM", "retryable": True})
    pods = [
        pod(f"p{i}", "Failed", started=-40 + 10 * i, exit_code=1, message=term) for i in range(4)
    ]
    obs = observe.observe(admitted({"phase": "PROCESSING"}), failed, pods, NOW)
    assert obs.phase == Phase.FAILED and obs.attempts == 4
    assert obs.error["reason"] == "BackoffLimitExceeded"
    assert "4 attempt(s)" in obs.error["message"] and "HTTP 500" in obs.error["message"]


def test_pod_failure_policy_takes_the_runners_reason() -> None:
    failed = job(conditions=[condition("Failed", "PodFailurePolicy", "Container runner ... 42")])
    term = json.dumps(
        {"reason": "Timeout", "message": "Processing timeout after 240 s", "retryable": False}
    )
    pods = [pod("p1", "Failed", started=-250, exit_code=42, message=term)]
    obs = observe.observe(admitted({"phase": "PROCESSING"}), failed, pods, NOW)
    assert obs.phase == Phase.FAILED and obs.attempts == 1
    assert obs.error == {"reason": "Timeout", "message": "Processing timeout after 240 s"}
    # Without a termination message, the runner's status.runnerError is used.
    bare = [pod("p1", "Failed", started=-10, exit_code=42)]
    status = {"phase": "PROCESSING", "runnerError": {"reason": "LLMRejected", "message": "401"}}
    obs = observe.observe(admitted(status), failed, bare, NOW)
    assert obs.error == {"reason": "LLMRejected", "message": "401"}


@pytest.mark.parametrize("reason", ["no_text_layer", "document_unreadable", "document_too_long"])
def test_a_documents_failure_reason_is_the_jobs(reason: str) -> None:
    assert FailureReason(reason).value == reason
    failed = job(conditions=[condition("Failed", "PodFailurePolicy", "Container runner ... 42")])
    term = json.dumps({"reason": reason, "message": "Split the document.", "retryable": False})
    pods = [pod("p1", "Failed", started=-5, exit_code=42, message=term)]
    obs = observe.observe(admitted({"phase": "PROCESSING"}), failed, pods, NOW)
    assert obs.phase == Phase.FAILED and obs.attempts == 1
    assert obs.error == {"reason": reason, "message": "Split the document."}


def test_deadline_exceeded() -> None:
    failed = job(conditions=[condition("Failed", "DeadlineExceeded", "Job was active longer")])
    obs = observe.observe(admitted({"phase": "PROCESSING"}), failed, [], NOW)
    assert obs.error["reason"] == "DeadlineExceeded"
    assert "300 s" in obs.error["message"]


def test_failure_target_is_not_terminal_yet() -> None:
    terminating = job(conditions=[condition("FailureTarget", "DeadlineExceeded")])
    obs = observe.observe(admitted({"phase": "PROCESSING"}), terminating, [], NOW)
    assert obs.phase == Phase.PROCESSING


def test_suspended_job_waits_for_kueue() -> None:
    obs = observe.observe(admitted(), job(suspend=True), [], NOW)
    assert (obs.phase, obs.stage) == (Phase.PENDING, Stage.SUSPENDED)


def test_missing_job_of_an_admitted_run() -> None:
    # Never observed running: the Job is (re)created.
    obs = observe.observe(admitted(), None, [], NOW)
    assert (obs.phase, obs.stage) == (Phase.PENDING, Stage.MISSING)
    # The runner finished and the Job was removed since: the result stands.
    obs = observe.observe(admitted({"result": {"summary": "s"}}), None, [], NOW)
    assert obs.phase == Phase.COMPLETED
    # Admitted as PROCESSING and its Job vanished without a result: it is re-created.
    obs = observe.observe(admitted({"phase": "PROCESSING"}), None, [], NOW)
    assert (obs.phase, obs.stage) == (Phase.PROCESSING, Stage.MISSING)


def test_retry_run_looks_at_its_own_job() -> None:
    retried = cr(
        status={"phase": "PENDING", "retryRequests": 2, "attempts": 4, "eventId": EVENT_ID}
    )
    assert observe.current_job_name(retried) == manifests.job_name("gj-abcde", "cr-uid-1", 2)
    obs = observe.observe(retried, None, [], NOW)
    assert obs.stage == Stage.QUEUED and obs.attempts == 4


def test_annotations_parse() -> None:
    body = cr(**{gj.ANNOTATION_RETRY_REQUESTED: " 3 ", gj.ANNOTATION_CANCEL_REQUESTED: ts(0)})
    assert observe.retry_requested(body) == 3
    assert observe.cancel_requested(body)
    assert observe.retry_requested(cr(**{gj.ANNOTATION_RETRY_REQUESTED: "x"})) is None
    assert not observe.cancel_requested(cr())
