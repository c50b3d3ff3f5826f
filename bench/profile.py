"""Section `profile`: where the time of one POST /jobs goes (pyinstrument).

The app runs in this process against the bench's PostgreSQL and kube-apiserver, driven
one request at a time through httpx's ASGI transport. FastAPI would run the sync endpoint
in a worker thread, out of sight of a profiler started in the main thread; so for this
section its threadpool calls run inline (the same code, on the main thread). Logging is
configured as in the server (JSON lines, INFO), written to /dev/null. What the profile
leaves out: uvicorn's HTTP parsing and the thread hand-off.

Time is attributed to the innermost Python frame, so a C call (a psycopg2 query, a
socket read) counts where it is called from; the categories below account for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.env import Environment
from bench.texts import request_bodies

CATEGORIES = (
    # (name, substrings of the innermost frame's file path), first match wins
    ("PostgreSQL round trips", ("psycopg2", "guideline_core/db/")),
    ("Kubernetes API call", ("kubernetes/", "urllib3", "http/client.py", "ssl.py", "socket.py")),
    ("pydantic", ("pydantic",)),
    ("JSON", ("json/",)),
    ("logging", ("logging/", "guideline_core/logs.py")),
    ("FastAPI/Starlette", ("fastapi", "starlette")),
    ("our API code", ("guideline_api", "guideline_core")),
    ("bench driver (httpx, asyncio)", ("httpx", "anyio", "asyncio", "h11", "bench/")),
)


@contextlib.contextmanager
def inline_threadpool() -> Iterator[None]:
    """Make FastAPI run sync endpoints and dependencies on the calling thread."""
    import fastapi.dependencies.utils as dep_utils
    import fastapi.routing as routing

    async def inline(func: Any, *args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    saved = (routing.run_in_threadpool, dep_utils.run_in_threadpool)
    routing.run_in_threadpool = inline
    dep_utils.run_in_threadpool = inline
    try:
        yield
    finally:
        routing.run_in_threadpool, dep_utils.run_in_threadpool = saved


@contextlib.contextmanager
def server_logging() -> Iterator[None]:
    """The server's JSON logging at INFO, into /dev/null."""
    from guideline_core import logs

    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    logs.configure("INFO", component="api")
    with open(os.devnull, "w") as sink:
        for handler in root.handlers:
            handler.setStream(sink)  # type: ignore[attr-defined]
        try:
            yield
        finally:
            root.handlers[:] = saved_handlers
            root.setLevel(saved_level)


def categorize(
    frame: Any,
    totals: dict[str, float],
    functions: dict[str, float],
    caller: tuple[str, str] = ("", ""),
) -> None:
    """Add each frame's self time to its category and to its function. Built-in (C)
    functions and pyinstrument's synthetic frames count where they are called from."""
    own = (frame.file_path or "").replace("\\", "/")
    if frame.is_synthetic or not own or own.startswith("<"):
        path, label = caller
        if not frame.is_synthetic:
            label = f"{frame.function} (C, called from {label})"
    else:
        path, label = own, f"{frame.function} ({frame.file_path_short}:{frame.line_no})"
    self_time = frame.time - sum(child.time for child in frame.children)
    name = next((n for n, keys in CATEGORIES if any(k in path for k in keys)), "other")
    totals[name] += self_time
    functions[label] += self_time
    for child in frame.children:
        categorize(child, totals, functions, (path, label))


def run(
    env: Environment, count: int, size: int, results_dir: Path, stamp: str, log: Any = print
) -> dict[str, Any]:
    """Time `count` POSTs without and then with the profiler; summarize the profile."""
    from guideline_api.app import create_app
    from guideline_api.auth import hash_key
    from guideline_core.settings import ApiSettings
    from pyinstrument import Profiler

    env.stop_operator()
    env.reset()
    settings = ApiSettings(
        _env_file=None,
        database_url=env.database_url,
        kubeconfig=str(env.cluster.kubeconfig),
        namespace=env.ops.namespace,
        api_key_hashes=f"bench:{hash_key(env.api_key)}",
        rate_limit_per_minute=0,
        max_pending_jobs=10_000_000,
    )
    app = create_app(settings)
    bodies = request_bodies(size, 20)

    async def drive(n: int) -> tuple[float, float]:
        """Mean wall and CPU (this process) seconds per request."""
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers=env.headers
        ) as client:
            start, cpu = time.perf_counter(), time.process_time()
            for i in range(n):
                response = await client.post("/jobs", content=bodies[i % len(bodies)])
                if response.status_code != 202:
                    raise RuntimeError(f"POST /jobs answered {response.status_code}")
            return (time.perf_counter() - start) / n, (time.process_time() - cpu) / n

    profiler = Profiler(interval=0.0005, async_mode="disabled")
    try:
        with server_logging(), inline_threadpool():
            asyncio.run(drive(20))  # warm-up
            plain, plain_cpu = asyncio.run(drive(count))
            profiler.start()
            profiled, _ = asyncio.run(drive(count))
            profiler.stop()
    finally:
        app.state.ctx.store.close()
        app.state.ctx.kube.close()
        env.reset()
    html = results_dir / f"{stamp}-profile-post-jobs.html"
    profiler.write_html(html)
    root = profiler.last_session.root_frame() if profiler.last_session else None
    totals: dict[str, float] = defaultdict(float)
    functions: dict[str, float] = defaultdict(float)
    if root is not None:
        categorize(root, totals, functions)
    whole = sum(totals.values()) or 1.0
    result = {
        "requests": count,
        "size_bytes": size,
        "mean_ms": round(plain * 1000, 2),
        "mean_ms_profiled": round(profiled * 1000, 2),
        "cpu_ms_per_request": round(plain_cpu * 1000, 2),
        "categories": {
            k: round(100 * v / whole, 1) for k, v in sorted(totals.items(), key=lambda x: -x[1])
        },
        "top_functions": [
            {"function": k, "share_pct": round(100 * v / whole, 1)}
            for k, v in sorted(functions.items(), key=lambda x: -x[1])[:15]
        ],
        "html": str(html),
        "text": profiler.output_text(unicode=False, color=False),
    }
    log(
        f"  POST /jobs in-process, {size} B: {result['mean_ms']} ms per request, "
        f"{result['cpu_ms_per_request']} ms of it CPU (this process: app and driver)"
    )
    for name, share in result["categories"].items():
        log(f"    {share:5.1f} %  {name}")
    return result
