"""The operator's pure parts: the Job manifest, the phase computed from Job and pod
objects, conditions, queue ordering, and the metrics read from a runner's result."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from guideline_core import resource as gj
from guideline_core.resource import FailureReason, Phase
from guideline_core.settings import OperatorSettings
from guideline_operator import manifests, observe, queue
from guideline_operator.metrics import Metrics
from guideline_operator.observe import Stage

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


# --- the Job manifest ----------------------------------------------------------------------


def test_job_manifest_follows_the_contract() -> None:
    settings = OperatorSettings(
        runner_image="registry.local/guideline:1", backoff_limit=3, active_deadline_seconds=300
    )
    request = manifests.JobRequest(
        cr_name="gj-abcde",
        cr_uid="cr-uid-1",
        namespace="ns1",
        event_id=EVENT_ID,
        attempts_before=2,
        queued_at=NOW,
        cr_labels=(("team", "infection-control"),),
        tenant="team-a",
    )
    manifest = manifests.build_job(request, settings)
    meta, spec = manifest["metadata"], manifest["spec"]
    assert (manifest["apiVersion"], manifest["kind"], meta["name"]) == ("batch/v1", "Job", JOB0)
    assert meta["namespace"] == "ns1"
    [owner] = meta["ownerReferences"]
    assert owner == {
        "apiVersion": gj.API_VERSION,
        "kind": gj.KIND,
        "name": "gj-abcde",
        "uid": "cr-uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    pod_meta = spec["template"]["metadata"]
    for labels in (meta["labels"], pod_meta["labels"]):
        assert labels[gj.LABEL_EVENT_ID] == EVENT_ID
        assert labels[gj.LABEL_JOB_NAME] == "gj-abcde"
        assert labels[gj.LABEL_COMPONENT] == "runner"
        assert labels[gj.LABEL_MANAGED_BY] == "guideline-operator"
        assert labels["team"] == "infection-control"  # an allowed label of the CR
    assert meta["annotations"][manifests.ANNOTATION_ATTEMPTS_BEFORE] == "2"
    assert pod_meta["annotations"][manifests.ANNOTATION_CR_NAME] == "gj-abcde"
    assert observe.parse_time(meta["annotations"][manifests.ANNOTATION_QUEUED_AT]) == NOW
    assert spec["backoffLimit"] == 3
    assert spec["activeDeadlineSeconds"] == 300
    assert spec["ttlSecondsAfterFinished"] == settings.ttl_seconds_after_finished
    assert spec["suspend"] is False
    assert spec["podFailurePolicy"]["rules"] == [
        {
            "action": "FailJob",
            "onExitCodes": {"containerName": "runner", "operator": "In", "values": [42]},
        },
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]
    pod_spec = spec["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Never"
    assert pod_spec["serviceAccountName"] == "guideline-runner"
    assert pod_spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    [container] = pod_spec["containers"]
    assert container["name"] == "runner"
    assert container["image"] == "registry.local/guideline:1"
    assert container["command"] == ["guideline-runner"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
    }
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod_spec["volumes"]
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
    env = {e["name"]: e for e in container["env"]}
    assert env["GUIDELINE_JOB_NAME"]["value"] == "gj-abcde"
    assert env["GUIDELINE_EVENT_ID"]["value"] == EVENT_ID
    assert env["GUIDELINE_TENANT"] == {"name": "GUIDELINE_TENANT", "value": "team-a"}  # the row's
    assert env["GUIDELINE_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    assert env["OPENAI_API_KEY"] == {
        "name": "OPENAI_API_KEY",
        "valueFrom": {
            "secretKeyRef": {"name": "guideline-openai", "key": "api-key", "optional": True}
        },
    }
    # The chunk cache's URL, from a Secret that may be absent (then: no cache).
    assert env["GUIDELINE_CACHE_DATABASE_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "guideline-runner-cache", "key": "database-url", "optional": True}
    }
    assert container["envFrom"] == [
        {"configMapRef": {"name": "guideline-runner-config", "optional": True}}
    ]
    # No secret value anywhere in the manifest: only the reference.
    assert "sk-" not in json.dumps(manifest)


def _request(**fields: Any) -> manifests.JobRequest:
    return manifests.JobRequest(
        cr_name="gj-abcde", cr_uid="cr-uid-1", namespace="ns1", event_id=EVENT_ID, **fields
    )


def test_every_runner_pod_gets_its_api_token_and_url() -> None:
    settings = OperatorSettings(
        runner_api_url="http://api.guideline.svc:8000", runner_token_audience="aud.example/x"
    )
    pod_spec = manifests.build_job(_request(), settings)["spec"]["template"]["spec"]
    [container] = pod_spec["containers"]
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    # The token is for the API only (its own audience), short-lived, rotated by the kubelet.
    assert volumes["runner-token"] == {
        "name": "runner-token",
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": "aud.example/x",
                        "expirationSeconds": 600,
                        "path": "token",
                    }
                }
            ]
        },
    }
    assert {
        "name": "runner-token",
        "mountPath": "/var/run/secrets/guideline-ingest/runner",
        "readOnly": True,
    } in container["volumeMounts"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["GUIDELINE_API_URL"] == "http://api.guideline.svc:8000"
    assert env["GUIDELINE_RUNNER_TOKEN_FILE"] == "/var/run/secrets/guideline-ingest/runner/token"
    assert "GUIDELINE_INPUT_FILE" not in env and "input" not in volumes
    # The defaults: the contract's audience; no API URL (documentRef jobs then fail clearly).
    default = manifests.build_job(_request(), OperatorSettings())["spec"]["template"]["spec"]
    token = default["volumes"][1]["projected"]["sources"][0]["serviceAccountToken"]
    assert token["audience"] == "guideline-ingest.dev/runner"


@pytest.mark.parametrize(
    ("ref", "volume_source"),
    [
        pytest.param(
            {"configMapKeyRef": {"name": "guidelines", "key": "valvular.pdf"}},
            {
                "configMap": {
                    "name": "guidelines",
                    "items": [{"key": "valvular.pdf", "path": "guideline"}],
                    "optional": True,
                }
            },
            id="configmap",
        ),
        pytest.param(
            {"secretKeyRef": {"name": "private", "key": ".."}},
            {
                "secret": {
                    "secretName": "private",
                    "items": [{"key": "..", "path": "guideline"}],
                    "optional": True,
                }
            },
            id="secret-with-a-key-that-is-no-path",
        ),
    ],
)
def test_guideline_text_from_mounts_only_that_key_read_only(
    ref: dict[str, Any], volume_source: dict[str, Any]
) -> None:
    text_from = manifests.TextFrom.of({"guidelineTextFrom": ref})
    assert text_from is not None
    pod_spec = manifests.build_job(_request(text_from=text_from), OperatorSettings())["spec"][
        "template"
    ]["spec"]
    [container] = pod_spec["containers"]
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert volumes["input"] == {"name": "input", **volume_source}
    assert {
        "name": "input",
        "mountPath": "/var/run/guideline-ingest/input",
        "readOnly": True,
    } in container["volumeMounts"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["GUIDELINE_INPUT_FILE"] == "/var/run/guideline-ingest/input/guideline"
    assert manifests.TextFrom.of({"guidelineText": "x"}) is None


def test_a_job_without_inline_text_gets_the_deadline_of_the_most_it_can_hold() -> None:
    from guideline_core.splitting import planned_rounds_for_chars
    from guideline_operator.reconciler import _rounds_of

    settings = OperatorSettings()
    short = _rounds_of({"guidelineText": "Staff must wash hands."}, settings)
    small_doc = {
        "documentRef": {"id": "i", "sha256": "0" * 64, "mediaType": "text/plain", "bytes": 900}
    }
    big_doc = {"documentRef": {**small_doc["documentRef"], "bytes": 25 * 1024 * 1024}}
    from_key = {"guidelineTextFrom": {"configMapKeyRef": {"name": "g", "key": "k"}}}
    assert short == _rounds_of(small_doc, settings) == 2
    # A 25 MiB document counts as the runner's 2,000,000-character limit, as does a
    # ConfigMap key's 1 MiB of compressed text; a 100 KB PDF as up to 800,000 characters.
    limit = planned_rounds_for_chars(2_000_000, settings.chunk_chars, settings.llm_concurrency)
    assert _rounds_of(big_doc, settings) == _rounds_of(from_key, settings) == limit
    pdf = {
        "documentRef": {
            **small_doc["documentRef"],
            "mediaType": "application/pdf",
            "bytes": 100_000,
        }
    }
    text = {"documentRef": {**small_doc["documentRef"], "bytes": 100_000}}
    assert limit > _rounds_of(pdf, settings) > _rounds_of(text, settings) > short
    assert manifests.hard_deadline(limit, settings) > 300


def test_the_row_of_a_kubectl_job_without_inline_text_has_no_text_yet() -> None:
    from guideline_operator import rows

    body = cr()
    body["spec"] = {"guidelineTextFrom": {"configMapKeyRef": {"name": "g", "key": "k"}}}
    body["metadata"]["annotations"] = {}
    row = rows.new_row(body, EVENT_ID, "default")
    assert row.guideline_text == ""  # the runner puts the extracted text through the API


def test_job_manifest_retry_name_spec_retries_and_kueue() -> None:
    settings = OperatorSettings(kueue_queue_name="team-queue", backoff_limit=3)
    request = manifests.JobRequest(
        cr_name="gj-abcde", cr_uid="u", namespace="ns1", event_id=EVENT_ID, run=2, max_retries=0
    )
    manifest = manifests.build_job(request, settings)
    assert manifest["metadata"]["name"] == manifests.job_name("gj-abcde", "u", 2)
    assert manifest["spec"]["backoffLimit"] == 0  # spec.maxRetries wins over the setting
    assert manifest["spec"]["suspend"] is True
    assert manifest["metadata"]["labels"][manifests.KUEUE_QUEUE_LABEL] == "team-queue"
    assert manifests.KUEUE_QUEUE_LABEL not in manifest["spec"]["template"]["metadata"]["labels"]


def test_long_names_become_valid_job_names_and_label_values() -> None:
    long_name = "a-guideline-job-applied-with-kubectl-and-a-very-long-descriptive-name-x" * 2
    names = {manifests.job_name(long_name, "uid-1", run) for run in range(12)}
    assert len(names) == 12
    # At most 57 characters: the pods' generateName `<job>-` is never truncated.
    assert all(len(n) <= manifests.MAX_JOB_NAME and not n.startswith("-") for n in names)
    value = manifests.label_value(long_name)
    assert len(value) <= 63 and value == manifests.label_value(long_name)
    assert manifests.label_value(long_name + "b") != value
    assert manifests.job_name("gj-short", "uid-1", 0).startswith("gj-short-")


def test_job_names_of_two_guidelinejobs_never_collide() -> None:
    # Before: CR `x-r1` run 0 and CR `x` run 1 were both Job `x-r1`.
    first = manifests.job_name("x", "uid-of-x", 1)
    other = manifests.job_name(first, "uid-of-other", 0)
    assert first != other and manifests.job_name("x-r1", "uid-of-other", 0) != first
    # A fixed-length suffix: equal names imply equal CR names (one CR per namespace).
    names = {manifests.job_name(f"cr-{i}", f"uid-{i}", run) for i in range(50) for run in range(3)}
    assert len(names) == 150
    assert {len(n) - len(n.rsplit("-", 1)[0]) for n in names} == {1 + manifests.JOB_SUFFIX_CHARS}


def test_only_allowlisted_labels_reach_the_job_and_pods() -> None:
    labels = {
        "team": "a",
        "app": "payments",
        gj.LABEL_MANAGED_BY: "x",
        "kueue.x-k8s.io/queue-name": "q",
    }
    allowed = manifests.allowed_labels(
        labels, ["team", gj.LABEL_MANAGED_BY, manifests.KUEUE_QUEUE_LABEL]
    )
    assert allowed == {"team": "a"}  # never the operator's own, never an unlisted one
    assert manifests.allowed_labels(labels, []) == {}


def test_the_event_id_label_is_believed_only_for_the_cr_its_row_records() -> None:
    from guideline_operator import rows

    claimed = cr()  # labelled EVENT_ID, uid cr-uid-1, name gj-abcde in ns1
    row = {"cr_uid": "cr-uid-1", "cr_name": "gj-abcde", "namespace": "ns1"}

    def row_of(found: dict[str, Any] | None) -> Any:
        return lambda event_id: found if str(event_id) == EVENT_ID else None

    assert rows.identify(claimed, row_of(row)) == (EVENT_ID, True)
    # Someone else's CR claiming the job (another uid, another name): a job of its own.
    assert rows.identify(claimed, row_of({**row, "cr_uid": "victims-uid"})) == ("cr-uid-1", False)
    squat = {**row, "cr_uid": None, "cr_name": "gj-other"}
    assert rows.identify(claimed, row_of(squat)) == ("cr-uid-1", False)
    assert rows.identify(claimed, row_of(None)) == ("cr-uid-1", False)
    # The dispatcher's CR, not recorded yet (first create, or a re-create in the outbox).
    for pending in ({**row, "cr_uid": None}, {**row, "cr_uid": "old", "dispatch_pending": True}):
        with pytest.raises(rows.NotRecordedYetError):
            rows.identify(claimed, row_of(pending))
    # An API row before the dispatcher recorded anything has no name yet either: the CR
    # named as the dispatcher names it is its own, not recorded yet; another name is not.
    unrecorded = {"cr_uid": None, "cr_name": None, "namespace": "ns1", "dispatch_pending": True}
    dispatched = cr()
    dispatched["metadata"]["name"] = gj.cr_name_for(EVENT_ID)
    with pytest.raises(rows.NotRecordedYetError):
        rows.identify(dispatched, row_of(unrecorded))
    assert rows.identify(claimed, row_of(unrecorded)) == ("cr-uid-1", False)
    # In another namespace the same name is another object.
    other_ns = {**row, "cr_uid": None, "namespace": "ns2"}
    assert rows.identify(claimed, row_of(other_ns)) == ("cr-uid-1", False)
    bad = cr()
    bad["metadata"]["labels"] = {gj.LABEL_EVENT_ID: "not-a-uuid"}
    assert rows.identify(bad, row_of(row)) == ("cr-uid-1", False)


# --- observing Jobs and pods -------------------------------------------------------------


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


# --- conditions and status -----------------------------------------------------------------


def test_conditions_transition_time_moves_only_on_status_change() -> None:
    first = observe.set_condition(
        [], "Queued", True, "Queued", "position 2 of 2", now=NOW, generation=1
    )
    later = NOW + timedelta(seconds=30)
    same = observe.set_condition(
        first, "Queued", True, "Queued", "position 1 of 1", now=later, generation=1
    )
    assert same[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    assert same[0]["message"] == "position 1 of 1"
    flipped = observe.set_condition(same, "Queued", False, "Admitted", "", now=later, generation=1)
    assert flipped[0]["lastTransitionTime"] == observe.format_time(later)


def test_desired_status_and_patch_for_each_phase() -> None:
    base = admitted({"attempts": 0, "conditions": []})
    running = observe.observe(base, job(), [pod("p1", "Running", started=-3)], NOW)
    desired = observe.desired_status(base, running, now=NOW)
    conds = {c["type"]: c for c in desired["conditions"]}
    assert desired["phase"] == "PROCESSING" and desired["attempts"] == 1
    assert desired["startedAt"] == ts(-3) and desired["observedGeneration"] == 1
    assert [c["type"] for c in desired["conditions"]] == [t.value for t in observe.CONDITION_TYPES]
    assert conds["Running"]["status"] == "True"
    assert conds["Queued"]["status"] == "False" and conds["Queued"]["reason"] == "Admitted"
    assert conds["Succeeded"]["status"] == conds["Failed"]["status"] == "False"
    patch = observe.status_patch(base["status"], desired)
    assert "error" not in patch and "completedAt" not in patch  # absent stays absent
    assert patch["phase"] == "PROCESSING"
    # Applying the same observation again changes nothing.
    applied = {**base, "status": {**base["status"], **patch}}
    again = observe.desired_status(applied, running, now=NOW + timedelta(seconds=9))
    assert observe.status_patch(applied["status"], again) == {}

    failed_job = job(conditions=[condition("Failed", "DeadlineExceeded")])
    failed = observe.observe(applied, failed_job, [], NOW)
    desired = observe.desired_status(applied, failed, now=NOW)
    conds = {c["type"]: c for c in desired["conditions"]}
    assert conds["Failed"]["status"] == "True" and conds["Failed"]["reason"] == "DeadlineExceeded"
    assert conds["Running"]["status"] == "False"
    assert desired["error"]["reason"] == "DeadlineExceeded" and desired["completedAt"] == ts(0)


def test_queued_condition_keeps_the_position_written_by_the_queue() -> None:
    message = observe.queue_message(3, 7, 4)
    assert message == "position 3 of 7 in the queue; 4 jobs running"
    conditions = observe.set_condition([], "Queued", True, "Queued", message, now=NOW, generation=1)
    body = cr(status={"phase": "PENDING", "eventId": EVENT_ID, "conditions": conditions})
    obs = observe.observe(body, None, [], NOW)
    desired = observe.desired_status(body, obs, now=NOW + timedelta(seconds=5))
    [queued] = [c for c in desired["conditions"] if c["type"] == "Queued"]
    assert queued["message"] == message and queued["status"] == "True"
    assert "queuePosition" not in desired  # the queue owns it while waiting


# --- the queue -----------------------------------------------------------------------------


def body_of(name: str, created: float, event_id: str, **status: Any) -> dict[str, Any]:
    """An accepted GuidelineJob (status.eventId set) waiting in the queue."""
    body = cr(name=name, status={"phase": "PENDING", "eventId": event_id, **status})
    body["metadata"].update(
        uid=f"uid-{name}", creationTimestamp=ts(created), labels={gj.LABEL_EVENT_ID: event_id}
    )
    return body


def filled(*bodies: tuple[str, dict[str, Any]]) -> queue.Registry:
    registry = queue.Registry()
    for tenant, body in bodies:
        registry.upsert(body)
        registry.set_tenant(body["metadata"]["uid"], tenant)
    return registry


def admit(registry: queue.Registry, entry: queue.QueueEntry) -> None:
    """What the reconciler's admission write does to the registry."""
    body = body_of(entry.name, 0, entry.event_id, phase="PROCESSING", jobName=entry.job_name)
    body["metadata"]["resourceVersion"] = str(int(entry.resource_version) + 1)
    registry.upsert(body)


