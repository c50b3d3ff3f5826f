"""The node agent (hack/node_agent.py) with the real Job controller, garbage collector and
TTL controller: Jobs complete, fail, retry, time out and are cleaned up as on a real
cluster; pods get their env, Secrets and ServiceAccount identity; deletion and deadlines
end the processes."""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cluster import REPO_ROOT, LocalCluster, process_alive, process_start_time, wait_for

pytestmark = pytest.mark.cluster

PYTHON = str(Path(sys.executable))


@pytest.fixture(scope="module")
def ns(cluster: LocalCluster) -> Iterator[str]:
    name = cluster.create_namespace("t-agent")
    yield name
    cluster.delete_namespace(name)


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


def running_pid(cluster: LocalCluster, ns: str, pod: str) -> tuple[int, str | None]:
    """The pid a pod's command printed as `pid=<n>` (and that process's start time)."""
    match = wait_for(
        lambda: re.search(r"pid=(\d+)", cluster.pod_log(ns, pod)),
        timeout=60,
        message=f"pod {ns}/{pod} to print its pid",
    )
    pid = int(match.group(1))
    return pid, process_start_time(pid)


SLEEPER = ["sh", "-c", "echo pid=$$$$; exec sleep 60"]


# --- Jobs through the real Job controller --------------------------------------------------


def test_job_exit_zero_completes(cluster: LocalCluster, ns: str) -> None:
    command = ["sh", "-c", "echo hello from $HOSTNAME; printf 'all good' > /dev/termination-log"]
    cluster.create(job("ok", command, backoffLimit=0), ns)
    cond = cluster.wait_for_job_condition(ns, "ok", {"Complete", "Failed"})
    assert cond["type"] == "Complete"
    assert cond["job"]["status"]["succeeded"] == 1
    [pod] = cluster.job_pods(ns, "ok")
    name = pod["metadata"]["name"]
    assert pod["status"]["phase"] == "Succeeded"
    state = terminated(pod)
    assert (state["exitCode"], state["reason"], state["message"]) == (0, "Completed", "all good")
    assert state["startedAt"] and state["finishedAt"]
    assert pod["status"]["podIP"] == "127.0.0.1"
    assert cluster.pod_log(ns, name) == f"hello from {name}\n"
    # The log is also served to the API server: `kubectl logs` works.
    assert cluster.kubectl("logs", "-n", ns, name).stdout == f"hello from {name}\n"
    # The Job controller removed its tracking finalizer after counting the pod.
    pod = cluster.get_json("pod", name, "-n", ns)
    assert "batch.kubernetes.io/job-tracking" not in pod["metadata"].get("finalizers", [])


def test_backoff_limit_exceeded_after_exactly_three_pods(cluster: LocalCluster, ns: str) -> None:
    cluster.create(job("retry", ["sh", "-c", "echo failing; exit 1"], backoffLimit=2), ns)
    cond = cluster.wait_for_job_condition(ns, "retry", {"Complete", "Failed"}, timeout=180)
    assert (cond["type"], cond["reason"]) == ("Failed", "BackoffLimitExceeded")
    pods = cluster.job_pods(ns, "retry")
    assert len(pods) == 3
    assert cond["job"]["status"]["failed"] == 3
    for pod in pods:
        assert pod["status"]["phase"] == "Failed"
        assert (terminated(pod)["exitCode"], terminated(pod)["reason"]) == (1, "Error")


def test_pod_failure_policy_fails_job_after_one_pod(cluster: LocalCluster, ns: str) -> None:
    policy = {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": "main", "operator": "In", "values": [2]},
            }
        ]
    }
    cluster.create(
        job("fatal", ["sh", "-c", "exit 2"], backoffLimit=5, podFailurePolicy=policy), ns
    )
    cond = cluster.wait_for_job_condition(ns, "fatal", {"Complete", "Failed"})
    assert (cond["type"], cond["reason"]) == ("Failed", "PodFailurePolicy")
    pods = cluster.job_pods(ns, "fatal")
    assert len(pods) == 1
    assert terminated(pods[0])["exitCode"] == 2


