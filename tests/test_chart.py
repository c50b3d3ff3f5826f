"""The Helm chart (charts/guideline-ingest) against the real local API server: lint, renders
accepted by `kubectl apply --dry-run=server`, the values schema refusing a wrong type at
install, `helm install` into a namespace that enforces the `restricted` Pod Security
Standard, every pod template (and the runner Job the operator builds from the chart's
settings) admitted as a pod by PodSecurity, the README's least-privilege table proved with
each ServiceAccount's own token, the CRDs rendered exactly from crds/, and skaffold.yaml
consistent with the chart.

Most of these tests judge the chart's pods by admission (the API server's PodSecurity
plugin) and run on either node. The ones that run pods are marked `node` (`make test-node`)
and run them in containers on the real node: `test_chart_runs_on_the_real_node` (the whole
release) and `test_submit_run_complete_with_the_charts_service_accounts` (a runner pod)."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from guideline_api.auth import hash_key
from guideline_core.settings import ApiSettings, OperatorSettings, RunnerSettings
from guideline_operator.manifests import JobRequest, build_job
from support.api import auth, make_settings, running_server, submit
from support.cluster import REPO_ROOT, LocalCluster, wait_for
from support.fake_llm import FakeLLMProcess
from support.helm import (
    CHART,
    RELEASE,
    Helm,
    account_token,
    component,
    docs,
    env_of,
    install_on_real_node,
    job_through,
    of_kind,
    port_forward,
    postgresql_volume,
    restricted_namespace,
    roll_out,
    runner_pod_file,
    start_chart_operator,
    token_kubeconfig,
)
from support.net import free_port
from support.stack import (
    DEFAULT_SCRIPT,
    FAKE_SUMMARY,
    OPENAI_TEST_KEY,
    OperatorProcess,
)

pytestmark = pytest.mark.cluster

ALL_ON = REPO_ROOT / "tests" / "data" / "values-all-on.yaml"
SERVICEMONITOR_CRD = REPO_ROOT / "tests" / "data" / "servicemonitor-crd.yaml"
README = CHART / "README.md"
# Values that render every "external" branch: database, OpenAI key and API keys from
# existing Secrets, CRDs managed outside the release, auth off.
EXTERNAL = [
    "--set=postgresql.enabled=false",
    "--set=database.existingSecret=platform-db",
    "--set=openai.existingSecret=platform-openai",
    "--set=openai.existingSecretKey=token",
    "--set=api.apiKeys.existingSecret=platform-api-keys",
    "--set=crds.install=false",
    "--set=api.auth.enabled=false",
]
RENDERINGS = {"defaults": [], "all-on": [f"--values={ALL_ON}"], "external": EXTERNAL}


@pytest.fixture(scope="module")
def crds(cluster: LocalCluster) -> None:
    """The CRDs the chart's objects need, applied the way `crds.install=false` users do,
    stand-ins for the Prometheus Operator's CRDs, and the PriorityClass the all-on values
    give runner pods."""
    cluster.kubectl("apply", "-f", str(REPO_ROOT / "crds"), "-f", str(SERVICEMONITOR_CRD))
    priority = {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": "gi-all-runner-test"},
        "value": 1000,
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(priority))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/kopfpeerings.kopf.dev", "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com", "crd/guidelinejobs.ingest.guidelines.dev",
    )  # fmt: skip


@pytest.fixture(scope="module")
def namespace(cluster: LocalCluster, crds: None) -> Iterator[str]:
    name = restricted_namespace(cluster, "t-chart")
    yield name
    cluster.delete_namespace(name)


def dry_run_apply(cluster: LocalCluster, namespace: str, objects: list[dict[str, Any]]) -> str:
    """`kubectl apply --dry-run=server` of the objects; returns stderr (warnings)."""
    body = {"apiVersion": "v1", "kind": "List", "items": objects}
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(body),
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    applied = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(objects), result.stdout
    return result.stderr


def pod_from_template(workload: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The pod a Deployment, StatefulSet or Job controller would create from its template."""
    template = copy.deepcopy(workload["spec"]["template"])
    spec = template["spec"]
    for claim in workload["spec"].get("volumeClaimTemplates") or []:  # StatefulSet volumes
        name = claim["metadata"]["name"]
        spec.setdefault("volumes", []).append(
            {"name": name, "persistentVolumeClaim": {"claimName": f"{name}-{prefix}-0"}}
        )
    metadata = template.get("metadata") or {}
    metadata.pop("ownerReferences", None)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**metadata, "generateName": f"{prefix}-"},
        "spec": spec,
    }