def test_queue_order_is_submission_order() -> None:
    registry = filled(
        ("t", body_of("a", 10, "0195-0003")),
        ("t", body_of("b", 5, "0195-0002")),
        ("t", body_of("c", 5, "0195-0001")),  # same second as b: event_id breaks the tie
        ("t", body_of("e", 0, "0195-0000", phase="COMPLETED")),
        (
            "t",
            cr(
                name="g",
                status={"phase": "PENDING", "eventId": "0195-0009"},
                **{gj.ANNOTATION_CANCEL_REQUESTED: ts(0)},
            ),
        ),
    )
    assert registry.waiting_count() == 3
    order = []
    while (entry := registry.next_waiting(lambda t: 0)) is not None:
        order.append(entry.name)
        admit(registry, entry)
    assert order == ["c", "b", "a"]
    assert registry.running() == 3 and registry.waiting_count() == 0


def test_unaccepted_or_unknown_tenant_jobs_are_not_admitted() -> None:
    registry = queue.Registry()
    registry.upsert(cr(name="new", status={}))  # not accepted yet: its pass accepts it first
    accepted = body_of("b", 0, "0195-0001")
    registry.upsert(accepted)  # no tenant recorded yet
    assert registry.next_waiting(lambda t: 0) is None
    registry.set_tenant("uid-b", "t")
    assert registry.next_waiting(lambda t: 0).name == "b"


