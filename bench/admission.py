"""`python -m bench.admission`: the operator's own cost of admitting a job, in process,
against queues of 1,000 to 100,000 waiting GuidelineJobs (the registry the admission pass
reads: `guideline_operator.queue`). No cluster: this isolates the part that used to grow
with the queue (sorting every waiting job and rewriting positions on each pass).

Prints, per queue length: the time to build the index, and per admission (the next job
of the next tenant in turn, then the registry update its admission write causes) the
mean and worst time. Figures only; nothing here is asserted.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from guideline_core import resource as gj
from guideline_operator import manifests
from guideline_operator.queue import Registry

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def body(i: int, **status: Any) -> dict[str, Any]:
    created = (T0 + timedelta(milliseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "metadata": {
            "name": f"gj-{i}",
            "namespace": "bench",
            "uid": f"uid-{i}",
            "resourceVersion": str(10 + i),
            "creationTimestamp": created,
            "labels": {gj.LABEL_EVENT_ID: f"e-{i:08d}"},
        },
        "status": {"phase": "PENDING", "eventId": f"e-{i:08d}", **status},
    }


def measure(queued: int, tenants: int, admissions: int = 500) -> dict[str, float]:
    registry = Registry()
    start = time.perf_counter()
    for i in range(queued):
        registry.upsert(body(i))
        registry.set_tenant(f"uid-{i}", f"t{i % tenants}")
    built = time.perf_counter() - start
    times = []
    for _ in range(admissions):
        t = time.perf_counter()
        entry = registry.next_waiting(lambda tenant: 0)
        assert entry is not None
        i = int(entry.uid.removeprefix("uid-"))
        admitted = body(i, phase="PROCESSING", jobName=manifests.job_name(entry.name, entry.uid))
        admitted["metadata"]["resourceVersion"] = str(10**9 + i)
        registry.upsert(admitted)
        times.append(time.perf_counter() - t)
    return {
        "queued": queued,
        "tenants": tenants,
        "index_build_s": built,
        "admission_mean_us": sum(times) / len(times) * 1e6,
        "admission_max_us": max(times) * 1e6,
    }


def main() -> None:
    print(f"{'queued':>8} {'tenants':>7} {'build s':>8} {'mean us':>8} {'max us':>8}")
    for queued in (1_000, 10_000, 100_000):
        for tenants in (1, 10):
            r = measure(queued, tenants)
            print(
                f"{r['queued']:>8} {r['tenants']:>7} {r['index_build_s']:>8.2f} "
                f"{r['admission_mean_us']:>8.1f} {r['admission_max_us']:>8.1f}"
            )


if __name__ == "__main__":
    main()
