"""`python -m bench.uploads`: what document uploads cost the API (issue 20).

A throw-away PostgreSQL and one `guideline-api` process (uvicorn as the image serves it, no
Kubernetes, no dispatcher), on loopback. Three figures:

1. the API's peak RSS (VmRSS of the real process sampled every 10 ms from /proc, and its
   VmHWM) while `--concurrent` (20) uploads of `--big-mib` (25 MiB, the limit) are in flight
   at once: a bounded figure, since uploads stream to disk and into PostgreSQL in 1 MiB
   pieces instead of sitting in memory;
2. POST latency of one 25 MiB upload (`--single` sequential uploads, p50/p99);
3. POST latency of `--small` (1,000) small uploads (a real 325 KB PDF) sent open-loop at
   `--rate` (50/s), each measured from its scheduled send time (bench.loadgen).

The big documents are PDF-headed random bytes (the API only sniffs and stores them; the
runner pod parses). Figures only; nothing asserted. A few minutes in all.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.env import Process, start_detached_api
from bench.loadgen import open_loop, summarize

SMALL = (
    Path(__file__).resolve().parent.parent
    / "tests/data/guidelines/nist-sp800-63b-authentication.pdf"
)
KEY = "bench-uploads-" + "0" * 32


def status_kib(pid: int, field: str) -> int:
    """A `Vm*` line of /proc/<pid>/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


class RssSampler:
    """The largest VmRSS of a process seen while running (sampled every `period` s)."""

    def __init__(self, pid: int, period: float = 0.01) -> None:
        self.pid, self.period = pid, period
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmRSS"))
            time.sleep(self.period)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def make_document(path: Path, size: int) -> Path:
    """`size` bytes that the API takes for a PDF: the header, then random bytes."""
    with path.open("wb") as out:
        out.write(b"%PDF-1.7\n")
        left = size - 9
        while left > 0:
            piece = os.urandom(min(left, 1 << 20))
            out.write(piece)
            left -= len(piece)
    return path


async def upload(client: httpx.AsyncClient, path: Path, name: str) -> tuple[int, float]:
    """POST one file; (status, seconds)."""
    start = time.perf_counter()
    with path.open("rb") as handle:
        answer = await client.post(
            "/v1/jobs", files={"file": (name, handle, "application/octet-stream")}
        )
    return answer.status_code, time.perf_counter() - start


async def concurrent_big(base: str, path: Path, count: int) -> tuple[list[int], float]:
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=600
    ) as client:
        start = time.perf_counter()
        answers = await asyncio.gather(
            *(upload(client, path, f"big-{i}.pdf") for i in range(count))
        )
        return [s for s, _ in answers], time.perf_counter() - start


async def sequential_big(base: str, path: Path, count: int) -> tuple[list[float], set[int]]:
    times, statuses = [], set()
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=600
    ) as client:
        for i in range(count):
            status, seconds = await upload(client, path, f"one-{i}.pdf")
            statuses.add(status)
            times.append(seconds)
    return times, statuses


async def small_open_loop(base: str, rate: float, count: int) -> dict[str, Any]:
    data = SMALL.read_bytes()
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=60, limits=limits
    ) as client:

        async def one(i: int) -> int:
            answer = await client.post(
                "/v1/jobs", files={"file": (f"small-{i}.pdf", data, "application/pdf")}
            )
            return answer.status_code

        step = await open_loop(rate, count / rate, one)
    return step.summary()


