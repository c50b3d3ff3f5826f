"""The real local node (`GUIDELINE_NODE=real hack/cluster.sh up`): a kubelet of the pinned
release on containerd 2.x, a pod of the project's image (`make image`) in a container under
the restricted Pod Security Standard, its logs, exec and port-forward through the API
server, and a Service reached by its DNS name (CoreDNS) and ClusterIP (kube-proxy) from a pod.

Run with `make test-node` (GUIDELINE_NODE=real; the session's cluster then has the real node)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from support.cluster import LocalCluster, local_dir, wait_for
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


# Each lookup and connection from inside the pod, bounded (a resolver that is not reached
# would otherwise take minutes over the search path, a dropped SYN about two), and reported
# as its value or its error, so a failure says which hop failed.
ROUTES = """
import json, os, socket, ssl, sys, time, urllib.request
os.environ["RES_OPTIONS"] = "timeout:2 attempts:1"
namespace = sys.argv[1]
ca = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
def step(do):
    started = time.monotonic()
    try:
        return {"ok": do()}
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}",
                "seconds": round(time.monotonic() - started, 1)}
print(json.dumps({
    "ip": step(lambda: socket.gethostbyname(f"web.{namespace}.svc.cluster.local")),
    "short": step(lambda: socket.gethostbyname("web")),
    "status": step(lambda: urllib.request.urlopen(
        f"http://web.{namespace}.svc/", timeout=5).status),
    "api": step(lambda: urllib.request.urlopen(
        "https://kubernetes.default.svc/readyz", timeout=5,
        context=ssl.create_default_context(cafile=ca)).status),
}))
"""


def network_state(*addresses: str) -> str:
    """What the node programmed for `addresses` (the host's iptables rules, every table, that
    name one) and the last lines of the node's network components' logs: a failure's message."""
    saved = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False).stdout
    rules = [line for line in saved.splitlines() if any(a in line for a in addresses)]
    logs = []
    for component in ("kube-proxy", "coredns", "kube-router"):
        path = local_dir() / "log" / f"{component}.log"
        tail = path.read_text(errors="replace").splitlines()[-15:] if path.exists() else []
        logs.append(f"--- {component}.log\n" + "\n".join(tail))
    return "\n".join(["--- iptables rules naming them", *rules, *logs])


def test_service_name_resolves_and_routes_from_a_pod(
    cluster: LocalCluster, namespace: str, web: str
) -> None:
    cluster_ip = cluster.get_json("-n", namespace, "service", "web")["spec"]["clusterIP"]
    pod_ip = cluster.get_json("-n", namespace, "pod", web)["status"]["podIP"]
    # In its own pod `web` is the pod's hostname (/etc/hosts), not the Service; `api` is the
    # `kubernetes` Service (kube-proxy to the API server's advertised address).
    expected = {"ip": cluster_ip, "short": pod_ip, "status": 200, "api": 200}

    def routes() -> dict[str, dict[str, object]]:
        try:
            out = cluster.kubectl(
                "-n", namespace, "exec", web, "--", "python", "-c", ROUTES, namespace, timeout=75
            ).stdout  # fmt: skip
        except subprocess.TimeoutExpired:
            # Every step inside is bounded (at most ~50 s): this is the exec stream itself.
            return {"exec": {"error": "kubectl exec gave no answer within 75 s"}}
        seen: dict[str, dict[str, object]] = json.loads(out)
        return seen

    def routed(seen: dict[str, dict[str, object]]) -> bool:
        return all(seen.get(k, {}).get("ok") == v for k, v in expected.items())

    # A Service just made is routed once kube-proxy and CoreDNS have seen it: a few seconds.
    deadline = time.monotonic() + 120
    seen = routes()
    while not routed(seen) and time.monotonic() < deadline:
        time.sleep(2)
        seen = routes()
    assert routed(seen), f"{seen}\n{network_state(pod_ip, cluster_ip)}"