def dry_run_create(cluster: LocalCluster, namespace: str, obj: dict[str, Any]) -> Any:
    return cluster.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(obj),
        check=False,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------
# lint and render


def test_helm_lint(helm: Helm) -> None:
    for args in ([], [f"--values={ALL_ON}"], EXTERNAL):
        result = helm.run("lint", "--strict", str(CHART), *args, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("rendering", sorted(RENDERINGS))
def test_rendered_manifests_are_accepted_by_the_api_server(
    helm: Helm, cluster: LocalCluster, namespace: str, rendering: str
) -> None:
    objects = helm.template(*RENDERINGS[rendering], namespace=namespace)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "StatefulSet", "Service", "Role", "RoleBinding"} <= kinds
    assert {"ServiceAccount", "ConfigMap"} <= kinds
    if rendering == "all-on":
        assert {"NetworkPolicy", "ServiceMonitor", "CustomResourceDefinition"} <= kinds
    warnings = dry_run_apply(cluster, namespace, objects)
    # The namespace also *warns* on workloads whose pod template breaks the standard.
    assert "PodSecurity" not in warnings, warnings


@pytest.mark.parametrize(
    ("flag", "complaint"),
    [
        ("--set=api.replicas=two", "/api/replicas"),
        ("--set-string=operator.maxConcurrentJobs=4", "/operator/maxConcurrentJobs"),
        ("--set=crds.install=sometimes", "/crds/install"),
        ("--set=runner.provider=gpt", "/runner/provider"),
        ("--set=operator.unknownSetting=1", "unknownSetting"),
    ],
)
def test_install_refuses_a_wrong_value_by_the_schema(
    helm: Helm, cluster: LocalCluster, namespace: str, flag: str, complaint: str
) -> None:
    result = helm.run(
        "install", "bad", str(CHART), "-n", namespace, "--set=crds.install=false", flag,
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert complaint in result.stderr, result.stderr
    assert "bad" not in helm.run("list", "-n", namespace, "-a", "-q").stdout.split()
    made = cluster.kubectl(
        "get", "serviceaccounts,secrets,roles", "-n", namespace, "-l",
        "app.kubernetes.io/instance=bad", "-o", "name",
    )  # fmt: skip
    assert made.stdout.strip() == ""


# ---------------------------------------------------------------------------------------
# a real install into a restricted namespace


@dataclass
class Installed:
    namespace: str
    values: str
    objects: list[dict[str, Any]]
    notes: str


@pytest.fixture(scope="module", params=["defaults", "all-on"])
def installed(
    request: pytest.FixtureRequest, helm: Helm, cluster: LocalCluster, crds: None
) -> Iterator[Installed]:
    """The chart installed (CRDs managed outside the release, as they already exist in
    this shared cluster) into its own restricted namespace."""
    ns = restricted_namespace(cluster, f"t-helm-{request.param}")
    args = [
        *RENDERINGS[request.param],
        "--set=crds.install=false",
        "--set=crds.installKopfPeering=false",
    ]
    result = helm.run("install", RELEASE, str(CHART), "-n", ns, *args)
    manifest = helm.run("get", "manifest", RELEASE, "-n", ns).stdout
    yield Installed(ns, request.param, docs(manifest), result.stdout)
    helm.run("uninstall", RELEASE, "-n", ns, "--wait=false", check=False)
    cluster.delete_namespace(ns)


def test_install_creates_every_object(cluster: LocalCluster, installed: Installed) -> None:
    assert len(installed.objects) >= 15
    body = {"apiVersion": "v1", "kind": "List", "items": installed.objects}
    found = cluster.kubectl(
        "get", "-n", installed.namespace, "-f", "-", "-o", "json", input=json.dumps(body)
    )
    stored = json.loads(found.stdout)
    stored = stored.get("items", [stored])
    assert {(o["kind"], o["metadata"]["name"]) for o in stored} == {
        (o["kind"], o["metadata"]["name"]) for o in installed.objects
    }
    for obj in stored:
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "guideline-ingest"
    assert "curl" in installed.notes and "kubectl" in installed.notes


def test_every_pod_template_is_admitted_by_restricted_pod_security(
    cluster: LocalCluster, installed: Installed
) -> None:
    workloads = of_kind(installed.objects, "Deployment") + of_kind(installed.objects, "StatefulSet")
    assert len(workloads) == 3  # API, operator, PostgreSQL
    for workload in workloads:
        pod = pod_from_template(workload, "psa-check")
        result = dry_run_create(cluster, installed.namespace, pod)
        assert result.returncode == 0, f"{workload['metadata']['name']}: {result.stderr}"
        assert "PodSecurity" not in result.stderr


def test_pod_security_admission_is_the_judge(cluster: LocalCluster, installed: Installed) -> None:
    """The same API pod with one restricted rule broken is refused: the admission above
    really enforces the standard."""
    api = component(installed.objects, "Deployment", "api")
    pod = pod_from_template(api, "psa-negative")
    pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    result = dry_run_create(cluster, installed.namespace, pod)
    assert result.returncode != 0
    assert "violates PodSecurity" in result.stderr and "allowPrivilegeEscalation" in result.stderr


@pytest.mark.parametrize("rendering", sorted(RENDERINGS))
def test_containers_are_hardened_probed_and_bounded(helm: Helm, rendering: str) -> None:
    """What the restricted standard does not itself require: a read-only root filesystem
    with a writable /tmp, liveness and readiness probes, requests and limits."""
    objects = helm.template(*RENDERINGS[rendering])
    for workload in of_kind(objects, "Deployment") + of_kind(objects, "StatefulSet"):
        spec = workload["spec"]["template"]["spec"]
        name = workload["metadata"]["name"]
        tmp_volumes = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in tmp_volumes, f"{name}: no emptyDir on /tmp"
            assert container["livenessProbe"] and container["readinessProbe"], name
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), name