def test_tenants_take_turns_whatever_one_has_queued() -> None:
    flood = [("flood", body_of(f"f{i}", i, f"0195-{i:05d}")) for i in range(2000)]
    registry = filled(*flood, ("small", body_of("s0", 5000, "0195-99999")))
    first = registry.next_waiting(lambda t: 0)
    admit(registry, first)
    second = registry.next_waiting(lambda t: 0)
    # Submitted last, started within one slot turnover.
    assert {first.name, second.name} == {"f0", "s0"}


def test_a_tenant_that_arrives_is_next_in_turn() -> None:
    registry = filled(*[("flood", body_of(f"f{i}", i, f"0195-{i:05d}")) for i in range(50)])
    admit(registry, registry.next_waiting(lambda t: 0))
    registry.upsert(body_of("s0", 100, "0195-99999"))
    registry.set_tenant("uid-s0", "small")
    assert registry.next_waiting(lambda t: 0).name == "s0"  # the very next free slot


def test_a_tenants_running_limit_holds_and_others_use_the_slots() -> None:
    registry = filled(
        *[("a", body_of(f"a{i}", i, f"0195-{i:04d}")) for i in range(5)],
        *[("b", body_of(f"b{i}", 100 + i, f"0195-1{i:03d}")) for i in range(5)],
    )
    limits = {"a": 1}
    started = []
    while (entry := registry.next_waiting(lambda t: limits.get(t, 0))) is not None:
        started.append(entry.name)
        admit(registry, entry)
    assert started.count("a0") == 1 and not any(n.startswith("a") and n != "a0" for n in started)
    assert registry.running("a") == 1 and registry.running("b") == 5


