"""The node agent (hack/node_agent.py) with the real Job controller, garbage collector and
TTL controller: Jobs complete, fail, retry, time out and are cleaned up as on a real
cluster; pods get their env, Secrets and ServiceAccount identity; deletion and deadlines
end the processes."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from support.cluster import (
    REPO_ROOT,
    LocalCluster,
    account_with_role,
    process_alive,
    process_start_time,
    wait_for,
)

pytestmark = pytest.mark.cluster

PYTHON = str(Path(sys.executable))


def container(command: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": "main", "image": "guideline-ingest:test", "command": command, **extra}


def job(
    name: str, command: list[str], *, pod: dict[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    pod_spec = {"restartPolicy": "Never", "containers": [container(command)], **(pod or {})}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": {"spec": pod_spec}, **spec},
    }


def bare_pod(name: str, command: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [container(command)], **spec},
    }


def terminated(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["status"]["containerStatuses"][0]["state"]["terminated"]


def running_pid(cluster: LocalCluster, namespace: str, pod: str) -> tuple[int, str | None]:
    """The pid a pod's command printed as `pid=<n>` (and that process's start time)."""
    match = wait_for(
        lambda: re.search(r"pid=(\d+)", cluster.pod_log(namespace, pod)),
        timeout=60,
        message=f"pod {namespace}/{pod} to print its pid",
    )
    pid = int(match.group(1))
    return pid, process_start_time(pid)


SLEEPER = ["sh", "-c", "echo pid=$$$$; exec sleep 60"]


# --- Jobs through the real Job controller --------------------------------------------------


def test_job_exit_zero_completes(cluster: LocalCluster, namespace: str) -> None:
    command = ["sh", "-c", "echo hello from $HOSTNAME; printf 'all good' > /dev/termination-log"]
    cluster.create(job("ok", command, backoffLimit=0), namespace)
    cond = cluster.wait_for_job_condition(namespace, "ok", {"Complete", "Failed"})
    assert cond["type"] == "Complete"
    assert cond["job"]["status"]["succeeded"] == 1
    [pod] = cluster.job_pods(namespace, "ok")
    name = pod["metadata"]["name"]
    assert pod["status"]["phase"] == "Succeeded"
    state = terminated(pod)
    assert (state["exitCode"], state["reason"], state["message"]) == (0, "Completed", "all good")
    assert state["startedAt"] and state["finishedAt"]
    assert pod["status"]["podIP"] == "127.0.0.1"
    assert cluster.pod_log(namespace, name) == f"hello from {name}\n"
    # The log is also served to the API server: `kubectl logs` works.
    assert cluster.kubectl("logs", "-n", namespace, name).stdout == f"hello from {name}\n"
    # The Job controller removed its tracking finalizer after counting the pod.
    pod = cluster.get_json("pod", name, "-n", namespace)
    assert "batch.kubernetes.io/job-tracking" not in pod["metadata"].get("finalizers", [])


def test_backoff_limit_exceeded_after_exactly_three_pods(
    cluster: LocalCluster, namespace: str
) -> None:
    cluster.create(job("retry", ["sh", "-c", "echo failing; exit 1"], backoffLimit=2), namespace)
    cond = cluster.wait_for_job_condition(namespace, "retry", {"Complete", "Failed"}, timeout=180)
    assert (cond["type"], cond["reason"]) == ("Failed", "BackoffLimitExceeded")
    pods = cluster.job_pods(namespace, "retry")
    assert len(pods) == 3
    assert cond["job"]["status"]["failed"] == 3
    for pod in pods:
        assert pod["status"]["phase"] == "Failed"
        assert (terminated(pod)["exitCode"], terminated(pod)["reason"]) == (1, "Error")


def test_pod_failure_policy_fails_job_after_one_pod(cluster: LocalCluster, namespace: str) -> None:
    policy = {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": "main", "operator": "In", "values": [2]},
            }
        ]
    }
    cluster.create(
        job("fatal", ["sh", "-c", "exit 2"], backoffLimit=5, podFailurePolicy=policy), namespace
    )
    cond = cluster.wait_for_job_condition(namespace, "fatal", {"Complete", "Failed"})
    assert (cond["type"], cond["reason"]) == ("Failed", "PodFailurePolicy")
    pods = cluster.job_pods(namespace, "fatal")
    assert len(pods) == 1
    assert terminated(pods[0])["exitCode"] == 2


def test_job_active_deadline_fails_and_kills_the_process(
    cluster: LocalCluster, namespace: str
) -> None:
    cluster.create(job("slow", SLEEPER, activeDeadlineSeconds=3, backoffLimit=0), namespace)
    [pod] = wait_for(lambda: cluster.job_pods(namespace, "slow"), message="the Job's pod")
    pid, started = running_pid(cluster, namespace, pod["metadata"]["name"])
    assert process_alive(pid, started)
    cond = cluster.wait_for_job_condition(namespace, "slow", {"Complete", "Failed"})
    assert (cond["type"], cond["reason"]) == ("Failed", "DeadlineExceeded")
    wait_for(lambda: not process_alive(pid, started), timeout=60, message=f"pid {pid} to end")
    wait_for(lambda: not cluster.job_pods(namespace, "slow"), message="the pod to be deleted")


def test_pod_active_deadline_fails_the_pod(cluster: LocalCluster, namespace: str) -> None:
    cluster.create(bare_pod("pod-deadline", SLEEPER, activeDeadlineSeconds=2), namespace)
    pid, started = running_pid(cluster, namespace, "pod-deadline")
    pod = cluster.wait_for_pod_phase(namespace, "pod-deadline", {"Succeeded", "Failed"})
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["reason"] == "DeadlineExceeded"
    assert terminated(pod)["exitCode"] == 143  # SIGTERM
    assert not process_alive(pid, started)


def test_ttl_after_finished_deletes_job_and_pods(cluster: LocalCluster, namespace: str) -> None:
    cluster.create(job("short-lived", ["true"], ttlSecondsAfterFinished=1), namespace)
    wait_for(
        lambda: cluster.try_get_json("job", "short-lived", "-n", namespace) is None,
        timeout=90,
        message="the TTL controller to delete the Job",
    )
    wait_for(
        lambda: not cluster.job_pods(namespace, "short-lived"), message="its pods to be deleted"
    )


def test_many_short_pods(cluster: LocalCluster, namespace: str) -> None:
    cluster.create(
        job(
            "many",
            ["sh", "-c", "echo $JOB_COMPLETION_INDEX"],
            completions=40,
            parallelism=10,
            completionMode="Indexed",
            backoffLimit=0,
        ),
        namespace,
    )
    cond = cluster.wait_for_job_condition(namespace, "many", {"Complete", "Failed"}, timeout=300)
    assert cond["type"] == "Complete"
    assert cond["job"]["status"]["succeeded"] == 40
    outputs = sorted(
        int(cluster.pod_log(namespace, p["metadata"]["name"]))
        for p in cluster.job_pods(namespace, "many")
    )
    assert outputs == list(range(40))


# --- deletion ----------------------------------------------------------------------------------


def test_deleting_a_running_pod_ends_its_process(cluster: LocalCluster, namespace: str) -> None:
    command = [
        "sh",
        "-c",
        "trap 'echo got SIGTERM; exit 0' TERM; echo pid=$$$$; while :; do sleep 0.1; done",
    ]
    cluster.create(bare_pod("victim", command), namespace)
    pid, started = running_pid(cluster, namespace, "victim")
    assert cluster.get_json("pod", "victim", "-n", namespace)["status"]["phase"] == "Running"
    cluster.kubectl("delete", "pod", "victim", "-n", namespace, "--wait=true", timeout=90)
    assert not process_alive(pid, started)
    assert "got SIGTERM" in cluster.pod_log(namespace, "victim")


def test_sigterm_ignored_means_sigkill_after_grace(cluster: LocalCluster, namespace: str) -> None:
    command = ["sh", "-c", "trap '' TERM; echo pid=$$$$; while :; do sleep 0.1; done"]
    cluster.create(bare_pod("stubborn", command, terminationGracePeriodSeconds=2), namespace)
    pid, started = running_pid(cluster, namespace, "stubborn")
    cluster.kubectl("delete", "pod", "stubborn", "-n", namespace, "--wait=false")
    wait_for(lambda: not process_alive(pid, started), timeout=30, message="SIGKILL")
    wait_for(
        lambda: cluster.try_get_json("pod", "stubborn", "-n", namespace) is None,
        message="the pod to be removed",
    )


def test_deleting_job_in_background_removes_pods_and_processes(
    cluster: LocalCluster, namespace: str
) -> None:
    cluster.create(job("doomed", SLEEPER, parallelism=2, completions=2), namespace)
    pods = wait_for(
        lambda: (p := cluster.job_pods(namespace, "doomed")) and len(p) == 2 and p,
        message="two running pods",
    )
    pids = [running_pid(cluster, namespace, p["metadata"]["name"]) for p in pods]
    cluster.kubectl("delete", "job", "doomed", "-n", namespace, "--cascade=background")
    wait_for(lambda: not cluster.job_pods(namespace, "doomed"), timeout=90, message="pods deleted")
    for pid, started in pids:
        assert not process_alive(pid, started)


# --- what a pod gets ------------------------------------------------------------------------


def test_env_from_secret_configmap_fields_and_env_from(
    cluster: LocalCluster, namespace: str
) -> None:
    cluster.kubectl(
        "create", "secret", "generic", "creds", "-n", namespace, "--from-literal=api-key=s3cr3t"
    )
    cluster.kubectl(
        "create",
        "configmap",
        "settings",
        "-n",
        namespace,
        "--from-literal=GUIDELINE_MODEL=tiny",
        "--from-literal=MODE=fast",
    )
    env = [
        {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "api-key"}}},
        {
            "name": "MISSING",
            "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}},
        },
        {
            "name": "MODE_FROM_CM",
            "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "MODE"}},
        },
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "GREETING", "value": "hi $(POD_NAME), $$(ESCAPED)"},
    ]
    env_from = [
        {"configMapRef": {"name": "settings"}, "prefix": "CM_"},
        {"secretRef": {"name": "absent", "optional": True}},
    ]
    dump = [PYTHON, "-c", "import json, os; print(json.dumps(dict(os.environ)))"]
    pod = bare_pod("env", dump)
    pod["metadata"]["labels"] = {"app": "env-test"}
    pod["spec"]["containers"][0].update(env=env, envFrom=env_from)
    created = cluster.create(pod, namespace)
    cluster.wait_for_pod_phase(namespace, "env", {"Succeeded", "Failed"})
    seen = json.loads(cluster.pod_log(namespace, "env"))
    assert seen["API_KEY"] == "s3cr3t"
    assert "MISSING" not in seen
    assert seen["MODE_FROM_CM"] == "fast"
    assert (seen["POD_NAME"], seen["POD_NS"]) == ("env", namespace)
    assert seen["POD_UID"] == created["metadata"]["uid"]
    assert seen["APP"] == "env-test"
    assert seen["GREETING"] == "hi env, $(ESCAPED)"
    assert (seen["CM_GUIDELINE_MODEL"], seen["CM_MODE"]) == ("tiny", "fast")
    assert seen["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert seen["KUBERNETES_SERVICE_PORT"] == str(cluster.api_port)
    assert "KUBECONFIG" not in seen, "the agent's own credentials must not leak into pods"
    assert seen["PATH"].split(":")[0] == str(Path(PYTHON).parent)


def test_missing_secret_holds_pod_until_created(cluster: LocalCluster, namespace: str) -> None:
    pod = bare_pod("waits", ["sh", "-c", "echo key=$KEY"])
    pod["spec"]["containers"][0]["env"] = [
        {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "later", "key": "k"}}}
    ]
    cluster.create(pod, namespace)

    def waiting() -> dict[str, Any] | None:
        obj = cluster.get_json("pod", "waits", "-n", namespace)
        statuses = obj["status"].get("containerStatuses") or [{}]
        return statuses[0].get("state", {}).get("waiting")

    state = wait_for(waiting, message="CreateContainerConfigError")
    assert state["reason"] == "CreateContainerConfigError"
    assert 'secret "later" not found' in state["message"]
    assert cluster.get_json("pod", "waits", "-n", namespace)["status"]["phase"] == "Pending"
    cluster.kubectl(
        "create", "secret", "generic", "later", "-n", namespace, "--from-literal=k=finally"
    )
    cluster.wait_for_pod_phase(namespace, "waits", {"Succeeded"})
    assert cluster.pod_log(namespace, "waits") == "key=finally\n"


IN_CLUSTER_CLIENT = """
import json
from kubernetes import client, config
from kubernetes.client.rest import ApiException