def test_settings_env_names_exist_in_the_components_settings(
    installed: Installed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every GUIDELINE_* variable the chart sets is a real setting (a typo would be ignored),
    and its rendered value parses (Helm renders a large integer as a float, 6.7108864e+07,
    which the settings refuse: the API pod would not start)."""
    pairs = [
        (component(installed.objects, "Deployment", "api"), ApiSettings),
        (component(installed.objects, "StatefulSet", "operator"), OperatorSettings),
    ]
    for workload, settings in pairs:
        container = workload["spec"]["template"]["spec"]["containers"][0]
        literal = {}
        for entry in container["env"]:
            name = entry["name"]
            if name.startswith("GUIDELINE_"):
                field = name.removeprefix("GUIDELINE_").lower()
                assert field in settings.model_fields, f"{name}: no {settings.__name__} field"
                if "value" in entry and "$(" not in entry["value"]:
                    literal[name] = entry["value"]
        with monkeypatch.context() as env:
            for name in [n for n in os.environ if n.startswith("GUIDELINE_")]:
                env.delenv(name)
            for name, value in literal.items():
                env.setenv(name, value)
            settings(_env_file=None)  # raises on a value the component would refuse
    config = component(installed.objects, "ConfigMap", "runner")
    runner_env = set()
    for name, info in RunnerSettings.model_fields.items():
        runner_env.add(f"GUIDELINE_{name.upper()}")
        runner_env.update(getattr(info.validation_alias, "choices", None) or [])
    for key in config["data"]:
        assert key in runner_env, f"runner ConfigMap key {key} is not a runner setting"


def test_runner_job_built_by_the_operator_is_admitted(
    cluster: LocalCluster, installed: Installed, tmp_path: Path
) -> None:
    """The operator's own Job builder, given the settings the chart passes it (the runner-pod
    ConfigMap as the operator reads it, mounted), makes a Job whose ServiceAccount,
    ConfigMap, Secret, image, pull secrets, scheduling and resources are the chart's, and
    whose pod the restricted namespace admits."""
    operator = component(installed.objects, "StatefulSet", "operator")
    env = env_of(operator)
    fields = {k.removeprefix("GUIDELINE_").lower(): v for k, v in env.items()}
    mounts = operator["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    [mount] = [m for m in mounts if m["name"] == "runner-pod"]
    assert fields["runner_pod_template_file"].startswith(mount["mountPath"] + "/")
    fields["runner_pod_template_file"] = str(runner_pod_file(installed.objects, tmp_path))
    settings = OperatorSettings(_env_file=None, **fields)
    runner_sa = component(installed.objects, "ServiceAccount", "runner")["metadata"]["name"]
    config_map = component(installed.objects, "ConfigMap", "runner")["metadata"]["name"]
    assert settings.runner_service_account == runner_sa
    assert settings.runner_config_map == config_map
    api_image = component(installed.objects, "Deployment", "api")["spec"]["template"]["spec"][
        "containers"
    ][0]["image"]
    assert settings.runner_image == api_image
    if installed.values == "all-on":
        secret = component(installed.objects, "Secret", "runner")
        assert settings.openai_secret_name == secret["metadata"]["name"]
        assert settings.openai_secret_key in secret["stringData"]
    job = build_job(
        JobRequest(
            cr_name="gj-chart-check",
            cr_uid=str(uuid.uuid4()),
            namespace=installed.namespace,
            event_id=str(uuid.uuid4()),
        ),
        settings,
    )
    pod_spec = job["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == runner_sa
    values = yaml.safe_load(
        (ALL_ON if installed.values == "all-on" else CHART / "values.yaml").read_text()
    )
    runner = values["runner"]
    assert pod_spec.get("imagePullSecrets", []) == [{"name": n} for n in values["imagePullSecrets"]]
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
        assert pod_spec.get(key) == (runner.get(key) or None), key
    container = pod_spec["containers"][0]
    assert container["resources"] == runner["resources"]
    annotations = job["spec"]["template"]["metadata"]["annotations"]
    assert runner.get("podAnnotations", {}).items() <= annotations.items()
    env_names = [e["name"] for e in container["env"]]
    assert len(env_names) == len(set(env_names))  # extra env never shadows the operator's
    assert {e["name"] for e in runner.get("extraEnv", [])} <= set(env_names)
    if installed.values == "all-on":
        assert len(pod_spec["imagePullSecrets"]) == 2
        by_name = {e["name"]: e for e in container["env"]}
        assert by_name["GUIDELINE_JOB_NAME"]["value"] == "gj-chart-check"
    result = dry_run_create(cluster, installed.namespace, job)
    assert result.returncode == 0, result.stderr
    result = dry_run_create(cluster, installed.namespace, pod_from_template(job, "runner"))
    assert result.returncode == 0, result.stderr
    assert "PodSecurity" not in result.stderr


# ---------------------------------------------------------------------------------------
# least privilege, with each ServiceAccount's own token


def readme_table() -> list[tuple[str, str, str, bool]]:
    """(account, verb, resource, allowed) rows of the README's least-privilege table."""
    rows = []
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in ("api", "operator", "runner"):
            assert cells[3] in ("allowed", "denied"), line
            for verb in cells[1].split(","):
                rows.append((cells[0], verb.strip(), cells[2], cells[3] == "allowed"))
    return rows