def test_retry_entry_waits_for_its_new_job() -> None:
    admitted_before = body_of("a", 0, "0195-0001", phase="FAILED", jobName="whatever")
    registry = filled(("t", admitted_before))
    assert registry.waiting_count() == 0 and registry.running() == 0
    retried = body_of("a", 0, "0195-0001", retryRequests=1, jobName=None)
    retried["metadata"]["resourceVersion"] = "200"
    registry.upsert(retried)
    [entry] = registry.snapshot()
    assert entry.job_name == manifests.job_name("a", "uid-a", 1) and entry.waiting
    assert registry.next_waiting(lambda t: 0).name == "a"


def test_registry_ignores_a_stale_watch_event() -> None:
    registry = queue.Registry()
    newer = cr(status={"phase": "PROCESSING"})
    newer["metadata"]["resourceVersion"] = "120"
    older = cr(status={"phase": "PENDING"})
    older["metadata"]["resourceVersion"] = "110"
    registry.upsert(newer)
    registry.upsert(older)
    [only] = registry.snapshot()
    assert only.phase == Phase.PROCESSING
    registry.remove(only.uid)
    assert len(registry) == 0


def test_job_slots() -> None:
    assert observe.job_active(job())
    assert not observe.job_active(job(suspend=True))
    assert not observe.job_active(job(conditions=[condition("Complete")]))
    assert not observe.job_active(job(conditions=[condition("Failed", "BackoffLimitExceeded")]))
    assert observe.job_active(job(conditions=[condition("FailureTarget")]))  # pods still ending


