"""Section `reads`: GET latency with a large `jobs` table.

The rows are generated in the database (INSERT ... SELECT over generate_series), one every
25 seconds of the past: 80 % COMPLETED with a result of typical size, 10 % FAILED, 5 %
CANCELLED, 4 % PROCESSING, 1 % PENDING. Then, open loop at each rate:
- `get COMPLETED`: GET /jobs/{event_id} of random COMPLETED jobs (primary-key lookup);
- `get PENDING`: GET /jobs/{event_id} of random PENDING jobs (adds the queue position and
  the counts per status);
- `list COMPLETED` / `list PENDING`: GET /jobs?status=... (first page of 50).
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import httpx

from bench.env import Environment
from bench.loadgen import open_loop

RESULT = {
    "summary": (
        "All staff must clean their hands before and after every patient contact, wear "
        "gloves and aprons for contact with body fluids, and change them between patients. "
    )
    * 4,
    "checklist": [
        {
            "item": f"Checklist action number {i}: do the thing right",
            "priority": "high",
            "category": "hygiene",
        }
        for i in range(10)
    ],
    "provider": "openai",
    "model": "fake-model",
    "usage": {"summarize": {"prompt_tokens": 900, "completion_tokens": 200, "calls": 1}},
    "durations": {"summarize": 2.0, "checklist": 2.0},
}
ERROR = {"reason": "BackoffLimitExceeded", "message": "the runner failed 4 attempt(s)"}


def seed(env: Environment, rows: int) -> dict[str, int]:
    """Insert `rows` jobs directly in the database; returns rows per status."""
    from guideline_core import db

    database = db.Database(env.database_url)
    try:
        with database.connection() as conn, conn.cursor() as cur:
            cur.execute(
                """
                INSERT INTO jobs (event_id, namespace, cr_name, status, title, guideline_text,
                                  model, provider, attempts, result, error, submitted_by,
                                  created_at, updated_at, started_at, completed_at)
                SELECT gen_random_uuid(), %(ns)s, 'gj-' || i, s.status, 'Guideline ' || i,
                       repeat(md5(i::text), 32), 'fake-model', 'openai',
                       CASE WHEN s.status = 'PENDING' THEN 0 ELSE 1 END,
                       CASE WHEN s.status = 'COMPLETED' THEN %(result)s::jsonb END,
                       CASE WHEN s.status IN ('FAILED', 'CANCELLED') THEN %(error)s::jsonb END,
                       'bench', t, t, t + interval '1 second',
                       CASE WHEN s.status IN ('COMPLETED', 'FAILED', 'CANCELLED')
                            THEN t + interval '5 seconds' END
                  FROM generate_series(1, %(rows)s) AS i,
                       LATERAL (SELECT now() - i * interval '25 seconds' AS t) AS ts,
                       LATERAL (SELECT CASE WHEN i %% 100 < 80 THEN 'COMPLETED'
                                            WHEN i %% 100 < 90 THEN 'FAILED'
                                            WHEN i %% 100 < 95 THEN 'CANCELLED'
                                            WHEN i %% 100 < 99 THEN 'PROCESSING'
                                            ELSE 'PENDING' END AS status) AS s
                """,
                {
                    "ns": env.ops.namespace,
                    "rows": rows,
                    "result": json.dumps(RESULT),
                    "error": json.dumps(ERROR),
                },
            )
            cur.execute("ANALYZE jobs")
            return db.count_by_status(conn)
    finally:
        database.close()


def sample_ids(env: Environment, status: str, count: int = 2000) -> list[str]:
    """Random event_ids of one status."""
    from guideline_core import db

    database = db.Database(env.database_url)
    try:
        with database.connection() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT event_id FROM jobs WHERE status = %s ORDER BY random() LIMIT %s",
                (status, count),
            )
            return [str(r[0]) for r in cur.fetchall()]
    finally:
        database.close()


async def get_step(env: Environment, paths: list[str], rate: float, duration: float) -> Any:
    """GET the paths (in turn) at `rate` per second."""
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
    async with httpx.AsyncClient(
        base_url=env.api_url, headers=env.headers, limits=limits, timeout=60
    ) as client:

        async def request(i: int) -> int:
            return (await client.get(paths[i % len(paths)])).status_code

        return await open_loop(rate, duration, request, timeout=60)


def run(
    env: Environment, rows: int, rates: list[float], duration: float, log: Any = print
) -> dict[str, Any]:
    """Seed the table, then every (endpoint, rate) step."""
    env.stop_operator()
    env.reset()
    counts = seed(env, rows)
    log(f"  {rows} rows: {counts}")
    rng = random.Random(1)
    completed = sample_ids(env, "COMPLETED")
    pending = sample_ids(env, "PENDING")
    rng.shuffle(completed)
    endpoints = {
        "get COMPLETED": [f"/jobs/{i}" for i in completed],
        "get PENDING": [f"/jobs/{i}" for i in pending],
        "list COMPLETED": ["/jobs?status=COMPLETED"],
        "list PENDING": ["/jobs?status=PENDING"],
    }
    records = []
    asyncio.run(get_step(env, endpoints["get COMPLETED"], 20, 1))  # warm-up
    for name, paths in endpoints.items():
        for rate in rates:
            result = asyncio.run(get_step(env, paths, rate, duration)).summary(ok=(200,))
            records.append({"endpoint": name, "rate": rate, "duration_s": duration, **result})
            log(
                f"  {name:<15} @ {rate:>4g}/s: p50 {result['p50_ms']} p95 {result['p95_ms']} "
                f"p99 {result['p99_ms']} max {result['max_ms']} ms, {result['errors']} errors"
            )
    env.reset()
    return {"rows": rows, "status_counts": counts, "steps": records}
