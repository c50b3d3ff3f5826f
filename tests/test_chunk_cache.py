"""The per-chunk summary cache in a real PostgreSQL, with the fake LLM: a long guideline
is summarized in parts; after one section is edited only the parts that changed and the
combine step go to the LLM again, and the usage says how many calls were saved. Also: a
role that may only SELECT and INSERT chunk_summaries is enough, a cache that cannot be
reached never fails a job, and without the setting there is no cache (and usage says so)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from guideline_core import summary_cache
from guideline_core.settings import RunnerSettings
from guideline_runner.chain import run_chain
from guideline_runner.chunk_cache import DISABLED_NOTE, ChunkCache
from guideline_runner.providers import make_provider
from guideline_runner.providers.prompts import SUMMARIZE_PROMPT_VERSION
from guideline_runner.text import content_chunks
from support.fake_llm import FakeLLM, user_text

CHUNK_CHARS = 3000


def long_guideline(edited_section: int | None = None) -> str:
    sections = []
    for n in range(40):
        rules = " ".join(
            f"Rule {n}.{k}: the operator must check valve {n}-{k} before the shift starts."
            for k in range(4 + n % 5)
        )
        if n == edited_section:
            rules += " From now on the check must also be signed by a second operator."
        sections.append(f"## Section {n}\n\n{rules}")
    return "\n\n".join(sections)


@pytest.fixture
def cache_url(database: Any, postgres_url: str) -> str:
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE chunk_summaries")
    return postgres_url


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    with FakeLLM({"summary": "summary of part, call {call}.", "combine": "COMBINED"}) as server:
        yield server


def run(fake: FakeLLM, text: str, url: str | None, model: str = "fake-model-1"):
    settings = RunnerSettings(
        provider="openai",
        model=model,
        openai_api_key="sk-test-cache",
        openai_base_url=fake.base_url,
        chunk_chars=CHUNK_CHARS,
        soft_timeout_seconds=60.0,
    )
    provider = make_provider(settings)
    cache = ChunkCache(url, provider.model, SUMMARIZE_PROMPT_VERSION)
    try:
        return run_chain(text, settings, provider, cache=cache)
    finally:
        provider.close()
        cache.close()


def sent_parts(fake: FakeLLM) -> list[str]:
    return [
        user_text(r["body"]).split("<guideline>\n", 1)[1].rsplit("\n</guideline>", 1)[0]
        for r in fake.requests("summarize")
    ]


def test_only_changed_chunks_and_the_reduce_step_are_sent_again(
    fake: FakeLLM, cache_url: str
) -> None:
    original, edited = long_guideline(), long_guideline(edited_section=11)
    old_parts = [p.strip() for p in content_chunks(original, CHUNK_CHARS)]
    new_parts = [p.strip() for p in content_chunks(edited, CHUNK_CHARS)]
    changed = [p for p in new_parts if p not in old_parts]
    assert len(new_parts) >= 6 and 1 <= len(changed) <= 2  # the edit stays local

    first = run(fake, original, cache_url)
    assert sorted(sent_parts(fake)) == sorted(old_parts)
    assert first.chunk_cache.model_dump() == {
        "enabled": True,
        "chunks": len(old_parts),
        "hits": 0,
        "stored": len(old_parts),
        "note": None,
    }
    fake.reset()

    second = run(fake, edited, cache_url)

    assert sent_parts(fake) == changed  # only what the edit touched
    assert "signed by a second operator" in "".join(sent_parts(fake))
    assert fake.requests("combine"), "the reduce step always runs"
    assert len(fake.requests("checklist")) == 1
    usage = second.usage["summarize"]
    assert usage.calls_saved == len(new_parts) - len(changed)
    assert usage.calls == len(changed) + len(fake.requests("combine"))
    assert second.chunk_cache.hits == len(new_parts) - len(changed)
    assert second.to_status()["usage"]["summarize"]["calls_saved"] == usage.calls_saved


def test_the_key_holds_the_model_and_the_prompt_version(fake: FakeLLM, cache_url: str) -> None:
    text = long_guideline()
    run(fake, text, cache_url, model="fake-model-1")
    fake.reset()
    other = run(fake, text, cache_url, model="fake-model-2")
    assert other.chunk_cache.hits == 0 and len(sent_parts(fake)) == other.chunk_cache.chunks

    conn = summary_cache.connect(cache_url)
    try:
        part = content_chunks(text, CHUNK_CHARS)[0].strip()
        key = summary_cache.chunk_hash(part)
        assert summary_cache.cached_summaries(conn, [key], "fake-model-1", SUMMARIZE_PROMPT_VERSION)
        assert not summary_cache.cached_summaries(conn, [key], "fake-model-1", "summarize-v0")
        # Rows are never rewritten: the first summary of a chunk stays.
        assert not summary_cache.store_summary(
            conn, part, "fake-model-1", SUMMARIZE_PROMPT_VERSION, "another"
        )
    finally:
        conn.close()


def test_a_role_that_may_only_select_and_insert_the_cache_is_enough(
    fake: FakeLLM, cache_url: str, database: Any
) -> None:
    role = f"cache_{uuid.uuid4().hex[:8]}"
    with database.connection() as conn, conn.cursor() as cur:
        # The grants documented in docs/contracts.md ("Database").
        cur.execute(f"CREATE ROLE {role} LOGIN")
        cur.execute(f"GRANT SELECT, INSERT ON chunk_summaries TO {role}")
    limited = cache_url.replace("postgresql://guideline@", f"postgresql://{role}@")
    try:
        first = run(fake, long_guideline(), limited)
        assert first.chunk_cache.enabled and first.chunk_cache.stored == first.chunk_cache.chunks
        fake.reset()
        second = run(fake, long_guideline(), limited)
        assert second.chunk_cache.hits == second.chunk_cache.chunks and not sent_parts(fake)
        conn = psycopg2.connect(limited)
        try:
            with pytest.raises(psycopg2.errors.InsufficientPrivilege), conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM jobs")
        finally:
            conn.close()
    finally:
        with database.connection() as conn, conn.cursor() as cur:
            cur.execute(f"REVOKE ALL ON chunk_summaries FROM {role}")
            cur.execute(f"DROP ROLE {role}")


def test_an_unreachable_cache_never_fails_the_job(fake: FakeLLM) -> None:
    result = run(fake, long_guideline(), "postgresql://nobody@127.0.0.1:9/none")
    assert result.summary == "COMBINED"
    assert result.chunk_cache.enabled is False and "lookup" in (result.chunk_cache.note or "")
    assert len(sent_parts(fake)) == result.chunk_cache.chunks


def test_without_the_setting_there_is_no_cache_and_usage_says_so(fake: FakeLLM) -> None:
    result = run(fake, long_guideline(), None)
    assert result.chunk_cache.enabled is False and result.chunk_cache.note == DISABLED_NOTE
    assert result.usage["summarize"].calls_saved == 0
