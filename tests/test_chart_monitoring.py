"""The chart's monitoring objects, rendered by the real helm: the PrometheusRule checked by
`promtool check rules` and its four alerts proved by `promtool test rules` (each fires on a
series that should fire it, and stays silent on one that should not); the Grafana dashboard
ConfigMap for the sidecar, its JSON checked field for field against Grafana's dashboard
schema (Grafana Labs' grafana-foundation-sdk models, generated from that schema) and for
what Grafana requires of a dashboard, and every panel query parsed by promtool.

promtool comes from `hack/build-promtool.sh` (Go module proxy, cached next to the control
plane's binaries; `make deps` builds it)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as grafana
from support.cluster import REPO_ROOT
from support.helm import Helm, of_kind

pytestmark = pytest.mark.cluster

NS = "t-monitoring"
DASHBOARD = REPO_ROOT / "charts" / "guideline-ingest" / "files" / "dashboards"
ALERTS = {
    "GuidelineJobsFailing",
    "GuidelineQueueGrowing",
    "GuidelineOperatorHeartbeatMissing",
    "GuidelineWebhookDeliveriesFailing",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "build-promtool.sh")],
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    return done.stdout.strip().splitlines()[-1]


def run_promtool(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False
    )


def rendered_rules(helm: Helm, *flags: str) -> dict[str, Any]:
    objects = helm.template(
        "--set=metrics.prometheusRule.enabled=true", *flags, namespace=NS
    )  # fmt: skip
    [rule] = of_kind(objects, "PrometheusRule")
    return rule


# ---------------------------------------------------------------------------------------
# PrometheusRule


def test_rules_pass_promtool_check(helm: Helm, promtool: str, tmp_path: Path) -> None:
    rule = rendered_rules(helm, "--set=metrics.prometheusRule.labels.release=prometheus")
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = run_promtool(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert alerts == ALERTS
    assert of_kind(helm.template(), "PrometheusRule") == []  # off by default


def test_promtool_is_the_judge(promtool: str, tmp_path: Path) -> None:
    broken = {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "sum(rate(x[5m])"}]}]}
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(broken))
    result = run_promtool(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode != 0


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in {"namespace": NS, **labels}.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def alert(name: str, at: str, fired: bool, severity: str, **annotations: str) -> dict[str, Any]:
    expected = []
    if fired:  # promtool compares labels and annotations exactly, as Alertmanager gets them
        labels = {"severity": severity, "team": "guidelines"}
        expected = [{"exp_labels": labels, "exp_annotations": annotations}]
    return {"eval_time": at, "alertname": name, "exp_alerts": expected}


FINISHED = "guideline_jobs_finished_total"
PENDING = "guideline_db_jobs"
HEARTBEAT = "guideline_db_operator_heartbeat_age_seconds"
WEBHOOK = "guideline_webhook_deliveries_total"
# (input series, expected alerts): each alert once where it must fire, once where it must not.
CASES: list[tuple[list[dict[str, str]], list[dict[str, Any]]]] = [
    (  # 30% of the finished jobs fail
        [
            series(FINISHED, "0+3x40", outcome="failed", reason="LLMRejected"),
            series(FINISHED, "0+7x40", outcome="completed", reason=""),
        ],
        [
            alert(
                "GuidelineJobsFailing",
                "30m",
                True,
                "warning",
                summary=f"More than 10% of guideline jobs fail in {NS}",
                description="30% of the jobs that finished in the last 15 minutes FAILED; see "
                "guideline_jobs_finished_total by reason and GET /jobs?status=FAILED.",
            )
        ],
    ),
    (  # 5% fail: below the 10% default
        [
            series(FINISHED, "0+1x40", outcome="failed", reason="LLMRejected"),
            series(FINISHED, "0+19x40", outcome="completed", reason=""),
        ],
        [alert("GuidelineJobsFailing", "30m", False, "warning")],
    ),
    (  # the backlog passes 100 and keeps growing; two API replicas export the same figure
        [
            series(PENDING, "0+5x70", status="PENDING", pod="api-a"),
            series(PENDING, "0+5x70", status="PENDING", pod="api-b"),
        ],
        [
            alert(
                "GuidelineQueueGrowing",
                "60m",
                True,
                "warning",
                summary=f"The guideline job queue in {NS} keeps growing",
                description="300 jobs are PENDING and the backlog has grown for 15 minutes; "
                "the operator admits fewer jobs than arrive (operator.maxConcurrentJobs, "
                "runner pods not starting?).",
            )
        ],
    ),
    (  # a large but steady backlog is not "growing"
        [series(PENDING, "500x70", status="PENDING", pod="api-a")],
        [alert("GuidelineQueueGrowing", "60m", False, "warning")],
    ),
    (  # the heartbeat stops: its age grows by a minute a minute
        [series(HEARTBEAT, "5+60x20", pod="api-a")],
        [
            alert(
                "GuidelineOperatorHeartbeatMissing",
                "10m",
                True,
                "critical",
                summary=f"No guideline operator heartbeat in {NS}",
                description="The operator's last heartbeat is 10m 5s old; no GuidelineJob is "
                "being started or mirrored.",
            )
        ],
    ),
    (
        [series(HEARTBEAT, "5x20", pod="api-a")],
        [alert("GuidelineOperatorHeartbeatMissing", "10m", False, "critical")],
    ),
    (  # half the webhook deliveries fail
        [
            series(WEBHOOK, "0+1x40", outcome="failed"),
            series(WEBHOOK, "0+1x40", outcome="delivered"),
        ],
        [
            alert(
                "GuidelineWebhookDeliveriesFailing",
                "30m",
                True,
                "warning",
                summary=f"Guideline webhook deliveries fail in {NS}",
                description="50% of the webhook deliveries of the last 15 minutes failed.",
            )
        ],
    ),
    (  # no deliveries at all (the metric does not exist yet): silent
        [series(FINISHED, "0+1x40", outcome="completed", reason="")],
        [alert("GuidelineWebhookDeliveriesFailing", "30m", False, "warning")],
    ),
]


def test_each_alert_fires_when_it_should_and_only_then(
    helm: Helm, promtool: str, tmp_path: Path
) -> None:
    rule = rendered_rules(helm, "--set=metrics.prometheusRule.alertLabels.team=guidelines")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    tests = [
        {"interval": "1m", "input_series": inputs, "alert_rule_test": expected}
        for inputs, expected in CASES
    ]
    spec = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(spec))
    result = run_promtool(promtool, "test", "rules", "tests.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {c[1][0]["alertname"] for c in CASES} == ALERTS
    assert {c[1][0]["alertname"] for c in CASES if not c[1][0]["exp_alerts"]} == ALERTS


def test_thresholds_come_from_values(helm: Helm) -> None:
    rule = rendered_rules(
        helm,
        "--set-json=metrics.prometheusRule.failedRatio=0.3",
        "--set=metrics.prometheusRule.queueThreshold=7",
        "--set=metrics.prometheusRule.heartbeatMaxAgeSeconds=45",
    )
    exprs = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert exprs["GuidelineJobsFailing"].rstrip().endswith("> 0.3")
    assert "> 7" in exprs["GuidelineQueueGrowing"]
    assert exprs["GuidelineOperatorHeartbeatMissing"].rstrip().endswith("> 45")
    for expr in exprs.values():
        assert f'namespace="{NS}"' in expr


# ---------------------------------------------------------------------------------------
# Grafana dashboard


def dashboard_json(helm: Helm) -> dict[str, Any]:
    objects = helm.template(
        "--set=metrics.grafanaDashboard.enabled=true",
        "--set=metrics.grafanaDashboard.annotations.grafana_folder=guideline-ingest",
        namespace=NS,
    )
    [config] = [
        o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")
    ]
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"  # the sidecar's label
    assert config["metadata"]["annotations"]["grafana_folder"] == "guideline-ingest"
    [(key, text)] = config["data"].items()
    assert key.endswith(".json")
    data = json.loads(text)
    assert data == json.loads((DASHBOARD / "guideline-ingest.json").read_text())
    return data


def lost_fields(wrote: Any, kept: Any, path: str = "") -> list[str]:
    """Paths of `wrote` that `kept` does not hold with the same value."""
    if isinstance(wrote, dict):
        if not isinstance(kept, dict):
            return [path]
        return [
            lost
            for key, value in wrote.items()
            for lost in (
                lost_fields(value, kept[key], f"{path}.{key}") if key in kept else [f"{path}.{key}"]
            )
        ]
    if isinstance(wrote, list):
        if not isinstance(kept, list) or len(wrote) != len(kept):
            return [path]
        return [
            m
            for i, pair in enumerate(zip(wrote, kept, strict=True))
            for m in lost_fields(*pair, f"{path}[{i}]")
        ]
    return [] if wrote == kept else [f"{path}: {wrote!r} became {kept!r}"]


def through_the_schema(data: dict[str, Any]) -> dict[str, Any]:
    """The dashboard parsed into Grafana's typed models (panel options and queries by
    their plugin's types) and written back."""
    plugins.register_default_plugins()
    return json.loads(json.dumps(grafana.Dashboard.from_json(data), cls=JSONEncoder))


