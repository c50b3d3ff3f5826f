"""Section `latency`: POST /jobs under open-loop load, and its floor.

For each text size and offered rate, two steps run back to back against the same
PostgreSQL and kube-apiserver, timed the same way (open loop, latency from the scheduled
time):
- `post`: POST /jobs on the real API server (a separate uvicorn process);
- `floor`: what one submission cannot avoid, done directly from this process: one INSERT
  of the row and one GuidelineJob create inside that transaction, then COMMIT, from 40
  threads over 20 pooled connections (the API's thread and connection pools).
The operator is not running, so only the submission path is measured; the GuidelineJobs
and rows are deleted after every step.
"""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psutil

from bench.env import Environment
from bench.loadgen import StepResult, open_loop
from bench.texts import request_bodies

THREADS = 40  # anyio's default thread limiter: the API's sync endpoints share 40 threads
DB_POOL = 20  # the API's default db_pool_max
DISTINCT_TEXTS = 20


async def post_step(
    url: str,
    headers: dict[str, str],
    bodies: list[bytes],
    rate: float,
    duration: float,
    event_ids: list[str] | None = None,
) -> StepResult:
    """POST /jobs at `rate` per second for `duration` seconds (bodies in turn); the
    event_ids of the 202 answers go to `event_ids`."""
    limits = httpx.Limits(max_connections=4000, max_keepalive_connections=500)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=60
    ) as client:

        async def request(i: int) -> int:
            response = await client.post("/jobs", content=bodies[i % len(bodies)])
            if event_ids is not None and response.status_code == 202:
                event_ids.append(response.json()["event_id"])
            return response.status_code

        return await open_loop(rate, duration, request, timeout=60)


class Floor:
    """One INSERT + one GuidelineJob create per call, as the API's pools would run it."""

    def __init__(self, env: Environment) -> None:
        from guideline_core import db
        from kubernetes import client, config

        self.env = env
        self.database = db.Database(env.database_url, maxconn=DB_POOL)
        # Threads wait (up to 5 s) for one of the DB_POOL connections, as the API's do.
        self.slots = threading.BoundedSemaphore(DB_POOL)
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(env.cluster.kubeconfig), client_configuration=cfg)
        cfg.connection_pool_maxsize = DB_POOL
        self.api_client = client.ApiClient(cfg)
        self.api = client.CustomObjectsApi(self.api_client)
        self.executor = ThreadPoolExecutor(THREADS, thread_name_prefix="floor")

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.database.close()
        self.api_client.close()

    def once(self, text: str, title: str) -> int:
        from guideline_core import resource as gj

        event_id = gj.new_event_id()
        manifest = gj.guideline_job_manifest(
            event_id=event_id, guideline_text=text, title=title, submitted_by="bench"
        )
        if not self.slots.acquire(timeout=5.0):
            return 503
        try:
            self._insert_and_create(event_id, manifest, title, text)
        finally:
            self.slots.release()
        return 201

    def _insert_and_create(
        self, event_id: Any, manifest: dict[str, Any], title: str, text: str
    ) -> None:
        from guideline_core import resource as gj

        with self.database.connection() as conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO jobs (event_id, namespace, status, title, guideline_text, "
                "submitted_by) VALUES (%s, %s, 'PENDING', %s, %s, 'bench')",
                (event_id, self.env.ops.namespace, title, text),
            )
            self.api.create_namespaced_custom_object(
                gj.GROUP,
                gj.VERSION,
                self.env.ops.namespace,
                gj.PLURAL,
                manifest,
                _request_timeout=(3, 5),
            )

    async def step(self, texts: list[tuple[str, str]], rate: float, duration: float) -> StepResult:
        loop = asyncio.get_running_loop()

        async def request(i: int) -> int:
            text, title = texts[i % len(texts)]
            return await loop.run_in_executor(self.executor, self.once, text, title)

        return await open_loop(rate, duration, request, timeout=60)


class CpuMeter:
    """CPU used by one process per request, and how busy the whole machine was."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)

    def __enter__(self) -> CpuMeter:
        self.start = sum(self.proc.cpu_times()[:2])
        psutil.cpu_percent()  # starts the machine-wide interval
        return self

    def __exit__(self, *exc: object) -> None:
        self.used = sum(self.proc.cpu_times()[:2]) - self.start
        self.machine = psutil.cpu_percent()

    def report(self, requests: int) -> dict[str, float]:
        return {
            "api_cpu_ms_per_request": round(1000 * self.used / max(requests, 1), 2),
            "machine_cpu_busy_pct": round(self.machine, 1),
        }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def run(
    env: Environment, sizes: list[int], rates: list[float], duration: float, log: Any = print
) -> list[dict[str, Any]]:
    """Every (size, rate): the POST step and the floor step; returns one record each."""
    env.stop_operator()
    env.reset()
    floor = Floor(env)
    records = []
    try:
        for size in sizes:
            bodies = request_bodies(size, DISTINCT_TEXTS)
            texts = [(d["guideline_text"], d["title"]) for d in map(json.loads, bodies)]
            # Warm-up: connections, caches, the first CR of this size.
            asyncio.run(post_step(env.api_url, env.headers, bodies, 10, 1))
            asyncio.run(floor.step(texts, 10, 1))
            env.reset()
            for rate in rates:
                assert env.api is not None
                with CpuMeter(env.api.pid) as cpu:
                    step = asyncio.run(post_step(env.api_url, env.headers, bodies, rate, duration))
                post = step.summary()
                post.update(cpu.report(len(step.samples)))
                env.reset()
                base = asyncio.run(floor.step(texts, rate, duration)).summary(ok=(201,))
                env.reset()
                record = {
                    "size_bytes": size,
                    "rate": rate,
                    "duration_s": duration,
                    "post": post,
                    "floor": base,
                    "ratio_p50": _ratio(post["p50_ms"], base["p50_ms"]),
                    "ratio_p99": _ratio(post["p99_ms"], base["p99_ms"]),
                }
                records.append(record)
                log(
                    f"  {size:>6} B @ {rate:>5g}/s: POST p50 {post['p50_ms']} p99 "
                    f"{post['p99_ms']} ms ({post['errors']} errors, "
                    f"{post['achieved_rate']}/s); floor p50 {base['p50_ms']} p99 "
                    f"{base['p99_ms']} ms; x{record['ratio_p50']} at p50; API CPU "
                    f"{post['api_cpu_ms_per_request']} ms/request, machine "
                    f"{post['machine_cpu_busy_pct']} % busy"
                )
    finally:
        floor.close()
    return records