def can_i(cluster: LocalCluster, token: str, verb: str, resource: str, namespace: str) -> bool:
    name, _, subresource = resource.partition("/")
    args = ["auth", "can-i", verb, name, "-n", namespace]
    if subresource:
        args.append(f"--subresource={subresource}")
    result = cluster.kubectl_as_token(token, *args)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stderr
    return answer == "yes"


def listed_rules(cluster: LocalCluster, token: str, namespace: str) -> set[tuple[str, str]]:
    """(resource, verb) pairs of `kubectl auth can-i --list` (resource rules only, without
    the self-review APIs every authenticated user has)."""
    out = cluster.kubectl_as_token(token, "auth", "can-i", "--list", "-n", namespace).stdout
    pairs = set()
    for line in out.splitlines()[1:]:
        match = re.match(r"^(\S+)\s+\[[^\]]*\]\s+\[[^\]]*\]\s+\[([^\]]*)\]\s*$", line)
        if not match or match.group(1).startswith("selfsubject"):
            continue
        for verb in match.group(2).split():
            pairs.add((match.group(1), verb))
    return pairs


CLUSTER_SCOPED = frozenset({"tokenreviews.authentication.k8s.io"})


def full_resource(resource: str) -> str:
    """The resource as `can-i --list` prints it (CRD resources with their group)."""
    name, _, sub = resource.partition("/")
    if name == "guidelinejobs":
        name = "guidelinejobs.ingest.guidelines.dev"
    return f"{name}/{sub}" if sub else name


def test_rbac_is_exactly_the_readme_table(cluster: LocalCluster, installed: Installed) -> None:
    table = readme_table()
    assert len(table) > 40
    tokens = {}
    for account in ("api", "operator", "runner"):
        sa = component(installed.objects, "ServiceAccount", account)["metadata"]["name"]
        tokens[account] = cluster.kubectl(
            "create", "token", sa, "-n", installed.namespace, "--duration=10m"
        ).stdout.strip()
    wrong = [
        (account, verb, resource, allowed)
        for account, verb, resource, allowed in table
        if can_i(cluster, tokens[account], verb, resource, installed.namespace) != allowed
    ]
    assert wrong == [], f"RBAC differs from the README table: {wrong}"
    # ...and nothing beyond the allowed rows (and what every ServiceAccount has, as the
    # namespace's unbound `default` account shows), here or in any other namespace.
    nobody = cluster.kubectl(
        "create", "token", "default", "-n", installed.namespace, "--duration=10m"
    ).stdout.strip()
    baseline = listed_rules(cluster, nobody, installed.namespace)
    for account, token in tokens.items():
        allowed = {(full_resource(r), v) for a, v, r, ok in table if a == account and ok}
        assert listed_rules(cluster, token, installed.namespace) - baseline == allowed, account
        # Cluster-scoped grants (the API's tokenreviews) hold in every namespace; nothing else.
        cluster_wide = {(r, v) for r, v in allowed if r in CLUSTER_SCOPED}
        assert listed_rules(cluster, token, "default") - baseline == cluster_wide, account
        assert not can_i(cluster, token, "get", "guidelinejobs", "default")


