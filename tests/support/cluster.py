"""The local Kubernetes control plane for tests: started by `hack/cluster.sh up` when it is
not already running (and then stopped again at the end of the session), plus the helpers
tests use to talk to it with the cached kubectl.

Its node is the node agent (pods are local processes on loopback) or, with
GUIDELINE_NODE=real, the real node (pods in containers of `make image`'s image on the CNI
bridge). What pods reach on this host listens on `pod_host` (the Node's InternalIP:
127.0.0.1 with the node agent, the host's address on the real node), and their image is
`pod_image()`."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import yaml
from guideline_core import resource as gj


class CommandFailed(subprocess.CalledProcessError):
    """A failed kubectl/helm call whose message carries its stderr (pytest shows only str())."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {(self.stderr or '').strip()[-2000:]}"


REPO_ROOT = Path(__file__).resolve().parents[2]
HACK = REPO_ROOT / "hack"
CLUSTER_SH = HACK / "cluster.sh"
# A cold `up` builds the binaries first (about 15 minutes on two cores).
START_TIMEOUT_SECONDS = 3600

T = TypeVar("T")


@cache
def hack_paths() -> dict[str, str]:
    """The paths and versions hack/lib.sh defines (the one source of truth)."""
    script = (
        f"source {HACK / 'lib.sh'}; "
        'printf "%s\\n" "$K8S_BIN" "$KUBECONFIG_PATH" "$KUBE_VERSION" "$LOCAL_DIR"'
    )
    out = subprocess.run(
        ["bash", "-c", script], check=True, capture_output=True, text=True
    ).stdout.split("\n")
    return {"K8S_BIN": out[0], "KUBECONFIG_PATH": out[1], "KUBE_VERSION": out[2], "LOCAL": out[3]}


def local_dir() -> Path:
    """.local/ (or $GUIDELINE_LOCAL_DIR): the cluster's runtime files."""
    return Path(hack_paths()["LOCAL"])