# --- metrics from results --------------------------------------------------------------------


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


def test_metrics_record_terminal_figures_and_llm_usage() -> None:
    metrics = Metrics(models=["gpt-4o-mini"])
    result = {
        "summary": "s",
        "checklist": [],
        "provider": "openai",
        "model": "gpt-4o-mini",
        "usage": {
            "summarize": {
                "prompt_tokens": 100,
                "completion_tokens": 20,
                "total_tokens": 120,
                "calls": 1,
            },
            "checklist": {
                "prompt_tokens": 30,
                "completion_tokens": 40,
                "total_tokens": 70,
                "calls": 1,
            },
        },
        "durations": {"summarize": 1.5, "checklist": 0.5},
    }
    metrics.finished(
        "completed",
        reason="Completed",
        queued_at=NOW,
        run_started_at=NOW + timedelta(seconds=2),
        completed_at=NOW + timedelta(seconds=12),
        result=result,
    )
    metrics.finished(
        "failed",
        reason="BackoffLimitExceeded",
        queued_at=NOW,
        run_started_at=None,
        completed_at=NOW,
        result=None,
    )
    assert (
        sample(metrics, "guideline_jobs_finished_total", {"outcome": "completed", "reason": ""})
        == 1
    )
    assert (
        sample(
            metrics,
            "guideline_jobs_finished_total",
            {"outcome": "failed", "reason": "BackoffLimitExceeded"},
        )
        == 1
    )
    assert sample(metrics, "guideline_job_processing_seconds_sum", {"outcome": "completed"}) == 10
    assert sample(metrics, "guideline_job_end_to_end_seconds_sum", {"outcome": "completed"}) == 12
    tokens = {"step": "summarize", "model": "gpt-4o-mini", "kind": "prompt"}
    assert sample(metrics, "guideline_llm_tokens_total", tokens) == 100
    assert sample(metrics, "guideline_llm_tokens_total", {**tokens, "kind": "total"}) is None
    assert sample(metrics, "guideline_llm_tokens_total", {**tokens, "kind": "calls"}) is None
    assert (
        sample(
            metrics,
            "guideline_llm_step_duration_seconds_sum",
            {"step": "checklist", "model": "gpt-4o-mini"},
        )
        == 0.5
    )


