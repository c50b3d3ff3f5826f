"""The in-memory fake of the Kubernetes client (tests/support/fake_kube.py) against the real
control plane: every test runs on both, for the calls the operator's adapter
(`guideline_operator.kubeapi.Kube`) makes, so a Reconciler test on the fake (test_reconciler.py)
sees what the operator would see from kube-apiserver."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from guideline_core import resource as gj
from guideline_core.k8s import (
    AlreadyExistsError,
    Client,
    ConflictError,
    NotFoundError,
    RejectedError,
    paths,
    pooled,
)
from guideline_core.settings import OperatorSettings
from guideline_operator import manifests
from guideline_operator.kubeapi import Kube
from support.cluster import LocalCluster, wait_for
from support.fake_kube import FakeClient, selector_matches


@dataclass
class Api:
    client: Client
    namespace: str

    @property
    def kube(self) -> Kube:
        return Kube(self.client)


@pytest.fixture(scope="module")
def real_namespace(cluster: LocalCluster) -> Iterator[str]:
    name = cluster.create_namespace("fake-kube")
    yield name
    cluster.delete_namespace(name)


@pytest.fixture(params=["fake", "real"])
def api(request: pytest.FixtureRequest) -> Iterator[Api]:
    if request.param == "fake":
        fake = FakeClient()
        fake.create_namespace("fake-kube-ns")
        yield Api(fake, "fake-kube-ns")
        return
    cluster: LocalCluster = request.getfixturevalue("cluster")
    client = pooled.connect(str(cluster.kubeconfig), timeout=(3.0, 10.0), retries=0)
    yield Api(client, request.getfixturevalue("real_namespace"))
    client.close()


def guidelinejob(name: str, **metadata: Any) -> dict[str, Any]:
    manifest = gj.guideline_job_manifest(event_id=gj.new_event_id(), guideline_text="x")
    manifest["metadata"] = {"name": name, **metadata}
    return manifest


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_a_missing_object_is_not_found(api: Api) -> None:
    path = paths.guidelinejobs(api.namespace, "gj-nobody")
    with pytest.raises(NotFoundError) as caught:
        api.client.get(path)
    assert caught.value.status == 404 and caught.value.reason == "NotFound"
    assert api.kube.get_cr(api.namespace, "gj-nobody") is None
    assert api.kube.delete_cr(api.namespace, "gj-nobody") is False
    assert api.kube.delete_job(api.namespace, "nobody") is False
    with pytest.raises(NotFoundError):
        api.kube.patch_cr_status(api.namespace, "gj-nobody", {"phase": "PENDING"})
    with pytest.raises(NotFoundError) as caught:  # no such type: not an absent object
        api.client.get_or_none(paths.path(gj.API_VERSION, "nosuchthings", api.namespace, "x"))
    assert caught.value.reason != "NotFound"


def test_create_sets_the_servers_fields_and_refuses_twice(api: Api) -> None:
    name = unique("gj-create")
    body = guidelinejob(name)
    body["status"] = {"phase": "COMPLETED"}  # the status subresource's: dropped on create
    created = api.client.create(paths.guidelinejobs(api.namespace), body)
    meta = created["metadata"]
    assert meta["namespace"] == api.namespace and meta["generation"] == 1
    assert uuid.UUID(meta["uid"]) and meta["resourceVersion"].isdigit()
    assert meta["creationTimestamp"].endswith("Z")
    assert not created.get("status")
    assert (created["apiVersion"], created["kind"]) == (gj.API_VERSION, gj.KIND)
    with pytest.raises(AlreadyExistsError) as caught:
        api.client.create(paths.guidelinejobs(api.namespace), guidelinejob(name))
    assert caught.value.reason == "AlreadyExists"
    with pytest.raises(RejectedError) as rejected:
        api.client.create(paths.guidelinejobs(api.namespace), guidelinejob("Not_A_Name"))
    assert rejected.value.status == 422


def test_merge_patches_and_the_status_subresource(api: Api) -> None:
    name = unique("gj-patch")
    created = api.client.create(
        paths.guidelinejobs(api.namespace), guidelinejob(name, labels={"a": "1", "b": "2"})
    )
    version = created["metadata"]["resourceVersion"]
    patched = api.kube.patch_cr(
        api.namespace, name, {"metadata": {"labels": {"a": None, "c": "3"}}, "status": {"x": 1}}
    )
    assert patched["metadata"]["labels"] == {"b": "2", "c": "3"}  # None deletes
    assert not patched.get("status")  # the object's write ignores status
    assert patched["metadata"]["generation"] == 1  # metadata is not the spec
    assert patched["metadata"]["resourceVersion"] != version
    with pytest.raises(RejectedError):  # the CRD's rule: spec is immutable
        api.kube.patch_cr(api.namespace, name, {"spec": {"title": "another"}})
    first, second = {"type": "A", "status": "True"}, {"type": "B", "status": "False"}
    status = api.kube.patch_cr_status(
        api.namespace, name, {"phase": "PENDING", "eventId": "e", "conditions": [first]}
    )
    assert status["status"] == {"phase": "PENDING", "eventId": "e", "conditions": [first]}
    version = status["metadata"]["resourceVersion"]
    # /status ignores everything else; a list is replaced, None deletes a field.
    both = {"status": {"eventId": None, "conditions": [second]}, "spec": {"title": "t"}}
    status = api.client.merge_patch(paths.guidelinejobs(api.namespace, name, "status"), both)
    assert status["status"] == {"phase": "PENDING", "conditions": [second]}
    assert "title" not in status["spec"] and status["metadata"]["generation"] == 1
    with pytest.raises(ConflictError) as conflict:  # conditional on a stale resourceVersion
        api.kube.patch_cr_status(api.namespace, name, {"phase": "FAILED"}, resource_version=version)
    assert not isinstance(conflict.value, AlreadyExistsError)
    current = status["metadata"]["resourceVersion"]
    same = api.kube.patch_cr_status(api.namespace, name, {"phase": "PENDING"}, current)
    assert same["metadata"]["resourceVersion"] == current  # nothing changed: no write
    api.kube.patch_cr_status(api.namespace, name, {"phase": "FAILED"}, resource_version=current)
    assert api.kube.get_cr(api.namespace, name)["status"]["phase"] == "FAILED"  # type: ignore[index]


def test_label_selectors_and_pages(api: Api) -> None:
    tag = uuid.uuid4().hex[:8]
    for i, tier in enumerate(["gold", "silver", None]):
        labels = {"tag": tag, **({"tier": tier} if tier else {})}
        api.client.create(
            paths.guidelinejobs(api.namespace), guidelinejob(f"gj-sel-{tag}-{i}", labels=labels)
        )

    def names(selector: str, namespace: str | None = api.namespace, limit: int = 500) -> list[str]:
        items = api.client.list_items(
            paths.guidelinejobs(namespace), f"tag={tag},{selector}", limit
        )
        return sorted(i["metadata"]["name"][-1] for i in items)

    assert names("tier=gold") == ["0"] and names("tier==gold") == ["0"]
    assert names("tier!=gold") == ["1", "2"]
    assert names("tier in (gold, silver)") == ["0", "1"]
    assert names("tier notin (gold)") == ["1", "2"]
    assert names("tier") == ["0", "1"] and names("!tier") == ["2"]
    assert names("tier", namespace=None) == ["0", "1"]  # every namespace
    assert names("tag", limit=1) == ["0", "1", "2"]  # page by page
    crs = [c for c in api.kube.list_crs(api.namespace) if tag in c["metadata"]["name"]]
    assert len(crs) == 3 and all(c["kind"] == gj.KIND for c in crs)


def test_jobs_are_created_once_and_follow_their_owner(api: Api) -> None:
    name = unique("gj-owner")
    cr = api.client.create(paths.guidelinejobs(api.namespace), guidelinejob(name))
    request = manifests.JobRequest(
        cr_name=name, cr_uid=cr["metadata"]["uid"], namespace=api.namespace, event_id="e"
    )
    job = manifests.build_job(request, OperatorSettings(kueue_queue_name="q"))  # suspended
    assert api.kube.create_job(api.namespace, job) is True
    assert api.kube.create_job(api.namespace, job) is False
    [listed] = api.kube.list_jobs(api.namespace, manifests.selector_for(name))
    assert listed["metadata"]["name"] == job["metadata"]["name"]
    assert "kind" not in listed  # a built-in type's list items carry no kind
    assert listed["spec"]["suspend"] is True and listed["metadata"]["generation"] == 1
    path = paths.jobs(api.namespace, job["metadata"]["name"])
    labelled = api.client.merge_patch(path, {"metadata": {"labels": {"x": "1"}}})
    assert labelled["metadata"]["generation"] == 1  # metadata is not the spec
    changed = api.client.merge_patch(path, {"spec": {"activeDeadlineSeconds": 999}})
    assert changed["metadata"]["generation"] == 2
    assert api.kube.list_pods(api.namespace, manifests.selector_for(name)) == []
    assert api.kube.delete_cr(api.namespace, name) is True
    wait_for(
        lambda: not api.kube.list_jobs(api.namespace, manifests.selector_for(name)),
        timeout=60,
        message="the garbage collector deleting the Job",
    )


def test_a_finalizer_holds_a_deleted_object_until_it_is_removed(api: Api) -> None:
    name = unique("gj-final")
    api.client.create(
        paths.guidelinejobs(api.namespace), guidelinejob(name, finalizers=["example.com/hold"])
    )
    assert api.kube.delete_cr(api.namespace, name) is True
    held = api.kube.get_cr(api.namespace, name)
    assert held is not None and held["metadata"]["deletionTimestamp"]
    api.kube.patch_cr(api.namespace, name, {"metadata": {"finalizers": None}})
    assert api.kube.get_cr(api.namespace, name) is None


def test_namespace_labels(api: Api) -> None:
    labels = api.kube.namespace_labels(api.namespace)
    assert labels["kubernetes.io/metadata.name"] == api.namespace
    with pytest.raises(NotFoundError):
        api.kube.namespace_labels("no-such-namespace-" + uuid.uuid4().hex[:6])


def test_selector_requirements() -> None:
    labels = {"a": "1", "b": "x"}
    assert selector_matches("a=1,b in (x, y)", labels)
    assert not selector_matches("a=1,b notin (x)", labels)
    assert selector_matches("", labels) and selector_matches("!c", labels)
