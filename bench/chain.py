"""The chain on a long guideline against the fake LLM answering each call after a fixed
latency (in process, no cluster): wall time against the sum of call times (the overlap
of a job's concurrent calls), LLM calls and tokens, at each concurrency asked for. Run
alone: `python -m bench.chain` (`--help` for the knobs)."""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

from guideline_core.settings import RunnerSettings
from guideline_core.splitting import checklist_sections, map_parts
from guideline_runner.chain import run_chain
from guideline_runner.chain.time_budget import soft_timeout
from guideline_runner.providers import make_provider
from support.fake_llm import FakeLLM


def long_guideline(chars: int) -> str:
    """Headed sections of numbered obligations, about `chars` characters."""
    sections, size, n = [], 0, 0
    while size < chars:
        rules = " ".join(
            f"Operators must check valve {n}-{k} before each shift." for k in range(40)
        )
        section = f"# Section {n}\n\n{rules}\n\n"
        sections.append(section)
        size += len(section)
        n += 1
    return "".join(sections)


def measure(text: str, latency: float, concurrency: int) -> dict[str, Any]:
    """One run of the chain over `text` with `concurrency` calls in flight."""
    with FakeLLM({"latency": latency, "checklist": "obligations"}) as fake:
        settings = RunnerSettings(
            provider="openai",
            model="fake-model",
            openai_api_key="sk-bench",
            openai_base_url=fake.base_url,
            llm_concurrency=concurrency,
            fallback_to_extractive=False,
        )
        provider = make_provider(settings)
        started = time.perf_counter()
        try:
            result = run_chain(text, settings, provider)
        finally:
            provider.close()
        wall = time.perf_counter() - started
        calls = fake.requests()
    busy = sum(c["answered"] - c["time"] for c in calls)
    return {
        "concurrency": concurrency,
        "wall_s": round(wall, 2),
        "sum_of_call_times_s": round(busy, 2),
        "overlap": round(busy / wall, 2),
        "llm_calls": len(calls),
        "max_in_flight": max(c["in_flight"] for c in calls),
        "total_tokens": sum(u.total_tokens for u in result.usage.values()),
        "soft_timeout_s": soft_timeout(text, settings),
        "items": len(result.checklist),
        "capped": result.quality.capped.model_dump() if result.quality.capped else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=1_000_000)
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per LLM call")
    parser.add_argument("--concurrency", default="4,1", help="comma-separated")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    text = long_guideline(args.chars)
    chunk = RunnerSettings().chunk_chars
    print(
        f"{len(text)} characters: {len(map_parts(text, chunk))} parts, "
        f"{len(checklist_sections(text, chunk))} sections; {args.latency} s a call"
    )
    for concurrency in (int(c) for c in args.concurrency.split(",")):
        print(json.dumps(measure(text, args.latency, concurrency)))


if __name__ == "__main__":
    main()
