"""The runner pods' platform settings (operator/guideline_operator/podtemplate.py): what the
chart's runner-pod ConfigMap adds to the Job the operator builds, that it never overrides
the operator's contract with the runner, and that a changed file reaches the next Job."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from guideline_core.settings import OperatorSettings
from guideline_operator import podtemplate
from guideline_operator.manifests import JobRequest, build_job

TEMPLATE = {
    "annotations": {"example.com/team": "llm", "ingest.guidelines.dev/run": "99"},
    "spec": {
        "imagePullSecrets": [{"name": "regcred"}],
        "nodeSelector": {"example.com/pool": "batch"},
        "tolerations": [{"key": "example.com/batch", "operator": "Exists"}],
        "affinity": {},
        "priorityClassName": "batch-low",
    },
    "resources": {"requests": {"cpu": "250m", "memory": "1Gi", "nvidia.com/gpu": "1"}},
    "env": [
        {"name": "HTTPS_PROXY", "value": "http://proxy:3128"},
        {"name": "GUIDELINE_EVENT_ID", "value": "forged"},
        {"name": "GUIDELINE_TENANT", "value": "another-tenant"},
    ],
}


def job_with(path: Path | str) -> dict[str, Any]:
    settings = OperatorSettings(_env_file=None, runner_pod_template_file=str(path))
    request = JobRequest(
        cr_name="gj-x", cr_uid=str(uuid.uuid4()), namespace="ns", event_id="event-1", tenant="t1"
    )
    return build_job(request, settings)


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_the_charts_settings_reach_the_runner_pod(tmp_path: Path) -> None:
    job = job_with(write(tmp_path / "t.json", TEMPLATE))
    pod = job["spec"]["template"]
    spec = pod["spec"]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["nodeSelector"] == {"example.com/pool": "batch"}
    assert spec["tolerations"] == TEMPLATE["spec"]["tolerations"]
    assert spec["priorityClassName"] == "batch-low"
    assert "affinity" not in spec  # empty values add nothing
    container = spec["containers"][0]
    assert container["resources"] == TEMPLATE["resources"]
    env = {e["name"]: e for e in container["env"]}
    assert env["HTTPS_PROXY"]["value"] == "http://proxy:3128"
    # The operator's contract with the runner wins: its env and annotations are kept.
    assert env["GUIDELINE_EVENT_ID"]["value"] == "event-1"
    assert [e["name"] for e in container["env"]].count("GUIDELINE_EVENT_ID") == 1
    # The chunk cache's tenant key is the operator's (from the row), never the chart's.
    assert env["GUIDELINE_TENANT"]["value"] == "t1"
    assert [e["name"] for e in container["env"]].count("GUIDELINE_TENANT") == 1
    assert pod["metadata"]["annotations"]["example.com/team"] == "llm"
    assert pod["metadata"]["annotations"]["ingest.guidelines.dev/run"] == "0"
    # What stays the operator's.
    assert spec["serviceAccountName"] and spec["securityContext"]["runAsNonRoot"] is True


def test_without_a_file_the_job_is_unchanged(tmp_path: Path) -> None:
    plain = job_with("")
    assert "imagePullSecrets" not in plain["spec"]["template"]["spec"]
    empty = job_with(write(tmp_path / "empty.json", {}))
    assert empty["spec"]["template"]["spec"] == plain["spec"]["template"]["spec"]


def test_a_changed_file_reaches_the_next_job(tmp_path: Path) -> None:
    path = write(tmp_path / "t.json", TEMPLATE)
    assert job_with(path)["spec"]["template"]["spec"]["priorityClassName"] == "batch-low"
    changed = {**TEMPLATE, "spec": {**TEMPLATE["spec"], "priorityClassName": "batch-high"}}
    write(path, changed)
    os.utime(path, ns=(1, os.stat(path).st_mtime_ns + 1_000_000))  # a new stamp, surely
    assert job_with(path)["spec"]["template"]["spec"]["priorityClassName"] == "batch-high"


@pytest.mark.parametrize(
    "data",
    [
        {"spec": {"serviceAccountName": "cluster-admin-sa"}},
        {"spec": {"securityContext": {"runAsUser": 0}}},
        {"volumes": []},
        {"env": [{"value": "no name"}]},
        ["not", "an", "object"],
    ],
)
def test_anything_else_is_refused(tmp_path: Path, data: Any) -> None:
    with pytest.raises(ValueError, match="runner pod template"):
        job_with(write(tmp_path / f"{uuid.uuid4().hex}.json", data))


def test_a_missing_file_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        podtemplate.load(str(tmp_path / "absent.json"))
