"""`python -m bench.slowheaders`: the API under slow-headers and large-header clients, and
what bounding request heads costs a submission.

Starts a throw-away PostgreSQL and the API (`guideline-api`'s server configuration,
`uvicorn_config`, as the image runs it: uvloop, httptools with the head bounds of
`guideline_api.http.heads`; a dead Kubernetes and no dispatcher, so only the API is measured)
on loopback. Then, each bounded in time:

- `idle`: the API's RSS, and /health/live answer times (a new connection per probe, as a
  kubelet makes them) every 0.2 s for 5 s;
- `slow heads`: `--connections` (256) connections each send a request line, then one
  header byte every second for `--seconds` (15; the head deadline is 10 s); meanwhile RSS
  every 0.5 s and /health/live every 0.2 s; how each slow connection ended (408, closed);
- `large heads`: 4 connections each send 4 MiB of one header as fast as they can, and hold
  it unfinished for 3 s (the issue's attack): RSS and what they got;
- the same three against uvicorn's plain httptools protocol (what ran before the bounds);
- `parsers`: against the bounded httptools protocol, plain httptools (uvicorn's default:
  no bounds) and h11, 1,000 sequential POST /v1/jobs over one keep-alive connection
  (median and p95 answer times, the server's CPU per request), then 5,000 GETs of an app
  that answers at once (the HTTP layer's own CPU per request).

Figures only, nothing asserted. `--serve KIND` is internal (the server of one variant).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from support.net import free_port

from bench.env import Process, base_env, wait_http

KINDS = ("bounded", "httptools", "h11")


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app that answers 200 at once: what is left is the HTTP layer's own cost."""
    if scope["type"] == "http":
        headers = [(b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def serve(kind: str) -> None:
    """Serve the API (`bare-` kinds: `bare_app`) from GUIDELINE_* variables with the `kind`
    HTTP implementation."""
    import uvicorn
    from guideline_api.app import create_app
    from guideline_api.main import uvicorn_config
    from guideline_core.settings import ApiSettings

    settings = ApiSettings()
    bare, kind = kind.startswith("bare-"), kind.removeprefix("bare-")
    config = uvicorn_config(bare_app if bare else create_app(settings), settings)
    if kind != "bounded":  # what uvicorn does by itself with the same settings
        config.http = kind
        config.h11_max_incomplete_event_size = settings.max_header_bytes
    uvicorn.Server(config).run()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def api_server(kind: str, database_url: str, workdir: Path) -> Iterator[tuple[str, Process]]:
    from support.api import KEY_HASHES, dead_kubeconfig

    port = free_port()
    env = base_env() | {
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        "GUIDELINE_DATABASE_URL": database_url,
        "GUIDELINE_HOST": "127.0.0.1",
        "GUIDELINE_PORT": str(port),
        "GUIDELINE_API_KEY_HASHES": KEY_HASHES,
        "GUIDELINE_KUBECONFIG": str(dead_kubeconfig(workdir)),
        "GUIDELINE_DISPATCHER_ENABLED": "false",
        "GUIDELINE_RATE_LIMIT_PER_MINUTE": "0",
        "GUIDELINE_MAX_PENDING_JOBS": "10000000",
        "GUIDELINE_TENANT_MAX_PENDING_JOBS": "10000000",
        "GUIDELINE_LOG_LEVEL": "WARNING",
    }
    argv = [sys.executable, "-m", "bench.slowheaders", "--serve", kind]
    process = Process(f"api-{kind}", argv, env, workdir, workdir)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health/live", alive=process.alive)
        yield url, process
    finally:
        process.stop()


class Probe(threading.Thread):
    """/health/live every `interval` on a new connection, and the API's RSS every 0.5 s."""

    def __init__(self, url: str, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.pid, self.interval = pid, interval
        self.times: list[float] = []
        self.codes: Counter[str] = Counter()
        self.rss: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        last_rss = 0.0
        while not self.done.is_set():
            if time.monotonic() - last_rss >= 0.5:
                self.rss.append(rss_mib(self.pid))
                last_rss = time.monotonic()
            start = time.perf_counter()
            connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
            try:
                connection.request("GET", "/health/live")
                code = str(connection.getresponse().status)
            except OSError as exc:
                code = type(exc).__name__
            finally:
                connection.close()
            self.times.append(time.perf_counter() - start)
            self.codes[code] += 1
            self.done.wait(self.interval)

    def figures(self) -> dict[str, Any]:
        self.done.set()
        self.join()
        ms = sorted(t * 1000 for t in self.times)
        return {
            "rss_mib_max": round(max(self.rss), 1),
            "live_codes": dict(self.codes),
            "live_ms_p50": round(statistics.median(ms), 1),
            "live_ms_p95": round(ms[int(len(ms) * 0.95) - 1], 1),
            "live_ms_max": round(ms[-1], 1),
        }


async def slow_head(port: int, seconds: float, ends: Counter[str]) -> None:
    """A request line, then a header byte every second; how the server ended it."""
    start = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        ends[f"connect failed ({type(exc).__name__})"] += 1
        return
    try:
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: api\r\nX-Slow: ")
        while time.monotonic() - start < seconds:
            read = asyncio.ensure_future(reader.read(4096))
            done, _ = await asyncio.wait({read}, timeout=1.0)
            if done:
                answer = read.result()
                status = answer.split(b" ", 2)[1].decode() if answer else "closed"
                ends[f"{status} after {int(time.monotonic() - start)} s"] += 1
                return
            read.cancel()
            writer.write(b"a")
            await writer.drain()
        ends["still open at the end"] += 1
    except OSError as exc:
        ends[f"{type(exc).__name__} after {int(time.monotonic() - start)} s"] += 1
    finally:
        writer.close()


async def large_head(port: int, ends: Counter[str], hold: float = 3.0) -> None:
    """4 MiB of one header sent as fast as the server takes it, then held unfinished."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: api\r\nX-Big: ")
        for _ in range(64):
            writer.write(b"a" * 65536)
            await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), hold)
        ends[answer.split(b" ", 2)[1].decode() if answer else "closed"] += 1
    except TimeoutError:
        ends[f"4 MiB held unanswered for {hold:g} s"] += 1
    except OSError as exc:
        ends[f"refused mid-send ({type(exc).__name__})"] += 1
    finally:
        writer.close()


def under_load(url: str, pid: int, attack: Any) -> dict[str, Any]:
    probe = Probe(url, pid)
    probe.start()
    ends: Counter[str] = Counter()
    asyncio.run(attack(ends))
    return {**probe.figures(), "attackers": dict(ends)}


def submissions(url: str, pid: int, count: int = 1000) -> dict[str, Any]:
    from support.api import ALICE_KEY

    body = {"guideline_text": "Wash hands before and after every patient contact. " * 40}
    headers = {"Authorization": f"Bearer {ALICE_KEY}"}
    times = []
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for _ in range(20):  # warm up
            client.post("/v1/jobs", json=body).raise_for_status()
        cpu = cpu_seconds(pid)
        for _ in range(count):
            start = time.perf_counter()
            client.post("/v1/jobs", json=body).raise_for_status()
            times.append(time.perf_counter() - start)
        cpu = cpu_seconds(pid) - cpu
    ms = sorted(t * 1000 for t in times)
    return {
        "post_ms_p50": round(statistics.median(ms), 2),
        "post_ms_p95": round(ms[int(len(ms) * 0.95) - 1], 2),
        "server_cpu_ms_per_post": round(cpu / count * 1000, 2),
    }


def bare_requests(url: str, pid: int, count: int = 5000) -> dict[str, Any]:
    """`count` GETs over one keep-alive connection: the server's CPU per request."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    head = {"User-Agent": "bench", "Accept": "*/*", "Authorization": "Bearer x" * 4}
    cpu = cpu_seconds(pid)
    start = time.perf_counter()
    for _ in range(count):
        connection.request("GET", "/health/live?x=1", headers=head)
        connection.getresponse().read()
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds(pid) - cpu
    connection.close()
    return {
        "requests_per_s": round(count / elapsed),
        "server_cpu_us_per_request": round(cpu / count * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.slowheaders")
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=15.0)
    kinds = [*KINDS, *(f"bare-{kind}" for kind in KINDS)]
    parser.add_argument("--serve", choices=kinds, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    from support.pg import PgServer

    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="slowheaders-") as tmp,
        PgServer(Path(tmp) / "pg") as pg,
    ):
        workdir = Path(tmp)
        database_url = pg.create_database("guideline")
        # Bounded as served, then uvicorn's plain httptools (before the bounds) for contrast.
        for kind in ("bounded", "httptools"):
            with api_server(kind, database_url, workdir) as (url, api):
                port = int(url.rsplit(":", 1)[1])
                results[f"{kind}: idle"] = under_load(url, api.pid, lambda e: asyncio.sleep(5))

                async def slow(ends: Counter[str], port: int = port) -> None:
                    heads = [slow_head(port, args.seconds, ends) for _ in range(args.connections)]
                    await asyncio.gather(*heads)

                results[f"{kind}: slow heads"] = under_load(url, api.pid, slow)

                async def large(ends: Counter[str], port: int = port) -> None:
                    await asyncio.gather(*(large_head(port, ends) for _ in range(4)))

                results[f"{kind}: large heads"] = under_load(url, api.pid, large)
                results[f"{kind}: rss_mib_after"] = round(rss_mib(api.pid), 1)
        for kind in KINDS:
            with api_server(kind, database_url, workdir) as (url, api):
                results[f"parser {kind}: POST /v1/jobs"] = submissions(url, api.pid)
            with api_server(f"bare-{kind}", database_url, workdir) as (url, api):
                results[f"parser {kind}: bare app"] = bare_requests(url, api.pid)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
