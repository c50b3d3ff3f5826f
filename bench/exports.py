"""`python -m bench.exports` (also the section `exports` of `python -m bench`): the time to
render each export format (guideline_api.exports) of a 500-item result, in process, from
the job as the API shows it to the bytes sent: no database, no HTTP, no LLM. The target of
issue 22 is at most 50 ms per format.

The synthetic result has what a long guideline's result carries: every item with strength,
grade with offsets, page, section (10 sections), a quote of about 200 characters, and the
review flag. Prints per format the median and worst of `repeats` renders and the size."""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from guideline_api.exports import FORMATS
from guideline_api.exports.provenance import build

QUOTE = (
    "Healthcare workers should perform hand hygiene before and after every patient "
    "contact, after removing gloves, and before handling an invasive device, using an "
    "alcohol-based hand rub unless hands are visibly soiled."
)
STRENGTHS = ("must", "should", "may", "must_not", "should_not")
GRADES = ("Strong, high-quality evidence", "Weak, low-quality evidence", "Class I, Level B")


def sample_job(items: int = 500) -> dict[str, Any]:
    """A COMPLETED job of `items` items as GET /v1/jobs/{id} shows it."""
    checklist = []
    for n in range(items):
        start = n * 400
        checklist.append(
            {
                "item": f"Item {n}: perform hand hygiene before patient contact ({n})",
                "priority": ("high", "medium", "low")[n % 3],
                "category": f"category {n % 7}",
                "source": {
                    "quote": QUOTE,
                    "start": start,
                    "end": start + len(QUOTE),
                    "match": "exact",
                },
                "grounded": True,
                "strength": STRENGTHS[n % len(STRENGTHS)],
                "grade": {
                    "text": GRADES[n % len(GRADES)],
                    "start": start + 250,
                    "end": start + 280,
                },
                "page": 1 + n // 5,
                "section": [f"{1 + n // 50} Section {1 + n // 50}", f"{n % 50} Subsection"],
            }
        )
    return {
        "event_id": "0193d6a4-7f3e-7c2a-9b1d-2f6e8a4c5b10",
        "status": "COMPLETED",
        "title": "Bench guideline",
        "created_at": "2026-01-01T00:00:00Z",
        "completed_at": "2026-01-01T00:05:00Z",
        "provider": "extractive",
        "model": "extractive-v1",
        "result": {
            "summary": "A long guideline. " * 50,
            "checklist": checklist,
            "needs_review": True,
            "review": {"reasons": ["coverage 0.8 is below 0.9"]},
        },
    }


def _timed(render: Callable[[], bytes], repeats: int) -> tuple[list[float], list[float], int]:
    """Wall and CPU milliseconds of each render (CPU: this process's own, which other load
    on the machine does not inflate as much as the wall clock), and the size."""
    wall, cpu, size = [], [], 0
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        size = len(render())
        cpu.append((time.process_time() - started_cpu) * 1000)
        wall.append((time.perf_counter() - started) * 1000)
    return wall, cpu, size


def run(items: int, repeats: int, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Median and worst render time of each format (build of the export included)."""
    job = sample_job(items)
    digest = "0" * 64
    rows = []
    for name, fmt in FORMATS.items():

        def render(fmt: Any = fmt) -> bytes:
            return fmt.render(build(job, digest, "2026-01-01T00:06:00Z"))

        render()  # warm: imports, caches
        wall, cpu, size = _timed(render, repeats)
        row = {
            "format": name,
            "items": items,
            "median_ms": round(statistics.median(wall), 1),
            "max_ms": round(max(wall), 1),
            "cpu_median_ms": round(statistics.median(cpu), 1),
            "bytes": size,
        }
        log(
            f"{name:6} wall median {row['median_ms']:7.1f} ms, max {row['max_ms']:7.1f} ms; "
            f"CPU median {row['cpu_median_ms']:6.1f} ms; {size:>9} bytes"
        )
        rows.append(row)
    return rows


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.exports", description=__doc__)
    parser.add_argument("--items", type=int, default=500, help="items in the result (500)")
    parser.add_argument("--repeats", type=int, default=30, help="renders per format (30)")
    args = parser.parse_args()
    print(f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    run(args.items, args.repeats)


if __name__ == "__main__":
    main()
