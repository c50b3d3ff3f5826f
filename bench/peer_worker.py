"""The peer baseline's worker: a minimal Celery app on Redis that runs the same two-step
chain as our runner (`guideline_runner.chain.run_chain`, OpenAI provider, the same fake
LLM) and records the outcome in the same `jobs` table, in the usual Celery way: the task
reads the row, marks it PROCESSING, runs the chain in the worker process, writes the result.

Configured for at-least-once delivery (`acks_late`, prefetch 1), the fair setting for a
comparison about not losing work. Environment: BENCH_REDIS_URL, BENCH_DATABASE_URL,
BENCH_LLM_URL.

    celery -A bench.peer_worker worker --concurrency 4 --pool prefork
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from functools import cache
from typing import Any

from celery import Celery
from guideline_core import db
from guideline_core.resource import Phase
from guideline_core.settings import RunnerSettings

# Imported here, before the pool forks, as a deployed worker would: a task never pays them.
from guideline_runner.chain import run_chain
from guideline_runner.providers import make_provider

app = Celery("peer", broker=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@cache
def _database() -> Any:
    return db.Database(os.environ["BENCH_DATABASE_URL"], maxconn=2)


@app.task(name="peer.run_job")
def run_job(event_id: str) -> None:
    """Run one job's chain and record the result (timestamps for the bench included)."""
    started = time.time()
    eid = uuid.UUID(event_id)
    database = _database()
    with database.connection() as conn:
        text = db.get_guideline_text(conn, eid) or ""
        db.mirror_state(
            conn,
            db.JobState(eid, Phase.PROCESSING, 1, started_at=datetime.now(UTC), reason="Started"),
        )
    settings = RunnerSettings(
        _env_file=None,
        provider="openai",
        model="fake-model",
        openai_api_key="sk-bench-peer",
        openai_base_url=os.environ["BENCH_LLM_URL"],
        sdk_max_retries=1,
        request_timeout_seconds=20,
        soft_timeout_seconds=60,
    )
    provider = make_provider(settings)
    try:
        result = run_chain(text, settings, provider).to_status()
    finally:
        provider.close()
    finished = time.time()
    result["bench"] = {"started": started, "finished": finished}
    with database.connection() as conn:
        db.mirror_state(
            conn,
            db.JobState(
                eid,
                Phase.COMPLETED,
                1,
                completed_at=datetime.now(UTC),
                result=result,
                reason="Completed",
            ),
        )
