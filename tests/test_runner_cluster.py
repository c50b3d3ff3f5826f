"""`guideline-runner` against real GuidelineJobs on the local control plane, with the fake
LLM server: as a subprocess with the admin kubeconfig (status.result, status.partial and
a retried run that skips step 1, status.runnerError, exit codes, the termination message,
the key kept out of everything), and as the pod of a real Job with only the runner's
ServiceAccount and RBAC (in-cluster credentials, podFailurePolicy on exit code 42), which
runs on the real node (marker node)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from guideline_core import resource as gj
from guideline_core.resource import PLURAL, FailureReason, RunnerExit
from support.checklists import item_fields
from support.cluster import REPO_ROOT, LocalCluster, wait_for
from support.fake_llm import FakeLLM, FakeLLMProcess, user_text

pytestmark = pytest.mark.cluster

API_KEY = "sk-test-Kx93CLUSTERNOTAREALKEY7Qw"
RUNNER = str(Path(sys.executable).parent / "guideline-runner")
GUIDELINE = (
    "Laboratory safety\n\n"
    "Everyone must wear a lab coat and safety glasses in the laboratory. "
    "Chemical waste shall be collected in the labelled containers. "
    "Spills should be reported to the lab manager at once. "
    "Visitors may observe from the gallery."
)
SUMMARY = "Wear coats and glasses; collect chemical waste; report spills."
CHECKLIST = [
    {
        "item": "Wear a lab coat and safety glasses",
        "priority": "high",
        "category": "ppe",
        "quote": "Everyone must wear a lab coat and safety glasses in the laboratory.",
    },
    {
        "item": "Report spills to the lab manager",
        "priority": "medium",
        "category": "incidents",
        "quote": "Spills should be reported to the lab manager at once.",
    },
]
RUNNER_RBAC = REPO_ROOT / "hack" / "manifests" / "runner-rbac.yaml"


@dataclass
class Run:
    returncode: int
    stderr: str
    termination: str

    def log_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stderr.splitlines() if line.startswith("{")]


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    with FakeLLM({"summary": SUMMARY, "checklist": CHECKLIST}) as server:
        yield server


def create_guideline_job(cluster: LocalCluster, namespace: str, **spec: Any) -> dict[str, Any]:
    manifest = gj.guideline_job_manifest(
        event_id=uuid.uuid4(), guideline_text=spec.pop("text", GUIDELINE), **spec
    )
    created = cluster.create(manifest, namespace=namespace)
    return created["items"][0] if "items" in created else created


def status_of(cluster: LocalCluster, namespace: str, name: str) -> dict[str, Any]:
    return cluster.get_json(PLURAL, name, "-n", namespace).get("status") or {}


def run_runner(
    cluster: LocalCluster,
    namespace: str,
    name: str,
    fake: FakeLLM | None,
    tmp_path: Path,
    **env: str,
) -> Run:
    termination = tmp_path / f"termination-{uuid.uuid4().hex[:6]}"
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "KUBECONFIG": str(cluster.kubeconfig),
        "GUIDELINE_JOB_NAME": name,
        "GUIDELINE_NAMESPACE": namespace,
        "GUIDELINE_PROVIDER": "openai",
        "GUIDELINE_MODEL": "fake-model-2",
        "GUIDELINE_SDK_MAX_RETRIES": "1",
        "GUIDELINE_REQUEST_TIMEOUT_SECONDS": "10",
        "GUIDELINE_TERMINATION_MESSAGE_PATH": str(termination),
        "OPENAI_API_KEY": API_KEY,
    }
    if fake is not None:
        environment["OPENAI_BASE_URL"] = fake.base_url
    environment.update(env)
    # cwd: a directory without a .env, so only this environment configures the runner.
    done = subprocess.run(
        [RUNNER], env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    text = termination.read_text() if termination.exists() else ""
    return Run(done.returncode, done.stderr, text)


def assert_no_key(*texts: str) -> None:
    for text in texts:
        assert API_KEY not in text


def test_success_writes_partial_and_result(
    cluster: LocalCluster, namespace: str, fake: FakeLLM, tmp_path: Path
) -> None:
    job = create_guideline_job(cluster, namespace, title="Lab safety")
    name = job["metadata"]["name"]
    event_id = gj.event_id_of(job)

    run = run_runner(cluster, namespace, name, fake, tmp_path)

    assert run.returncode == RunnerExit.OK, run.stderr
    status = status_of(cluster, namespace, name)
    result = status["result"]
    assert result["summary"] == SUMMARY
    assert item_fields(result["checklist"]) == item_fields(CHECKLIST)
    assert (result["provider"], result["model"], result["degraded"]) == (
        "openai",
        "fake-model-2",
        False,
    )
    assert result["usage"]["summarize"]["calls"] == result["usage"]["checklist"]["calls"] == 1
    assert set(result["durations"]) == {"summarize", "checklist"}
    assert status["partial"]["summary"] == SUMMARY
    assert status["partial"]["usage"]["summarize"]["total_tokens"] > 0
    assert "runnerError" not in status
    assert SUMMARY in user_text(fake.requests("checklist")[0]["body"])
    records = run.log_records()
    assert records and all(r.get("event_id") == event_id for r in records)
    assert all(r.get("attempt") == 1 for r in records)  # no operator counting: first attempt
    steps = {(r["msg"], r.get("step")) for r in records}
    assert {("step finished", "summarize"), ("step finished", "checklist")} <= steps
    assert run.termination == ""
    assert_no_key(run.stderr, json.dumps(status))

    # A pod run again after success (e.g. lost before the Job saw it exit) does nothing.
    requests_before = len(fake.requests())
    again = run_runner(cluster, namespace, name, fake, tmp_path)
    assert again.returncode == RunnerExit.OK
    assert len(fake.requests()) == requests_before


def test_a_retried_run_reuses_the_kept_summary(
    cluster: LocalCluster, namespace: str, fake: FakeLLM, tmp_path: Path
) -> None:
    name = create_guideline_job(cluster, namespace)["metadata"]["name"]
    fake.set_script(
        {
            "summary": SUMMARY,
            "checklist": CHECKLIST,
            "rules": [{"step": "checklist", "status": 503, "times": None, "retry_after": 0.05}],
        }
    )

    first = run_runner(cluster, namespace, name, fake, tmp_path)

    assert first.returncode == RunnerExit.RETRYABLE, first.stderr
    status = status_of(cluster, namespace, name)
    assert status["partial"]["summary"] == SUMMARY
    assert "result" not in status
    error = status["runnerError"]
    assert (error["reason"], error["retryable"]) == (FailureReason.LLM_ERROR, True)
    assert "503" in error["message"]
    assert json.loads(first.termination) == error

    fake.set_script({"summary": "A DIFFERENT SUMMARY", "checklist": CHECKLIST})
    second = run_runner(cluster, namespace, name, fake, tmp_path)

    assert second.returncode == RunnerExit.OK, second.stderr
    assert [r["step"] for r in fake.requests()] == ["checklist"]
    assert SUMMARY in user_text(fake.requests()[0]["body"])
    result = status_of(cluster, namespace, name)["result"]
    assert result["summary"] == SUMMARY
    assert item_fields(result["checklist"]) == item_fields(CHECKLIST)


@pytest.mark.parametrize(
    ("script", "env", "reason", "in_message"),
    [
        (
            {"rules": [{"status": 401, "times": None, "message": "Incorrect API key: {auth}"}]},
            {},
            FailureReason.LLM_REJECTED,
            "401",
        ),
        ({"checklist": "{not json"}, {}, FailureReason.INVALID_OUTPUT, "checklist"),
        (
            {"rules": [{"step": "checklist", "status": "hang", "seconds": 60}]},
            {"GUIDELINE_SOFT_TIMEOUT_SECONDS": "2", "GUIDELINE_REQUEST_TIMEOUT_SECONDS": "30"},
            FailureReason.TIMEOUT,
            "Processing timeout after 2 s",
        ),
    ],
    ids=["unauthorized", "malformed-checklist", "soft-timeout"],
)
def test_failures_a_retry_cannot_fix_exit_42(
    cluster: LocalCluster,
    namespace: str,
    fake: FakeLLM,
    tmp_path: Path,
    script: dict[str, Any],
    env: dict[str, str],
    reason: FailureReason,
    in_message: str,
) -> None:
    name = create_guideline_job(cluster, namespace)["metadata"]["name"]
    fake.set_script(script)

    run = run_runner(cluster, namespace, name, fake, tmp_path, **env)

    assert run.returncode == RunnerExit.DO_NOT_RETRY, run.stderr
    status = status_of(cluster, namespace, name)
    error = status["runnerError"]
    assert (error["reason"], error["retryable"]) == (reason, False)
    assert in_message in error["message"]
    assert json.loads(run.termination) == error
    assert "result" not in status
    assert_no_key(run.stderr, run.termination, json.dumps(status))


def test_extractive_provider_from_the_spec_needs_no_llm(
    cluster: LocalCluster, namespace: str, fake: FakeLLM, tmp_path: Path
) -> None:
    name = create_guideline_job(cluster, namespace, provider="extractive")["metadata"]["name"]

    run = run_runner(cluster, namespace, name, fake, tmp_path, OPENAI_API_KEY="")

    assert run.returncode == RunnerExit.OK, run.stderr
    result = status_of(cluster, namespace, name)["result"]
    assert (result["provider"], result["model"], result["degraded"]) == (
        "extractive",
        "extractive-v1",
        False,
    )
    items = {i["item"]: i["priority"] for i in result["checklist"]}
    assert items["Chemical waste shall be collected in the labelled containers."] == "high"
    assert items["Spills should be reported to the lab manager at once."] == "medium"
    assert fake.requests() == []


def test_strength_and_grade_survive_the_status_schema(
    cluster: LocalCluster, namespace: str, fake: FakeLLM, tmp_path: Path
) -> None:
    # The apiserver prunes status fields its CRD does not declare.
    text = (
        "## Waste\n\nChemical waste shall not be poured into sinks (Strong recommendation).\n"
        "Spills should be reported to the lab manager at once.\n"
        "Spills should be reported to the lab manager at once.\n"
    )
    name = create_guideline_job(cluster, namespace, provider="extractive", text=text)
    name = name["metadata"]["name"]

    run = run_runner(cluster, namespace, name, fake, tmp_path, OPENAI_API_KEY="")

    assert run.returncode == RunnerExit.OK, run.stderr
    result = status_of(cluster, namespace, name)["result"]
    graded, plain = result["checklist"]
    grade = "Strong recommendation"
    assert (graded["strength"], graded["grade"]) == (
        "must_not",
        {"text": grade, "start": text.index(grade), "end": text.index(grade) + len(grade)},
    )
    # A null is a deletion in the runner's merge patch: no grade, no key.
    assert (plain["strength"], "grade" in plain) == ("should", False)
    assert result["quality"]["capped_items"] == 0
    # The obligation quoted twice is one item with both places among its sources.
    spills = "Spills should be reported to the lab manager at once."
    assert [(x["start"], x["quote"]) for x in plain["sources"]] == [
        (text.index(spills), spills),
        (text.rindex(spills), spills),
    ]
    assert graded["sources"] == [graded["source"]]
    # A run shorter than progress_interval_seconds writes no progress.
    assert "progress" not in status_of(cluster, namespace, name)


def test_a_missing_guideline_job_is_not_retried(
    cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    run = run_runner(cluster, namespace, "gj-does-not-exist", None, tmp_path)

    assert run.returncode == RunnerExit.DO_NOT_RETRY
    message = json.loads(run.termination)
    assert message["reason"] == FailureReason.INVALID_INPUT
    assert "not found" in message["message"]


def runner_job(name: str, job_name: str, base_url: str, image: str) -> dict[str, Any]:
    """A batch/v1 Job running the runner as the contract describes (as the operator will)."""
    env = [
        {"name": "GUIDELINE_JOB_NAME", "value": name},
        {
            "name": "GUIDELINE_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        },
        {"name": "GUIDELINE_PROVIDER", "value": "openai"},
        {"name": "GUIDELINE_SDK_MAX_RETRIES", "value": "0"},
        {"name": "OPENAI_BASE_URL", "value": base_url},
        {
            "name": "OPENAI_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "guideline-openai", "key": "api-key"}},
        },
    ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name},
        "spec": {
            "backoffLimit": 2,
            "podFailurePolicy": {
                "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]
            },
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": "guideline-runner",
                    "containers": [
                        {
                            "name": "runner",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "command": ["guideline-runner"],
                            "env": env,
                        }
                    ],
                }
            },
        },
    }


# On the real node (make test's second session): the runner in a container of `make image`'s
# image, reaching the API server through the `kubernetes` Service and the fake at pod_host.
@pytest.mark.node
def test_runner_pods_with_only_the_runner_rbac(cluster: LocalCluster, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(RUNNER_RBAC))
    cluster.kubectl(
        "create", "secret", "generic", "guideline-openai", "-n", namespace,
        f"--from-literal=api-key={API_KEY}",
    )  # fmt: skip
    good = create_guideline_job(cluster, namespace)["metadata"]["name"]
    bad = create_guideline_job(cluster, namespace)["metadata"]["name"]
    for name in (good, bad):  # as the operator does before it creates the Job: the runner
        # ServiceAccount may write only the status of the GuidelineJob of its pod's Job
        cluster.kubectl(
            "patch", PLURAL, name, "-n", namespace, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"jobName": f"run-{name}"}}),
        )  # fmt: skip
    image = cluster.pod_image()
    script = {"summary": SUMMARY, "checklist": CHECKLIST}
    with FakeLLMProcess(script, host=cluster.pod_host) as fake:
        nowhere = fake.base_url.replace("/v1", "/nowhere/v1")
        cluster.create(
            [
                runner_job(good, f"run-{good}", fake.base_url, image),
                runner_job(bad, f"run-{bad}", nowhere, image),
            ],
            namespace=namespace,
        )
        done = cluster.wait_for_job_condition(namespace, f"run-{good}", {"Complete", "Failed"})
        failed = cluster.wait_for_job_condition(namespace, f"run-{bad}", {"Complete", "Failed"})
        received = fake.requests()

    assert done["type"] == "Complete"
    assert status_of(cluster, namespace, good)["result"]["summary"] == SUMMARY
    assert {r["authorization"] for r in received} == {f"Bearer {API_KEY}"}  # from the Secret

    # The fake answers 404 under /nowhere: a 4xx a retry cannot fix -> exit 42 -> FailJob.
    assert (failed["type"], failed["reason"]) == ("Failed", "PodFailurePolicy")
    pods = cluster.job_pods(namespace, f"run-{bad}")
    assert len(pods) == 1
    terminated = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == RunnerExit.DO_NOT_RETRY
    message = json.loads(terminated["message"])
    assert (message["reason"], message["retryable"]) == (FailureReason.LLM_REJECTED, False)
    assert status_of(cluster, namespace, bad)["runnerError"] == message
    logs = cluster.pod_log(namespace, pods[0]["metadata"]["name"])
    assert '"msg": "runner failed"' in logs
    assert_no_key(logs, json.dumps(pods[0]["status"]))


def test_sigterm_ends_the_runner_at_once_with_143(
    cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    """A cancelled or deadline-exceeded pod gets SIGTERM; as a container's PID 1 the runner
    must handle it itself (the default action does not apply to PID 1)."""
    job = create_guideline_job(cluster, namespace)
    hang = {"summary": SUMMARY, "rules": [{"step": "any", "status": "hang", "seconds": 60}]}
    with FakeLLM(hang) as server:
        environment = {
            "PATH": os.environ["PATH"],
            "KUBECONFIG": str(cluster.kubeconfig),
            "GUIDELINE_JOB_NAME": job["metadata"]["name"],
            "GUIDELINE_NAMESPACE": namespace,
            "GUIDELINE_PROVIDER": "openai",
            "GUIDELINE_TERMINATION_MESSAGE_PATH": str(tmp_path / "termination"),
            "OPENAI_API_KEY": API_KEY,
            "OPENAI_BASE_URL": server.base_url,
        }
        proc = subprocess.Popen(
            [RUNNER], env=environment, cwd=tmp_path, stderr=subprocess.PIPE, text=True
        )
        try:
            wait_for(lambda: len(server.requests()) >= 1, timeout=30, message="a request")
            proc.terminate()
            returncode = proc.wait(timeout=10)
        finally:
            proc.kill()
        stderr = proc.stderr.read() if proc.stderr else ""
    assert returncode == 128 + 15
    assert "terminated by signal" in stderr


def test_a_retried_run_skips_the_sections_the_failed_one_finished(
    cluster: LocalCluster, namespace: str, fake: FakeLLM, tmp_path: Path
) -> None:
    text = "\n\n".join(
        f"# Section {n}\n\n"
        + " ".join(f"Operators must check valve {n}-{k} daily." for k in range(3))
        for n in range(24)
    )
    name = create_guideline_job(cluster, namespace, text=text)["metadata"]["name"]
    fake.set_script(
        {
            "checklist": "obligations",
            "rules": [
                {"step": "checklist", "status": 200, "times": 3},
                {"step": "checklist", "status": 503, "times": None, "retry_after": 0.05},
            ],
        }
    )
    small = {"GUIDELINE_CHUNK_CHARS": "600", "GUIDELINE_LLM_CONCURRENCY": "1"}

    first = run_runner(cluster, namespace, name, fake, tmp_path, **small)

    assert first.returncode == RunnerExit.RETRYABLE, first.stderr
    status = status_of(cluster, namespace, name)
    assert status["runnerError"]["retryable"] is True
    assert status["partial"]["summary"]  # step 1's write, then the sections with the error
    assert len(status["partial"]["sections"]) == 3

    fake.set_script({"checklist": "obligations"})
    second = run_runner(cluster, namespace, name, fake, tmp_path, **small)

    assert second.returncode == RunnerExit.OK, second.stderr
    assert fake.requests("summarize") == []
    result = status_of(cluster, namespace, name)["result"]
    assert result["usage"]["checklist"]["calls_saved"] == 3
    assert result["usage"]["checklist"]["calls"] == len(fake.requests("checklist"))
    assert result["quality"]["coverage"] == 1.0
