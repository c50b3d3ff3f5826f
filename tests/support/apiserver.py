"""kube-apiserver's own count of the requests it served (`apiserver_request_total` on its
/metrics), to measure how many writes something costs: read before, read after, subtract.

    before = WriteCounter(cluster).snapshot()
    ...                                   # submit jobs, wait for them
    writes = WriteCounter(cluster).snapshot() - before
    writes.total(resource="guidelinejobs")      # every write to GuidelineJobs and status
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})
_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$", re.M)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Writes:
    """Write requests by (group, resource, subresource, verb)."""

    counts: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)

    def __sub__(self, earlier: Writes) -> Writes:
        diff = Counter(self.counts)
        diff.subtract(earlier.counts)
        return Writes(Counter({k: v for k, v in diff.items() if v}))

    def total(
        self, *, resource: str, group: str | None = None, subresource: str | None = None
    ) -> int:
        """Writes to `resource` (and, if given, only its `subresource`; "" = the object)."""
        return sum(
            n
            for (g, r, sub, _verb), n in self.counts.items()
            if r == resource
            and (group is None or g == group)
            and (subresource is None or sub == subresource)
        )

    def table(self) -> dict[str, int]:
        """{"group/resource[/subresource] VERB": count}, for a readable report."""
        return {
            f"{g or 'core'}/{r}{'/' + sub if sub else ''} {verb}": n
            for (g, r, sub, verb), n in sorted(self.counts.items())
        }


def parse(text: str) -> Writes:
    """The write counts of a /metrics exposition."""
    counts: Counter[tuple[str, str, str, str]] = Counter()
    for match in _SAMPLE.finditer(text):
        labels = dict(_LABEL.findall(match.group("labels")))
        if labels.get("verb") not in WRITE_VERBS or labels.get("dry_run"):
            continue
        key = (
            labels.get("group", ""),
            labels.get("resource", ""),
            labels.get("subresource", ""),
            labels["verb"],
        )
        counts[key] += int(float(match.group("value")))
    return Writes(counts)


class WriteCounter:
    """Reads kube-apiserver's counters through `cluster` (a support.cluster.LocalCluster)."""

    def __init__(self, cluster: Any):
        self.cluster = cluster

    def snapshot(self) -> Writes:
        """The counts as of now."""
        return parse(self.cluster.kubectl("get", "--raw", "/metrics", timeout=60).stdout)
