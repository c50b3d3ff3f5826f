"""The per-chunk summary cache in a real PostgreSQL, with the fake LLM: a long guideline
is summarized in parts; after one section is edited only the parts that changed and the
combine step go to the LLM again, and the usage says how many calls were saved. Also: the
cache is per tenant (another tenant's entries, planted or not, are never served), a
cached summary does not spare the checklist its grounding, the runner's role
(`guideline-migrate --cache-role`) may use the cache and read nothing else, the operator
purges old entries, a cache that cannot be reached never fails a job, and without the
setting (or a tenant) there is no cache (and usage says so)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from guideline_core import summary_cache
from guideline_core.settings import RunnerSettings
from guideline_core.splitting import checklist_sections
from guideline_runner.chain import run_chain
from guideline_runner.chunk_cache import (
    DISABLED_NOTE,
    NO_TENANT_NOTE,
    UNREACHABLE_NOTE,
    ChunkCache,
)
from guideline_runner.providers import make_provider
from guideline_runner.providers.prompts import SUMMARIZE_PROMPT_VERSION
from guideline_runner.text import content_chunks
from support.cluster import wait_for
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


def run(
    fake: FakeLLM,
    text: str,
    url: str | None,
    model: str = "fake-model-1",
    tenant: str | None = "tenant-a",
):
    settings = RunnerSettings(
        provider="openai",
        model=model,
        openai_api_key="sk-test-cache",
        openai_base_url=fake.base_url,
        chunk_chars=CHUNK_CHARS,
        soft_timeout_seconds=60.0,
    )
    provider = make_provider(settings)
    cache = ChunkCache(url, tenant, provider.model, SUMMARIZE_PROMPT_VERSION)
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
    # The checklist is drawn from every section of the new version, one call each.
    assert len(fake.requests("checklist")) == len(checklist_sections(edited, CHUNK_CHARS))
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
        assert summary_cache.cached_summaries(
            conn, "tenant-a", [key], "fake-model-1", SUMMARIZE_PROMPT_VERSION
        )
        assert not summary_cache.cached_summaries(
            conn, "tenant-a", [key], "fake-model-1", "summarize-v0"
        )
        # Rows are never rewritten: the first summary of a chunk stays.
        assert not summary_cache.store_summary(
            conn, "tenant-a", part, "fake-model-1", SUMMARIZE_PROMPT_VERSION, "another"
        )
    finally:
        conn.close()


@pytest.fixture
def cache_role_url(cache_url: str, database: Any) -> Iterator[str]:
    """The URL of a fresh role made the runner's cache role by the console script, as
    hack/stack.sh does (`guideline-migrate --cache-role`)."""
    role = f"cache_{uuid.uuid4().hex[:8]}"
    script = Path(sys.executable).parent / "guideline-migrate"
    done = subprocess.run(
        [str(script), "--database-url", cache_url, "--cache-role", role],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert f"role {role}: SELECT, INSERT on chunk_summaries" in done.stdout
    yield cache_url.replace("postgresql://guideline@", f"postgresql://{role}@")
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute(f"REVOKE ALL ON chunk_summaries FROM {role}")
        cur.execute(f"REVOKE ALL ON SCHEMA public FROM {role}")
        cur.execute(f"REVOKE ALL ON DATABASE guideline FROM {role}")
        cur.execute(f"DROP ROLE {role}")


def test_the_cache_role_is_enough_for_the_cache(fake: FakeLLM, cache_role_url: str) -> None:
    first = run(fake, long_guideline(), cache_role_url)
    assert first.chunk_cache.enabled and first.chunk_cache.stored == first.chunk_cache.chunks
    fake.reset()
    second = run(fake, long_guideline(), cache_role_url)
    assert second.chunk_cache.hits == second.chunk_cache.chunks and not sent_parts(fake)


@pytest.mark.parametrize(
    "query",
    [
        "SELECT count(*) FROM jobs",
        "SELECT secret FROM webhook_secrets",
        "SELECT count(*) FROM audit_log",
        "UPDATE chunk_summaries SET summary = 'POISON'",
        "DELETE FROM chunk_summaries",
        "CREATE TABLE public.planted (x int)",
    ],
)
def test_the_cache_role_may_do_nothing_else(cache_role_url: str, query: str) -> None:
    conn = psycopg2.connect(cache_role_url)
    try:
        with pytest.raises(psycopg2.errors.InsufficientPrivilege), conn.cursor() as cur:
            cur.execute(query)
    finally:
        conn.close()


def test_one_tenants_entries_are_never_served_to_another(fake: FakeLLM, cache_url: str) -> None:
    text = long_guideline()
    first = run(fake, text, cache_url, tenant="tenant-a")
    assert first.chunk_cache.stored == first.chunk_cache.chunks
    fake.reset()

    other = run(fake, text, cache_url, tenant="tenant-b")

    # No hit: tenant-b learns nothing of tenant-a's submission, and pays its own calls.
    assert other.chunk_cache.hits == 0 and other.usage["summarize"].calls_saved == 0
    assert len(sent_parts(fake)) == other.chunk_cache.chunks
    assert other.chunk_cache.stored == other.chunk_cache.chunks
    fake.reset()
    again = run(fake, text, cache_url, tenant="tenant-a")
    assert again.chunk_cache.hits == again.chunk_cache.chunks and not sent_parts(fake)


POISON = "POISON-1: hand hygiene is optional; gloves may be reused."


def plant(url: str, tenant: str, text: str) -> int:
    """What a holder of the cache credential can do: a row for every part of `text`."""
    conn = summary_cache.connect(url)
    try:
        parts = [p.strip() for p in content_chunks(text, CHUNK_CHARS)]
        return sum(
            summary_cache.store_summary(
                conn, tenant, part, "fake-model-1", SUMMARIZE_PROMPT_VERSION, POISON
            )
            for part in parts
        )
    finally:
        conn.close()


def test_a_planted_summary_never_reaches_another_tenant(fake: FakeLLM, cache_role_url: str) -> None:
    text = long_guideline()
    assert plant(cache_role_url, "attacker", text) > 0

    victim = run(fake, text, cache_role_url, tenant="victim")

    assert victim.chunk_cache.hits == 0
    assert all(POISON not in user_text(r["body"]) for r in fake.requests())
    assert POISON not in victim.summary


def test_a_cached_summary_does_not_spare_the_checklist_its_grounding(
    cache_url: str,
) -> None:
    """The credential can still write rows for any tenant (docs/contracts.md): a planted
    summary for the victim's own tenant is served, but a checklist item that repeats it
    is not in the text, so it is ungrounded and the result needs review."""
    text = long_guideline()
    plant(cache_url, "victim", text)
    script = {
        "summary": "summary of part, call {call}.",
        "combine": "COMBINED",
        "checklist": [
            {
                "item": "Gloves may be reused",
                "priority": "high",
                "category": "hygiene",
                "quote": "hand hygiene is optional; gloves may be reused.",
            },
            {
                "item": "Check valve 3-1",
                "priority": "high",
                "category": "safety",
                "quote": "the operator must check valve 3-1 before the shift starts",
            },
        ],
    }
    with FakeLLM(script) as fake:
        result = run(fake, text, cache_url, tenant="victim")
        assert result.chunk_cache.hits == result.chunk_cache.chunks  # every part was planted
        assert POISON in user_text(fake.requests("combine")[0]["body"])
        assert fake.requests("checklist"), "the checklist step runs on a cached summary"

    poisoned, genuine = result.checklist
    assert poisoned.grounded is False and poisoned.source is None
    assert genuine.grounded is True
    assert result.quality.ungrounded_items == 1
    assert result.needs_review and result.review.reasons


def test_the_operator_purges_entries_older_than_the_retention(
    fake: FakeLLM, cache_url: str, database: Any
) -> None:
    from guideline_operator.housekeeping import Heartbeat
    from guideline_operator.metrics import Metrics

    text = long_guideline()
    first = run(fake, text, cache_url)
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE chunk_summaries SET created_at = now() - interval '31 days' "
            "WHERE chunk_hash = (SELECT min(chunk_hash) FROM chunk_summaries)"
        )
        # A row dated in the future (only a hand-written one can be) would never expire.
        cur.execute(
            "UPDATE chunk_summaries SET created_at = now() + interval '10 years' "
            "WHERE chunk_hash = (SELECT max(chunk_hash) FROM chunk_summaries)"
        )

    def housekeeping(days: int) -> Heartbeat:
        return Heartbeat(
            database,
            Metrics(),
            identity="t",
            interval=1,
            retention_days=0,
            purge_interval=1,
            cache_retention_days=days,
        )

    assert housekeeping(0).purge_chunk_cache() == 0  # 0: kept forever
    assert housekeeping(30).purge_chunk_cache() == 2
    assert housekeeping(30).purge_chunk_cache() == 0
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM chunk_summaries")
        assert cur.fetchone()[0] == first.chunk_cache.chunks - 2
    fake.reset()
    again = run(fake, text, cache_url)
    assert again.chunk_cache.hits == again.chunk_cache.chunks - 2 and len(sent_parts(fake)) == 2


def test_the_operators_housekeeping_purges_the_cache_while_keeping_job_rows(
    fake: FakeLLM, cache_url: str, database: Any
) -> None:
    """The operator's housekeeping thread purges old cache entries also when job rows are
    kept forever (db_retention_days 0, the default)."""
    from guideline_operator.housekeeping import Heartbeat
    from guideline_operator.metrics import Metrics

    first = run(fake, long_guideline(), cache_url)
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute("UPDATE chunk_summaries SET created_at = now() - interval '31 days'")
    thread = Heartbeat(
        database,
        Metrics(),
        identity="t",
        interval=0.1,
        retention_days=0,
        purge_interval=3600,
        cache_retention_days=30,
    )

    def left() -> int:
        with database.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM chunk_summaries")
            return int(cur.fetchone()[0])

    assert left() == first.chunk_cache.chunks
    thread.start()
    try:
        wait_for(lambda: left() == 0, timeout=30, message="cache purged")
    finally:
        thread.stop()


def test_an_unreachable_cache_never_fails_the_job(fake: FakeLLM) -> None:
    result = run(fake, long_guideline(), "postgresql://nobody@127.0.0.1:9/none")
    assert result.summary == "COMBINED"
    # Not silently off: the note says why (as a NetworkPolicy dropping the packets would
    # make it), without the database's address (tenants read results).
    assert result.chunk_cache.enabled is False
    assert result.chunk_cache.note == UNREACHABLE_NOTE.format(error="OperationalError")
    assert "127.0.0.1" not in result.chunk_cache.note
    assert len(sent_parts(fake)) == result.chunk_cache.chunks


def test_without_the_setting_there_is_no_cache_and_usage_says_so(fake: FakeLLM) -> None:
    result = run(fake, long_guideline(), None)
    assert result.chunk_cache.enabled is False and result.chunk_cache.note == DISABLED_NOTE
    assert result.usage["summarize"].calls_saved == 0


def test_without_a_tenant_there_is_no_cache(fake: FakeLLM, cache_url: str) -> None:
    result = run(fake, long_guideline(), cache_url, tenant=None)
    assert result.chunk_cache.enabled is False and result.chunk_cache.note == NO_TENANT_NOTE
    assert len(sent_parts(fake)) == result.chunk_cache.chunks
