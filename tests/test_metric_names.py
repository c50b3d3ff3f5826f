"""The metric names of both components, scraped for real: the API's /metrics (a uvicorn
server) and the operator's (a `guideline-operator` process on the local cluster). Every
name is prefixed `guideline_` (besides the client library's standard `process_*` and
`python_*`), no name is exported by both, units are in the names, the metrics table of
docs/observability.md lists exactly these, and every name the chart's dashboard and alert
rules use exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from support.api import make_settings, running_server
from support.cluster import REPO_ROOT, LocalCluster
from support.stack import Stack

pytestmark = pytest.mark.cluster

STANDARD = ("process_", "python_")
CHART = REPO_ROOT / "charts" / "guideline-ingest"


def exported(text: str) -> dict[str, str]:
    """name -> type of every family in a Prometheus text exposition (without the
    `_created` companions prometheus-client adds to counters and histograms)."""
    found = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    return {
        name: kind
        for name, kind in found.items()
        if not name.startswith(STANDARD)
        and not (name.endswith("_created") and name.removesuffix("_created") in _bases(found))
    }


def _bases(found: dict[str, str]) -> set[str]:
    return {n.removesuffix("_total") for n in found} | set(found)


def readme_names() -> dict[str, str]:
    """name -> component of the metrics table (docs/observability.md)."""
    rows = re.findall(
        r"^\| `(guideline_[a-z_]+)` \| (api|operator) \|",
        (REPO_ROOT / "docs" / "observability.md").read_text(),
        re.M,
    )
    return dict(rows)


def used_by_the_chart() -> set[str]:
    text = (CHART / "templates" / "prometheusrule.yaml").read_text()
    text += (CHART / "files" / "dashboards" / "guideline-ingest.json").read_text()
    names = set(re.findall(r"\bguideline_[a-z_]+", text))
    return {re.sub(r"_(bucket|count|sum)$", "", n) for n in names} - {"guideline_ingest"}


@pytest.fixture
def scraped(cluster: LocalCluster, postgres_url: str, tmp_path: Path) -> dict[str, dict[str, str]]:
    stack = Stack(cluster, postgres_url, tmp_path / "stack")
    try:
        stack.start()
        operator = stack.op.metrics()
    finally:
        stack.close()
    settings = make_settings(postgres_url, cluster.kubeconfig)
    with running_server(settings) as url:
        httpx.get(f"{url}/health")
        api = httpx.get(f"{url}/metrics").text
    return {"api": exported(api), "operator": exported(operator)}


def test_metric_names_of_both_components(scraped: dict[str, dict[str, str]]) -> None:
    api, operator = scraped["api"], scraped["operator"]
    assert len(api) >= 8 and len(operator) >= 10, (sorted(api), sorted(operator))
    for name in [*api, *operator]:
        assert name.startswith("guideline_"), name
    assert not set(api) & set(operator), "a name exported by both components"
    for name, kind in {**api, **operator}.items():
        if kind == "counter":
            assert name.endswith("_total"), name
        elif kind == "histogram":
            assert name.endswith("_seconds"), name  # every histogram here is a duration
        else:
            assert not name.endswith("_total"), name
    # The metrics table documents exactly what each component exports.
    documented = readme_names()
    assert {n for n, c in documented.items() if c == "api"} == set(api)
    assert {n for n, c in documented.items() if c == "operator"} == set(operator)
    # The dashboard and the alert rules use only real names.
    assert used_by_the_chart() - set(api) - set(operator) == set()


def test_the_dashboard_and_rules_name_metrics_that_exist_nowhere_else() -> None:
    """The check above is not vacuous: it sees the names the chart uses."""
    used = used_by_the_chart()
    assert {"guideline_jobs_finished_total", "guideline_db_jobs"} <= used
    assert len(used) >= 12
    json.loads((CHART / "files" / "dashboards" / "guideline-ingest.json").read_text())
