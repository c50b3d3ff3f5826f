"""`python -m bench.streams`: what open job event streams cost the API, and whether it still
answers while they are open (issue 23: 255 streams of one key took every connection).

A throw-away PostgreSQL and one `guideline-api` process (uvicorn as the image serves it, no
Kubernetes, no dispatcher: the jobs stay PENDING), all on loopback. `--keys` member keys in
`--tenants` tenants each submit one job and open `--streams`/`--keys` streams on it (raw
sockets, read until the end). Before and with the streams open: the API's RSS, its CPU per
second while the streams idle, and the answer times (p50/p99, sequential, keep-alive) of
GET /health/live and GET /v1/jobs/{id}. Only `limit_concurrency` is raised (so that the
default three quarters of it admit the streams); the per-key and per-tenant caps keep their
defaults (20, 100).
Figures only; nothing here is asserted. Bounded: a few minutes in all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.env import Process, start_detached_api
from bench.loadgen import summarize

CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """Resident memory of `pid` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def answer_times(url: str, headers: dict[str, str], count: int) -> dict[str, Any]:
    """`count` sequential GETs of `url` on one keep-alive connection: p50/p99 in ms."""
    times, statuses = [], set()
    with httpx.Client(headers=headers, timeout=30) as client:
        client.get(url)  # the connection
        for _ in range(count):
            start = time.perf_counter()
            statuses.add(client.get(url).status_code)
            times.append(time.perf_counter() - start)
    return summarize(times, statuses=sorted(statuses))


class Streams:
    """Event streams held open by an event loop in a thread; `opened` counts the 200s."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.opened = 0
        self.refused: dict[int, int] = {}
        self.ended = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._writers: list[asyncio.StreamWriter] = []

    def open(self, targets: list[tuple[str, str]], at_once: int = 50) -> None:
        """Open one stream per (key, event_id); returns once each was answered."""
        future = asyncio.run_coroutine_threadsafe(self._open_all(targets, at_once), self._loop)
        future.result(timeout=600)

    async def _open_all(self, targets: list[tuple[str, str]], at_once: int) -> None:
        gate = asyncio.Semaphore(at_once)

        async def one(key: str, event_id: str) -> None:
            async with gate:
                await self._open(key, event_id)

        await asyncio.gather(*(one(k, e) for k, e in targets))

    async def _open(self, key: str, event_id: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(
            f"GET /v1/jobs/{event_id}/events HTTP/1.1\r\nHost: bench\r\n"
            f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 200:
            self.refused[status] = self.refused.get(status, 0) + 1
            writer.close()
            return
        self.opened += 1
        self._writers.append(writer)
        self._loop.create_task(self._drain(reader))

    async def _drain(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while await reader.read(65536):
                pass
        self.ended += 1

    def close(self) -> None:
        """Drop every stream and stop the loop."""

        async def close_all() -> None:
            for writer in self._writers:
                writer.close()

        asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def metric(base: str, name: str) -> str:
    """The lines of one metric family of the API's /metrics."""
    text = httpx.get(f"{base}/metrics", timeout=30).text
    lines = text.splitlines()
    return "; ".join(x for x in lines if x.startswith(name) and "_created" not in x)


def measure(api: Process, base: str, job: str, key: str, requests: int) -> dict[str, Any]:
    """RSS and the answer times of the probe and a job read."""
    return {
        "rss_mib": round(rss_mib(api.pid), 1),
        "live": answer_times(f"{base}/health/live", {}, requests),
        "get_job": answer_times(
            f"{base}/v1/jobs/{job}", {"Authorization": f"Bearer {key}"}, requests
        ),
    }


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from guideline_api.auth import hash_key
    from support.pg import PgServer

    pg = PgServer(workdir / "postgres")
    pg.start()
    api: Process | None = None
    streams: Streams | None = None
    try:
        database_url = pg.create_database("guideline")
        keys = [f"bench-stream-key-{i:04d}-{os.urandom(8).hex()}" for i in range(args.keys)]
        entries = [f"k{i}:{hash_key(key)}:t{i % args.tenants}:member" for i, key in enumerate(keys)]
        api, base = start_detached_api(
            database_url,
            workdir,
            ",".join(entries),
            GUIDELINE_LIMIT_CONCURRENCY=str(args.limit_concurrency),
        )
        jobs = []
        with httpx.Client(base_url=base, timeout=30) as client:
            for key in keys:
                answer = client.post(
                    "/v1/jobs",
                    json={"guideline_text": "Staff must wash hands."},
                    headers={"Authorization": f"Bearer {key}"},
                )
                answer.raise_for_status()
                jobs.append(answer.json()["event_id"])
        time.sleep(args.settle)
        before = measure(api, base, jobs[0], keys[0], args.requests)

        per_key = args.streams // args.keys
        streams = Streams(int(base.rsplit(":", 1)[1]))
        start = time.monotonic()
        streams.open([(k, j) for k, j in zip(keys, jobs, strict=True) for _ in range(per_key)])
        opened_in = time.monotonic() - start
        cpu0, t0 = cpu_seconds(api.pid), time.monotonic()
        time.sleep(args.settle)
        idle_cpu = (cpu_seconds(api.pid) - cpu0) / (time.monotonic() - t0)
        during = measure(api, base, jobs[0], keys[0], args.requests)
        return {
            "keys": args.keys,
            "tenants": args.tenants,
            "limit_concurrency": args.limit_concurrency,
            "streams_open": streams.opened,
            "refused": streams.refused,
            "ended_early": streams.ended,
            "open_seconds": round(opened_in, 1),
            "idle_cpu_per_s": round(idle_cpu, 3),
            "settle_seconds": args.settle,
            "before": before,
            "during": during,
            "metrics": metric(base, "guideline_api_event_streams"),
        }
    finally:
        if streams is not None:
            streams.close()
        if api is not None:
            api.stop()
        pg.stop()


def report(r: dict[str, Any]) -> None:
    print(
        f"{r['streams_open']} streams open ({r['keys']} keys, {r['tenants']} tenants, "
        f"limit_concurrency {r['limit_concurrency']}) in {r['open_seconds']} s; "
        f"refused {r['refused']}; ended early {r['ended_early']}"
    )
    print(f"API CPU while they idle: {r['idle_cpu_per_s']} s/s over {r['settle_seconds']} s")
    print(f"{'':>16} {'RSS MiB':>8} {'live p50':>9} {'live p99':>9} {'job p50':>8} {'job p99':>8}")
    for name in ("before", "during"):
        m = r[name]
        print(
            f"{name + ' streams':>16} {m['rss_mib']:>8} {m['live']['p50_ms']:>9} "
            f"{m['live']['p99_ms']:>9} {m['get_job']['p50_ms']:>8} {m['get_job']['p99_ms']:>8}"
        )
    during = r["during"]
    print(f"statuses: live {during['live']['statuses']}, job {during['get_job']['statuses']}")
    print(r["metrics"])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.streams", description=__doc__.splitlines()[0])
    p.add_argument("--streams", type=int, default=1000, help="streams to open (1000)")
    p.add_argument("--keys", type=int, default=100, help="member keys (100)")
    p.add_argument("--tenants", type=int, default=10, help="tenants of those keys (10)")
    p.add_argument(
        "--limit-concurrency", type=int, default=1400, help="uvicorn's limit (1400: 1050 streams)"
    )
    p.add_argument("--requests", type=int, default=500, help="GETs per answer-time figure (500)")
    p.add_argument("--settle", type=float, default=20.0, help="s to wait before measuring (20)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-streams-") as tmp:
        report(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
