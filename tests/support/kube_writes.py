"""Writes to kube-apiserver, counted from its own `apiserver_request_total` counter.

Scrape /metrics (admin credentials) before and after some work; the difference, per
resource, subresource and write verb, is what the work cost the control plane. Shared by
the cluster tests (a bound on GuidelineJob writes per job) and `make bench` (section
burst), which imports it from here like its other tests/support helpers.

    before = scrape(cluster)
    ...                                  # submit jobs, wait until COMPLETED
    delta = writes_since(before, scrape(cluster))
    guidelinejob_writes(delta) / jobs    # writes to GuidelineJobs and their status per job
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, NamedTuple

from guideline_core import resource as gj

METRIC = "apiserver_request_total"
# apiserver_request_total reports upper-case verbs (POST for a create, PUT an update;
# APPLY is a server-side-apply PATCH, DELETECOLLECTION a delete of many).
WRITE_VERBS = {
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "APPLY": "patch",
    "DELETE": "delete",
    "DELETECOLLECTION": "delete",
}
# Written on a timer by every component whatever the jobs (leader election, node
# heartbeats), so not part of a job's cost.
BACKGROUND_RESOURCES = {("coordination.k8s.io", "leases")}
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class WriteKey(NamedTuple):
    """What a write was to: API group ("" = core), resource, subresource, verb (create,
    update, patch, delete) and the answer's HTTP status code ("201", "409", ...)."""

    group: str
    resource: str
    subresource: str
    verb: str
    code: str


def parse(text: str) -> Counter[WriteKey]:
    """The write requests of a kube-apiserver /metrics text, summed over the labels that
    do not matter here (version, scope, component, dry_run)."""
    counts: Counter[WriteKey] = Counter()
    for line in text.splitlines():
        if not line.startswith(METRIC + "{"):
            continue
        labels_text, _, value = line[len(METRIC) + 1 :].rpartition("} ")
        labels = dict(_LABEL.findall(labels_text))
        verb = WRITE_VERBS.get(labels.get("verb", ""))
        if verb is None or labels.get("dry_run"):
            continue
        key = WriteKey(
            labels.get("group", ""),
            labels.get("resource", ""),
            labels.get("subresource", ""),
            verb,
            labels.get("code", ""),
        )
        counts[key] += int(float(value.split()[0]))
    return counts


def scrape(cluster: Any) -> Counter[WriteKey]:
    """kube-apiserver's write counters now (`cluster`: a support.cluster.LocalCluster;
    /metrics needs the admin credentials of its kubeconfig)."""
    return parse(cluster.kubectl("get", "--raw", "/metrics", timeout=60).stdout)


def writes_since(before: Counter[WriteKey], after: Counter[WriteKey]) -> Counter[WriteKey]:
    """The writes between two scrapes (a restarted kube-apiserver starts from zero: then
    `after` alone)."""
    if any(after[k] < v for k, v in before.items()):
        return +after
    return Counter({k: after[k] - before[k] for k in after if after[k] > before[k]})


def guidelinejob_writes(delta: Counter[WriteKey], *, ok_only: bool = False) -> int:
    """Writes to GuidelineJobs and their subresources (status, finalizers' updates)."""
    return sum(
        n
        for k, n in delta.items()
        if k.group == gj.GROUP
        and k.resource == gj.PLURAL
        and (not ok_only or k.code.startswith("2"))
    )


def job_writes(delta: Counter[WriteKey]) -> int:
    """All writes but the background ones (leases)."""
    return sum(n for k, n in delta.items() if (k.group, k.resource) not in BACKGROUND_RESOURCES)


def guidelinejob_by_code(delta: Counter[WriteKey]) -> dict[str, int]:
    """Writes to GuidelineJobs (and their subresources) by HTTP status code, in code order:
    which answers the writers got (a 409 is a conflict, a 422 a refusal, ...)."""
    codes: Counter[str] = Counter()
    for k, n in delta.items():
        if k.group == gj.GROUP and k.resource == gj.PLURAL:
            codes[k.code] += n
    return dict(sorted(codes.items()))


def breakdown(delta: Counter[WriteKey]) -> list[dict[str, Any]]:
    """One row per (group, resource, subresource, verb, code), most writes first."""
    return [
        {
            "resource": ".".join(p for p in (k.resource, k.group) if p)
            + (f"/{k.subresource}" if k.subresource else ""),
            "verb": k.verb,
            "code": k.code,
            "count": n,
        }
        for k, n in delta.most_common()
    ]


def summary(delta: Counter[WriteKey], jobs: int) -> dict[str, Any]:
    """Totals and per-job figures of a delta over `jobs` jobs."""
    per = max(jobs, 1)
    total, background = sum(delta.values()), sum(delta.values()) - job_writes(delta)
    guideline = guidelinejob_writes(delta)
    status = sum(
        n
        for k, n in delta.items()
        if k.group == gj.GROUP and k.resource == gj.PLURAL and k.subresource == "status"
    )
    return {
        "jobs": jobs,
        "total": total,
        "background_leases": background,
        "per_job": round((total - background) / per, 2),
        "guidelinejob": guideline,
        "guidelinejob_status": status,
        "guidelinejob_per_job": round(guideline / per, 2),
        "guidelinejob_rejected": guideline - guidelinejob_writes(delta, ok_only=True),
        "guidelinejob_by_code": guidelinejob_by_code(delta),
        "by_resource": breakdown(delta),
    }
