"""The chart in a platform team's cluster, against the real local API server: namespace users
bound to Kubernetes' `edit`/`view` roles working with GuidelineJobs (aggregated ClusterRoles,
judged by `kubectl auth can-i --as`), the API's PodDisruptionBudget, kopf's CRDs on their
own switch, the in-chart PostgreSQL from an existing Secret, the uninstall hook's pod under
restricted Pod Security, and `helm uninstall` followed by deleting the namespace and the
CRDs never hanging, with and without a running operator."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from support.cluster import REPO_ROOT, LocalCluster, wait_for
from support.helm import (
    CHART,
    RELEASE,
    Helm,
    component,
    docs,
    of_kind,
    restricted_namespace,
    start_chart_operator,
)
from support.stack import OperatorProcess

pytestmark = pytest.mark.cluster

GJ_CRD = "guidelinejobs.ingest.guidelines.dev"
FINALIZER = "ingest.guidelines.dev/operator"


@pytest.fixture
def namespace(cluster: LocalCluster) -> Iterator[str]:
    name = restricted_namespace(cluster, "t-ops")
    yield name
    cluster.delete_namespace(name)


# ---------------------------------------------------------------------------------------
# edit / view users (aggregated ClusterRoles)


def can_i_as(cluster: LocalCluster, user: str, verb: str, resource: str, namespace: str) -> bool:
    name, _, sub = resource.partition("/")
    args = ["auth", "can-i", verb, name, "-n", namespace, f"--as={user}"]
    if sub:
        args.append(f"--subresource={sub}")
    answer = cluster.kubectl(*args, check=False).stdout.strip()
    assert answer in ("yes", "no"), answer
    return answer == "yes"


# (user, default role bound in the namespace or None, verb, resource, allowed)
USER_TABLE = [
    *(("alice", "edit", v, "guidelinejobs", True) for v in ("create", "delete", "patch", "get")),
    ("alice", "edit", "get", "guidelinejobs/status", True),
    ("alice", "edit", "patch", "guidelinejobs/status", False),
    # `view` reads no tenant's guidelines unless rbac.aggregateToView is on (below).
    *(("bob", "view", v, "guidelinejobs", False) for v in ("get", "list", "watch")),
    ("bob", "view", "get", "guidelinejobs/status", False),
    *(("bob", "view", v, "guidelinejobs", False) for v in ("create", "delete", "patch")),
    ("dana", "admin", "deletecollection", "guidelinejobs", True),
    ("carol", None, "get", "guidelinejobs", False),
]
# With rbac.aggregateToView=true: `view` reads, and writes nothing.
VIEW_TABLE = [
    *(("bob", "view", v, "guidelinejobs", True) for v in ("get", "list", "watch")),
    ("bob", "view", "get", "guidelinejobs/status", True),
    *(("bob", "view", v, "guidelinejobs", False) for v in ("create", "delete", "patch")),
]


def test_edit_and_view_users_work_with_guidelinejobs(
    cluster: LocalCluster, helm: Helm, namespace: str
) -> None:
    helm.run("install", RELEASE, str(CHART), "-n", namespace, "--set=crds.install=false")
    try:
        for user, role in sorted({(row[0], row[1]) for row in USER_TABLE if row[1]}):
            if role:
                cluster.kubectl(
                    "create", "rolebinding", f"{user}-{role}", f"--clusterrole={role}",
                    f"--user={user}", "-n", namespace,
                )  # fmt: skip

        def wrong(table: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
            return [
                row
                for row in table
                if can_i_as(cluster, row[0], row[2], row[3], namespace) != row[4]
            ]

        # The clusterrole-aggregation controller copies the rules in within moments.
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: not wrong(USER_TABLE), timeout=30, interval=1, message="aggregation")
        assert wrong(USER_TABLE) == []
        helm.run(
            "upgrade", RELEASE, str(CHART), "-n", namespace, "--set=crds.install=false",
            "--set=rbac.aggregateToView=true",
        )  # fmt: skip
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: not wrong(VIEW_TABLE), timeout=30, interval=1, message="view")
        assert wrong(VIEW_TABLE) == []
        # Only in the bound namespace.
        assert not can_i_as(cluster, "alice", "create", "guidelinejobs", "default")
        # ...and with the switch off, `edit` grants nothing on GuidelineJobs (the rules
        # above really come from the chart's ClusterRoles).
        helm.run(
            "upgrade", RELEASE, str(CHART), "-n", namespace, "--set=crds.install=false",
            "--set=rbac.aggregateToDefaultRoles=false",
        )  # fmt: skip
        wait_for(
            lambda: not can_i_as(cluster, "alice", "create", "guidelinejobs", namespace),
            timeout=30,
            interval=1,
            message="aggregated rules removed",
        )
    finally:
        helm.run("uninstall", RELEASE, "-n", namespace, "--no-hooks", check=False)


def test_cluster_scoped_names_are_unique_per_namespace(helm: Helm) -> None:
    """Two releases of the same name in two namespaces never fight over a ClusterRole."""
    first = {o["metadata"]["name"] for o in of_kind(helm.template(namespace="a"), "ClusterRole")}
    second = {o["metadata"]["name"] for o in of_kind(helm.template(namespace="b"), "ClusterRole")}
    # The aggregated edit role and the API's tokenreviews role (docs/contracts.md, "The
    # runner's API"), and their bindings.
    assert len(first) == 2 and not first & second
    bindings = [
        {o["metadata"]["name"] for o in of_kind(helm.template(namespace=ns), "ClusterRoleBinding")}
        for ns in ("a", "b")
    ]
    assert len(bindings[0]) == 1 and not bindings[0] & bindings[1]
    roles = of_kind(helm.template("--set=rbac.aggregateToView=true"), "ClusterRole")
    assert len(roles) == 3
    for role in roles:
        for rule in role["rules"]:
            if role["metadata"]["name"].endswith("-api-tokenreview"):
                assert rule == {
                    "apiGroups": ["authentication.k8s.io"],
                    "resources": ["tokenreviews"],
                    "verbs": ["create"],
                }
            else:
                assert rule["apiGroups"] == ["ingest.guidelines.dev"], rule
    assert of_kind(helm.template("--set=rbac.create=false"), "ClusterRole") == []
    assert of_kind(helm.template("--set=rbac.create=false"), "ClusterRoleBinding") == []


# ---------------------------------------------------------------------------------------
# PodDisruptionBudget, kopf's CRDs, the in-chart PostgreSQL's Secret


def test_api_pod_disruption_budget(helm: Helm) -> None:
    objects = helm.template()
    [pdb] = of_kind(objects, "PodDisruptionBudget")
    assert pdb["spec"] == {
        "maxUnavailable": 1,
        "selector": pdb["spec"]["selector"],
    }
    api = component(objects, "Deployment", "api")
    assert pdb["spec"]["selector"] == api["spec"]["selector"]
    operator_labels = component(objects, "StatefulSet", "operator")["spec"]["template"]["metadata"][
        "labels"
    ]
    assert not pdb["spec"]["selector"]["matchLabels"].items() <= operator_labels.items()
    [kept] = of_kind(
        helm.template("--set=api.podDisruptionBudget.minAvailable=2"), "PodDisruptionBudget"
    )
    assert kept["spec"]["minAvailable"] == 2 and "maxUnavailable" not in kept["spec"]
    off = helm.template("--set=api.podDisruptionBudget.enabled=false")
    assert of_kind(off, "PodDisruptionBudget") == []


@pytest.mark.parametrize(
    ("flags", "wanted"),
    [
        ([], {GJ_CRD, "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"}),
        (["--set=crds.installKopfPeering=false"], {GJ_CRD}),
        (
            ["--set=crds.install=false", "--set=crds.installKopfPeering=true"],
            {"kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"},
        ),
        (["--set=crds.install=false"], set()),
    ],
)
def test_kopf_crds_have_their_own_switch(helm: Helm, flags: list[str], wanted: set[str]) -> None:
    rendered = of_kind(helm.template(*flags), "CustomResourceDefinition")
    assert {c["metadata"]["name"] for c in rendered} == wanted


def env_entries(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in workload["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_in_chart_postgresql_takes_an_existing_secret(helm: Helm) -> None:
    objects = helm.template(
        "--set=postgresql.auth.existingSecret=team-pg",
        "--set=postgresql.auth.existingSecretPasswordKey=secret-pw",
    )
    names = {o["metadata"]["name"] for o in of_kind(objects, "Secret")}
    assert f"{RELEASE}-guideline-ingest-postgresql" not in names  # the chart makes none
    database = component(objects, "StatefulSet", "database")
    ref = env_entries(database)["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "team-pg", "key": "secret-pw"}
    for workload in (
        component(objects, "Deployment", "api"),
        component(objects, "StatefulSet", "operator"),
    ):
        env = env_entries(workload)
        assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == ref
        url = env["GUIDELINE_DATABASE_URL"]["value"]
        assert url == f"postgresql://guideline@{RELEASE}-guideline-ingest-postgresql:5432/guideline"
    refused = helm.run(
        "template", RELEASE, str(CHART), f"--kube-version={helm.cluster.version.lstrip('v')}",
        "--set=postgresql.auth.existingSecret=team-pg", "--set=postgresql.auth.password=also",
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "not both" in refused.stderr


# ---------------------------------------------------------------------------------------
# uninstall


def hook_jobs(helm: Helm, *flags: str) -> list[dict[str, Any]]:
    return [
        o
        for o in of_kind(helm.template(*flags), "Job")
        if (o["metadata"].get("annotations") or {}).get("helm.sh/hook") == "pre-delete"
    ]


def test_uninstall_hook_pod_is_admitted_by_restricted_pod_security(
    cluster: LocalCluster, helm: Helm, namespace: str
) -> None:
    [job] = hook_jobs(helm, f"--namespace={namespace}")
    spec = job["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == f"{RELEASE}-guideline-ingest-operator"
    assert job["spec"]["activeDeadlineSeconds"] == 120  # bounded: never blocks forever
    cluster.kubectl("create", "serviceaccount", spec["serviceAccountName"], "-n", namespace)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "hook-"}, "spec": spec}
    result = cluster.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(pod),
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "PodSecurity" not in result.stderr
    assert hook_jobs(helm, "--set=uninstall.releaseGuidelineJobs=false") == []


def guidelinejob_body(generate_name: str, title: str) -> dict[str, Any]:
    return {
        "apiVersion": "ingest.guidelines.dev/v1alpha1",
        "kind": "GuidelineJob",
        "metadata": {"generateName": generate_name},
        "spec": {"title": title, "guidelineText": "Staff must wash their hands. " * 20},
    }


def create_guidelinejob(cluster: LocalCluster, namespace: str, title: str) -> str:
    body = guidelinejob_body("gj-uninstall-", title)
    made = cluster.kubectl(
        "create", "-n", namespace, "-f", "-", "-o", "json", input=json.dumps(body)
    )
    return json.loads(made.stdout)["metadata"]["uid"]  # the job's event_id


def row_states(database_url: str, event_ids: list[str]) -> dict[str, str]:
    with contextlib.closing(psycopg2.connect(database_url)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT event_id::text, status FROM jobs WHERE event_id::text = ANY(%s)", (event_ids,)
        )
        return dict(cur.fetchall())


def guidelinejobs(cluster: LocalCluster, namespace: str) -> list[dict[str, Any]]:
    found = cluster.try_get_json("guidelinejobs", "-n", namespace)
    return (found or {}).get("items", [])


def finalized(cluster: LocalCluster, namespace: str, count: int) -> bool:
    items = guidelinejobs(cluster, namespace)
    return len(items) == count and all(
        FINALIZER in (o["metadata"].get("finalizers") or []) for o in items
    )


@pytest.fixture
def restore_crds(cluster: LocalCluster) -> Iterator[None]:
    """The shared cluster's CRDs as the suite expects them, after a test deleted them."""
    yield
    cluster.kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", f"crd/{GJ_CRD}",
        "crd/kopfpeerings.kopf.dev",
    )  # fmt: skip
    # Established is not yet "accepted by every admission policy bound to it": the first
    # create after a re-created CRD has failed once in CI. Wait until one would be accepted.
    probe = guidelinejob_body("gj-probe-", "probe")
    wait_for(
        lambda: cluster.kubectl(
            "create", "--dry-run=server", "-n", "default", "-f", "-", input=json.dumps(probe),
            check=False,
        ).returncode == 0,
        timeout=60,
        interval=1,
        message="a GuidelineJob accepted after the CRDs were re-created",
    )  # fmt: skip