def test_metric_labels_are_bounded() -> None:
    """The runner writes the result: a model outside allowed_models, an unknown step or an
    unknown failure reason become `other`, so no result can mint new series."""
    metrics = Metrics(models=["gpt-4o-mini"])
    for i in range(3):
        metrics.llm_figures(
            {
                "model": f"invented-{i}",
                "durations": {f"step-{i}": 1.0, "summarize": 1.0},
                "usage": {"summarize": {"prompt_tokens": 1, f"kind{i}_tokens": 5}},
            }
        )
        metrics.finished(
            "failed", reason=f"Made up {i}", queued_at=None, run_started_at=None,
            completed_at=None, result=None,
        )  # fmt: skip
    models = {
        s.labels["model"]
        for f in metrics.registry.collect()
        for s in f.samples
        if "model" in s.labels
    }
    steps = {
        s.labels["step"]
        for f in metrics.registry.collect()
        for s in f.samples
        if "step" in s.labels
    }
    assert models == {"other"} and steps == {"summarize", "other"}
    failed = {"outcome": "failed", "reason": "other"}
    assert sample(metrics, "guideline_jobs_finished_total", failed) == 3
    kinds = {
        s.labels["kind"]
        for f in metrics.registry.collect()
        for s in f.samples
        if "kind" in s.labels
    }
    assert kinds == {"prompt"}


