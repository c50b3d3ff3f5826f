"""`guideline_core.k8s`: one error hierarchy whichever transport made the call, against the
real control plane (the standard library's, the runner's; the `kubernetes` package's pooled
one, the API's and operator's): 404, 409 conflict, 409 already exists, 422, 401/403, and no
answer at all; and the API's gateway keeping its own terms over it."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from guideline_api import kubeapi
from guideline_core import resource as gj
from guideline_core.k8s import (
    AlreadyExistsError,
    Client,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    RejectedError,
    UnavailableError,
    paths,
    pooled,
    stdlib,
)
from support.cluster import LocalCluster

Connect = Callable[[str], Client]
TRANSPORTS: dict[str, Connect] = {
    "stdlib": lambda kubeconfig: stdlib.connect(kubeconfig, timeout_seconds=10.0),
    "pooled": lambda kubeconfig: pooled.connect(kubeconfig, timeout=(3.0, 10.0), retries=0),
}


@pytest.fixture(params=sorted(TRANSPORTS))
def connect(request: pytest.FixtureRequest) -> Connect:
    return TRANSPORTS[request.param]


@pytest.fixture
def kube(cluster: LocalCluster, connect: Connect) -> Iterator[Client]:
    client = connect(str(cluster.kubeconfig))
    yield client
    client.close()


def token_kubeconfig(path: Path, cluster: LocalCluster, token: str) -> str:
    """A kubeconfig authenticating with only `token`."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": cluster.api_url,
                            "certificate-authority": str(cluster.ca_file),
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return str(path)


def config_map(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {}}


def test_a_missing_object_is_not_found_and_an_unknown_type_is_not_the_same(
    kube: Client, namespace: str
) -> None:
    path = paths.guidelinejobs(namespace, "gj-nobody")
    with pytest.raises(NotFoundError) as caught:
        kube.get(path)
    assert caught.value.status == 404 and caught.value.reason == "NotFound"
    assert kube.get_or_none(path) is None
    assert kube.delete(path) is False
    # No such resource type (as when the CRD is not installed): not an absent object.
    unknown = paths.path(gj.API_VERSION, "nosuchthings", namespace, "x")
    with pytest.raises(NotFoundError) as caught:
        kube.get_or_none(unknown)
    assert caught.value.reason != "NotFound"


def test_create_twice_is_already_exists_and_a_stale_write_a_conflict(
    kube: Client, namespace: str
) -> None:
    name = f"twice-{uuid.uuid4().hex[:8]}"
    collection = paths.path("v1", "configmaps", namespace)
    created = kube.create(collection, config_map(name))
    with pytest.raises(AlreadyExistsError) as caught:
        kube.create(collection, config_map(name))
    assert caught.value.status == 409 and caught.value.reason == "AlreadyExists"
    assert kube.create_if_missing(collection, config_map(name)) is False

    one = paths.path("v1", "configmaps", namespace, name)
    kube.merge_patch(one, {"data": {"a": "1"}})
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}}
    with pytest.raises(ConflictError) as conflict:
        kube.merge_patch(one, {**stale, "data": {"a": "2"}})
    assert conflict.value.status == 409
    assert not isinstance(conflict.value, AlreadyExistsError)
    assert kube.get(one)["data"] == {"a": "1"}
    assert kube.delete(one) is True


def test_an_invalid_object_is_rejected(kube: Client, namespace: str) -> None:
    with pytest.raises(RejectedError) as caught:
        kube.create(paths.path("v1", "configmaps", namespace), config_map("Not_A_Name"))
    assert caught.value.status == 422 and "Not_A_Name" in caught.value.message
    # The CRD's CEL rule: exactly one input.
    manifest = gj.guideline_job_manifest(event_id=gj.new_event_id(), guideline_text="x")
    del manifest["spec"]["guidelineText"]
    with pytest.raises(RejectedError) as caught:
        kube.create(paths.guidelinejobs(namespace), manifest)
    assert caught.value.status == 422


def test_credentials_without_the_right_are_forbidden(
    cluster: LocalCluster, namespace: str, connect: Connect, tmp_path: Path
) -> None:
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", namespace, check=False)
    token = cluster.kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()
    kube = connect(token_kubeconfig(tmp_path / "nobody.yaml", cluster, token))
    try:
        with pytest.raises(ForbiddenError) as caught:
            kube.list_items(paths.guidelinejobs(namespace))
        assert caught.value.status == 403
    finally:
        kube.close()
    kube = connect(token_kubeconfig(tmp_path / "bad.yaml", cluster, "not-a-token"))
    try:
        with pytest.raises(ForbiddenError) as caught:
            kube.list_items(paths.guidelinejobs(namespace))
        assert caught.value.status == 401
    finally:
        kube.close()


def test_no_answer_is_unavailable(cluster: LocalCluster, connect: Connect, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = Path(token_kubeconfig(tmp_path / "dead.yaml", cluster, "t"))
    text = path.read_text().replace(cluster.api_url, f"https://127.0.0.1:{port}")
    path.write_text(text)
    kube = connect(str(path))
    try:
        with pytest.raises(UnavailableError) as caught:
            kube.get(paths.namespace("default"))
        assert caught.value.status is None
    finally:
        kube.close()


def test_the_apis_gateway_keeps_its_own_terms(cluster: LocalCluster, namespace: str) -> None:
    # guideline_api.kubeapi over the same client: absent -> None, a 404 on a write -> its
    # conflict, any other failure -> KubernetesUnavailableError.
    gateway = kubeapi.KubeGateway(namespace, str(cluster.kubeconfig))
    try:
        assert gateway.get("gj-nobody") is None
        assert gateway.get_pod(namespace, "nobody") is None
        manifest = gj.guideline_job_manifest(event_id=gj.new_event_id(), guideline_text="x")
        created = gateway.create(manifest)
        with pytest.raises(kubeapi.AlreadyExistsError):
            gateway.create(manifest)
        name = created["metadata"]["name"]
        gateway.patch_annotations(name, {"a": "1"})
        with pytest.raises(kubeapi.ConflictError):
            gateway.patch_annotations(name, {"a": "2"}, created["metadata"]["resourceVersion"])
        with pytest.raises(kubeapi.ConflictError, match="disappeared"):
            gateway.patch_annotations("gj-nobody", {"a": "1"})
        gateway.ping()
    finally:
        gateway.close()
    elsewhere = kubeapi.KubeGateway(
        "no-such-namespace-" + uuid.uuid4().hex[:6], str(cluster.kubeconfig)
    )
    try:
        elsewhere.ping()  # an empty list: reachable, CRD installed
    finally:
        elsewhere.close()
    with pytest.raises(kubeapi.KubernetesUnavailableError):
        kubeapi.KubeGateway(namespace, "/nonexistent/kubeconfig").ping()
