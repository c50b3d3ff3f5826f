"""support.kube_writes: counting kube-apiserver writes from apiserver_request_total (the
parsing; no cluster)."""

from __future__ import annotations

from support import kube_writes


def _line(labels: str, value: int, dry_run: str = "") -> str:
    return (
        f'apiserver_request_total{{component="apiserver",dry_run="{dry_run}",scope="resource",'
        f"{labels}}} {value}"
    )


GJ = 'group="ingest.guidelines.dev",resource="guidelinejobs",version="v1alpha1"'
METRICS = "\n".join(
    [
        "# HELP apiserver_request_total [STABLE] Counter of apiserver requests",
        "# TYPE apiserver_request_total counter",
        _line(f'code="201",{GJ},subresource="",verb="POST"', 10),
        _line(f'code="200",{GJ},subresource="status",verb="PATCH"', 30),
        _line(f'code="409",{GJ},subresource="status",verb="PATCH"', 2),
        _line(f'code="200",{GJ},subresource="",verb="PATCH"', 99, dry_run="All"),
        _line(f'code="200",{GJ},subresource="",verb="WATCH"', 7),
        _line('code="201",group="batch",resource="jobs",subresource="",verb="POST"', 10),
        _line(
            'code="200",group="coordination.k8s.io",resource="leases",subresource="",verb="PUT"',
            50,
        ),
        'apiserver_request_total_other{verb="POST"} 1',
    ]
)


def test_parse_counts_writes_only_by_resource_subresource_verb_and_code() -> None:
    counts = kube_writes.parse(METRICS)
    key = kube_writes.WriteKey
    assert counts == {
        key("ingest.guidelines.dev", "guidelinejobs", "", "create", "201"): 10,
        key("ingest.guidelines.dev", "guidelinejobs", "status", "patch", "200"): 30,
        key("ingest.guidelines.dev", "guidelinejobs", "status", "patch", "409"): 2,
        key("batch", "jobs", "", "create", "201"): 10,
        key("coordination.k8s.io", "leases", "", "update", "200"): 50,
    }


def test_summary_per_job_leaves_out_leases_and_counts_rejected_writes() -> None:
    before = kube_writes.parse(METRICS.replace("} 30", "} 10"))
    delta = kube_writes.writes_since(before, kube_writes.parse(METRICS))
    assert kube_writes.guidelinejob_writes(delta) == 20
    full = kube_writes.summary(kube_writes.parse(METRICS), jobs=10)
    assert full["guidelinejob"] == 42
    assert full["guidelinejob_status"] == 32
    assert full["guidelinejob_rejected"] == 2
    assert full["guidelinejob_by_code"] == {"200": 30, "201": 10, "409": 2}
    assert full["background_leases"] == 50
    assert full["per_job"] == 5.2  # (42 + 10 Job creates) / 10


def test_a_restarted_apiserver_counts_from_zero() -> None:
    before = kube_writes.parse(METRICS)
    after = kube_writes.parse(METRICS.replace("} 50", "} 5"))
    assert kube_writes.writes_since(before, after) == after