def test_job_active_deadline_fails_and_kills_the_process(cluster: LocalCluster, ns: str) -> None:
    cluster.create(job("slow", SLEEPER, activeDeadlineSeconds=3, backoffLimit=0), ns)
    [pod] = wait_for(lambda: cluster.job_pods(ns, "slow"), message="the Job's pod")
    pid, started = running_pid(cluster, ns, pod["metadata"]["name"])
    assert process_alive(pid, started)
    cond = cluster.wait_for_job_condition(ns, "slow", {"Complete", "Failed"})
    assert (cond["type"], cond["reason"]) == ("Failed", "DeadlineExceeded")
    wait_for(lambda: not process_alive(pid, started), timeout=60, message=f"pid {pid} to end")
    wait_for(lambda: not cluster.job_pods(ns, "slow"), message="the pod to be deleted")


def test_pod_active_deadline_fails_the_pod(cluster: LocalCluster, ns: str) -> None:
    cluster.create(bare_pod("pod-deadline", SLEEPER, activeDeadlineSeconds=2), ns)
    pid, started = running_pid(cluster, ns, "pod-deadline")
    pod = cluster.wait_for_pod_phase(ns, "pod-deadline", {"Succeeded", "Failed"})
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["reason"] == "DeadlineExceeded"
    assert terminated(pod)["exitCode"] == 143  # SIGTERM
    assert not process_alive(pid, started)


def test_ttl_after_finished_deletes_job_and_pods(cluster: LocalCluster, ns: str) -> None:
    cluster.create(job("short-lived", ["true"], ttlSecondsAfterFinished=1), ns)
    wait_for(
        lambda: cluster.try_get_json("job", "short-lived", "-n", ns) is None,
        timeout=90,
        message="the TTL controller to delete the Job",
    )
    wait_for(lambda: not cluster.job_pods(ns, "short-lived"), message="its pods to be deleted")


def test_many_short_pods(cluster: LocalCluster, ns: str) -> None:
    cluster.create(
        job(
            "many",
            ["sh", "-c", "echo $JOB_COMPLETION_INDEX"],
            completions=40,
            parallelism=10,
            completionMode="Indexed",
            backoffLimit=0,
        ),
        ns,
    )
    cond = cluster.wait_for_job_condition(ns, "many", {"Complete", "Failed"}, timeout=300)
    assert cond["type"] == "Complete"
    assert cond["job"]["status"]["succeeded"] == 40
    outputs = sorted(
        int(cluster.pod_log(ns, p["metadata"]["name"])) for p in cluster.job_pods(ns, "many")
    )
    assert outputs == list(range(40))


# --- deletion ----------------------------------------------------------------------------------


def test_deleting_a_running_pod_ends_its_process(cluster: LocalCluster, ns: str) -> None:
    command = [
        "sh",
        "-c",
        "trap 'echo got SIGTERM; exit 0' TERM; echo pid=$$$$; while :; do sleep 0.1; done",
    ]
    cluster.create(bare_pod("victim", command), ns)
    pid, started = running_pid(cluster, ns, "victim")
    assert cluster.get_json("pod", "victim", "-n", ns)["status"]["phase"] == "Running"
    cluster.kubectl("delete", "pod", "victim", "-n", ns, "--wait=true", timeout=90)
    assert not process_alive(pid, started)
    assert "got SIGTERM" in cluster.pod_log(ns, "victim")


def test_sigterm_ignored_means_sigkill_after_grace(cluster: LocalCluster, ns: str) -> None:
    command = ["sh", "-c", "trap '' TERM; echo pid=$$$$; while :; do sleep 0.1; done"]
    cluster.create(bare_pod("stubborn", command, terminationGracePeriodSeconds=2), ns)
    pid, started = running_pid(cluster, ns, "stubborn")
    cluster.kubectl("delete", "pod", "stubborn", "-n", ns, "--wait=false")
    wait_for(lambda: not process_alive(pid, started), timeout=30, message="SIGKILL")
    wait_for(
        lambda: cluster.try_get_json("pod", "stubborn", "-n", ns) is None,
        message="the pod to be removed",
    )


