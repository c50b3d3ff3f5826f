"""Writes the metrics table of docs/observability.md (between `<!-- metrics:begin -->` and
`<!-- metrics:end -->`) from the metric definitions of the API (`guideline_api.metrics`)
and the operator (`guideline_operator.metrics`): each family's name, type, labels and help
text, so the table cannot drift from the code. `--check` exits 1 if it is stale (a test runs
it; tests/test_metric_names.py checks the table against what both components serve)."""

from __future__ import annotations

import sys

from generated import ROOT, between, cell, write_or_check
from guideline_api.metrics import ApiMetrics, Figures
from guideline_operator.metrics import Metrics
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

TARGET = ROOT / "docs" / "observability.md"
SUFFIX = {"counter": "_total"}  # prometheus-client names a counter's family without it


def label_names(owner: object) -> dict[str, tuple[str, ...]]:
    """Family name -> label names of the metric objects `owner` holds (a family without
    children has no samples to read them from)."""
    return {
        metric._name: tuple(metric._labelnames)
        for metric in vars(owner).values()
        if isinstance(metric, MetricWrapperBase)
    }


def rows(
    component: str, registry: CollectorRegistry, labels: dict[str, tuple[str, ...]]
) -> list[str]:
    """One table row per family of `registry`, in definition order."""
    found = []
    for family in registry.collect():
        names = labels.get(family.name) or tuple(
            dict.fromkeys(k for s in family.samples for k in s.labels if k not in ("le",))
        )
        name = family.name + SUFFIX.get(family.type, "")
        found.append(
            f"| `{name}` | {component} | {family.type} | {', '.join(names)} | "
            f"{cell(family.documentation)} |"
        )
    return found


def table() -> str:
    """The Markdown table: the API's families, then the operator's."""
    api = ApiMetrics()
    api.add_queue_collector(lambda: Figures(counts={}, age=0.0, heartbeat_age=None))
    operator = Metrics()
    lines = ["| name | component | type | labels | what |", "|---|---|---|---|---|"]
    lines += rows("api", api.registry, label_names(api))
    lines += rows("operator", operator.registry, label_names(operator))
    return "\n".join(lines)


if __name__ == "__main__":
    wanted = between(TARGET.read_text(), "metrics", table())
    sys.exit(write_or_check(TARGET, wanted, "hack/metrics_reference.py", __doc__))
