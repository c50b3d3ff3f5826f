"""Section `peer`: the seed's architecture, measured side by side with ours in the same run.

The peer is FastAPI (`bench.peer_app`) + Celery on Redis (`bench.peer_worker`, prefork
pool) + the same PostgreSQL, running the same chain against the same fake LLM. Redis is
Debian's `redis-server` (installed here with apt-get if missing; started on a free port
without persistence, stopped at the end).

Two comparisons:
- submit latency: both APIs under the same open-loop load, back to back (the operator and
  the Celery worker are stopped meanwhile: only the submission path);
- dispatch: the same N jobs at the same concurrency (maxConcurrentJobs = Celery worker
  processes) and LLM latency: accepted -> work starts, work ends -> COMPLETED visible,
  throughput.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from support.net import free_port

from bench import REPO_ROOT
from bench import e2e as ours_e2e
from bench.env import BIN, Environment, Process, base_env, wait_http
from bench.latency import post_step
from bench.texts import request_bodies

POLICY_RC = Path("/usr/sbin/policy-rc.d")

WHAT_EACH_BUYS = [
    (
        "isolation",
        "a pod (own process, CPU/memory limits, ServiceAccount with rights on its own "
        "GuidelineJob only) per job",
        "jobs share long-lived worker processes (one crash or leak affects the next jobs)",
    ),
    (
        "retries",
        "Job backoffLimit + podFailurePolicy (exit 42 = no retry), counted by the platform "
        "even if the operator is down",
        "in task code (autoretry_for); a killed worker re-delivers only with acks_late",
    ),
    (
        "deadlines",
        "activeDeadlineSeconds: the platform kills the pod; plus the runner's soft timeout",
        "soft/hard time_limit signals inside the worker (prefork pool only)",
    ),
    (
        "queue durability",
        "the GuidelineJob in etcd and the row in PostgreSQL; survives any process restart",
        "a Redis list (lost with Redis unless AOF/replication is set up)",
    ),
    (
        "observability",
        "kubectl get gj, Events, conditions, pod logs per job",
        "Flower/worker logs; no per-job object",
    ),
]


def ensure_redis(log: Any = print) -> str:
    """The path of redis-server, installing Debian's package if it is missing (without
    letting the package start a system-wide server)."""
    found = shutil.which("redis-server")
    if found:
        return found
    log("  redis-server missing: apt-get install redis-server")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    made_policy = not POLICY_RC.exists()
    if made_policy:  # no service start during the install (no init system here anyway)
        POLICY_RC.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC.chmod(0o755)
    try:
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "redis-server"]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, capture_output=True)
            subprocess.run(install, env=env, check=True, capture_output=True)
    finally:
        if made_policy:
            POLICY_RC.unlink(missing_ok=True)
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("redis-server is still missing after apt-get install")
    return found


class Peer:
    """Redis, the peer API and (when asked) the Celery worker."""

    def __init__(
        self, env: Environment, concurrency: int, log: Any = print, name: str = "peer"
    ) -> None:
        self.env = env
        self.concurrency = concurrency
        self.log = log
        self.workdir = env.workdir / name
        self.workdir.mkdir(exist_ok=True)
        self.database_url = env.pg.create_database(name)  # one per Peer in a run
        self.redis_port = free_port()
        self.redis = Process(
            "redis",
            [
                ensure_redis(log),
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            base_env(),
            self.workdir,
            self.workdir,
        )
        self.worker: Process | None = None
        self.api: Process | None = None
        try:
            self._wait_redis()
            self.api_port = free_port()
            self.api = Process(
                "peer-api",
                [
                    str(BIN / "python"),
                    "-m",
                    "uvicorn",
                    "bench.peer_app:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.api_port),
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ],
                self.child_env(),
                self.workdir,
                REPO_ROOT,
            )
            self.url = f"http://127.0.0.1:{self.api_port}"
            wait_http(f"{self.url}/docs", alive=self.api.alive)
        except BaseException:
            self.close()
            raise

    def child_env(self) -> dict[str, str]:
        return base_env() | {
            "PYTHONPATH": str(REPO_ROOT),
            "BENCH_DATABASE_URL": self.database_url,
            "BENCH_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "BENCH_LLM_URL": self.env.ops.fake.base_url,
        }

    def _wait_redis(self) -> None:
        import redis

        client = redis.Redis(port=self.redis_port)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                client.close()
                return
            except redis.ConnectionError:
                if not self.redis.alive() or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def start_worker(self) -> None:
        """The Celery worker (prefork, `concurrency` processes), once it says ready."""
        self.worker = Process(
            "celery-worker",
            [
                str(BIN / "celery"),
                "-A",
                "bench.peer_worker",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                str(self.concurrency),
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                "peer@bench",
            ],
            self.child_env(),
            self.workdir,
            REPO_ROOT,
        )
        deadline = time.monotonic() + 60
        while "ready." not in self.worker.log_path.read_text(errors="replace"):
            if not self.worker.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the Celery worker did not start; see {self.worker.log_path}")
            time.sleep(0.2)

    def reset(self) -> None:
        """Empty the queue and the peer's tables."""
        import redis
        from guideline_core import db

        client = redis.Redis(port=self.redis_port)
        client.flushall()
        client.close()
        database = db.Database(self.database_url)
        try:
            with database.connection() as conn, conn.cursor() as cur:
                cur.execute("TRUNCATE jobs, job_events CASCADE")
        finally:
            database.close()

    def bench_times(self) -> dict[str, dict[str, float]]:
        """The worker's start/finish time of every completed job."""
        from guideline_core import db

        database = db.Database(self.database_url)
        try:
            with database.connection() as conn, conn.cursor() as cur:
                cur.execute("SELECT event_id, result->'bench' FROM jobs WHERE result IS NOT NULL")
                return {str(eid): times for eid, times in cur.fetchall()}
        finally:
            database.close()

    def close(self) -> None:
        for part in (self.worker, self.api, self.redis):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.stop()


