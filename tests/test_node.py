"""The real local node (`GUIDELINE_NODE=real hack/cluster.sh up`): a kubelet of the pinned
release on containerd 2.x, a pod of the project's image (`make image`) in a container under
the restricted Pod Security Standard, its logs, exec and port-forward through the API
server, and a Service reached by its DNS name (CoreDNS) and ClusterIP (kube-proxy) from a pod.

Run with `make test-node` (GUIDELINE_NODE=real; the session's cluster then has the real node)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import httpx
import pytest
from support.cluster import LocalCluster, wait_for
from support.containers import built_images
from support.net import free_port

pytestmark = [pytest.mark.cluster, pytest.mark.node]

RESTRICTED = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
HARDENED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


@pytest.fixture(scope="module")
def images(cluster: LocalCluster) -> tuple[str, str]:
    """`make image`, imported into the running node's containerd."""
    return built_images()


@pytest.fixture(scope="module")
def namespace(cluster: LocalCluster) -> Iterator[str]:
    name = cluster.create_namespace("t-node")
    cluster.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    yield name
    cluster.delete_namespace(name)


@pytest.fixture(scope="module")
def web(cluster: LocalCluster, namespace: str, images: tuple[str, str]) -> str:
    """A pod of the project's image serving HTTP on 8000 (as UID 10001, read-only root),
    behind Service `web`; returns the pod's name once Ready."""
    app_image, _ = images
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "securityContext": {**RESTRICTED, "runAsUser": 10001},
            "containers": [
                {
                    "name": "web",
                    "image": app_image,
                    "imagePullPolicy": "Never",
                    "command": ["python", "-m", "http.server", "8000", "--directory", "/tmp"],
                    "securityContext": HARDENED,
                    "ports": [{"containerPort": 8000}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": 8000}},
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8000}]},
    }
    cluster.create([pod, service], namespace=namespace)
    cluster.kubectl("-n", namespace, "wait", "--for=condition=Ready", "pod/web", "--timeout=120s")
    return "web"


def test_node_is_a_kubelet_on_containerd(cluster: LocalCluster) -> None:
    node = cluster.get_json("node", cluster.node_name)
    info = node["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("containerd://2."), info
    assert info["kubeletVersion"] == cluster.version
    assert info["kubeProxyVersion"] in ("", cluster.version)
    internal = [a for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
    assert internal and not internal[0]["address"].startswith("127."), internal


def test_pod_runs_in_a_container_of_the_image(
    cluster: LocalCluster, namespace: str, web: str, images: tuple[str, str]
) -> None:
    status = cluster.get_json("-n", namespace, "pod", web)["status"]
    container = status["containerStatuses"][0]
    assert container["containerID"].startswith("containerd://")
    assert container["image"] == images[0]
    assert status["podIP"].startswith("10.244.")
    # The process sees the image's filesystem and the restrictions, not this host's.
    out = cluster.kubectl(
        "-n", namespace, "exec", web, "--", "python", "-c",
        "import os; print(os.getuid(), os.access('/', os.W_OK), open('/etc/os-release').read())",
    ).stdout  # fmt: skip
    uid, writable, os_release = out.split(" ", 2)
    assert (uid, writable) == ("10001", "False")
    assert "bookworm" in os_release


def test_logs_show_the_containers_output(cluster: LocalCluster, namespace: str, web: str) -> None:
    def served() -> str | None:
        log = cluster.kubectl("-n", namespace, "logs", web).stdout
        return log if '"GET / HTTP/1.1" 200' in log else None

    log = wait_for(served, timeout=30, message="the readiness probe's request in the log")
    assert "Serving HTTP on 0.0.0.0 port 8000" in log


def test_port_forward_reaches_the_pod(cluster: LocalCluster, namespace: str, web: str) -> None:
    port = free_port()
    forward = subprocess.Popen(
        [str(cluster.kubectl_path), "--kubeconfig", str(cluster.kubeconfig), "-n", namespace,
         "port-forward", f"pod/{web}", f"{port}:8000"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:

        def answered() -> int | None:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code
            except httpx.HTTPError:
                return None

        assert wait_for(answered, timeout=30, message="an answer through port-forward") == 200
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def test_service_name_resolves_and_routes_from_a_pod(
    cluster: LocalCluster, namespace: str, web: str
) -> None:
    cluster_ip = cluster.get_json("-n", namespace, "service", "web")["spec"]["clusterIP"]
    script = (
        "import json, socket, ssl, urllib.request\n"
        f"name = 'web.{namespace}.svc.cluster.local'\n"
        "ca = '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt'\n"
        "api = urllib.request.urlopen('https://kubernetes.default.svc/readyz',"
        " context=ssl.create_default_context(cafile=ca))\n"
        "print(json.dumps({'ip': socket.gethostbyname(name),"
        " 'short': socket.gethostbyname('web'),"
        f" 'status': urllib.request.urlopen('http://web.{namespace}.svc/').status,"
        " 'api': api.status}))\n"
    )
    out = cluster.kubectl("-n", namespace, "exec", web, "--", "python", "-c", script).stdout
    seen = json.loads(out)
    assert seen["ip"] == cluster_ip
    # In its own pod `web` is the pod's hostname (/etc/hosts), not the Service.
    assert seen["short"] == cluster.get_json("-n", namespace, "pod", web)["status"]["podIP"]
    assert seen["status"] == 200
    # The `kubernetes` Service (kube-proxy to the API server's advertised address).
    assert seen["api"] == 200