def test_runner_rules_are_the_local_stacks(helm: Helm) -> None:
    """The chart's runner Role and hack/manifests/runner-rbac.yaml (the local stack's and
    the runner tests') grant the same."""
    local = docs((REPO_ROOT / "hack" / "manifests" / "runner-rbac.yaml").read_text())
    chart = component(helm.template(), "Role", "runner")
    assert chart["rules"] == of_kind(local, "Role")[0]["rules"]


# ---------------------------------------------------------------------------------------
# CRDs: one source of truth


def source_crds() -> list[dict[str, Any]]:
    return [d for f in sorted((REPO_ROOT / "crds").glob("*.yaml")) for d in docs(f.read_text())]


def test_chart_reaches_crds_through_a_symlink() -> None:
    link = CHART / "files" / "crds"
    assert link.is_symlink()
    assert link.resolve() == (REPO_ROOT / "crds").resolve()
    assert not (CHART / "crds").exists(), "a chart crds/ folder would never be upgraded"


def test_rendered_crds_equal_the_source(helm: Helm) -> None:
    rendered = of_kind(helm.template("--set=crds.install=true"), "CustomResourceDefinition")
    source = source_crds()
    assert len(source) >= 3
    assert sorted(c["metadata"]["name"] for c in rendered) == sorted(
        c["metadata"]["name"] for c in source
    )
    by_name = {c["metadata"]["name"]: c for c in rendered}
    for crd in source:
        out = by_name[crd["metadata"]["name"]]
        assert out["spec"] == crd["spec"], f"{crd['metadata']['name']} drifted from crds/"
        assert out["apiVersion"] == crd["apiVersion"]
        assert crd["metadata"].get("labels", {}).items() <= out["metadata"]["labels"].items()
        annotations = out["metadata"].get("annotations", {})
        assert annotations.get("helm.sh/resource-policy") == "keep"
        assert not any(a.startswith("helm.sh/hook") for a in annotations), "not a hook"
    unkept = of_kind(helm.template("--set=crds.keep=false"), "CustomResourceDefinition")
    assert all(
        "helm.sh/resource-policy" not in (c["metadata"].get("annotations") or {}) for c in unkept
    )
    assert of_kind(helm.template("--set=crds.install=false"), "CustomResourceDefinition") == []


# ---------------------------------------------------------------------------------------
# skaffold

# Fields of a helm release in skaffold's v4beta14 schema (HelmRelease).
SKAFFOLD_HELM_RELEASE_FIELDS = {
    "name", "chartPath", "remoteChart", "valuesFiles", "namespace", "version", "setValues",
    "setValueTemplates", "setFiles", "createNamespace", "wait", "recreatePods",
    "skipBuildDependencies", "skipTests", "useHelmSecrets", "repo", "upgradeOnChange",
    "overrides", "packaged", "dependsOn",
}  # fmt: skip


def expand_skaffold_template(value: str, image_tag: str) -> str:
    """skaffold's templating of setValueTemplates, for the few forms skaffold.yaml uses,
    with no environment variables set (a clean laptop)."""
    value = value.replace("{{.IMAGE_REPO_guideline_ingest}}", "guideline-ingest")
    value = value.replace("{{.IMAGE_TAG_guideline_ingest}}", image_tag)
    value = re.sub(
        r'\{\{ default "" \.\w+ \| sha256sum \}\}', hashlib.sha256(b"").hexdigest(), value
    )
    value = re.sub(r'\{\{ default "" \.\w+ \}\}', "", value)
    assert "{{" not in value, f"untested template form: {value}"
    return value


