"""The chart's documentation that is generated or promised: the values table of its README is
current (hack/values_reference.py), every value is in the schema, and the README documents
each value family it offers."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import yaml
from support.cluster import REPO_ROOT

CHART = REPO_ROOT / "charts" / "guideline-ingest"


def test_values_table_is_current() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "hack" / "values_reference.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def keys(values: Any, prefix: str = "") -> set[str]:
    if not isinstance(values, dict):
        return set()
    return {f"{prefix}{k}" for k in values} | {
        nested for k, v in values.items() for nested in keys(v, f"{prefix}{k}.")
    }


def schema_keys(schema: dict[str, Any], prefix: str = "") -> set[str]:
    found = set()
    for key, sub in (schema.get("properties") or {}).items():
        found.add(f"{prefix}{key}")
        found |= schema_keys(sub, f"{prefix}{key}.")
    return found


def test_every_value_is_in_the_schema() -> None:
    """values.schema.json is kept in step: each key of values.yaml, down to the leaves the
    schema describes, is a property there (additionalProperties: false does the rest)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = schema_keys(json.loads((CHART / "values.schema.json").read_text()))
    free = ("Annotations", "Selector", "labels", "annotations", "affinity", "extraConfig",
            "SecurityContext", "alertLabels", "requests", "limits", "tolerations")  # fmt: skip
    missing = sorted(
        k for k in keys(values)
        if k not in schema and not any(part.endswith(free) for part in k.split(".")[:-1])
    )  # fmt: skip
    assert missing == []


def test_readme_documents_each_operations_value() -> None:
    readme = (CHART / "README.md").read_text()
    for value in (
        "imagePullSecrets", "runner.nodeSelector", "runner.priorityClassName",
        "runner.extraEnv", "crds.installKopfPeering", "rbac.aggregateToDefaultRoles",
        "rbac.aggregateToView", "runner.chunkCacheSecret",
        "api.podDisruptionBudget", "uninstall.releaseGuidelineJobs",
        "postgresql.auth.existingSecret", "metrics.prometheusRule.enabled",
        "metrics.grafanaDashboard.enabled",
    ):  # fmt: skip
        prose = readme.split("## Every value")[0]
        assert f"`{value}" in prose, value