config.load_incluster_config()
core = client.CoreV1Api()
names = [c.metadata.name for c in core.list_namespaced_config_map(NAMESPACE).items]
try:
    core.list_namespaced_secret(NAMESPACE)
    secrets = "allowed"
except ApiException as exc:
    secrets = exc.status
review = client.AuthenticationV1Api().create_self_subject_review(
    client.V1SelfSubjectReview(api_version="authentication.k8s.io/v1", kind="SelfSubjectReview")
)
print(json.dumps({"user": review.status.user_info.username, "configmaps": names,
                  "secrets": secrets}))
"""


def test_in_cluster_client_authenticates_as_the_pods_service_account(
    cluster: LocalCluster, namespace: str
) -> None:
    list_configmaps = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]
    cluster.create(
        account_with_role(namespace, "runner", "read-configmaps", list_configmaps), namespace
    )
    script = f"NAMESPACE = {namespace!r}\n{IN_CLUSTER_CLIENT}"
    # `python` resolves to the project's virtualenv through the PATH the agent gives pods.
    cluster.create(
        bare_pod("client", ["python", "-c", script], serviceAccountName="runner"), namespace
    )
    pod = cluster.wait_for_pod_phase(namespace, "client", {"Succeeded", "Failed"}, timeout=90)
    log = cluster.pod_log(namespace, "client")
    assert pod["status"]["phase"] == "Succeeded", log
    seen = json.loads(log.strip().splitlines()[-1])
    assert seen["user"] == f"system:serviceaccount:{namespace}:runner"
    assert "kube-root-ca.crt" in seen["configmaps"]
    assert seen["secrets"] == 403
    # The token came from the TokenRequest API, bound to this pod.
    mounts = pod["spec"]["containers"][0]["volumeMounts"]
    assert any(m["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount" for m in mounts)


def test_volumes_are_mounted_at_their_paths(cluster: LocalCluster, namespace: str) -> None:
    cluster.kubectl(
        "create", "configmap", "files", "-n", namespace, "--from-literal=greeting.txt=hello"
    )
    cluster.kubectl(
        "create", "secret", "generic", "secret-files", "-n", namespace, "--from-literal=pw=p4ss"
    )
    volumes = [
        {"name": "cfg", "configMap": {"name": "files"}},
        {"name": "sec", "secret": {"secretName": "secret-files", "defaultMode": 0o400}},
        {"name": "scratch", "emptyDir": {}},
        {
            "name": "info",
            "downwardAPI": {
                "items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]
            },
        },
    ]
    # Mount points missing on the host are created there (empty); keep them in one place.
    base = f"/tmp/guideline-test-mounts-{namespace}"
    mounts = [
        {"name": "cfg", "mountPath": f"{base}/cfg", "readOnly": True},
        {"name": "sec", "mountPath": f"{base}/sec", "readOnly": True},
        {"name": "scratch", "mountPath": f"{base}/scratch"},
        {"name": "info", "mountPath": f"{base}/info"},
    ]
    script = (
        f"cat {base}/cfg/greeting.txt; echo; cat {base}/sec/pw; echo; "
        f"stat -c %a {base}/sec/pw; cat {base}/info/labels; echo; "
        f"echo scratch > {base}/scratch/f && cat {base}/scratch/f; "
        f"touch {base}/cfg/x 2>/dev/null && echo writable || echo read-only"
    )
    pod = bare_pod("volumes", ["sh", "-c", script], volumes=volumes)
    pod["metadata"]["labels"] = {"tier": "test"}
    pod["spec"]["containers"][0]["volumeMounts"] = mounts
    cluster.create(pod, namespace)
    done = cluster.wait_for_pod_phase(namespace, "volumes", {"Succeeded", "Failed"})
    lines = cluster.pod_log(namespace, "volumes").splitlines()
    assert done["status"]["phase"] == "Succeeded", lines
    assert lines == ["hello", "p4ss", "400", 'tier="test"', "scratch", "read-only"]
    # The mounts lived only in the pod's mount namespace.
    assert not Path(f"{base}/cfg/greeting.txt").exists()
    shutil.rmtree(base)


def test_a_volume_over_the_checkout_hides_neither_volumes_nor_the_venv(
    cluster: LocalCluster, namespace: str
) -> None:
    """An emptyDir mounted over a parent of the checkout (CI may clone under /tmp, where a
    restricted pod mounts its /tmp emptyDir) must not hide the other volumes' sources, the
    termination-message file, or the virtualenv the command runs from."""
    cluster.kubectl(
        "create", "secret", "generic", "cover", "-n", namespace, "--from-literal=pw=s3c"
    )
    covered = str(REPO_ROOT.parent)
    volumes = [
        {"name": "cover", "emptyDir": {}},
        {"name": "sec", "secret": {"secretName": "cover"}},
    ]
    script = (
        "import pathlib; "
        "pathlib.Path('/dev/termination-log').write_text('ok ' + "
        "pathlib.Path('/var/run/guideline-test-sec/pw').read_text())"
    )
    pod = bare_pod(
        "covered", [str(REPO_ROOT / ".venv" / "bin" / "python"), "-c", script], volumes=volumes
    )
    pod["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "cover", "mountPath": covered},
        {"name": "sec", "mountPath": "/var/run/guideline-test-sec", "readOnly": True},
    ]
    cluster.create(pod, namespace)
    done = cluster.wait_for_pod_phase(namespace, "covered", {"Succeeded", "Failed"})
    assert done["status"]["phase"] == "Succeeded", cluster.pod_log(namespace, "covered")
    assert terminated(done)["message"] == "ok s3c"


def test_termination_message_falls_back_to_logs_on_error(
    cluster: LocalCluster, namespace: str
) -> None:
    pod = bare_pod("fallback", ["sh", "-c", "echo first; echo last words; exit 3"])
    pod["spec"]["containers"][0]["terminationMessagePolicy"] = "FallbackToLogsOnError"
    cluster.create(pod, namespace)
    done = cluster.wait_for_pod_phase(namespace, "fallback", {"Succeeded", "Failed"})
    state = terminated(done)
    assert (done["status"]["phase"], state["exitCode"]) == ("Failed", 3)
    assert state["message"] == "first\nlast words"


# --- robustness ----------------------------------------------------------------------------


@pytest.mark.fault
def test_pods_survive_an_apiserver_restart(cluster: LocalCluster, namespace: str) -> None:
    flag = Path(f"/tmp/guideline-test-{namespace}-go")
    flag.unlink(missing_ok=True)
    command = ["sh", "-c", f"while [ ! -e {flag} ]; do sleep 0.2; done; echo finished"]
    cluster.create(job("outlives", command, backoffLimit=0), namespace)
    [pod] = wait_for(lambda: cluster.job_pods(namespace, "outlives"), message="the pod")
    cluster.wait_for_pod_phase(namespace, pod["metadata"]["name"], {"Running"})
    cluster.cluster_sh("stop", "kube-apiserver")
    try:
        flag.touch()  # the process finishes while the API server is down
        wait_for(
            lambda: "finished" in cluster.pod_log(namespace, pod["metadata"]["name"]), timeout=30
        )
    finally:
        cluster.cluster_sh("up")
        flag.unlink(missing_ok=True)
    cond = cluster.wait_for_job_condition(namespace, "outlives", {"Complete", "Failed"})
    assert cond["type"] == "Complete"


@pytest.mark.fault
def test_agent_restart_reports_lost_containers(cluster: LocalCluster, namespace: str) -> None:
    cluster.create(bare_pod("orphan", SLEEPER), namespace)
    pid, started = running_pid(cluster, namespace, "orphan")
    cluster.wait_for_pod_phase(namespace, "orphan", {"Running"})
    cluster.cluster_sh("restart", "node-agent")
    assert not process_alive(pid, started)
    pod = cluster.wait_for_pod_phase(namespace, "orphan", {"Failed"})
    assert terminated(pod)["reason"] == "ContainerStatusUnknown"