def run(args: argparse.Namespace, workdir: Path, log: Any = print) -> dict[str, Any]:
    """Start PostgreSQL and the API, measure, stop them."""
    from guideline_api.auth import hash_key
    from support.pg import PgServer

    workdir.mkdir(parents=True, exist_ok=True)
    pg = PgServer(workdir / "postgres")
    pg.start()
    api: Process | None = None
    try:
        database_url = pg.create_database("guideline")
        api, base = start_detached_api(
            database_url,
            workdir,
            f"bench:{hash_key(KEY)}:bench:member",
            GUIDELINE_MAX_PENDING_JOBS="100000",
            GUIDELINE_TENANT_MAX_PENDING_JOBS="100000",
            GUIDELINE_TENANT_MAX_INFLIGHT_TEXT_BYTES="0",
            TMPDIR=str(workdir),  # where uploads spool
            **{k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
        )
        big = make_document(workdir / "big.pdf", args.big_mib * 1024 * 1024 - 1024)

        # Warm up (imports, pools) before the baseline.
        asyncio.run(sequential_big(base, SMALL, 3))
        baseline_kib = status_kib(api.pid, "VmRSS")
        log(f"uploads: {args.concurrent} concurrent uploads of {args.big_mib} MiB")
        with RssSampler(api.pid) as sampler:
            statuses, seconds = asyncio.run(concurrent_big(base, big, args.concurrent))
        concurrent = {
            "uploads": args.concurrent,
            "bytes_each": big.stat().st_size,
            "statuses": sorted(set(statuses)),
            "seconds": round(seconds, 2),
            "rss_before_mib": round(baseline_kib / 1024, 1),
            "rss_peak_mib": round(sampler.peak_kib / 1024, 1),
            "vmhwm_mib": round(status_kib(api.pid, "VmHWM") / 1024, 1),
            "rss_after_mib": round(status_kib(api.pid, "VmRSS") / 1024, 1),
        }
        log(f"uploads: {args.single} sequential uploads of {args.big_mib} MiB")
        times, single_statuses = asyncio.run(sequential_big(base, big, args.single))
        single = summarize(times, requests=len(times), statuses=sorted(single_statuses))
        log(f"uploads: {args.small} small uploads at {args.rate}/s")
        small = asyncio.run(small_open_loop(base, args.rate, args.small))
        small["bytes_each"] = SMALL.stat().st_size
        return {"concurrent": concurrent, "single": single, "small": small}
    finally:
        if api is not None:
            api.stop()
        pg.stop()
        (workdir / "big.pdf").unlink(missing_ok=True)


def render(r: dict[str, Any]) -> str:
    """The figures as text."""
    c, s, m = r["concurrent"], r["single"], r["small"]
    return "\n".join(
        [
            "\n## Document uploads (python -m bench.uploads; one guideline-api process)",
            f"{c['uploads']} concurrent uploads of {c['bytes_each']:,} bytes in {c['seconds']} s "
            f"(statuses {c['statuses']}): API RSS {c['rss_before_mib']} MiB before, peak "
            f"{c['rss_peak_mib']} MiB (VmHWM {c['vmhwm_mib']} MiB), {c['rss_after_mib']} MiB "
            "after",
            f"one {c['bytes_each']:,}-byte upload at a time ({s['requests']}): POST p50 "
            f"{s['p50_ms']} ms, p99 {s['p99_ms']} ms, max {s['max_ms']} ms",
            f"{m['requests']} small uploads ({m['bytes_each']:,} bytes) at {m['offered_rate']}/s "
            f"open loop: p50 {m['p50_ms']} ms, p95 {m['p95_ms']} ms, p99 {m['p99_ms']} ms, "
            f"max {m['max_ms']} ms; statuses {m['statuses']}",
        ]
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.uploads", description=__doc__.splitlines()[0])
    p.add_argument("--concurrent", type=int, default=20, help="big uploads at once (20)")
    p.add_argument("--big-mib", type=int, default=25, help="size of a big upload (25)")
    p.add_argument("--single", type=int, default=20, help="sequential big uploads (20)")
    p.add_argument("--small", type=int, default=1000, help="small uploads (1000)")
    p.add_argument("--rate", type=float, default=50.0, help="small uploads per s (50)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="bench-uploads-") as tmp:
        print(render(run(args, Path(tmp))))


if __name__ == "__main__":
    main()
