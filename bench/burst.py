"""Section `burst`: submissions on the full stack (operator running, jobs processing, fake
LLM answering at once, `maxConcurrentJobs` 8) from vegeta, an open-loop generator that is
not Python, against the real uvicorn API server.

Parts (`--burst-parts`, all by default):
- `burst`: N submissions (2,000) over S seconds (50), then wait until every job is
  terminal. Figures: POST p50/p95/p99/max and errors; kube-apiserver writes per job (its
  `apiserver_request_total` scraped before and after, support.kube_writes); the time from
  a runner slot freeing to the next Job created; drain time against the pod-start bound;
  peak RSS of the API and the operator; nothing lost (every 202 ends COMPLETED, rows ==
  GuidelineJobs == accepted).
- `steady`: R POST/s (100) for T s (20) with the operator running: POST latency.
- `peer`: the same two loads, also from vegeta, on the Celery + Redis peer (bench.peer)
  with its worker running (as many processes as maxConcurrentJobs): ours/peer p99 ratios.

Slot hand-over, from the objects left after the drain (Jobs are kept: the operator runs
with a TTL longer than the run). A slot frees when a Job's runner pod finishes (its
container's `finishedAt`; the Job's `completionTime` as a second series). With at most C
Jobs running, the k-th Job created (k >= C, by creationTimestamp) can only be created once
k-C+1 Jobs have freed their slot, so its hand-over is creation[k] - free[k-C], both lists
sorted; it is counted only when that job's GuidelineJob already waited when the slot freed
(otherwise it measures the submission, not the hand-over). Kubernetes timestamps have one
second resolution, so each gap is exact to +-1 s; the mean is unbiased, p50 is coarse.

Drain bound: jobs / C x the mean time a runner pod holds a slot (pod created -> runner
exited, same timestamps): what the pods alone would take with every slot always busy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import numpy as np

from bench import vegeta
from bench.e2e import poll_status
from bench.env import Environment
from bench.loadgen import StepResult, summarize
from bench.scale import RssSampler
from bench.texts import request_bodies

PARTS = ("burst", "steady", "peer")
DISTINCT_TEXTS = 50
TTL_SECONDS = 7 * 24 * 3600  # the Jobs must outlive the run to be measured


def _ts(text: str | None) -> float | None:
    """A Kubernetes timestamp (RFC 3339, seconds) as epoch seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def _post_figures(step: StepResult) -> dict[str, Any]:
    out = step.summary()
    out["statuses"] = {str(k): v for k, v in out["statuses"].items()}
    return out


def _gaps(
    creations: list[float], frees: list[float], waited: list[bool], concurrency: int
) -> dict[str, Any]:
    """creation[k] - free[k-C] over the k whose job waited for that slot (see above)."""
    gaps = [
        creations[k] - frees[k - concurrency]
        for k in range(concurrency, min(len(creations), len(frees) + concurrency))
        if waited[k]
    ]
    out = summarize(gaps)
    out["count"] = len(gaps)
    return out


def handover(
    jobs: list[dict[str, Any]],
    pods: list[dict[str, Any]],
    submitted: dict[str, float],
    concurrency: int,
) -> dict[str, Any]:
    """Slot-freeing -> next Job created, from the Jobs' and pods' timestamps (module
    docstring); `submitted`: GuidelineJob creation time per event_id."""
    from guideline_core import resource as gj

    finished: dict[str, float] = {}  # Job name -> its last runner container exit
    held: list[float] = []  # pod created -> runner exited
    for pod in pods:
        owner = next(
            (o["name"] for o in pod["metadata"].get("ownerReferences", []) if o["kind"] == "Job"),
            None,
        )
        states = [c.get("state", {}) for c in pod.get("status", {}).get("containerStatuses", [])]
        ends = [_ts(s["terminated"].get("finishedAt")) for s in states if "terminated" in s]
        end = max((e for e in ends if e is not None), default=None)
        created = _ts(pod["metadata"]["creationTimestamp"])
        if owner is None or end is None or created is None:
            continue
        finished[owner] = max(end, finished.get(owner, end))
        held.append(end - created)
    created_at: list[tuple[float, float]] = []
    pod_free: list[float] = []
    job_free: list[float] = []
    for job in jobs:
        name = job["metadata"]["name"]
        created = _ts(job["metadata"]["creationTimestamp"])
        event_id = job["metadata"].get("labels", {}).get(gj.LABEL_EVENT_ID, "")
        status = job.get("status", {})
        done = _ts(status.get("completionTime")) or max(
            (
                t
                for c in status.get("conditions", [])
                if c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                for t in [_ts(c.get("lastTransitionTime"))]
                if t is not None
            ),
            default=None,
        )
        if created is None:
            continue
        created_at.append((created, submitted.get(event_id, created)))
        if name in finished:
            pod_free.append(finished[name])
        if done is not None:
            job_free.append(done)
    created_at.sort()
    pod_free.sort()
    job_free.sort()
    creations = [c for c, _ in created_at]

    def waited(frees: list[float]) -> list[bool]:
        return [
            k >= concurrency
            and k - concurrency < len(frees)
            and created_at[k][1] <= frees[k - concurrency]
            for k in range(len(created_at))
        ]

    return {
        "resolution_s": 1,
        "from_pod_finished": _gaps(creations, pod_free, waited(pod_free), concurrency),
        "from_job_completed": _gaps(creations, job_free, waited(job_free), concurrency),
        "slot_held_mean_s": round(float(np.mean(held)), 2) if held else None,
        "slot_held": summarize(held),
        "jobs": len(jobs),
        "pods": len(pods),
    }


