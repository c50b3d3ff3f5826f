"""The batch/v1 Job manifest of a GuidelineJob's run (`guideline_operator.manifests`): pure."""

from __future__ import annotations

import json
from typing import Any

import pytest
from guideline_core import resource as gj
from guideline_core.settings import OperatorSettings
from guideline_operator import manifests, observe
from support.operator_objects import EVENT_ID, JOB0, NOW

# --- the Job manifest ----------------------------------------------------------------------


def test_job_manifest_follows_the_contract() -> None:
    settings = OperatorSettings(
        runner_image="registry.local/guideline:1", backoff_limit=3, active_deadline_seconds=300
    )
    request = manifests.JobRequest(
        cr_name="gj-abcde",
        cr_uid="cr-uid-1",
        namespace="ns1",
        event_id=EVENT_ID,
        attempts_before=2,
        queued_at=NOW,
        cr_labels=(("team", "infection-control"),),
        tenant="team-a",
    )
    manifest = manifests.build_job(request, settings)
    meta, spec = manifest["metadata"], manifest["spec"]
    assert (manifest["apiVersion"], manifest["kind"], meta["name"]) == ("batch/v1", "Job", JOB0)
    assert meta["namespace"] == "ns1"
    [owner] = meta["ownerReferences"]
    assert owner == {
        "apiVersion": gj.API_VERSION,
        "kind": gj.KIND,
        "name": "gj-abcde",
        "uid": "cr-uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    pod_meta = spec["template"]["metadata"]
    for labels in (meta["labels"], pod_meta["labels"]):
        assert labels[gj.LABEL_EVENT_ID] == EVENT_ID
        assert labels[gj.LABEL_JOB_NAME] == "gj-abcde"
        assert labels[gj.LABEL_COMPONENT] == "runner"
        assert labels[gj.LABEL_MANAGED_BY] == "guideline-operator"
        assert labels["team"] == "infection-control"  # an allowed label of the CR
    assert meta["annotations"][manifests.ANNOTATION_ATTEMPTS_BEFORE] == "2"
    assert pod_meta["annotations"][manifests.ANNOTATION_CR_NAME] == "gj-abcde"
    assert observe.parse_time(meta["annotations"][manifests.ANNOTATION_QUEUED_AT]) == NOW
    assert spec["backoffLimit"] == 3
    assert spec["activeDeadlineSeconds"] == 300
    assert spec["ttlSecondsAfterFinished"] == settings.ttl_seconds_after_finished
    assert spec["suspend"] is False
    assert spec["podFailurePolicy"]["rules"] == [
        {
            "action": "FailJob",
            "onExitCodes": {"containerName": "runner", "operator": "In", "values": [42]},
        },
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]
    pod_spec = spec["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Never"
    assert pod_spec["serviceAccountName"] == "guideline-runner"
    assert pod_spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    [container] = pod_spec["containers"]
    assert container["name"] == "runner"
    assert container["image"] == "registry.local/guideline:1"
    assert container["command"] == ["guideline-runner"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
    }
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod_spec["volumes"]
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
    env = {e["name"]: e for e in container["env"]}
    assert env["GUIDELINE_JOB_NAME"]["value"] == "gj-abcde"
    assert env["GUIDELINE_EVENT_ID"]["value"] == EVENT_ID
    assert env["GUIDELINE_TENANT"] == {"name": "GUIDELINE_TENANT", "value": "team-a"}  # the row's
    assert env["GUIDELINE_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    assert env["OPENAI_API_KEY"] == {
        "name": "OPENAI_API_KEY",
        "valueFrom": {
            "secretKeyRef": {"name": "guideline-openai", "key": "api-key", "optional": True}
        },
    }
    # The chunk cache's URL, from a Secret that may be absent (then: no cache).
    assert env["GUIDELINE_CACHE_DATABASE_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "guideline-runner-cache", "key": "database-url", "optional": True}
    }
    assert container["envFrom"] == [
        {"configMapRef": {"name": "guideline-runner-config", "optional": True}}
    ]
    # No secret value anywhere in the manifest: only the reference.
    assert "sk-" not in json.dumps(manifest)


def _request(**fields: Any) -> manifests.JobRequest:
    return manifests.JobRequest(
        cr_name="gj-abcde", cr_uid="cr-uid-1", namespace="ns1", event_id=EVENT_ID, **fields
    )


def test_every_runner_pod_gets_its_api_token_and_url() -> None:
    settings = OperatorSettings(
        runner_api_url="http://api.guideline.svc:8000", runner_token_audience="aud.example/x"
    )
    pod_spec = manifests.build_job(_request(), settings)["spec"]["template"]["spec"]
    [container] = pod_spec["containers"]
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    # The token is for the API only (its own audience), short-lived, rotated by the kubelet.
    assert volumes["runner-token"] == {
        "name": "runner-token",
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": "aud.example/x",
                        "expirationSeconds": 600,
                        "path": "token",
                    }
                }
            ]
        },
    }
    assert {
        "name": "runner-token",
        "mountPath": "/var/run/secrets/guideline-ingest/runner",
        "readOnly": True,
    } in container["volumeMounts"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["GUIDELINE_API_URL"] == "http://api.guideline.svc:8000"
    assert env["GUIDELINE_RUNNER_TOKEN_FILE"] == "/var/run/secrets/guideline-ingest/runner/token"
    assert "GUIDELINE_INPUT_FILE" not in env and "input" not in volumes
    # The defaults: the contract's audience; no API URL (documentRef jobs then fail clearly).
    default = manifests.build_job(_request(), OperatorSettings())["spec"]["template"]["spec"]
    token = default["volumes"][1]["projected"]["sources"][0]["serviceAccountToken"]
    assert token["audience"] == "guideline-ingest.dev/runner"


@pytest.mark.parametrize(
    ("ref", "volume_source"),
    [
        pytest.param(
            {"configMapKeyRef": {"name": "guidelines", "key": "valvular.pdf"}},
            {
                "configMap": {
                    "name": "guidelines",
                    "items": [{"key": "valvular.pdf", "path": "guideline"}],
                    "optional": True,
                }
            },
            id="configmap",
        ),
        pytest.param(
            {"secretKeyRef": {"name": "private", "key": ".."}},
            {
                "secret": {
                    "secretName": "private",
                    "items": [{"key": "..", "path": "guideline"}],
                    "optional": True,
                }
            },
            id="secret-with-a-key-that-is-no-path",
        ),
    ],
)
def test_guideline_text_from_mounts_only_that_key_read_only(
    ref: dict[str, Any], volume_source: dict[str, Any]
) -> None:
    text_from = manifests.TextFrom.of({"guidelineTextFrom": ref})
    assert text_from is not None
    pod_spec = manifests.build_job(_request(text_from=text_from), OperatorSettings())["spec"][
        "template"
    ]["spec"]
    [container] = pod_spec["containers"]
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert volumes["input"] == {"name": "input", **volume_source}
    assert {
        "name": "input",
        "mountPath": "/var/run/guideline-ingest/input",
        "readOnly": True,
    } in container["volumeMounts"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["GUIDELINE_INPUT_FILE"] == "/var/run/guideline-ingest/input/guideline"
    assert manifests.TextFrom.of({"guidelineText": "x"}) is None


def test_a_job_without_inline_text_gets_the_deadline_of_the_most_it_can_hold() -> None:
    from guideline_core.splitting import planned_rounds_for_chars
    from guideline_operator.starts import rounds_of

    settings = OperatorSettings()
    short = rounds_of({"guidelineText": "Staff must wash hands."}, settings)
    small_doc = {
        "documentRef": {"id": "i", "sha256": "0" * 64, "mediaType": "text/plain", "bytes": 900}
    }
    big_doc = {"documentRef": {**small_doc["documentRef"], "bytes": 25 * 1024 * 1024}}
    from_key = {"guidelineTextFrom": {"configMapKeyRef": {"name": "g", "key": "k"}}}
    assert short == rounds_of(small_doc, settings) == 2
    # A 25 MiB document counts as the runner's 2,000,000-character limit, as does a
    # ConfigMap key's 1 MiB of compressed text; a 100 KB PDF as up to 800,000 characters.
    limit = planned_rounds_for_chars(2_000_000, settings.chunk_chars, settings.llm_concurrency)
    assert rounds_of(big_doc, settings) == rounds_of(from_key, settings) == limit
    pdf = {
        "documentRef": {
            **small_doc["documentRef"],
            "mediaType": "application/pdf",
            "bytes": 100_000,
        }
    }
    text = {"documentRef": {**small_doc["documentRef"], "bytes": 100_000}}
    assert limit > rounds_of(pdf, settings) > rounds_of(text, settings) > short
    assert manifests.hard_deadline(limit, settings) > 300


def test_job_manifest_retry_name_spec_retries_and_kueue() -> None:
    settings = OperatorSettings(kueue_queue_name="team-queue", backoff_limit=3)
    request = manifests.JobRequest(
        cr_name="gj-abcde", cr_uid="u", namespace="ns1", event_id=EVENT_ID, run=2, max_retries=0
    )
    manifest = manifests.build_job(request, settings)
    assert manifest["metadata"]["name"] == manifests.job_name("gj-abcde", "u", 2)
    assert manifest["spec"]["backoffLimit"] == 0  # spec.maxRetries wins over the setting
    assert manifest["spec"]["suspend"] is True
    assert manifest["metadata"]["labels"][manifests.KUEUE_QUEUE_LABEL] == "team-queue"
    assert manifests.KUEUE_QUEUE_LABEL not in manifest["spec"]["template"]["metadata"]["labels"]


def test_long_names_become_valid_job_names_and_label_values() -> None:
    long_name = "a-guideline-job-applied-with-kubectl-and-a-very-long-descriptive-name-x" * 2
    names = {manifests.job_name(long_name, "uid-1", run) for run in range(12)}
    assert len(names) == 12
    # At most 57 characters: the pods' generateName `<job>-` is never truncated.
    assert all(len(n) <= manifests.MAX_JOB_NAME and not n.startswith("-") for n in names)
    value = manifests.label_value(long_name)
    assert len(value) <= 63 and value == manifests.label_value(long_name)
    assert manifests.label_value(long_name + "b") != value
    assert manifests.job_name("gj-short", "uid-1", 0).startswith("gj-short-")


def test_job_names_of_two_guidelinejobs_never_collide() -> None:
    # Before: CR `x-r1` run 0 and CR `x` run 1 were both Job `x-r1`.
    first = manifests.job_name("x", "uid-of-x", 1)
    other = manifests.job_name(first, "uid-of-other", 0)
    assert first != other and manifests.job_name("x-r1", "uid-of-other", 0) != first
    # A fixed-length suffix: equal names imply equal CR names (one CR per namespace).
    names = {manifests.job_name(f"cr-{i}", f"uid-{i}", run) for i in range(50) for run in range(3)}
    assert len(names) == 150
    assert {len(n) - len(n.rsplit("-", 1)[0]) for n in names} == {1 + manifests.JOB_SUFFIX_CHARS}


def test_only_allowlisted_labels_reach_the_job_and_pods() -> None:
    labels = {
        "team": "a",
        "app": "payments",
        gj.LABEL_MANAGED_BY: "x",
        "kueue.x-k8s.io/queue-name": "q",
    }
    allowed = manifests.allowed_labels(
        labels, ["team", gj.LABEL_MANAGED_BY, manifests.KUEUE_QUEUE_LABEL]
    )
    assert allowed == {"team": "a"}  # never the operator's own, never an unlisted one
    assert manifests.allowed_labels(labels, []) == {}
