"""Section `e2e`: N jobs through the whole system (API, operator, Job, runner pod, fake LLM
with a fixed latency per call) at several `maxConcurrentJobs`.

Per job, from wall-clock timestamps on this one machine:
- accepted: the POST's 202 arrived;
- runner started / finished: the runner's own "runner started" (process up, imports done,
  GuidelineJob read) and "runner finished" log lines (millisecond timestamps); "runner
  started" also gives the process's CPU so far (`cpu_s`: the pod's start-up cost before its
  first LLM call);
- visible: the first poll of `GET /jobs?status=COMPLETED` (every 0.1 s) listing it.

Figures: throughput; start overhead (accepted -> runner started) of the jobs that found a
free slot; slot hand-over (the k-th runner exit -> the start of the runner that took its
slot) of the queued ones; completion visibility (runner finished -> visible in GET /jobs).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import httpx

from bench.env import Environment
from bench.loadgen import summarize
from bench.texts import request_bodies

POLL_SECONDS = 0.1


def poll_status(
    client: httpx.Client, wanted: set[str], status: str, seen: dict[str, float]
) -> None:
    """Record (first time) every job of `wanted` that GET /jobs?status= lists."""
    cursor = None
    while True:
        params: dict[str, Any] = {"status": status, "limit": 200}
        if cursor:
            params["cursor"] = cursor
        response = client.get("/jobs", params=params)
        now = time.time()
        response.raise_for_status()
        page = response.json()
        for item in page["items"]:
            if item["event_id"] in wanted:
                seen.setdefault(item["event_id"], now)
        cursor = page.get("next_cursor")
        if not cursor:
            return


def runner_times(env: Environment, event_id: str) -> dict[str, Any]:
    """The runner's start and finish times (first pod's start, successful pod's finish)
    and how many pods the job took, from the pods' logs."""
    from guideline_core import resource as gj

    pods = env.cluster.pods(env.ops.namespace, f"{gj.LABEL_EVENT_ID}={event_id}")
    pods.sort(key=lambda p: p["metadata"]["creationTimestamp"])
    starts, finishes, start_cpu = [], [], []
    for pod in pods:
        for line in env.cluster.pod_log(env.ops.namespace, pod["metadata"]["name"]).splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("msg") == "runner started":
                starts.append(datetime.fromisoformat(record["ts"]).timestamp())
                if isinstance(record.get("cpu_s"), int | float):
                    start_cpu.append(float(record["cpu_s"]))
            elif record.get("msg") == "runner finished":
                finishes.append(datetime.fromisoformat(record["ts"]).timestamp())
    return {
        "pods": len(pods),
        "started": min(starts) if starts else None,
        "finished": max(finishes) if finishes else None,
        "start_cpu_s": start_cpu[0] if start_cpu else None,
    }


def analyse(jobs: list[dict[str, Any]], concurrency: int, chain_seconds: float) -> dict[str, Any]:
    """The section's figures from per-job timestamps (accepted, started, finished,
    visible)."""
    done = [j for j in jobs if j.get("visible") and j.get("started") and j.get("finished")]
    by_accept = sorted(done, key=lambda j: j["accepted"])
    immediate = by_accept[:concurrency]
    starts = sorted(j["started"] for j in done)
    exits = sorted(j["finished"] for j in done)
    handoff = [starts[k] - exits[k - concurrency] for k in range(concurrency, len(starts))]
    first = min(j["accepted"] for j in jobs)
    last = max((j["visible"] for j in done), default=first)
    span = last - first
    ideal = 60.0 * concurrency / chain_seconds
    throughput = 60.0 * len(done) / span if span > 0 else 0.0
    return {
        "jobs": len(jobs),
        "completed": len(done),
        "failed_or_missing": len(jobs) - len(done),
        "wall_s": round(span, 1),
        "throughput_jobs_per_min": round(throughput, 1),
        "ideal_jobs_per_min": round(ideal, 1),
        "efficiency": round(throughput / ideal, 2) if ideal else None,
        "start_overhead": summarize([j["started"] - j["accepted"] for j in immediate]),
        "slot_handoff": summarize(handoff),
        "completion_visibility": summarize([j["visible"] - j["finished"] for j in done]),
        "runner_busy": summarize([j["finished"] - j["started"] for j in done]),
        "runner_start_cpu_s": summarize(
            [j["start_cpu_s"] for j in done if j.get("start_cpu_s") is not None]
        ),
        "extra_pods": sum(j["pods"] - 1 for j in done),
    }


def submit_and_wait(
    env: Environment,
    base_url: str,
    headers: dict[str, str],
    bodies: list[bytes],
    timeout: float,
) -> list[dict[str, Any]]:
    """POST every body (one after the other), then poll until every job is listed as
    COMPLETED (or FAILED); returns per-job accepted/visible times."""
    jobs: list[dict[str, Any]] = []
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        for body in bodies:
            response = client.post("/jobs", content=body)
            response.raise_for_status()
            jobs.append({"event_id": response.json()["event_id"], "accepted": time.time()})
        wanted = {j["event_id"] for j in jobs}
        visible: dict[str, float] = {}
        failed: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        polls = 0
        while len(visible) + len(failed) < len(wanted) and time.monotonic() < deadline:
            poll_status(client, wanted - set(visible), "COMPLETED", visible)
            polls += 1
            if polls % 20 == 0:
                poll_status(client, wanted, "FAILED", failed)
            time.sleep(POLL_SECONDS)
    for job in jobs:
        job["visible"] = visible.get(job["event_id"])
        job["failed"] = job["event_id"] in failed
    return jobs


def run_once(
    env: Environment, concurrency: int, count: int, latency: float, log: Any = print
) -> dict[str, Any]:
    """`count` one-kilobyte jobs with the operator at `maxConcurrentJobs` = `concurrency`
    and the fake LLM answering each call after `latency` s (two calls per job)."""
    env.stop_operator()
    env.reset()
    env.set_llm(latency)
    env.start_operator(max_concurrent_jobs=concurrency)
    try:
        bodies = request_bodies(1024, count, title="e2e")
        jobs = submit_and_wait(
            env, env.api_url, env.headers, bodies, timeout=120 + count * 4 * latency * 3
        )
    finally:
        env.stop_operator()
    for job in jobs:
        job.update(runner_times(env, job["event_id"]))
    figures = analyse(jobs, concurrency, chain_seconds=2 * latency)
    figures.update(concurrency=concurrency, llm_latency_s=latency, per_job=jobs)
    log(
        f"  maxConcurrentJobs {concurrency:>2}: {figures['completed']}/{count} done in "
        f"{figures['wall_s']} s, {figures['throughput_jobs_per_min']} jobs/min "
        f"(ideal {figures['ideal_jobs_per_min']}); start overhead p50 "
        f"{figures['start_overhead']['p50_ms']} ms, hand-over p50 "
        f"{figures['slot_handoff']['p50_ms']} ms, visible after exit p50 "
        f"{figures['completion_visibility']['p50_ms']} ms, runner CPU before its first LLM call "
        f"p50 {figures['runner_start_cpu_s']['p50_ms']} ms"
    )
    return figures


def run(
    env: Environment,
    concurrencies: list[int],
    count: int,
    latency: float,
    log: Any = print,
) -> list[dict[str, Any]]:
    """run_once for each concurrency."""
    return [run_once(env, c, count, latency, log) for c in concurrencies]