@contextlib.contextmanager
def _sessions() -> Iterator[Path]:
    """The registry of test sessions using the cluster, locked. Several pytest sessions
    may share one cluster on a machine; the last one out stops it if a session started it."""
    directory = local_dir() / "run" / "test-sessions"
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for entry in directory.glob("[0-9]*"):  # sessions that died without unregistering
            if not process_alive(int(entry.name)):
                entry.unlink(missing_ok=True)
        yield directory


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = 60.0,
    interval: float = 0.2,
    message: str = "condition",
) -> T:
    """Polls predicate until it returns something truthy, and returns that; raises
    TimeoutError (naming `message` and the last value seen) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{message} not reached within {timeout}s (last: {last!r})")
        time.sleep(interval)


def process_alive(pid: int, start_time: str | None = None) -> bool:
    """True if pid runs (and, given start_time from /proc/PID/stat, is the same process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has ended; only its parent has not reaped it yet
        return False
    return start_time is None or fields[19] == start_time


def process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat, to tell the process from a later one with its pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


@cache
def _node_address(kubeconfig: str, kubectl: str, node: str) -> str:
    def internal_ip() -> str | None:
        result = subprocess.run(
            [kubectl, "--kubeconfig", kubeconfig, "get", "node", node, "-o", "json"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if result.returncode != 0:
            return None
        addresses = json.loads(result.stdout).get("status", {}).get("addresses") or []
        return next((a["address"] for a in addresses if a["type"] == "InternalIP"), None)

    return wait_for(internal_ip, timeout=60, message=f"node {node}'s InternalIP")


def account_with_role(
    namespace: str, account: str, role: str, rules: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """A ServiceAccount `account`, a Role `role` of `rules`, and the RoleBinding (named
    after the account) granting the role to it: objects to create in `namespace`."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": role},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": account},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    ]


@dataclass
class LocalCluster:
    """The running local control plane plus node agent, with kubectl helpers."""

    started_here: bool = False
    kubeconfig: Path = field(default_factory=lambda: Path(hack_paths()["KUBECONFIG_PATH"]))
    kubectl_path: Path = field(default_factory=lambda: Path(hack_paths()["K8S_BIN"]) / "kubectl")
    helm_path: Path = field(default_factory=lambda: Path(hack_paths()["K8S_BIN"]) / "helm")

    wait_for = staticmethod(wait_for)

    # lifecycle
    @classmethod
    def ensure_started(cls) -> LocalCluster:
        """Starts the cluster with `hack/cluster.sh up` unless it already runs healthy."""
        healthy = subprocess.run([str(CLUSTER_SH), "status"], capture_output=True, text=True)
        started_here = healthy.returncode != 0 or "readyz: ok" not in healthy.stdout
        # `up` is idempotent; it also repairs a half-running cluster and waits for the node.
        subprocess.run(
            [str(CLUSTER_SH), "up"],
            check=True,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_SECONDS,
        )
        return cls(started_here=started_here)

    def stop_if_started_here(self) -> None:
        """`hack/cluster.sh down` if this session started the cluster."""
        if self.started_here:
            subprocess.run([str(CLUSTER_SH), "down"], check=True, capture_output=True, timeout=120)

    def cluster_sh(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Runs hack/cluster.sh (e.g. to stop and restart a component in a fault test)."""
        return subprocess.run(
            [str(CLUSTER_SH), *args], check=True, capture_output=True, text=True, timeout=timeout
        )

    # addresses
    @property
    def api_url(self) -> str:
        """The API server's URL (https://127.0.0.1:<port>)."""
        config = yaml.safe_load(self.kubeconfig.read_text())
        return str(config["clusters"][0]["cluster"]["server"])

    @property
    def api_port(self) -> int:
        """The API server's loopback port."""
        return int(self.api_url.rsplit(":", 1)[1])

    @property
    def version(self) -> str:
        """The pinned Kubernetes release (hack/versions.env)."""
        return hack_paths()["KUBE_VERSION"]

    @property
    def node_name(self) -> str:
        """The node agent's Node."""
        return os.environ.get("GUIDELINE_NODE_NAME", "guideline-node")

    @property
    def real_node(self) -> bool:
        """True when the node is the real one (kubelet, containerd), not the node agent."""
        mode = local_dir() / "run" / "node-mode"
        return (mode.read_text().strip() if mode.exists() else "agent") == "real"

    @property
    def pod_host(self) -> str:
        """The address at which pods reach a server of this host: the Node's InternalIP
        (127.0.0.1 with the node agent, the host's address on the real node, where pods
        have their own loopback). Servers that pods call listen there."""
        return _node_address(str(self.kubeconfig), str(self.kubectl_path), self.node_name)

    def pod_image(self) -> str:
        """The image of the pods tests create: `make image`'s. On the real node it is built
        (seconds when nothing changed) and imported into the node's containerd first; the
        node agent records it and runs the command from this virtualenv."""
        from support.containers import built_images, image_names

        return (built_images() if self.real_node else image_names())[0]

    @property
    def ca_file(self) -> Path:
        """The cluster CA certificate."""
        return local_dir() / "pki" / "ca.crt"

    # kubectl
    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Runs the cached kubectl against this cluster (admin unless `kubeconfig` says
        otherwise); raises CalledProcessError (with stderr) when check and it fails."""
        cmd = [str(self.kubectl_path), "--kubeconfig", str(kubeconfig or self.kubeconfig), *args]
        result = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise CommandFailed(result.returncode, cmd, output=result.stdout, stderr=result.stderr)
        return result

    def kubectl_as_token(
        self, token: str, *args: str, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Runs kubectl with only a bearer token (no client certificate)."""
        cmd = [
            str(self.kubectl_path),
            "--kubeconfig=/dev/null",
            f"--server={self.api_url}",
            f"--certificate-authority={self.ca_file}",
            f"--token={token}",
            *args,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise CommandFailed(result.returncode, cmd, output=result.stdout, stderr=result.stderr)
        return result

    def get_json(self, *args: str) -> Any:
        """`kubectl get ... -o json`, decoded."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def try_get_json(self, *args: str) -> Any | None:
        """`kubectl get ... -o json`, or None if the object does not exist."""
        result = self.kubectl("get", *args, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr or "not found" in result.stderr:
                return None
            raise CommandFailed(result.returncode, "kubectl get", stderr=result.stderr)
        return json.loads(result.stdout)

    def create(self, manifest: dict[str, Any] | list[dict[str, Any]], namespace: str = "") -> Any:
        """`kubectl create` of a manifest (or a list of them); returns what the server
        stored (a list for a list)."""
        items = manifest if isinstance(manifest, list) else [manifest]
        body = {"apiVersion": "v1", "kind": "List", "items": items}
        args = ["create", "-o", "json", "-f", "-"]
        if namespace:
            args += ["-n", namespace]
        out = self.kubectl(*args, input=json.dumps(body)).stdout
        decoder, stored, pos = json.JSONDecoder(), [], 0
        while True:  # kubectl prints one JSON document per object
            while pos < len(out) and out[pos].isspace():
                pos += 1
            if pos >= len(out):
                break
            obj, pos = decoder.raw_decode(out, pos)
            stored.append(obj)
        return stored if isinstance(manifest, list) else stored[0]

    # namespaces
    def create_namespace(self, prefix: str) -> str:
        """A fresh namespace, returned once its default ServiceAccount exists."""
        name = f"{prefix}-{secrets.token_hex(3)}"
        self.kubectl("create", "namespace", name)
        wait_for(
            lambda: self.try_get_json("serviceaccount", "default", "-n", name),
            timeout=60,
            message=f"ServiceAccount {name}/default",
        )
        return name

    def delete_namespace(self, name: str) -> None:
        """Deletes a namespace without waiting (the namespace controller empties it).

        A test's teardown runs after its operator stopped: a GuidelineJob still holding the
        operator's finalizer would keep the namespace terminating for good (and, through the
        CRD's deletion, hang a later chart uninstall), so that finalizer is released here."""
        self.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")
        self.release_guidelinejobs(name)

    def release_guidelinejobs(self, namespace: str) -> None:
        """Removes the operator's finalizer from the namespace's GuidelineJobs (for when no
        operator is left to release them; their rows keep their last state)."""
        listed = self.kubectl("get", gj.PLURAL, "-n", namespace, "-o", "json", check=False)
        if listed.returncode != 0:  # no CRD installed, or the namespace is gone already
            return
        for item in json.loads(listed.stdout)["items"]:
            if item["metadata"].get("finalizers"):
                self.kubectl(
                    "patch",
                    gj.PLURAL,
                    item["metadata"]["name"],
                    "-n",
                    namespace,
                    "--type=merge",
                    "-p",
                    '{"metadata":{"finalizers":null}}',
                    check=False,
                )

    # pods
    def pod_log(self, namespace: str, pod: str) -> str:
        """Everything a pod's container printed (the node agent's log file; on the real
        node, `kubectl logs`, which the kubelet serves from its CRI log files)."""
        if self.real_node:
            result = self.kubectl("logs", "-n", namespace, pod, "--all-containers", check=False)
            return result.stdout if result.returncode == 0 else ""
        path = local_dir() / "log" / "pods" / f"{namespace}_{pod}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def pod_process(self, pod: dict[str, Any]) -> tuple[int, str]:
        """The host pid and start time (see process_start_time) of a running pod's process:
        the node agent's record of it, or on the real node the init process of its first
        container, as containerd's runc shim recorded it."""
        if not self.real_node:
            path = local_dir() / "run" / "pods" / f"{pod['metadata']['uid']}.pid"
            fields = wait_for(lambda: path.exists() and path.read_text().split()[:2], timeout=30)
            return int(fields[0]), fields[1]
        container_id = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
        state = local_dir() / "run" / "containerd" / "state" / "io.containerd.runtime.v2.task"
        path = state / "k8s.io" / container_id / "init.pid"
        pid = int(wait_for(lambda: path.exists() and path.read_text().strip(), timeout=30))
        started = process_start_time(pid)
        assert started is not None, f"container {container_id}'s process {pid} is gone"
        return pid, started

    def kill_pod_process(self, pod: dict[str, Any]) -> int:
        """SIGKILLs a running pod's process, as the kernel's OOM killer or a node fault
        would (its container's init process on the real node; the node agent's process
        group), and returns its pid once it is gone."""
        pid, started = self.pod_process(pod)
        if self.real_node:
            os.kill(pid, signal.SIGKILL)
        else:
            os.killpg(pid, signal.SIGKILL)
        wait_for(lambda: not process_alive(pid, started), timeout=10, message=f"pid {pid} dead")
        return pid

    def pods(self, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        """The pods of a namespace (matching a label selector)."""
        args = ["pods", "-n", namespace] + (["-l", selector] if selector else [])
        return list(self.get_json(*args)["items"])

    def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        """The pods a Job created."""
        return self.pods(namespace, f"batch.kubernetes.io/job-name={job}")

    def wait_for_pod_phase(
        self, namespace: str, pod: str, phases: set[str], timeout: float = 60
    ) -> dict[str, Any]:
        """Waits until a pod is in one of `phases`; returns it."""

        def reached() -> dict[str, Any] | None:
            obj = self.try_get_json("pod", pod, "-n", namespace)
            return obj if obj and obj.get("status", {}).get("phase") in phases else None

        return wait_for(reached, timeout=timeout, message=f"pod {namespace}/{pod} in {phases}")

    def wait_for_job_condition(
        self, namespace: str, job: str, types: set[str], timeout: float = 120
    ) -> dict[str, Any]:
        """Waits until a Job has a True condition of one of `types`; returns that condition
        with the Job under the key "job"."""

        def reached() -> dict[str, Any] | None:
            obj = self.get_json("job", job, "-n", namespace)
            for cond in obj.get("status", {}).get("conditions") or []:
                if cond["type"] in types and cond["status"] == "True":
                    return {**cond, "job": obj}
            return None

        return wait_for(reached, timeout=timeout, message=f"job {namespace}/{job} {types}")