def test_skaffold_deploys_this_chart_and_forwards_the_api(helm: Helm) -> None:
    config = yaml.safe_load((REPO_ROOT / "skaffold.yaml").read_text())
    assert config["apiVersion"] == "skaffold/v4beta14" and config["kind"] == "Config"
    [artifact] = config["build"]["artifacts"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert artifact["image"] == values["image"]["repository"]
    assert (REPO_ROOT / artifact["docker"]["dockerfile"]).is_file()
    [release] = config["deploy"]["helm"]["releases"]
    assert set(release) <= SKAFFOLD_HELM_RELEASE_FIELDS
    assert (REPO_ROOT / release["chartPath"]).resolve() == CHART.resolve()
    assert {p["name"] for p in config["profiles"]} == {"kind", "minikube"}
    tag = "0123abcd" * 8
    sets = [f"--set={k}={v}" for k, v in release.get("setValues", {}).items()]
    sets += [
        f"--set={k}={expand_skaffold_template(v, tag)}"
        for k, v in release["setValueTemplates"].items()
    ]
    kube_version = helm.cluster.version.lstrip("v")
    objects = docs(
        helm.run(
            "template", release["name"], str(CHART), "--namespace", release["namespace"],
            f"--kube-version={kube_version}", *sets,
        ).stdout
    )  # fmt: skip
    [forward] = config["portForward"]
    assert forward["namespace"] == release["namespace"] and forward["localPort"] == 8000
    services = {s["metadata"]["name"]: s for s in of_kind(objects, "Service")}
    assert forward["resourceName"] in services, sorted(services)
    api = services[forward["resourceName"]]
    assert api["metadata"]["labels"]["app.kubernetes.io/component"] == "api"
    assert forward["port"] in [p["port"] for p in api["spec"]["ports"]]
    # The operator starts runner pods from the image skaffold just built.
    operator = component(objects, "StatefulSet", "operator")
    assert env_of(operator)["GUIDELINE_RUNNER_IMAGE"] == f"guideline-ingest:{tag}"
    keys = component(objects, "Secret", "api")["stringData"]["api-keys"]
    assert f"dev:{hashlib.sha256(b'').hexdigest()}" in keys


def aggregated_into(objects: list[dict[str, Any]], role: str) -> list[dict[str, Any]]:
    label = f"rbac.authorization.k8s.io/aggregate-to-{role}"
    return [
        o for o in of_kind(objects, "ClusterRole") if o["metadata"]["labels"].get(label) == "true"
    ]


def test_the_operator_gives_runner_pods_the_apis_url_and_token_audience(helm: Helm) -> None:
    objects = helm.template()
    operator = component(objects, "StatefulSet", "operator")
    env = env_of(operator)
    service = component(objects, "Service", "api")
    port = service["spec"]["ports"][0]["port"]
    assert env["GUIDELINE_RUNNER_API_URL"] == (
        f"http://{service['metadata']['name']}.default.svc:{port}"
    )
    assert env["GUIDELINE_RUNNER_TOKEN_AUDIENCE"] == "guideline-ingest.dev/runner"
    custom = env_of(
        component(
            helm.template(
                "--set=runner.apiUrl=https://api.example.org",
                "--set=runner.tokenAudience=example.org/runner",
            ),
            "StatefulSet",
            "operator",
        )
    )
    assert custom["GUIDELINE_RUNNER_API_URL"] == "https://api.example.org"
    assert custom["GUIDELINE_RUNNER_TOKEN_AUDIENCE"] == "example.org/runner"
    config = component(objects, "ConfigMap", "runner")["data"]
    assert config["GUIDELINE_MAX_DOCUMENT_PAGES"] == "1000"
    assert config["GUIDELINE_MAX_DOCUMENT_CHARS"] == "2000000"


def test_view_reads_no_guidelinejobs_unless_turned_on(helm: Helm) -> None:
    """Reading a GuidelineJob is reading a tenant's guideline and result: by default nothing
    is aggregated into `view` (edit and admin keep their rules); only the flag adds it."""
    assert aggregated_into(helm.template(), "view") == []
    assert aggregated_into(helm.template(), "edit")
    [view] = aggregated_into(helm.template("--set=rbac.aggregateToView=true"), "view")
    assert view["rules"] == [
        {
            "apiGroups": ["ingest.guidelines.dev"],
            "resources": ["guidelinejobs", "guidelinejobs/status"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    off = "--set=rbac.aggregateToDefaultRoles=false"
    assert aggregated_into(helm.template(off, "--set=rbac.aggregateToView=true"), "view") == []


def test_api_service_selects_only_the_api_pods(helm: Helm) -> None:
    """The Service skaffold forwards to selects the API pods, not the operator's."""
    objects = helm.template()
    api = component(objects, "Service", "api")
    pod_labels = component(objects, "Deployment", "api")["spec"]["template"]["metadata"]["labels"]
    assert api["spec"]["selector"].items() <= pod_labels.items()
    operator_labels = component(objects, "StatefulSet", "operator")["spec"]["template"]["metadata"][
        "labels"
    ]
    assert not api["spec"]["selector"].items() <= operator_labels.items()


# ---------------------------------------------------------------------------------------
# end to end with the chart's ServiceAccounts and nothing more


@pytest.mark.node
def test_submit_run_complete_with_the_charts_service_accounts(
    cluster: LocalCluster, helm: Helm, crds: None, postgres_url: str, tmp_path: Path
) -> None:
    """The chart installed with an external database and an OpenAI-compatible endpoint (the
    fake LLM); the API runs with the api ServiceAccount's token, the operator (peered, as
    the chart starts it) with the operator's token, both as local processes (replicas 0),
    and the Job's runner pod, in a container of the chart's default image, under the chart's
    runner ServiceAccount: a submission through the API reaches COMPLETED."""
    cluster.pod_image()  # built and imported under the chart's default image name
    ns = restricted_namespace(cluster, "t-helm-e2e")
    fake = FakeLLMProcess(DEFAULT_SCRIPT, host=cluster.pod_host)
    api_key = f"e2e-{uuid.uuid4().hex}"
    key_entry = f"e2e:{hash_key(api_key)}"
    # The API runs on this host (replicas 0): the runner pods fetch their document from it.
    api_port = free_port()
    op: OperatorProcess | None = None
    try:
        helm.run(
            "install", RELEASE, str(CHART), "-n", ns, "--set=crds.install=false",
            "--set=postgresql.enabled=false", f"--set=database.url={postgres_url}",
            f"--set=openai.apiKey={OPENAI_TEST_KEY}", f"--set=openai.baseUrl={fake.base_url}",
            "--set=runner.model=fake-model", f"--set=api.apiKeys.hashes[0]={key_entry}",
            "--set=api.replicas=0", "--set=operator.replicas=0",
            f"--set=runner.apiUrl=http://{cluster.pod_host}:{api_port}",
        )  # fmt: skip
        objects = docs(helm.run("get", "manifest", RELEASE, "-n", ns).stdout)
        # The operator as its StatefulSet runs it (replica 0), with only its token.
        op = start_chart_operator(cluster, objects, ns, postgres_url, tmp_path)
        # The API with only its token.
        api_token = account_token(cluster, objects, "api", ns)
        api_kubeconfig = token_kubeconfig(cluster, tmp_path / "api.kubeconfig", api_token, ns)
        runner_sa = component(objects, "ServiceAccount", "runner")["metadata"]["name"]
        settings = make_settings(
            postgres_url,
            api_kubeconfig,
            namespace=ns,
            api_key_hashes=key_entry,
            runner_service_account=runner_sa,
        )
        with running_server(settings, host=cluster.pod_host, port=api_port) as url:
            headers = auth(api_key)
            event_id = submit(url, key=api_key)

            def finished() -> dict[str, Any] | None:
                job = httpx.get(f"{url}/jobs/{event_id}", headers=headers).json()
                return job if job["status"] in ("COMPLETED", "FAILED") else None

            try:
                job = wait_for(finished, timeout=180, interval=1, message="job finished")
            except TimeoutError:
                raise AssertionError(op.log_text()[-6000:]) from None
        assert job["status"] == "COMPLETED", job
        assert job["result"]["summary"] == FAKE_SUMMARY
        # The runner pod ran under the chart's runner ServiceAccount; the operator peered.
        of_job = f"ingest.guidelines.dev/event-id={event_id}"
        pods = cluster.pods(ns, of_job)
        assert pods and {p["spec"]["serviceAccountName"] for p in pods} == {runner_sa}
        # The operator marks COMPLETED once the runner container exited 0 with its result;
        # a real kubelet reports the pod's phase Succeeded a moment later.
        wait_for(
            lambda: any(p["status"].get("phase") == "Succeeded" for p in cluster.pods(ns, of_job)),
            timeout=60,
            message="the runner pod Succeeded",
        )
        operator = component(objects, "StatefulSet", "operator")
        peering_arg = operator["spec"]["template"]["spec"]["containers"][0]["args"][1]
        peering = cluster.get_json("kopfpeerings", peering_arg.split("=", 1)[1], "-n", ns)
        assert f"{operator['metadata']['name']}-0" in (peering.get("status") or {})
    finally:
        if op is not None and op.alive():  # let it release its finalizers first
            cluster.kubectl(
                "delete", "guidelinejobs", "--all", "-n", ns, "--wait=false", check=False
            )
            with contextlib.suppress(TimeoutError):
                wait_for(
                    lambda: not cluster.get_json("guidelinejobs", "-n", ns)["items"],
                    timeout=60,
                    message="GuidelineJobs deleted",
                )
            op.stop()
        fake.stop()
        helm.run("uninstall", RELEASE, "-n", ns, "--wait=false", check=False)
        cluster.delete_namespace(ns)


def release_objects(cluster: LocalCluster, namespace: str) -> list[str]:
    """What of the release runs or exists in the namespace (by its instance label)."""
    out = cluster.kubectl(
        "-n", namespace, "get",
        "pods,services,deployments,statefulsets,replicasets,jobs,configmaps,secrets,"
        "networkpolicies,poddisruptionbudgets,serviceaccounts,roles,rolebindings",
        "-l", f"app.kubernetes.io/instance={RELEASE}", "-o", "name",
    ).stdout  # fmt: skip
    return out.split()


@pytest.mark.node
def test_chart_runs_on_the_real_node(
    cluster: LocalCluster, helm: Helm, crds: None, tmp_path: Path
) -> None:
    """`make helm-demo`'s install as a test, on the real node (GUIDELINE_NODE=real): the
    images of `make image` in containers, the in-chart PostgreSQL, NetworkPolicies on, a
    restricted namespace. Every pod becomes Ready through its own probes; a job submitted
    through the API Service reaches COMPLETED by a runner pod in a container of the image;
    `helm upgrade` with a changed value rolls the Deployment; `helm uninstall` leaves
    nothing of the release but the PostgreSQL claim a StatefulSet keeps."""
    from support.containers import built_images

    app_image, _ = built_images()
    ns = restricted_namespace(cluster, "t-chart-node")
    pv = postgresql_volume(cluster, ns, tmp_path / "pgdata")
    api_key = f"node-{uuid.uuid4().hex}"
    try:
        install_on_real_node(helm, ns, "node", api_key, network_policy=True)
        roll_out(cluster, ns)
        pods = cluster.pods(ns, f"app.kubernetes.io/instance={RELEASE}")
        assert len(pods) == 5, [p["metadata"]["name"] for p in pods]  # 2 API, 2 operator, PG
        for pod in pods:
            ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
            assert ready["status"] == "True", pod["metadata"]["name"]
            for container in pod["spec"]["containers"]:
                assert container.get("readinessProbe"), (pod["metadata"]["name"], container["name"])
            for status in pod["status"]["containerStatuses"]:
                assert status["containerID"].startswith("containerd://"), status

        with port_forward(cluster, ns, "service/gi-api", 8000) as url:
            text = (REPO_ROOT / "examples" / "hand-hygiene.md").read_text()
            job = job_through(url, api_key, {"guideline_text": text, "title": "Hand hygiene"})
            assert job["status"] == "COMPLETED", job
        runners = cluster.pods(ns, "app.kubernetes.io/component=runner")
        assert runners, "no runner pod"
        runner = runners[0]["status"]["containerStatuses"][0]
        assert runner["containerID"].startswith("containerd://")
        assert runner["image"] == app_image
        assert runner["state"]["terminated"]["exitCode"] == 0

        def api_pods() -> list[dict[str, Any]]:
            return cluster.pods(ns, "app.kubernetes.io/component=api")

        old_hashes = {p["metadata"]["labels"]["pod-template-hash"] for p in api_pods()}
        helm.run(
            "upgrade", RELEASE, str(CHART), "-n", ns, "--reuse-values", "--set=api.logLevel=DEBUG"
        )
        cluster.kubectl(
            "-n", ns, "rollout", "status", "deployment/gi-api", "--timeout=300s", timeout=320
        )  # fmt: skip

        def rolled() -> list[dict[str, Any]] | None:
            pods = [p for p in api_pods() if not p["metadata"].get("deletionTimestamp")]
            hashes = {p["metadata"]["labels"]["pod-template-hash"] for p in pods}
            return pods if len(pods) == 2 and not hashes & old_hashes else None

        for pod in wait_for(rolled, timeout=120, message="only new API pods"):
            env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
            assert env["GUIDELINE_LOG_LEVEL"] == "DEBUG"

        # The job's GuidelineJob carries the operator's finalizer: the uninstall (its
        # pre-delete hook a Job pod in a container here) must release it, so that deleting
        # the namespace never hangs.
        [gj] = (cluster.try_get_json("guidelinejobs", "-n", ns) or {}).get("items", [])
        assert "ingest.guidelines.dev/operator" in gj["metadata"].get("finalizers", [])
        helm.run("uninstall", RELEASE, "-n", ns, "--wait", "--timeout=300s", timeout=320)

        def gone() -> bool:
            return not release_objects(cluster, ns)

        wait_for(gone, timeout=120, message="none of the release's objects left")
        assert (cluster.try_get_json("guidelinejobs", "-n", ns) or {}).get("items") == []
        cluster.kubectl("delete", "namespace", ns, "--timeout=120s", timeout=150)
    finally:
        cluster.delete_namespace(ns)
        cluster.kubectl("delete", "pv", pv, "--ignore-not-found")