def test_deleting_job_in_background_removes_pods_and_processes(
    cluster: LocalCluster, ns: str
) -> None:
    cluster.create(job("doomed", SLEEPER, parallelism=2, completions=2), ns)
    pods = wait_for(
        lambda: (p := cluster.job_pods(ns, "doomed")) and len(p) == 2 and p,
        message="two running pods",
    )
    pids = [running_pid(cluster, ns, p["metadata"]["name"]) for p in pods]
    cluster.kubectl("delete", "job", "doomed", "-n", ns, "--cascade=background")
    wait_for(lambda: not cluster.job_pods(ns, "doomed"), timeout=90, message="pods deleted")
    for pid, started in pids:
        assert not process_alive(pid, started)


# --- what a pod gets ------------------------------------------------------------------------


def test_env_from_secret_configmap_fields_and_env_from(cluster: LocalCluster, ns: str) -> None:
    cluster.kubectl(
        "create", "secret", "generic", "creds", "-n", ns, "--from-literal=api-key=s3cr3t"
    )
    cluster.kubectl(
        "create",
        "configmap",
        "settings",
        "-n",
        ns,
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
    created = cluster.create(pod, ns)
    cluster.wait_for_pod_phase(ns, "env", {"Succeeded", "Failed"})
    seen = json.loads(cluster.pod_log(ns, "env"))
    assert seen["API_KEY"] == "s3cr3t"
    assert "MISSING" not in seen
    assert seen["MODE_FROM_CM"] == "fast"
    assert (seen["POD_NAME"], seen["POD_NS"]) == ("env", ns)
    assert seen["POD_UID"] == created["metadata"]["uid"]
    assert seen["APP"] == "env-test"
    assert seen["GREETING"] == "hi env, $(ESCAPED)"
    assert (seen["CM_GUIDELINE_MODEL"], seen["CM_MODE"]) == ("tiny", "fast")
    assert seen["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert seen["KUBERNETES_SERVICE_PORT"] == str(cluster.api_port)
    assert "KUBECONFIG" not in seen, "the agent's own credentials must not leak into pods"
    assert seen["PATH"].split(":")[0] == str(Path(PYTHON).parent)


def test_missing_secret_holds_pod_until_created(cluster: LocalCluster, ns: str) -> None:
    pod = bare_pod("waits", ["sh", "-c", "echo key=$KEY"])
    pod["spec"]["containers"][0]["env"] = [
        {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "later", "key": "k"}}}
    ]
    cluster.create(pod, ns)

    def waiting() -> dict[str, Any] | None:
        obj = cluster.get_json("pod", "waits", "-n", ns)
        statuses = obj["status"].get("containerStatuses") or [{}]
        return statuses[0].get("state", {}).get("waiting")

    state = wait_for(waiting, message="CreateContainerConfigError")
    assert state["reason"] == "CreateContainerConfigError"
    assert 'secret "later" not found' in state["message"]
    assert cluster.get_json("pod", "waits", "-n", ns)["status"]["phase"] == "Pending"
    cluster.kubectl("create", "secret", "generic", "later", "-n", ns, "--from-literal=k=finally")
    cluster.wait_for_pod_phase(ns, "waits", {"Succeeded"})
    assert cluster.pod_log(ns, "waits") == "key=finally\n"


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
    cluster: LocalCluster, ns: str
) -> None:
    cluster.create(
        [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "runner"}},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "read-configmaps"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "runner"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "read-configmaps",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "runner", "namespace": ns}],
            },
        ],
        ns,
    )
    script = f"NAMESPACE = {ns!r}\n{IN_CLUSTER_CLIENT}"
    # `python` resolves to the project's virtualenv through the PATH the agent gives pods.
    cluster.create(bare_pod("client", ["python", "-c", script], serviceAccountName="runner"), ns)
    pod = cluster.wait_for_pod_phase(ns, "client", {"Succeeded", "Failed"}, timeout=90)
    log = cluster.pod_log(ns, "client")
    assert pod["status"]["phase"] == "Succeeded", log
    seen = json.loads(log.strip().splitlines()[-1])
    assert seen["user"] == f"system:serviceaccount:{ns}:runner"
    assert "kube-root-ca.crt" in seen["configmaps"]
    assert seen["secrets"] == 403
    # The token came from the TokenRequest API, bound to this pod.
    mounts = pod["spec"]["containers"][0]["volumeMounts"]
    assert any(m["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount" for m in mounts)


def test_volumes_are_mounted_at_their_paths(cluster: LocalCluster, ns: str) -> None:
    cluster.kubectl("create", "configmap", "files", "-n", ns, "--from-literal=greeting.txt=hello")
    cluster.kubectl(
        "create", "secret", "generic", "secret-files", "-n", ns, "--from-literal=pw=p4ss"
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
    base = f"/tmp/guideline-test-mounts-{ns}"
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
    cluster.create(pod, ns)
    done = cluster.wait_for_pod_phase(ns, "volumes", {"Succeeded", "Failed"})
    lines = cluster.pod_log(ns, "volumes").splitlines()
    assert done["status"]["phase"] == "Succeeded", lines
    assert lines == ["hello", "p4ss", "400", 'tier="test"', "scratch", "read-only"]
    # The mounts lived only in the pod's mount namespace.
    assert not Path(f"{base}/cfg/greeting.txt").exists()
    shutil.rmtree(base)


def test_a_volume_over_the_checkout_hides_neither_volumes_nor_the_venv(
    cluster: LocalCluster, ns: str
) -> None:
    """An emptyDir mounted over a parent of the checkout (CI may clone under /tmp, where a
    restricted pod mounts its /tmp emptyDir) must not hide the other volumes' sources, the
    termination-message file, or the virtualenv the command runs from."""
    cluster.kubectl("create", "secret", "generic", "cover", "-n", ns, "--from-literal=pw=s3c")
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
    cluster.create(pod, ns)
    done = cluster.wait_for_pod_phase(ns, "covered", {"Succeeded", "Failed"})
    assert done["status"]["phase"] == "Succeeded", cluster.pod_log(ns, "covered")
    assert terminated(done)["message"] == "ok s3c"


def test_termination_message_falls_back_to_logs_on_error(cluster: LocalCluster, ns: str) -> None:
    pod = bare_pod("fallback", ["sh", "-c", "echo first; echo last words; exit 3"])
    pod["spec"]["containers"][0]["terminationMessagePolicy"] = "FallbackToLogsOnError"
    cluster.create(pod, ns)
    done = cluster.wait_for_pod_phase(ns, "fallback", {"Succeeded", "Failed"})
    state = terminated(done)
    assert (done["status"]["phase"], state["exitCode"]) == ("Failed", 3)
    assert state["message"] == "first\nlast words"


# --- robustness ----------------------------------------------------------------------------


@pytest.mark.fault
def test_pods_survive_an_apiserver_restart(cluster: LocalCluster, ns: str) -> None:
    flag = Path(f"/tmp/guideline-test-{ns}-go")
    flag.unlink(missing_ok=True)
    command = ["sh", "-c", f"while [ ! -e {flag} ]; do sleep 0.2; done; echo finished"]
    cluster.create(job("outlives", command, backoffLimit=0), ns)
    [pod] = wait_for(lambda: cluster.job_pods(ns, "outlives"), message="the pod")
    cluster.wait_for_pod_phase(ns, pod["metadata"]["name"], {"Running"})
    cluster.cluster_sh("stop", "kube-apiserver")
    try:
        flag.touch()  # the process finishes while the API server is down
        wait_for(lambda: "finished" in cluster.pod_log(ns, pod["metadata"]["name"]), timeout=30)
    finally:
        cluster.cluster_sh("up")
        flag.unlink(missing_ok=True)
    cond = cluster.wait_for_job_condition(ns, "outlives", {"Complete", "Failed"})
    assert cond["type"] == "Complete"


@pytest.mark.fault
def test_agent_restart_reports_lost_containers(cluster: LocalCluster, ns: str) -> None:
    cluster.create(bare_pod("orphan", SLEEPER), ns)
    pid, started = running_pid(cluster, ns, "orphan")
    cluster.wait_for_pod_phase(ns, "orphan", {"Running"})
    cluster.cluster_sh("restart", "node-agent")
    assert not process_alive(pid, started)
    pod = cluster.wait_for_pod_phase(ns, "orphan", {"Failed"})
    assert terminated(pod)["reason"] == "ContainerStatusUnknown"