def _items(env: Environment, kind: str) -> list[dict[str, Any]]:
    """Every object of `kind` in the bench namespace (admin; kubectl reads in pages)."""
    page = env.cluster.get_json(kind, "-n", env.ops.namespace, "--chunk-size=500")
    return list(page["items"])


def _table_times(env: Environment) -> dict[str, Any]:
    """First row created, last row completed, rows (database clock, microseconds)."""
    from guideline_core import db

    database = db.Database(env.database_url)
    try:
        with database.connection() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT extract(epoch FROM min(created_at)), extract(epoch FROM max(completed_at)),"
                " count(*) FROM jobs"
            )
            first, last, rows = cur.fetchone()
    finally:
        database.close()
    return {
        "first_created": float(first) if first is not None else None,
        "last_completed": float(last) if last is not None else None,
        "rows": int(rows),
    }


def _wait_drained(
    env: Environment, accepted: int, timeout: float, start: float, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Poll the row counts until `accepted` jobs are terminal (or `timeout`)."""
    progress: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    last_log = time.time()
    while True:
        counts = env.db_counts()
        now = time.time()
        progress.append({"t": round(now - start, 1), **counts})
        if counts["COMPLETED"] + counts["FAILED"] + counts["CANCELLED"] >= accepted:
            return progress
        if time.monotonic() > deadline:
            log(f"    gave up waiting after {timeout:g} s: {counts}")
            return progress
        if now - last_log > 60:
            last_log = now
            log(f"    {now - start:6.0f} s: {counts}")
        time.sleep(2.0)


def _lost(env: Environment, accepted: list[str]) -> dict[str, Any]:
    """Every 202 ends COMPLETED (GET /jobs), and rows == GuidelineJobs == accepted."""
    wanted = set(accepted)
    seen: dict[str, dict[str, float]] = {s: {} for s in ("COMPLETED", "FAILED", "CANCELLED")}
    with httpx.Client(base_url=env.api_url, headers=env.headers, timeout=60) as client:
        for status, found in seen.items():
            poll_status(client, wanted, status, found)
    completed = wanted & set(seen["COMPLETED"])
    rows = sum(env.db_counts().values())
    guidelinejobs = env.count_guidelinejobs()
    return {
        "accepted": len(accepted),
        "distinct_event_ids": len(wanted),
        "completed": len(completed),
        "failed": len(seen["FAILED"]),
        "cancelled": len(seen["CANCELLED"]),
        "not_completed": len(wanted - completed),
        "rows": rows,
        "guidelinejobs": guidelinejobs,
        "nothing_lost": (
            len(completed) == len(wanted) == len(accepted) and rows == guidelinejobs == len(wanted)
        ),
    }


def run_burst(
    env: Environment,
    count: int,
    seconds: float,
    concurrency: int,
    timeout: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The burst on our stack, drained, measured (module docstring)."""
    from guideline_core import resource as gj
    from support import kube_writes

    env.stop_operator()
    env.reset()
    env.set_llm(0.0)
    env.start_operator(max_concurrent_jobs=concurrency, ttl_seconds_after_finished=TTL_SECONDS)
    assert env.api is not None and env.operator_pid is not None
    bodies = request_bodies(1024, DISTINCT_TEXTS, title="burst")
    try:
        before = kube_writes.scrape(env.cluster)
        with RssSampler({"api": env.api.pid, "operator": env.operator_pid}) as rss:
            start = time.time()
            step, accepted = vegeta.attack(
                f"{env.api_url}/jobs", env.headers, bodies, count, seconds, env.workdir, "burst"
            )
            post = _post_figures(step)
            log(
                f"  {post['ok']}/{count} accepted (POST p50 {post['p50_ms']} p99 "
                f"{post['p99_ms']} max {post['max_ms']} ms, {post['errors']} errors); draining ..."
            )
            progress = _wait_drained(env, len(accepted), timeout, start, log)
            memory = rss.report()
        writes = kube_writes.summary(
            kube_writes.writes_since(before, kube_writes.scrape(env.cluster)), len(accepted)
        )
        times = _table_times(env)
        jobs, pods = _items(env, "jobs"), _items(env, "pods")
        submitted = {
            g["metadata"].get("labels", {}).get(gj.LABEL_EVENT_ID, ""): _ts(
                g["metadata"]["creationTimestamp"]
            )
            or 0.0
            for g in _items(env, "guidelinejobs")
        }
    finally:
        env.stop_operator()
    hand = handover(jobs, pods, submitted, concurrency)
    first = min((s.done_at - s.latency for s in step.samples), default=start)
    drain = (times["last_completed"] or time.time()) - first
    bound = (
        len(accepted) / concurrency * hand["slot_held_mean_s"] if hand["slot_held_mean_s"] else None
    )
    result = {
        "jobs": count,
        "submit_seconds": seconds,
        "max_concurrent_jobs": concurrency,
        "post": post,
        "kube_writes": writes,
        "handover": hand,
        "drain_s": round(drain, 1),
        "pod_start_bound_s": round(bound, 1) if bound else None,
        "drain_over_bound": round(drain / bound, 2) if bound else None,
        "memory": memory,
        "lost": _lost(env, accepted),
        "progress": progress,
    }
    lost = result["lost"]
    log(
        f"  kube-apiserver writes per job {writes['per_job']} (GuidelineJob "
        f"{writes['guidelinejob_per_job']}, of which status {writes['guidelinejob_status']} in "
        f"all; by code {writes['guidelinejob_by_code']}); slot freed -> next Job p50 "
        f"{hand['from_pod_finished']['p50_ms']} p99 "
        f"{hand['from_pod_finished']['p99_ms']} ms (1 s resolution); drained in "
        f"{result['drain_s']} s against a pod-start bound of {result['pod_start_bound_s']} s; "
        f"peak RSS API {memory['api']['peak_mib']} operator {memory['operator']['peak_mib']} "
        f"MiB; {lost['completed']}/{lost['accepted']} COMPLETED, rows {lost['rows']}, "
        f"GuidelineJobs {lost['guidelinejobs']}: "
        + ("nothing lost" if lost["nothing_lost"] else "SOMETHING LOST")
    )
    return result


def run_steady(
    env: Environment,
    rate: float,
    seconds: float,
    concurrency: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """`rate` POST/s for `seconds` with the operator running (not drained: latency only)."""
    env.stop_operator()
    env.reset()
    env.set_llm(0.0)
    env.start_operator(max_concurrent_jobs=concurrency)
    try:
        bodies = request_bodies(1024, DISTINCT_TEXTS, title="steady")
        count = max(1, round(rate * seconds))
        step, _ = vegeta.attack(
            f"{env.api_url}/jobs", env.headers, bodies, count, seconds, env.workdir, "steady"
        )
        env.wait_for_dispatch()  # the dispatcher's creates are part of the load
    finally:
        env.stop_operator()
    env.reset()
    post = _post_figures(step)
    log(
        f"  steady {rate:g}/s for {seconds:g} s: POST p50 {post['p50_ms']} p99 {post['p99_ms']} "
        f"max {post['max_ms']} ms, {post['errors']} errors"
    )
    return {"rate": rate, "seconds": seconds, "post": post}


def run_peer(
    env: Environment,
    loads: dict[str, tuple[int, float]],
    concurrency: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The same loads on the Celery + Redis peer, its worker running."""
    from bench.peer import Peer

    env.stop_operator()
    env.set_llm(0.0)
    peer = Peer(env, concurrency, log, name="peer_burst")
    out: dict[str, Any] = {"worker_processes": concurrency}
    try:
        peer.start_worker()
        headers = {"Content-Type": "application/json"}
        for name, (count, seconds) in loads.items():
            peer.reset()
            bodies = request_bodies(1024, DISTINCT_TEXTS, title=f"peer {name}")
            step, _ = vegeta.attack(
                f"{peer.url}/jobs", headers, bodies, count, seconds, env.workdir, f"peer-{name}"
            )
            out[name] = _post_figures(step)
            log(
                f"  celery {name} ({count} over {seconds:g} s): POST p50 {out[name]['p50_ms']} "
                f"p99 {out[name]['p99_ms']} ms, {out[name]['errors']} errors"
            )
    finally:
        peer.close()
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def run(
    env: Environment,
    count: int,
    seconds: float,
    concurrency: int,
    timeout: float,
    steady_rate: float,
    steady_seconds: float,
    parts: list[str],
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The selected parts; ours/peer p99 ratios when both ran."""
    result: dict[str, Any] = {"parts": parts}
    if "burst" in parts:
        result["burst"] = run_burst(env, count, seconds, concurrency, timeout, log)
    if "steady" in parts:
        result["steady"] = run_steady(env, steady_rate, steady_seconds, concurrency, log)
    if "peer" in parts:
        loads = {
            "burst": (count, seconds),
            "steady": (max(1, round(steady_rate * steady_seconds)), steady_seconds),
        }
        result["peer"] = run_peer(env, loads, concurrency, log)
        result["p99_ratio_ours_over_peer"] = {
            name: _ratio(result[name]["post"]["p99_ms"], result["peer"][name]["p99_ms"])
            for name in loads
            if name in result
        }
        log(f"  POST p99 ours / celery: {result['p99_ratio_ours_over_peer']}")
    return result
