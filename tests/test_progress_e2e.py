"""Progress end to end: the real API (uvicorn, where the runner pods fetch their job's text),
control plane, operator and runner pods,
with the fake LLM answering each call slowly. While a long guideline's job runs, GET
/v1/jobs/{id} shows its progress advance and the event stream sends it as `progress`
events between the status events, in one id sequence; the counts end at the calls the
fake really received."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from guideline_core.splitting import checklist_sections
from support.api import ALICE_KEY, auth, submit
from support.cluster import LocalCluster, wait_for
from support.events import StreamReader, stored_ids
from test_runner_chain import sectioned_guideline

pytestmark = [pytest.mark.cluster, pytest.mark.node]

CHUNK_CHARS = 600


def test_progress_advances_while_a_job_runs_and_is_streamed(
    make_stack: Any, cluster: LocalCluster
) -> None:
    text = sectioned_guideline(24)
    stack = make_stack(
        runner={
            "GUIDELINE_CHUNK_CHARS": str(CHUNK_CHARS),
            "GUIDELINE_LLM_CONCURRENCY": "2",
            "GUIDELINE_PROGRESS_INTERVAL_SECONDS": "0.5",
        },
        script={
            "summary": "part {call}.",
            "combine": "Combined.",
            "checklist": "obligations",
            "latency": 0.4,
        },
    )
    with stack.api_server() as url:
        event_id = submit(url, text)
        reader = StreamReader(url, event_id, ALICE_KEY)
        shown: list[dict[str, int]] = []

        def finished() -> dict[str, Any] | None:
            job = httpx.get(f"{url}/jobs/{event_id}", headers=auth()).json()
            assert job["status"] in ("PENDING", "PROCESSING", "COMPLETED"), job
            counts = job["progress"] if job["status"] == "PROCESSING" else None
            if counts is not None and (not shown or shown[-1] != counts):
                shown.append(counts)
            if job["status"] != "PROCESSING":
                assert job["progress"] is None
            return job if job["status"] == "COMPLETED" else None

        try:
            done = wait_for(finished, timeout=180, interval=0.2, message="COMPLETED")
            events = reader.until_end(timeout=60)
        finally:
            reader.close()
        history = httpx.get(f"{url}/jobs/{event_id}?include=history", headers=auth()).json()

    assert stack.fake is not None
    calls = len(stack.fake.requests())
    sections = len(checklist_sections(text, CHUNK_CHARS))
    assert sections > 4 and calls > sections
    # Seen advancing through GET while it ran, never past its totals.
    assert len(shown) >= 3, shown
    done_counts = [p["calls_done"] for p in shown]
    assert done_counts == sorted(done_counts) and done_counts[0] < done_counts[-1]
    assert all(p["sections_total"] == sections for p in shown)
    assert all(p["calls_done"] <= p["calls_total"] <= calls for p in shown)
    # The stream: progress events between PROCESSING and COMPLETED, ids in one sequence,
    # fewer than one per call (throttled), the last one the whole count.
    kinds = [e.event for e in events]
    progress = [e.data["progress"] for e in events if e.event == "progress"]
    assert [e.data["status"] for e in events if e.event == "status"][-1] == "COMPLETED"
    assert kinds.index("progress") > [e.data["status"] for e in events].index("PROCESSING")
    assert kinds[-1] == "status" and len(progress) >= 3
    assert len(progress) < calls
    assert progress[-1] == {
        "sections_done": sections,
        "sections_total": sections,
        "calls_done": calls,
        "calls_total": calls,
    }
    assert [int(e.id) for e in events] == stored_ids(stack.database, event_id)
    # The history is the status changes only; the result is the job's.
    assert [h["status"] for h in history["history"]] == ["PENDING", "PROCESSING", "COMPLETED"]
    assert (
        done["result"]["usage"]["summarize"]["calls"]
        + done["result"]["usage"]["checklist"]["calls"]
        == calls
    )
