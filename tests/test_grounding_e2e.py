"""Versions of a guideline end to end: the real API (a uvicorn server where the pods reach
it: they fetch their job's text from it) and control plane, the operator, runner pods on
the real node with the chunk cache (its Secret holding the URL of
a database on a PostgreSQL server the pods reach, as the cache role; the operator gives
the pods their job's tenant, the cache's key), the fake LLM. A long guideline is
submitted, then a version with one section edited that supersedes it: only the changed
parts and the combine step reach the LLM again, the usage counts the calls saved, and
reading the new job shows its changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from guideline_core.splitting import checklist_sections
from guideline_runner.text import content_chunks
from support.api import api_http, auth, submit
from support.cluster import LocalCluster, wait_for
from support.fake_llm import user_text
from support.pg import PgServer
from support.stack import Stack
from test_chunk_cache import CHUNK_CHARS, long_guideline

pytestmark = [pytest.mark.cluster, pytest.mark.node]


@pytest.fixture
def pod_database(cluster: LocalCluster, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A fresh migrated database on a server that also listens where pods reach it: its
    URL for this host and the same database's URL for the runner pods, as the cache role
    (which may only SELECT and INSERT chunk_summaries)."""
    with PgServer(tmp_path / "pg", pod_host=cluster.pod_host) as server:
        url = server.create_database("grounding")
        yield url, server.cache_role_url("grounding", host=cluster.pod_host)


@pytest.fixture
def stack(cluster: LocalCluster, pod_database: tuple[str, str], tmp_path: Path) -> Iterator[Stack]:
    database_url, pods_database_url = pod_database
    checklist = [
        {
            "item": "Check every valve before the shift",
            "priority": "high",
            "category": "valves",
            "quote": "the operator must check valve 0-0 before the shift starts.",
        },
        {
            "item": "Have valve checks countersigned",
            "priority": "high",
            "category": "valves",
            "quote": "From now on the check must also be signed by a second operator.",
        },
    ]
    with Stack(
        cluster,
        database_url,
        tmp_path / "stack",
        runner={"GUIDELINE_CHUNK_CHARS": str(CHUNK_CHARS)},
        script={"summary": "part summary {call}.", "combine": "COMBINED.", "checklist": checklist},
    ) as started:
        started.enable_chunk_cache(pods_database_url)
        yield started


@pytest.fixture
def api(stack: Stack) -> Iterator[httpx.Client]:
    with stack.api_server() as url, api_http(url) as client:
        yield client


def completed(api: httpx.Client, event_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = api.get(f"/jobs/{event_id}", headers=auth()).json()
        assert job["status"] in ("PENDING", "PROCESSING", "COMPLETED"), job
        return job if job["status"] == "COMPLETED" else None

    return wait_for(done, timeout=180, interval=0.5, message=f"{event_id} COMPLETED")


def parts_sent(stack: Stack) -> list[str]:
    assert stack.fake is not None
    return [
        user_text(r["body"]).split("<guideline>\n", 1)[1].rsplit("\n</guideline>", 1)[0]
        for r in stack.fake.requests("summarize")
    ]


def test_a_new_version_reuses_unchanged_chunks_and_shows_its_changes(
    stack: Stack, api: httpx.Client
) -> None:
    original, edited = long_guideline(), long_guideline(edited_section=11)
    new_parts = [p.strip() for p in content_chunks(edited, CHUNK_CHARS)]
    changed = set(new_parts) - {p.strip() for p in content_chunks(original, CHUNK_CHARS)}

    v1 = completed(api, submit(api, original, title="v1"))
    assert v1["result"]["chunk_cache"]["stored"] == len(parts_sent(stack))
    assert v1["result"]["checklist"][1]["grounded"] is False  # v1 says nothing of signing
    assert stack.fake is not None
    stack.fake.reset()

    v2 = completed(api, submit(api, edited, title="v2", supersedes=v1["event_id"]))

    assert set(parts_sent(stack)) == changed and len(parts_sent(stack)) == len(changed)
    assert stack.fake.requests("combine")
    assert len(stack.fake.requests("checklist")) == len(checklist_sections(edited, CHUNK_CHARS))
    result = v2["result"]
    assert result["usage"]["summarize"]["calls_saved"] == len(new_parts) - len(changed)
    assert result["chunk_cache"]["hits"] == len(new_parts) - len(changed)
    assert v2["supersedes"] == v1["event_id"]
    changes = result["changes"]
    assert changes["available"] is True and changes["supersedes"] == v1["event_id"]
    # The countersigning item is grounded now: it was ungrounded (no passage) before, so
    # it is matched by its wording and changed (its source appeared).
    assert [c["after"]["item"] for c in changes["changed"]] == ["Have valve checks countersigned"]
    assert changes["unchanged"] == 1 and not changes["added"] and not changes["removed"]
    # The new sentence is an obligation no item covered before... it is covered now.
    assert all("second operator" not in p["text"] for p in changes["newly_uncovered"])
