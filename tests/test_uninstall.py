"""`guideline-uninstall` (operator/guideline_operator/uninstall.py), the chart's pre-delete
hook, against the real control plane with no operator running: it deletes the namespace's
GuidelineJobs, then drops the operator's finalizer (only ours) from those that stay. The
hook's pod under the chart is in tests/test_chart_ops.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from guideline_core import resource as gj
from guideline_core.k8s import Client, paths
from guideline_core.k8s import pooled as k8s_pooled
from guideline_operator import uninstall
from support.cluster import LocalCluster
from support.imports import imported_by

OTHER_FINALIZER = "example.com/keep"


@pytest.fixture
def namespace(cluster: LocalCluster) -> Iterator[str]:
    name = cluster.create_namespace("uninstall")
    yield name
    cluster.delete_namespace(name)


@pytest.fixture
def kube(cluster: LocalCluster) -> Iterator[Client]:
    client = k8s_pooled.connect(str(cluster.kubeconfig))
    yield client
    client.close()


def guidelinejob(kube: Client, namespace: str, finalizers: list[str]) -> str:
    manifest = gj.guideline_job_manifest(event_id=gj.new_event_id(), guideline_text="Text.")
    manifest["metadata"]["finalizers"] = finalizers
    created = kube.create(paths.guidelinejobs(namespace), manifest)
    return str(created["metadata"]["name"])


def test_release_deletes_guidelinejobs_and_drops_only_the_operators_finalizer(
    kube: Client, namespace: str
) -> None:
    guidelinejob(kube, namespace, [])
    guidelinejob(kube, namespace, [gj.FINALIZER])
    shared = guidelinejob(kube, namespace, [gj.FINALIZER, OTHER_FINALIZER])

    summary = uninstall.release(kube, namespace, timeout=1.0)

    assert summary == {"found": 3, "released": 2, "remaining": 1}
    left = kube.list_items(paths.guidelinejobs(namespace))
    assert [o["metadata"]["name"] for o in left] == [shared]
    assert left[0]["metadata"]["finalizers"] == [OTHER_FINALIZER]
    assert left[0]["metadata"].get("deletionTimestamp")
    kube.merge_patch(paths.guidelinejobs(namespace, shared), {"metadata": {"finalizers": None}})


def test_the_hook_imports_neither_kopf_nor_the_operators_handlers() -> None:
    hook = "import guideline_operator.uninstall"
    assert imported_by(hook, {"kopf", "guideline_operator.handlers"}) == []
