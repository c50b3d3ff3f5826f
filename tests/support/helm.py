"""The chart under test and the cached helm binary, for the chart's tests."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from guideline_api.auth import hash_key
from support.cluster import REPO_ROOT, LocalCluster, wait_for
from support.net import free_port
from support.stack import OPERATOR_BIN, OperatorProcess

CHART = REPO_ROOT / "charts" / "guideline-ingest"
RELEASE = "gi"


def docs(text: str) -> list[dict[str, Any]]:
    """The objects of a multi-document YAML stream."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def component(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The one object of `kind` labelled app.kubernetes.io/component=name."""
    found = [
        o
        for o in of_kind(objects, kind)
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == name
    ]
    assert len(found) == 1, f"{kind} of component {name}: {[o['metadata']['name'] for o in found]}"
    return found[0]


@dataclass
class Helm:
    """The cached helm binary on the local cluster, with its state in a throw-away home."""

    cluster: LocalCluster
    home: Path

    def run(
        self, *args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        cmd = [str(self.cluster.helm_path), *args]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        # Helm notes (on stderr) that files/crds is a symlink to the repository's crds/.
        result.stderr = "\n".join(
            line for line in result.stderr.splitlines() if "found symbolic link" not in line
        )
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
        return result

    def template(self, *args: str, namespace: str = "default") -> list[dict[str, Any]]:
        kube_version = self.cluster.version.lstrip("v")
        out = self.run(
            "template", RELEASE, str(CHART), "--namespace", namespace,
            f"--kube-version={kube_version}", *args,
        ).stdout  # fmt: skip
        return docs(out)


def env_of(workload: dict[str, Any]) -> dict[str, str]:
    """The literal env values of a workload's first container."""
    container = workload["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def token_kubeconfig(cluster: LocalCluster, path: Path, token: str, namespace: str) -> Path:
    """A kubeconfig that authenticates with nothing but a ServiceAccount token."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": cluster.api_url,
                    "certificate-authority": str(cluster.ca_file),
                },
            }
        ],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [
            {"name": "sa", "context": {"cluster": "local", "user": "sa", "namespace": namespace}}
        ],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def expand(arg: str, env: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion of a container argument."""
    return re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg)


def runner_pod_file(objects: list[dict[str, Any]], directory: Path) -> Path:
    """The chart's runner-pod ConfigMap written where the operator would find it mounted."""
    [config] = [
        o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-runner-pod")
    ]
    path = directory / "pod-template.json"
    path.write_text(config["data"]["pod-template.json"])
    return path


def account_token(
    cluster: LocalCluster, objects: list[dict[str, Any]], account: str, namespace: str
) -> str:
    """A token (30 minutes) of the release's ServiceAccount of component `account`."""
    sa = component(objects, "ServiceAccount", account)["metadata"]["name"]
    return cluster.kubectl(
        "create", "token", sa, "-n", namespace, "--duration=30m"
    ).stdout.strip()  # fmt: skip


def start_chart_operator(
    cluster: LocalCluster,
    objects: list[dict[str, Any]],
    namespace: str,
    database_url: str,
    directory: Path,
) -> OperatorProcess:
    """The operator as the chart's StatefulSet runs it (replica 0: its arguments, its env,
    the runner-pod ConfigMap as mounted), with nothing but the operator ServiceAccount's
    token; returns once its liveness endpoint answers."""
    token = account_token(cluster, objects, "operator", namespace)
    operator = component(objects, "StatefulSet", "operator")
    container = operator["spec"]["template"]["spec"]["containers"][0]
    metrics_port, liveness_port = free_port(), free_port()
    kubeconfig = token_kubeconfig(cluster, directory / "operator.kubeconfig", token, namespace)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        **env_of(operator),
        "POD_INDEX": "0",
        "POD_ID": f"{operator['metadata']['name']}-0",
        "GUIDELINE_NAMESPACE": namespace,
        "GUIDELINE_DATABASE_URL": database_url,
        "GUIDELINE_METRICS_PORT": str(metrics_port),
        "GUIDELINE_LIVENESS_PORT": str(liveness_port),
        "GUIDELINE_RESYNC_INTERVAL_SECONDS": "3",
        "GUIDELINE_RUNNER_POD_TEMPLATE_FILE": str(runner_pod_file(objects, directory)),
        "KUBECONFIG": str(kubeconfig),
    }
    log_path = directory / "operator.log"
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            [OPERATOR_BIN, *(expand(a, env) for a in container["args"])],
            env=env, cwd=directory, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    op = OperatorProcess(proc, log_path, metrics_port, liveness_port)
    try:
        wait_for(lambda: op.healthy() or not op.alive(), timeout=60, message="operator liveness")
    except TimeoutError:
        op.stop()  # the caller never gets it to stop
        raise
    assert op.alive(), op.log_text()[-4000:]
    return op


RESTRICTED_LABELS = {
    f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")
}