def run(
    env: Environment,
    sizes: list[int],
    rates: list[float],
    duration: float,
    count: int,
    latency: float,
    concurrency: int,
    ours: dict[str, Any] | None,
    log: Any = print,
) -> dict[str, Any]:
    """Both comparisons; `ours` is our e2e figures at `concurrency` if already measured."""
    env.stop_operator()
    env.reset()
    peer = Peer(env, concurrency, log)
    submit: list[dict[str, Any]] = []
    try:
        peer_headers = {"Content-Type": "application/json"}
        for size in sizes:
            bodies = request_bodies(size, 20)
            asyncio.run(post_step(peer.url, peer_headers, bodies, 10, 1))  # warm-up
            peer.reset()
            for rate in rates:
                mine = asyncio.run(post_step(env.api_url, env.headers, bodies, rate, duration))
                env.reset()
                theirs = asyncio.run(post_step(peer.url, peer_headers, bodies, rate, duration))
                peer.reset()
                row = {
                    "size_bytes": size,
                    "rate": rate,
                    "ours": mine.summary(),
                    "peer": theirs.summary(),
                }
                submit.append(row)
                log(
                    f"  submit {size:>6} B @ {rate:>4g}/s: ours p50 {row['ours']['p50_ms']} "
                    f"p99 {row['ours']['p99_ms']} ms ({row['ours']['errors']} err); celery "
                    f"p50 {row['peer']['p50_ms']} p99 {row['peer']['p99_ms']} ms "
                    f"({row['peer']['errors']} err)"
                )
        # Dispatch: the same jobs through the Celery worker.
        env.set_llm(latency)
        peer.start_worker()
        bodies = request_bodies(1024, count, title="peer")
        jobs = ours_e2e.submit_and_wait(
            env, peer.url, peer_headers, bodies, timeout=120 + count * 4 * latency * 3
        )
        times = peer.bench_times()
        for job in jobs:
            t = times.get(job["event_id"]) or {}
            job.update(pods=1, started=t.get("started"), finished=t.get("finished"))
        theirs = ours_e2e.analyse(jobs, concurrency, chain_seconds=2 * latency)
        theirs.update(concurrency=concurrency, llm_latency_s=latency, per_job=jobs)
    finally:
        peer.close()
    if ours is None:
        ours = ours_e2e.run_once(env, concurrency, count, latency, log)
    log(
        f"  dispatch at {concurrency} concurrent, {count} jobs: accepted -> work starts p50 "
        f"ours {ours['start_overhead']['p50_ms']} ms, celery "
        f"{theirs['start_overhead']['p50_ms']} ms; hand-over p50 ours "
        f"{ours['slot_handoff']['p50_ms']} ms, celery {theirs['slot_handoff']['p50_ms']} ms; "
        f"throughput ours {ours['throughput_jobs_per_min']}, celery "
        f"{theirs['throughput_jobs_per_min']} jobs/min"
    )
    return {
        "submit": submit,
        "dispatch": {"ours": ours, "peer": theirs},
        "what_each_buys": [{"aspect": a, "ours": o, "peer": p} for a, o, p in WHAT_EACH_BUYS],
    }
