"""The peer baseline's API: the seed's architecture in its minimal form. POST /jobs inserts
the row (PENDING) in PostgreSQL, commits, then enqueues a Celery task on Redis and answers
202; GET /jobs lists jobs by status. No authentication, rate limit, idempotency or backlog
check, so its latency is a lower bound for this design.

    BENCH_DATABASE_URL=... BENCH_REDIS_URL=... uvicorn bench.peer_app:app
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Query
from guideline_core import db
from guideline_core.resource import MAX_GUIDELINE_CHARS, Phase, new_event_id
from pydantic import BaseModel, Field

from bench.peer_worker import run_job

app = FastAPI(title="peer baseline")
database = db.Database(os.environ.get("BENCH_DATABASE_URL", ""), maxconn=20)


class Submission(BaseModel):
    guideline_text: str = Field(min_length=1, max_length=MAX_GUIDELINE_CHARS)
    title: str | None = None


@app.post("/jobs", status_code=202)
def submit(body: Submission) -> dict[str, Any]:
    """Record the job, then queue it."""
    event_id = new_event_id()
    with database.connection() as conn:
        db.insert_job(
            conn,
            db.NewJob(
                event_id=event_id,
                namespace="peer",
                guideline_text=body.guideline_text,
                title=body.title,
                submitted_by="bench",
            ),
        )
    run_job.apply_async(args=[str(event_id)])
    return {"event_id": str(event_id), "status": "PENDING"}


@app.get("/jobs")
def list_jobs(status: str = Query("PENDING"), limit: int = Query(50, le=200)) -> dict[str, Any]:
    """Jobs of one status, newest first (no paging: the bench's runs are small)."""
    with database.connection() as conn:
        rows = db.list_jobs(conn, status=Phase(status), limit=limit)
    return {
        "items": [
            {"event_id": str(r["event_id"]), "status": r["status"], "result": r["result"]}
            for r in rows
        ],
        "next_cursor": None,
    }