def restricted_namespace(cluster: LocalCluster, prefix: str) -> str:
    """A fresh namespace whose pods must meet the restricted Pod Security Standard."""
    name = cluster.create_namespace(prefix)
    cluster.kubectl("label", "namespace", name, *(f"{k}={v}" for k, v in RESTRICTED_LABELS.items()))
    return name


def postgresql_volume(cluster: LocalCluster, namespace: str, directory: Path) -> str:
    """A hostPath PersistentVolume (the real node has no provisioner) bound to the in-chart
    PostgreSQL's claim in `namespace`; returns its name (the caller deletes it)."""
    directory.mkdir()
    os.chown(directory, 999, 999)
    directory.chmod(0o700)
    name = f"{namespace}-postgresql"
    cluster.create({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": str(directory), "type": "Directory"},
            "claimRef": {"namespace": namespace, "name": f"data-{RELEASE}-postgresql-0"},
        },
    })  # fmt: skip
    return name


# `make helm-demo`'s install on the real node: the in-chart PostgreSQL of `make image`.
REAL_NODE_VALUES = [
    "--set=crds.install=false",
    "--set=fullnameOverride=gi",
    "--set=postgresql.image.repository=guideline-ingest-postgresql",
    "--set-string=postgresql.image.tag=15",
]


def roll_out(cluster: LocalCluster, namespace: str) -> None:
    """Waits for the release's workloads (fullnameOverride=gi) to be rolled out."""
    for workload in ("statefulset/gi-postgresql", "deployment/gi-api", "statefulset/gi-operator"):
        cluster.kubectl(
            "-n", namespace, "rollout", "status", workload, "--timeout=300s", timeout=320
        )  # fmt: skip


def api_server_policy(cluster: LocalCluster) -> list[str]:
    """`networkPolicy.kubeApiServer` for the local cluster: a runner's connection to the
    `kubernetes` Service reaches, after kube-proxy's DNAT, the API server's address on its
    own port (not 443/6443); that is what a policy agent judges, so the values name them."""
    [endpoints] = cluster.get_json(
        "endpointslices", "-n", "default", "-l", "kubernetes.io/service-name=kubernetes"
    )["items"]
    address = endpoints["endpoints"][0]["addresses"][0]
    port = endpoints["ports"][0]["port"]
    return [
        f"--set=networkPolicy.kubeApiServer.cidrs[0]={address}/32",
        f"--set=networkPolicy.kubeApiServer.ports[0]={port}",
    ]


def node_dns_policy(cluster: LocalCluster) -> list[str]:
    """`networkPolicy.dns.cidrs` for the real node, whose CoreDNS is a host process on the
    Node's address, not a kube-dns pod: runner pods resolve the API Service's name there."""
    return [f"--set=networkPolicy.dns.cidrs[0]={cluster.pod_host}/32"]


def install_on_real_node(
    helm: Helm, namespace: str, tenant: str, api_key: str, network_policy: bool
) -> None:
    """`make helm-demo`'s install on the real node into `namespace` (REAL_NODE_VALUES, the
    NetworkPolicy addresses of the local API server and DNS), NetworkPolicies on or off,
    with `api_key` the one API key (of `tenant`)."""
    cluster = helm.cluster
    helm.run(
        "install", RELEASE, str(CHART), "-n", namespace, *REAL_NODE_VALUES,
        *api_server_policy(cluster), *node_dns_policy(cluster),
        f"--set=networkPolicy.enabled={str(network_policy).lower()}",
        f"--set=api.apiKeys.hashes[0]={tenant}:{hash_key(api_key)}",
    )  # fmt: skip


@contextlib.contextmanager
def port_forward(cluster: LocalCluster, namespace: str, target: str, port: int) -> Iterator[str]:
    """`kubectl port-forward` of target's port to a free loopback port; yields the URL."""
    local = free_port()
    proc = subprocess.Popen(
        [str(cluster.kubectl_path), "--kubeconfig", str(cluster.kubeconfig), "-n", namespace,
         "port-forward", "--address", "127.0.0.1", target, f"{local}:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{local}"
    try:

        def live() -> bool:
            try:
                return httpx.get(f"{url}/health/live", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(live, timeout=60, message=f"the API through port-forward of {target}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def job_through(url: str, api_key: str, body: dict[str, Any]) -> dict[str, Any]:
    """Submit `body` to the API at `url` and return the job once it is terminal."""
    headers = {"Authorization": f"Bearer {api_key}"}
    created = httpx.post(f"{url}/jobs", json=body, headers=headers, timeout=30)
    assert created.status_code == 202, created.text
    event_id = created.json()["event_id"]

    def finished() -> dict[str, Any] | None:
        job = httpx.get(f"{url}/jobs/{event_id}", headers=headers, timeout=10).json()
        return job if job["status"] in ("COMPLETED", "FAILED", "CANCELLED") else None

    return wait_for(finished, timeout=300, interval=1, message="the job finished")