def test_dashboard_matches_grafanas_schema(helm: Helm) -> None:
    data = dashboard_json(helm)
    assert lost_fields(data, through_the_schema(data)) == []
    # The check sees a misspelt field anywhere (a dashboard Grafana would silently mangle).
    typo = json.loads(json.dumps(data))
    typo["panels"][2]["fieldConfig"]["defaults"]["unitt"] = "s"
    typo["panels"][3]["gridpos"] = {}
    assert len(lost_fields(typo, through_the_schema(typo))) == 2


def panels(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in data["panels"] if p["type"] != "row"]


def test_dashboard_has_what_grafana_requires(helm: Helm) -> None:
    data = dashboard_json(helm)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", data["uid"])
    assert data["title"] and isinstance(data["schemaVersion"], int) and data["schemaVersion"] >= 36
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in data["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] >= 1 and pos["x"] + pos["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels(data):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert 'namespace="$namespace"' in target["expr"], panel["title"]


def test_every_dashboard_query_parses(helm: Helm, promtool: str, tmp_path: Path) -> None:
    """Each panel query as a recording rule (Grafana's variables filled in), through promtool."""
    data = dashboard_json(helm)
    rules = []
    for panel in panels(data):
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "5m").replace("$namespace", NS)
            rules.append(
                {"record": f"dashboard:panel{panel['id']}:{target['refId']}", "expr": expr}
            )
    (tmp_path / "queries.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "d", "rules": rules}]})
    )
    result = run_promtool(promtool, "check", "rules", "queries.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
    assert len(rules) >= 15
