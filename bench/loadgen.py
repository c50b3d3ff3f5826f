"""An open-loop load generator: requests fire on a fixed schedule (rate x duration) whether
or not earlier ones have been answered, and each latency is measured from its *scheduled*
time, so queueing anywhere (client, server, database, API server) shows in the figures
instead of silently lowering the offered rate (the coordinated-omission trap of
closed-loop generators)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One request: when it was due (s after the step start), its latency from then, its
    status (0: no answer: error or timeout), and how late the generator sent it."""

    due: float
    latency: float
    status: int
    send_lag: float
    done_at: float  # wall clock (time.time()) of the answer


@dataclass
class StepResult:
    """All requests of one (rate, duration) step."""

    rate: float
    duration: float
    samples: list[Sample]

    def summary(self, ok: Sequence[int] = (200, 201, 202)) -> dict[str, Any]:
        """Counts, percentiles (ms) of the successful answers, errors and rates."""
        good = [s for s in self.samples if s.status in ok]
        return summarize(
            [s.latency for s in good],
            requests=len(self.samples),
            ok=len(good),
            errors=len(self.samples) - len(good),
            statuses=dict(sorted(Counter(s.status for s in self.samples).items())),
            offered_rate=self.rate,
            sent_rate=_rate(len(self.samples), [s.due + s.send_lag for s in self.samples]),
            achieved_rate=_rate(len(good), [s.due + s.latency for s in good]),
            max_send_lag_ms=round(max((s.send_lag for s in self.samples), default=0) * 1000, 1),
        )


def _rate(count: int, ends: list[float]) -> float:
    """Completions per second from the step start to the last completion."""
    return round(count / max(ends), 1) if ends and max(ends) > 0 else 0.0


def summarize(latencies: Sequence[float], **extra: Any) -> dict[str, Any]:
    """p50/p95/p99/max/mean in milliseconds (None when there is nothing to summarize)."""
    out: dict[str, Any] = dict(extra)
    if latencies:
        ms = np.asarray(latencies) * 1000.0
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        out.update(
            p50_ms=round(float(p50), 1),
            p95_ms=round(float(p95), 1),
            p99_ms=round(float(p99), 1),
            max_ms=round(float(ms.max()), 1),
            mean_ms=round(float(ms.mean()), 1),
        )
    else:
        out.update(p50_ms=None, p95_ms=None, p99_ms=None, max_ms=None, mean_ms=None)
    return out


async def open_loop(
    rate: float,
    duration: float,
    request: Callable[[int], Awaitable[int]],
    *,
    timeout: float = 60.0,
) -> StepResult:
    """Call `request(i)` for i = 0 .. rate*duration-1, the i-th at start + i/rate; each
    returns an HTTP-like status. A request that raises or exceeds `timeout` counts as 0."""
    loop = asyncio.get_running_loop()
    count = max(1, round(rate * duration))
    start = loop.time() + 0.05
    samples: list[Sample | None] = [None] * count

    async def one(i: int, due: float) -> None:
        sent = loop.time()
        try:
            status = await asyncio.wait_for(request(i), timeout)
        except Exception:
            status = 0
        now = loop.time()
        samples[i] = Sample(due - start, now - due, status, sent - due, time.time())

    tasks = []
    for i in range(count):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    return StepResult(rate, duration, [s for s in samples if s is not None])