@pytest.mark.parametrize("bad", [{"usage": "x", "durations": [1]}, {"usage": {"s": 3}}, {}])
def test_llm_figures_tolerate_unknown_shapes(bad: dict[str, Any]) -> None:
    metrics = Metrics()
    metrics.llm_figures(bad)
    assert (
        sample(
            metrics, "guideline_llm_tokens_total", {"step": "s", "model": "unknown", "kind": "x"}
        )
        is None
    )


# --- command line and kopf settings ------------------------------------------------------------


def test_command_line_overrides_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from guideline_operator.main import build_settings, parse_args

    monkeypatch.setenv("GUIDELINE_NAMESPACE", "from-env")
    monkeypatch.setenv("GUIDELINE_MAX_CONCURRENT_JOBS", "7")
    settings = build_settings(parse_args([]))
    assert (settings.namespace, settings.max_concurrent_jobs) == ("from-env", 7)
    assert not settings.standalone and settings.peering_name is None
    settings = build_settings(
        parse_args(["--peering", "gl", "--priority", "20", "-n", "wards", "--metrics-port", "0"])
    )
    assert (settings.peering_name, settings.peering_priority) == ("gl", 20)
    assert (settings.namespace, settings.metrics_port, settings.all_namespaces) == (
        "wards",
        0,
        False,
    )
    assert build_settings(parse_args(["--standalone", "-A"])).all_namespaces
    with pytest.raises(SystemExit):
        parse_args(["--standalone", "--peering", "gl"])


