"""Section `scale`: a burst of submissions (default 2,000 in 50 s, open loop) with
`maxConcurrentJobs` 8 and a fake LLM that answers at once; then wait for the queue to
drain. Checks that nothing was lost (every 202 is COMPLETED in `GET /jobs`, rows and
GuidelineJobs are as many) and reports the time to drain and the peak resident memory of
the API and operator processes (psutil, sampled every 0.5 s)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import psutil

from bench.e2e import poll_status
from bench.env import Environment
from bench.latency import post_step
from bench.texts import request_bodies


class RssSampler:
    """Peak RSS of some processes, sampled in a thread."""

    def __init__(self, pids: dict[str, int], interval: float = 0.5) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak = dict.fromkeys(pids, 0)
        self.first: dict[str, int] = {}
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, proc in self.procs.items():
                try:
                    rss = proc.memory_info().rss
                except psutil.Error:
                    continue
                self.first.setdefault(name, rss)
                self.peak[name] = max(self.peak[name], rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def report(self) -> dict[str, dict[str, float]]:
        mib = 1024 * 1024
        return {
            name: {
                "start_mib": round(self.first.get(name, 0) / mib, 1),
                "peak_mib": round(self.peak[name] / mib, 1),
            }
            for name in self.procs
        }


def run(
    env: Environment,
    count: int,
    seconds: float,
    concurrency: int,
    timeout: float,
    log: Any = print,
) -> dict[str, Any]:
    """Submit `count` jobs over `seconds`, wait (at most `timeout` s) until all are
    terminal, and check that none was lost."""
    env.stop_operator()
    env.reset()
    env.set_llm(0.0)
    env.start_operator(max_concurrent_jobs=concurrency)
    assert env.api is not None and env.operator_pid is not None
    accepted: list[str] = []
    progress: list[dict[str, Any]] = []
    try:
        with RssSampler({"api": env.api.pid, "operator": env.operator_pid}) as rss:
            bodies = request_bodies(1024, 50, title="scale")
            start = time.time()
            step = asyncio.run(
                post_step(env.api_url, env.headers, bodies, count / seconds, seconds, accepted)
            )
            submitted = time.time()
            post = step.summary()
            log(
                f"  {post['ok']}/{count} accepted in {submitted - start:.1f} s "
                f"(POST p50 {post['p50_ms']} p99 {post['p99_ms']} ms); draining ..."
            )
            deadline = time.monotonic() + timeout
            last_log = 0.0
            while True:
                counts = env.db_counts()
                terminal = counts["COMPLETED"] + counts["FAILED"] + counts["CANCELLED"]
                now = time.time()
                progress.append({"t": round(now - start, 1), **counts})
                if terminal >= len(accepted) or time.monotonic() > deadline:
                    break
                if now - last_log > 60:
                    last_log = now
                    log(f"    {now - start:6.0f} s: {counts}")
                time.sleep(2.0)
            drained = time.time()
            memory = rss.report()
    finally:
        env.stop_operator()
    wanted = set(accepted)
    seen: dict[str, dict[str, float]] = {s: {} for s in ("COMPLETED", "FAILED", "CANCELLED")}
    with httpx.Client(base_url=env.api_url, headers=env.headers, timeout=60) as client:
        for status, found in seen.items():
            poll_status(client, wanted, status, found)
    completed = set(seen["COMPLETED"])
    result = {
        "jobs": count,
        "submit_seconds": seconds,
        "max_concurrent_jobs": concurrency,
        "post": post,
        "accepted": len(accepted),
        "completed": len(completed),
        "failed": len(seen["FAILED"]),
        "cancelled": len(seen["CANCELLED"]),
        "lost": len(wanted - completed - set(seen["FAILED"]) - set(seen["CANCELLED"])),
        "rows": sum(env.db_counts().values()),
        "guidelinejobs": env.count_guidelinejobs(),
        "drain_seconds": round(drained - start, 1),
        "drain_after_last_submit_s": round(drained - submitted, 1),
        "throughput_jobs_per_min": round(60 * len(completed) / max(drained - start, 1e-9), 1),
        "memory": memory,
        "progress": progress,
    }
    log(
        f"  {result['completed']}/{result['accepted']} COMPLETED, {result['failed']} FAILED, "
        f"{result['lost']} lost; rows {result['rows']}, GuidelineJobs "
        f"{result['guidelinejobs']}; drained {result['drain_seconds']} s after the first "
        f"submission ({result['throughput_jobs_per_min']} jobs/min); peak RSS API "
        f"{memory['api']['peak_mib']} MiB, operator {memory['operator']['peak_mib']} MiB"
    )
    return result
