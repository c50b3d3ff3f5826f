"""The test bed is a real Kubernetes: the control plane built from source answers as the
pinned release, authenticates and authorizes for real (RBAC, the Node authorizer,
ServiceAccount tokens), and the node agent keeps its Node Ready through heartbeats.
PostgreSQL runs from the installed server binaries."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from guideline_core import resource as gj
from support.cluster import LocalCluster, account_with_role, hack_paths, wait_for

pytestmark = pytest.mark.cluster


def test_apiserver_is_ready(cluster: LocalCluster) -> None:
    assert cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    verbose = cluster.kubectl("get", "--raw", "/readyz?verbose").stdout
    assert "[+]etcd ok" in verbose
    assert "readyz check passed" in verbose


def test_versions_are_the_pinned_release(cluster: LocalCluster) -> None:
    versions = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert re.fullmatch(r"v1\.37\.\d+", cluster.version)
    assert versions["serverVersion"]["gitVersion"] == cluster.version
    assert versions["clientVersion"]["gitVersion"] == cluster.version
    # The cached build, keyed by the version, not whatever kubectl is on PATH.
    assert cluster.kubectl_path == Path(hack_paths()["K8S_BIN"]) / "kubectl"
    assert f"k8s-{cluster.version}" in str(cluster.kubectl_path)


def test_controllers_and_scheduler_are_healthy(cluster: LocalCluster) -> None:
    # The controller manager's own ServiceAccounts exist only because it runs with
    # --use-service-account-credentials and the serviceaccount-token controller works.
    accounts = cluster.get_json("serviceaccounts", "-n", "kube-system")["items"]
    names = {sa["metadata"]["name"] for sa in accounts}
    assert {"job-controller", "generic-garbage-collector", "namespace-controller"} <= names
    # Every namespace gets the cluster CA published by root-ca-certificate-publisher.
    configmap = cluster.get_json("configmap", "kube-root-ca.crt", "-n", "default")
    assert configmap["data"]["ca.crt"].strip() == cluster.ca_file.read_text().strip()


def test_node_is_ready_untainted_and_heartbeating(cluster: LocalCluster) -> None:
    node = cluster.get_json("node", cluster.node_name)
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert not node["spec"].get("taints"), "node-lifecycle should have removed not-ready"
    assert node["status"]["nodeInfo"]["kubeletVersion"] == cluster.version
    assert node["status"]["allocatable"]["pods"]

    lease = cluster.get_json("lease", cluster.node_name, "-n", "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == cluster.node_name
    first = lease["spec"]["renewTime"]
    wait_for(
        lambda: (
            cluster.get_json("lease", cluster.node_name, "-n", "kube-node-lease")["spec"][
                "renewTime"
            ]
            != first
        ),
        timeout=40,
        message="the node lease to be renewed",
    )


def _node_kubeconfig(cluster: LocalCluster) -> Path:
    return cluster.kubeconfig.parent / "node-agent.kubeconfig"


def test_node_agent_is_judged_by_node_authorizer(cluster: LocalCluster, namespace: str) -> None:
    as_node = _node_kubeconfig(cluster)
    who = cluster.kubectl("auth", "whoami", "-o", "json", kubeconfig=as_node).stdout
    user = json.loads(who)["status"]["userInfo"]
    assert user["username"] == f"system:node:{cluster.node_name}"
    assert "system:nodes" in user["groups"]

    # A Secret no pod on the node references is out of the node's reach...
    cluster.kubectl(
        "create", "secret", "generic", "unrelated", "-n", namespace, "--from-literal=k=v"
    )
    denied = cluster.kubectl(
        "get", "secret", "unrelated", "-n", namespace, check=False, kubeconfig=as_node
    )
    assert denied.returncode != 0 and "Forbidden" in denied.stderr
    # ...and NodeRestriction keeps it from touching other Nodes.
    other = cluster.kubectl(
        "label",
        "node",
        cluster.node_name,
        "node-restriction.kubernetes.io/x=y",
        check=False,
        kubeconfig=as_node,
    )
    assert other.returncode != 0 and "Forbidden" in other.stderr


def test_service_account_token_authenticates_and_rbac_denies(
    cluster: LocalCluster, namespace: str
) -> None:
    read_configmaps = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]
    cluster.create(
        account_with_role(namespace, "reader", "configmap-reader", read_configmaps), namespace
    )
    token = cluster.kubectl("create", "token", "reader", "-n", namespace).stdout.strip()

    who = cluster.kubectl_as_token(token, "auth", "whoami", "-o", "json", check=True)
    user = json.loads(who.stdout)["status"]["userInfo"]
    assert user["username"] == f"system:serviceaccount:{namespace}:reader"

    allowed = cluster.kubectl_as_token(token, "get", "configmaps", "-n", namespace)
    assert allowed.returncode == 0, allowed.stderr
    assert "kube-root-ca.crt" in allowed.stdout
    for args in (["get", "secrets", "-n", namespace], ["get", "configmaps", "-n", "default"]):
        denied = cluster.kubectl_as_token(token, *args)
        assert denied.returncode != 0
        assert "Forbidden" in denied.stderr
        assert f"system:serviceaccount:{namespace}:reader" in denied.stderr

    bogus = cluster.kubectl_as_token(token[:-4] + "AAAA", "get", "configmaps", "-n", namespace)
    assert bogus.returncode != 0 and "Unauthorized" in bogus.stderr


def test_postgresql_runs_from_installed_binaries_in_a_temporary_directory(
    postgresql_proc: Any, postgres_url: str
) -> None:
    datadir = Path(postgresql_proc.datadir).resolve()
    assert datadir.is_relative_to(Path(tempfile.gettempdir()).resolve())
    assert (datadir / "PG_VERSION").read_text().strip() == str(postgresql_proc.version.major)
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    assert binaries, "the PostgreSQL server package is installed"
    installed = subprocess.run(
        [str(binaries[-1]), "--version"], check=True, capture_output=True, text=True
    ).stdout
    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
        cur.execute("SHOW server_version")
        server_version = cur.fetchone()[0]
        cur.execute("SHOW data_directory")
        assert Path(cur.fetchone()[0]).resolve() == datadir
    assert server_version.split()[0] in installed


def test_a_deleted_test_namespace_is_not_held_by_a_stopped_operators_finalizer(
    cluster: LocalCluster,
) -> None:
    """A test that fails with its operator gone leaves GuidelineJobs holding the operator's
    finalizer; deleting its namespace must still finish (a namespace left terminating
    holds the CRD's deletion, and so every later chart uninstall, for good)."""
    namespace = cluster.create_namespace("t-held")
    manifest = gj.guideline_job_manifest(event_id=gj.new_event_id(), guideline_text="Text.")
    manifest["metadata"]["finalizers"] = [gj.FINALIZER]
    cluster.create(manifest, namespace=namespace)

    cluster.delete_namespace(namespace)

    wait_for(
        lambda: cluster.try_get_json("namespace", namespace) is None,
        timeout=60,
        message=f"namespace {namespace} deleted",
    )