def test_kopf_settings_write_no_diff_base() -> None:
    import kopf
    from guideline_core.settings import OperatorSettings
    from guideline_operator.handlers import kopf_settings

    ks = kopf_settings(OperatorSettings())
    body = cr(status={"phase": "PENDING"})
    body["spec"]["guidelineText"] = "x" * gj.MAX_GUIDELINE_CHARS
    storage = ks.persistence.diffbase_storage
    # Every object reads as handled already (no create/update cause), and nothing is stored.
    assert storage.fetch(body=kopf.Body(body)) == storage.build(body=kopf.Body(body))
    patch = kopf.Patch()
    storage.store(body=kopf.Body(body), patch=patch, essence=storage.build(body=kopf.Body(body)))
    assert not patch
    assert ks.persistence.finalizer == "ingest.guidelines.dev/operator"
    # kopf's progress lives under status.kopf, apart from the operator's status fields.
    assert ks.persistence.progress_storage._field == ("status", "kopf", "progress")
    # No cluster-wide scanning of Namespaces/CRDs that its namespaced Role does not allow.
    assert ks.scanning.disabled


def test_kopf_log_records_get_the_event_id() -> None:
    import logging

    from guideline_operator.main import KopfRecordFilter

    record = logging.makeLogRecord(
        {
            "msg": "Handler failed",
            "k8s_ref": {"kind": "GuidelineJob", "namespace": "ns1", "name": "gj-abcde"},
            "k8s_skip": False,
            "settings": object(),
        }
    )
    assert KopfRecordFilter({("ns1", "gj-abcde"): EVENT_ID}).filter(record)
    assert record.event_id == EVENT_ID and record.object == "GuidelineJob/ns1/gj-abcde"
    assert not hasattr(record, "settings") and not hasattr(record, "k8s_ref")


def test_finished_guidelinejobs_leave_etcd_after_an_hour_by_default() -> None:
    """A GuidelineJob holds its guideline text in etcd: by default a finished one is
    deleted an hour after it finished (its row and result stay in PostgreSQL)."""
    from guideline_operator.housekeeping import Retention

    settings = OperatorSettings(_env_file=None)
    retention = Retention(None, Metrics(), seconds=settings.cr_retention_seconds)  # type: ignore[arg-type]

    def finished(ago: timedelta) -> dict[str, Any]:
        return {"metadata": {}, "status": {"completedAt": (NOW - ago).isoformat()}}

    assert not retention.due(finished(timedelta(minutes=59)), NOW)
    assert retention.due(finished(timedelta(minutes=60)), NOW)
    assert not retention.due({"metadata": {}, "status": {"phase": "PROCESSING"}}, NOW)
