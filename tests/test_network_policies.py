"""The chart's NetworkPolicies as rendered (`helm template`: the runner pods' route to the
chunk cache's PostgreSQL exists exactly when the cache is configured), and enforced on the
real node (GUIDELINE_NODE=real: kube-router's
network-policy controller, hack/real-node.sh). Probe pods of the project's image connect to
PostgreSQL's and the API's Services: before the policies exist every probe gets through
(so a refusal later is the policy's), after `helm upgrade --set networkPolicy.enabled=true`
a plain pod of the release's namespace and a pod of another namespace get through to
neither, an `api-client` pod reaches the API but not PostgreSQL, and a job submitted
through the API Service still reaches COMPLETED (the API and operator reach PostgreSQL, the
runner the Kubernetes API, under the policies)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from support.cluster import REPO_ROOT, LocalCluster, wait_for
from support.containers import build_images, image_names
from support.helm import (
    CHART,
    RELEASE,
    Helm,
    install_on_real_node,
    job_through,
    port_forward,
    postgresql_volume,
    restricted_namespace,
    roll_out,
)

pytestmark = pytest.mark.cluster

API_CLIENT = {"ingest.guidelines.dev/api-client": "true"}
# A TCP connect from inside the pod: open, or why not (a policy refuses or drops it).
PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
    print("open")
except TimeoutError:
    print("timeout")
except OSError as error:
    print(type(error).__name__)
"""


def probe_pod(cluster: LocalCluster, namespace: str, name: str, labels: dict[str, str]) -> str:
    """A restricted pod of the project's image that only waits (for `kubectl exec`)."""
    app_image, _ = image_names()
    cluster.create({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "probe", "image": app_image, "imagePullPolicy": "Never",
                "command": ["python3", "-c", "import time; time.sleep(3600)"],
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }, namespace=namespace)  # fmt: skip
    return name


def connect(cluster: LocalCluster, namespace: str, pod: str, host: str, port: int) -> str:
    """The probe's verdict on a TCP connection from `pod` to host:port."""
    result = cluster.kubectl(
        "exec", "-n", namespace, pod, "--", "python3", "-c", PROBE, host, str(port), timeout=60
    )
    return result.stdout.strip()


def policies(helm: Helm, *values: str) -> dict[str, dict[str, Any]]:
    """The rendered NetworkPolicies by component (runner, api, database)."""
    objects = helm.template("--set=networkPolicy.enabled=true", *values)
    return {
        o["metadata"]["labels"]["app.kubernetes.io/component"]: o["spec"]
        for o in objects
        if o["kind"] == "NetworkPolicy"
    }


def database_egress(runner: dict[str, Any]) -> list[dict[str, Any]]:
    """The runner policy's egress rules that reach a PostgreSQL port."""
    return [r for r in runner["egress"] if {"protocol": "TCP", "port": 5432} in r["ports"]]


RUNNER_PODS = {
    "podSelector": {
        "matchLabels": {
            "app.kubernetes.io/component": "runner",
            "app.kubernetes.io/managed-by": "guideline-operator",
        }
    }
}


def test_runner_pods_reach_postgresql_only_with_the_chunk_cache(helm: Helm) -> None:
    # No cache configured: no route from runner pods to any database.
    without = policies(helm)
    assert database_egress(without["runner"]) == []
    assert RUNNER_PODS not in without["database"]["ingress"][0]["from"]

    # The in-chart PostgreSQL: egress to its pods on 5432, and its ingress admits runners.
    cache = "--set=runner.chunkCacheSecret=guideline-runner-cache"
    with_cache = policies(helm, cache)
    [rule] = database_egress(with_cache["runner"])
    assert rule["ports"] == [{"protocol": "TCP", "port": 5432}]
    [peer] = rule["to"]
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "database"
    assert RUNNER_PODS in with_cache["database"]["ingress"][0]["from"]
    # Every other egress rule is unchanged.
    assert [r for r in with_cache["runner"]["egress"] if r is not rule] == without["runner"][
        "egress"
    ]

    # An external database: its CIDRs and ports from networkPolicy.database.
    external = policies(
        helm,
        cache,
        "--set=postgresql.enabled=false",
        "--set=database.existingSecret=platform-db",
        "--set=networkPolicy.database.cidrs[0]=10.20.0.5/32",
        "--set=networkPolicy.database.ports[0]=5433",
    )
    assert "database" not in external
    [rule] = [
        r for r in external["runner"]["egress"] if {"ipBlock": {"cidr": "10.20.0.5/32"}} in r["to"]
    ]
    assert rule == {
        "to": [{"ipBlock": {"cidr": "10.20.0.5/32"}}],
        "ports": [{"protocol": "TCP", "port": 5433}],
    }