@pytest.mark.node
@pytest.mark.parametrize("operator_running", [True, False], ids=["operator-up", "operator-down"])
def test_uninstall_then_deleting_namespace_and_crds_never_hangs(
    cluster: LocalCluster,
    helm: Helm,
    postgres_url: str,
    tmp_path: Path,
    operator_running: bool,
    restore_crds: None,
) -> None:
    """install, submit, `helm uninstall` (its pre-delete hook runs as a real Job pod on the
    node), delete the namespace, delete the CRDs: each step ends in bounded time. With the
    operator up, its delete handler releases each GuidelineJob; with it down, the hook
    removes the finalizer itself after `uninstall.timeoutSeconds`. The hook runs in a
    container of the chart's default image; the API and the operator are local processes
    (replicas 0)."""
    cluster.pod_image()  # built and imported under the chart's default image name
    ns = restricted_namespace(cluster, "t-uninstall")
    op: OperatorProcess | None = None
    try:
        helm.run(
            "install", RELEASE, str(CHART), "-n", ns, "--set=crds.install=false",
            "--set=postgresql.enabled=false", f"--set=database.url={postgres_url}",
            "--set=uninstall.timeoutSeconds=15", "--set=api.replicas=0",
            "--set=operator.replicas=0",
        )  # fmt: skip
        objects = docs(helm.run("get", "manifest", RELEASE, "-n", ns).stdout)
        op = start_chart_operator(cluster, objects, ns, postgres_url, tmp_path)
        event_ids = [create_guidelinejob(cluster, ns, f"job {i}") for i in range(2)]
        wait_for(
            lambda: finalized(cluster, ns, 2) and len(row_states(postgres_url, event_ids)) == 2,
            timeout=60,
            message="recorded, finalizers added",
        )
        if not operator_running:
            op.stop()
        started = time.monotonic()
        result = helm.run("uninstall", RELEASE, "-n", ns, "--timeout=150s", check=False)
        took = time.monotonic() - started
        assert result.returncode == 0, result.stderr + (op.log_text()[-3000:] if op else "")
        assert took < (60 if operator_running else 90), took
        assert guidelinejobs(cluster, ns) == []
        states = row_states(postgres_url, event_ids)
        assert set(states) == set(event_ids)  # the history stays in PostgreSQL
        if operator_running:  # the operator saw each deletion: no job left unfinished
            assert set(states.values()) <= {"COMPLETED", "CANCELLED", "FAILED"}, states
        cluster.kubectl("delete", "namespace", ns, "--timeout=60s")
        cluster.kubectl("delete", "crd", GJ_CRD, "--timeout=60s")
    finally:
        if op is not None:
            op.stop()
        helm.run("uninstall", RELEASE, "-n", ns, "--no-hooks", check=False)
        cluster.delete_namespace(ns)