def test_runner_pods_reach_the_api_port_and_the_api_admits_them(helm: Helm) -> None:
    rendered = policies(helm)
    api_port = {"protocol": "TCP", "port": 8000}
    [egress] = [r for r in rendered["runner"]["egress"] if api_port in r["ports"]]
    assert egress["ports"] == [api_port]
    [peer] = egress["to"]
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api"
    # The API's ingress: its clients (networkPolicy.api.from), and runner pods of any
    # namespace (the runner's API checks each one's token, bound to its own job).
    runners = {"namespaceSelector": {}, **RUNNER_PODS}
    rules = rendered["api"]["ingress"]
    assert {"ports": [api_port], "from": [runners]} in rules
    assert all(rule["ports"] == [api_port] for rule in rules)
    # With the API open to any source, no rule of its own is needed.
    open_api = policies(helm, "--set=networkPolicy.api.from=null")
    assert open_api["api"]["ingress"] == [{"ports": [api_port]}]


@pytest.mark.node
def test_network_policies_are_enforced_on_the_real_node(
    cluster: LocalCluster, helm: Helm, tmp_path: Path
) -> None:
    cluster.kubectl("apply", "-f", str(REPO_ROOT / "crds"))
    build_images()
    ns = restricted_namespace(cluster, "t-netpol")
    other = restricted_namespace(cluster, "t-netpol-other")
    pv = postgresql_volume(cluster, ns, tmp_path / "pgdata")
    api_key = f"netpol-{uuid.uuid4().hex}"
    try:
        # First without policies: the baseline every probe must pass.
        install_on_real_node(helm, ns, "netpol", api_key, network_policy=False)
        outsider = probe_pod(cluster, ns, "outsider", {"app": "outsider"})
        client = probe_pod(cluster, ns, "api-client", API_CLIENT)
        # Another namespace, even with the client label: the policy's peers are its own.
        foreign = probe_pod(cluster, other, "foreign", API_CLIENT)
        roll_out(cluster, ns)
        for namespace, pod in ((ns, outsider), (ns, client), (other, foreign)):
            cluster.wait_for_pod_phase(namespace, pod, {"Running"}, timeout=120)
        postgresql = ("gi-postgresql", f"gi-postgresql.{ns}.svc")
        api = ("gi-api", f"gi-api.{ns}.svc")
        probes = {
            (ns, outsider, postgresql[0], 5432), (ns, outsider, api[0], 8000),
            (ns, client, postgresql[0], 5432), (ns, client, api[0], 8000),
            (other, foreign, postgresql[1], 5432), (other, foreign, api[1], 8000),
        }  # fmt: skip
        before = {p: connect(cluster, *p) for p in probes}
        assert set(before.values()) == {"open"}, before

        helm.run("upgrade", RELEASE, str(CHART), "-n", ns, "--reuse-values",
                 "--set=networkPolicy.enabled=true")  # fmt: skip
        policies = cluster.get_json("networkpolicies", "-n", ns)["items"]
        assert {p["metadata"]["name"] for p in policies} == {"gi-api", "gi-postgresql", "gi-runner"}
        allowed = {(ns, client, api[0], 8000)}

        def enforced() -> dict[Any, str] | None:
            after = {p: connect(cluster, *p) for p in probes}
            blocked = {p for p, verdict in after.items() if verdict != "open"}
            return after if blocked == probes - allowed else None

        after = wait_for(enforced, timeout=90, interval=2, message="the policies enforced")
        # Refused (kube-router rejects) or dropped, never a failure of another kind (DNS).
        assert {after[p] for p in probes - allowed} <= {"ConnectionRefusedError", "timeout"}, after
        answer = cluster.kubectl(
            "exec", "-n", ns, client, "--", "python3", "-c",
            "import urllib.request; print(urllib.request.urlopen("
            "'http://gi-api:8000/health/ready', timeout=10).status)",
        ).stdout.strip()  # fmt: skip
        assert answer == "200"

        # What the policies allow still works: a job end to end (API and operator to
        # PostgreSQL, the runner pod to the Kubernetes API only).
        with port_forward(cluster, ns, "service/gi-api", 8000) as url:
            job = job_through(url, api_key, {"guideline_text": "Staff must wash hands."})
        assert job["status"] == "COMPLETED", json.dumps(job)[:2000]
        # The runner wrote the result through the Kubernetes API; its pod then exits.
        [runner] = cluster.pods(ns, f"ingest.guidelines.dev/event-id={job['event_id']}")
        name = runner["metadata"]["name"]
        cluster.wait_for_pod_phase(ns, name, {"Succeeded", "Failed"}, timeout=120)
        assert cluster.get_json("pod", name, "-n", ns)["status"]["phase"] == "Succeeded"
        helm.run("uninstall", RELEASE, "-n", ns, "--wait", "--timeout=300s", timeout=320)
    finally:
        cluster.delete_namespace(ns)
        cluster.delete_namespace(other)
        cluster.kubectl("delete", "pv", pv, "--ignore-not-found")
