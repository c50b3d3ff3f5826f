"""The runner's chain in-process against the fake OpenAI-compatible server, over real HTTP
with the real openai SDK: the two steps, map-reduce, error classification (what a new pod
may fix and what it may not), the SDK's own retries, the per-call and soft timeouts,
reuse of a kept summary, the extractive fallback, and the API key kept out of logs."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from guideline_core import logs
from guideline_core.resource import FailureReason, RunnerExit
from guideline_core.settings import RunnerSettings
from guideline_core.splitting import checklist_sections
from guideline_runner.chain import run_chain
from guideline_runner.chain.checklist import section_key
from guideline_runner.errors import ChainError
from guideline_runner.main import setup_logging
from guideline_runner.models import PartialSummary, Usage
from guideline_runner.providers import make_provider
from guideline_runner.text import chunk_text, group_texts
from hypothesis import given
from hypothesis import strategies as st
from support.checklists import assert_grounded_in, item_fields
from support.fake_llm import FakeLLM, user_text

API_KEY = "sk-test-Zq8PFNOTAREALKEY4hV2m"
GUIDELINE = (
    "Hand hygiene\n\n"
    "All staff must wash their hands before and after every patient contact. "
    "Alcohol-based rub should be used when hands are not visibly soiled. "
    "Visitors may use the dispensers at the entrance.\n\n"
    "Incidents\n\n"
    "Incidents must be reported to the ward manager within 24 hours."
)
CHECKLIST = [
    {
        "item": "Wash hands before and after patient contact",
        "priority": "high",
        "category": "hygiene",
        "quote": "must wash their hands before and after every patient contact",
    },
    {
        "item": "Report incidents within 24 hours",
        "priority": "high",
        "category": "incidents",
        "quote": "Incidents must be reported to the ward manager within 24 hours.",
    },
]


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


def settings_for(fake: FakeLLM, **overrides: Any) -> RunnerSettings:
    values: dict[str, Any] = {
        "provider": "openai",
        "model": "fake-model-1",
        "openai_api_key": API_KEY,
        "openai_base_url": fake.base_url,
        "request_timeout_seconds": 10.0,
        "sdk_max_retries": 2,
        "soft_timeout_seconds": 60.0,
        "chunk_chars": 24_000,
        "fallback_to_extractive": False,
    }
    values.update(overrides)
    return RunnerSettings(**values)


def chain(fake: FakeLLM, text: str = GUIDELINE, partial: PartialSummary | None = None, **kw: Any):
    settings = settings_for(fake, **kw)
    provider = make_provider(settings)
    try:
        return run_chain(text, settings, provider, partial)
    finally:
        provider.close()


def failure(fake: FakeLLM, text: str = GUIDELINE, **kw: Any) -> ChainError:
    with pytest.raises(ChainError) as raised:
        chain(fake, text, **kw)
    return raised.value


def test_summary_then_checklist_built_from_the_summary(fake: FakeLLM) -> None:
    fake.set_script({"summary": "Wash hands; report incidents in 24 h.", "checklist": CHECKLIST})

    result = chain(fake)

    assert result.summary == "Wash hands; report incidents in 24 h."
    assert item_fields(result.checklist) == item_fields(CHECKLIST)
    assert_grounded_in(result.checklist, GUIDELINE)
    assert [i.source.quote for i in result.checklist] == [i["quote"] for i in CHECKLIST]
    assert (result.provider, result.model, result.degraded) == ("openai", "fake-model-1", False)
    steps = [r["step"] for r in fake.requests()]
    assert steps == ["summarize", "checklist"]
    summarize, checklist = fake.requests()
    assert "must wash their hands" in user_text(summarize["body"])
    assert "Wash hands; report incidents in 24 h." in user_text(checklist["body"])
    # The guideline itself comes along, for the model to quote from.
    assert "<guideline>\n" + GUIDELINE + "\n</guideline>" in user_text(checklist["body"])
    response_format = checklist["body"]["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["strict"] is True
    assert summarize["body"]["model"] == checklist["body"]["model"] == "fake-model-1"
    assert result.usage["summarize"].calls == result.usage["checklist"].calls == 1
    assert result.usage["checklist"].total_tokens > 0
    assert set(result.durations) == {"summarize", "checklist"}
    status = result.to_status()
    assert "summary_reused" not in status
    assert status["usage"]["summarize"]["prompt_tokens"] > 0


def test_long_guideline_is_summarized_in_parts_and_combined_without_loss(fake: FakeLLM) -> None:
    sentences = [f"Rule {n:03d}: every operator must check valve {n:03d} daily." for n in range(60)]
    paragraphs = ["\n".join(sentences[i : i + 5]) for i in range(0, 60, 5)]
    text = "\n\n".join(paragraphs)
    fake.set_script({"summary": "partial summary #{call}.", "combine": "THE COMBINED SUMMARY"})

    result = chain(fake, text, chunk_chars=500)

    parts = fake.requests("summarize")
    combines = fake.requests("combine")
    assert len(parts) >= len(text) // 500
    assert combines, "the partial summaries were not combined"
    received = "\n".join(user_text(r["body"]) for r in parts)
    assert all(sentence in received for sentence in sentences)
    for request in parts:
        piece = user_text(request["body"]).split("<guideline>\n", 1)[1].rsplit("\n</guideline>")[0]
        assert len(piece) <= 500
        assert piece.endswith("daily.")  # cut at a sentence end, not inside one
    combined_inputs = "\n".join(user_text(r["body"]) for r in combines)
    for n in range(1, len(parts) + 1):
        assert f"partial summary #{n}." in combined_inputs
    assert result.summary == "THE COMBINED SUMMARY"
    assert result.usage["summarize"].calls == len(parts) + len(combines)
    assert "THE COMBINED SUMMARY" in user_text(fake.requests("checklist")[0]["body"])


def test_malformed_checklist_json_is_a_do_not_retry_error(fake: FakeLLM) -> None:
    fake.set_script({"checklist": '{"items": [{"item": "Wash hands", "priority": '})

    error = failure(fake)

    assert error.reason is FailureReason.INVALID_OUTPUT
    assert not error.retryable
    assert error.exit_code == RunnerExit.DO_NOT_RETRY
    assert len(fake.requests("checklist")) == 1


def test_checklist_json_of_the_wrong_shape_is_invalid_output(fake: FakeLLM) -> None:
    fake.set_script({"checklist": [{"item": "Wash hands", "priority": "urgent"}]})

    error = failure(fake)

    assert error.reason is FailureReason.INVALID_OUTPUT
    assert "priority" in error.message and "category" in error.message


def test_rate_limit_then_success_through_the_sdk_retry(fake: FakeLLM) -> None:
    fake.set_script(
        {"rules": [{"step": "summarize", "status": 429, "times": 2, "retry_after": 0.1}]}
    )

    result = chain(fake)

    assert [r["status"] for r in fake.requests("summarize")] == [429, 429, 200]
    assert result.usage["summarize"].calls == 1
    assert result.checklist


def test_server_errors_beyond_the_sdk_retries_are_retryable(fake: FakeLLM) -> None:
    fake.set_script({"rules": [{"status": 500, "times": None, "retry_after": 0.05}]})

    error = failure(fake, sdk_max_retries=2)

    assert error.reason is FailureReason.LLM_ERROR
    assert error.retryable
    assert error.exit_code == RunnerExit.RETRYABLE
    assert "500" in error.message
    assert [r["status"] for r in fake.requests()] == [500, 500, 500]


def test_unauthorized_is_do_not_retry_and_the_echoed_key_is_redacted(fake: FakeLLM) -> None:
    fake.set_script(
        {"rules": [{"status": 401, "times": None, "message": "Incorrect API key provided: {auth}"}]}
    )

    error = failure(fake)

    assert error.reason is FailureReason.LLM_REJECTED
    assert not error.retryable
    assert "401" in error.message and "Incorrect API key provided" in error.message
    assert API_KEY not in json.dumps(error.to_status())
    assert len(fake.requests()) == 1  # the SDK does not retry a 401


def test_a_hanging_call_hits_the_per_call_timeout_and_is_retryable(fake: FakeLLM) -> None:
    fake.set_script({"rules": [{"status": "hang", "seconds": 30, "times": None}]})

    error = failure(fake, request_timeout_seconds=0.5, sdk_max_retries=1)

    assert error.reason is FailureReason.LLM_ERROR
    assert error.retryable
    assert "timed out" in error.message
    assert len(fake.requests("summarize")) == 2  # first try and the SDK's one retry


def test_soft_timeout_stops_the_chain_and_is_not_retried(fake: FakeLLM) -> None:
    fake.set_script({"rules": [{"step": "checklist", "status": "hang", "seconds": 30}]})

    error = failure(fake, soft_timeout_seconds=1.5, request_timeout_seconds=30)

    assert error.reason is FailureReason.TIMEOUT
    assert error.message == "Processing timeout after 1.5 s"
    assert not error.retryable
    assert error.exit_code == RunnerExit.DO_NOT_RETRY
    assert [r["step"] for r in fake.requests()] == ["summarize", "checklist"]


def test_a_kept_summary_skips_step_one(fake: FakeLLM) -> None:
    partial = PartialSummary(
        summary="Summary kept by attempt 1.",
        attempt=1,
        usage={"summarize": Usage(prompt_tokens=11, completion_tokens=7, total_tokens=18, calls=1)},
        durations={"summarize": 1.25},
    )

    result = chain(fake, partial=partial)

    assert [r["step"] for r in fake.requests()] == ["checklist"]
    assert "Summary kept by attempt 1." in user_text(fake.requests()[0]["body"])
    assert result.summary == "Summary kept by attempt 1."
    assert result.summary_reused
    assert result.usage["summarize"].total_tokens == 18
    assert result.durations["summarize"] == 1.25


def test_the_summary_is_handed_over_before_the_checklist_step_fails(fake: FakeLLM) -> None:
    fake.set_script(
        {
            "summary": "Kept summary.",
            "rules": [{"step": "checklist", "status": 503, "times": None, "retry_after": 0.05}],
        }
    )
    kept: list[PartialSummary] = []
    settings = settings_for(fake, sdk_max_retries=0)
    provider = make_provider(settings)

    with pytest.raises(ChainError) as raised:
        try:
            run_chain(GUIDELINE, settings, provider, on_summary=kept.append, attempt=2)
        finally:
            provider.close()

    assert raised.value.retryable
    assert [(p.summary, p.attempt) for p in kept] == [("Kept summary.", 2)]
    assert kept[0].usage["summarize"].calls == 1
    assert "summarize" in kept[0].durations


def test_fallback_to_extractive_on_a_permanent_failure(fake: FakeLLM) -> None:
    fake.set_script({"rules": [{"status": 401, "times": None}]})

    result = chain(fake, fallback_to_extractive=True)

    assert result.degraded
    assert (result.provider, result.model) == ("extractive", "extractive-v1")
    assert any("must wash their hands" in i.item for i in result.checklist)
    assert result.to_status()["degraded"] is True


def test_fallback_after_the_soft_timeout(fake: FakeLLM) -> None:
    fake.set_script({"rules": [{"status": "hang", "seconds": 30}]})

    result = chain(fake, fallback_to_extractive=True, soft_timeout_seconds=1)

    assert (result.provider, result.degraded) == ("extractive", True)
    assert [r["status"] for r in fake.requests()] == ["hang"]


def test_no_fallback_for_retryable_failures_or_when_off(fake: FakeLLM) -> None:
    fake.set_script({"rules": [{"status": 500, "times": None, "retry_after": 0.05}]})
    assert failure(fake, fallback_to_extractive=True, sdk_max_retries=0).retryable

    fake.set_script({"rules": [{"status": 401, "times": None}]})
    assert failure(fake, fallback_to_extractive=False).reason is FailureReason.LLM_REJECTED


def test_blank_input_and_missing_key_are_not_retried(fake: FakeLLM) -> None:
    blank = failure(fake, " \n\t ")
    assert (blank.reason, blank.retryable) == (FailureReason.INVALID_INPUT, False)

    no_key = failure(fake, openai_api_key=None)
    assert (no_key.reason, no_key.retryable) == (FailureReason.LLM_REJECTED, False)
    assert fake.requests() == []


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Undo the runner's logging set-up after the test (it replaces the root handlers)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    context = logs._context.get()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logs._context.set(context)


@pytest.mark.usefixtures("restored_logging")
def test_the_api_key_never_appears_in_the_logs(
    fake: FakeLLM, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(fake, sdk_max_retries=1)
    setup_logging(settings)  # the runner's own logging set-up, writing to captured stderr
    fake.set_script(
        {
            "rules": [
                {
                    "step": "summarize",
                    "status": 429,
                    "times": 1,
                    "retry_after": 0.05,
                    "message": "slow down {auth}",
                }
            ]
        }
    )
    chain(fake, sdk_max_retries=1)
    fake.set_script(
        {"rules": [{"status": 401, "times": None, "message": "Incorrect API key provided: {auth}"}]}
    )
    failure(fake)

    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert any(r["msg"] == "step finished" and r["step"] == "checklist" for r in records)
    assert any(r["msg"] == "step failed" and "Incorrect API key" in r["error"] for r in records)
    assert any(r["msg"].startswith("Retrying request") for r in records)
    assert not [line for line in lines if API_KEY in line]
    assert all(r.get("total_tokens", 1) > 0 for r in records if r["msg"] == "step finished")


@given(
    st.text(alphabet=st.sampled_from("ab .\n!?"), min_size=0, max_size=400),
    st.integers(min_value=1, max_value=60),
)
def test_chunks_cover_the_text_exactly(text: str, limit: int) -> None:
    chunks = chunk_text(text, limit)
    assert "".join(chunks) == text
    assert all(len(c) <= limit for c in chunks)
    assert all(chunks[:-1])


def test_chunks_prefer_paragraph_then_sentence_boundaries() -> None:
    text = "First paragraph here.\n\nSecond one. It has two sentences. " + "x" * 10
    assert chunk_text(text, 40) == [
        "First paragraph here.\n\n",
        "Second one. It has two sentences. ",
        "x" * 10,
    ]


@given(st.lists(st.integers(min_value=0, max_value=50), min_size=2, max_size=30))
def test_grouping_always_shrinks_the_list(sizes: list[int]) -> None:
    texts = ["y" * s for s in sizes]
    groups = group_texts(texts, 40)
    assert [t for g in groups for t in g] == texts
    assert len(groups) < len(texts)


PART = re.compile(r"This is part (\d+) of")


def valve_rules(count: int) -> str:
    """A guideline of `count` obligation sentences, five to a paragraph."""
    sentences = [
        f"Rule {n:03d}: every operator must check valve {n:03d} daily." for n in range(count)
    ]
    return "\n\n".join("\n".join(sentences[i : i + 5]) for i in range(0, count, 5))


def test_the_parts_are_summarized_concurrently_up_to_the_bound(fake: FakeLLM) -> None:
    fake.set_script({"summary": "partial summary #{call}.", "combine": "C", "latency": 1.0})

    result = chain(fake, valve_rules(80), chunk_chars=700, llm_concurrency=4)

    parts = fake.requests("summarize")
    assert len(parts) >= 8
    # In flight together, as the fake saw them: the bound is reached, never passed.
    assert max(r["in_flight"] for r in parts) == 4
    assert max(r["in_flight"] for r in fake.requests()) <= 4
    # The parts' summaries reach the combine step in the parts' order, whatever order
    # their answers came in.
    by_part = sorted(parts, key=lambda r: int(PART.search(user_text(r["body"]))[1]))
    combined = "\n".join(user_text(r["body"]) for r in fake.requests("combine"))
    positions = [combined.index(r["content"]) for r in by_part]
    assert positions == sorted(positions)
    assert result.usage["summarize"].calls == len(parts) + len(fake.requests("combine"))


def test_concurrency_one_calls_the_llm_one_part_at_a_time(fake: FakeLLM) -> None:
    fake.set_script({"latency": 0.2})

    chain(fake, valve_rules(40), chunk_chars=700, llm_concurrency=1)

    assert len(fake.requests("summarize")) >= 4
    assert {r["in_flight"] for r in fake.requests()} == {1}


def test_a_rate_limit_pauses_all_the_jobs_calls_for_its_retry_after(fake: FakeLLM) -> None:
    pause = 2.0
    fake.set_script(
        {
            "latency": 0.3,
            "rules": [{"step": "summarize", "status": 429, "times": 1, "retry_after": pause}],
        }
    )

    result = chain(fake, valve_rules(300), chunk_chars=700, llm_concurrency=4)

    requests = fake.requests()
    (limited,) = [r for r in requests if r["status"] == 429]
    # Calls already on their way when the 429 left the server may still arrive (the
    # margin); after that, no call of the job until Retry-After has passed.
    margin = 0.5
    during = [
        r["seq"]
        for r in requests
        if limited["answered"] + margin <= r["time"] < limited["answered"] + pause
    ]
    assert during == []
    after = [r for r in requests if r["time"] >= limited["answered"] + pause]
    # Not only the refused call's retry: parts of the other calls waited, then went on.
    assert len([r for r in after if r["step"] == "summarize"]) > 4
    assert result.usage["summarize"].calls == len(requests) - 1 - len(fake.requests("checklist"))


def test_a_long_guideline_gets_a_soft_limit_grown_by_its_rounds(fake: FakeLLM) -> None:
    # 0.3 s a call: the map step alone takes longer than the 1 s base limit, which a
    # short guideline keeps; the rounds of this one add 3 s each.
    fake.set_script({"latency": 0.3})
    text = valve_rules(80)

    error = failure(
        fake,
        text,
        chunk_chars=700,
        llm_concurrency=2,
        soft_timeout_per_round_seconds=0,
        soft_timeout_seconds=1.0,
    )
    assert error.reason is FailureReason.TIMEOUT

    result = chain(
        fake,
        text,
        chunk_chars=700,
        llm_concurrency=2,
        soft_timeout_per_round_seconds=3.0,
        soft_timeout_seconds=1.0,
    )
    assert result.checklist
    assert len(fake.requests("summarize")) >= 6


def sectioned_guideline(sections: int) -> str:
    """A guideline of `sections` headed sections of three obligations each; every section
    also repeats one shared obligation."""
    return "\n\n".join(
        f"# Section {n}\n\n"
        + " ".join(f"Operators must check valve {n}-{k} daily." for k in range(3))
        + "\nAll staff must wear their badges."
        for n in range(sections)
    )


def guideline_block(request: dict[str, Any]) -> str:
    return user_text(request["body"]).split("<guideline>\n", 1)[1].rsplit("\n</guideline>")[0]


def test_checklist_items_come_from_every_sections_own_text_merged(fake: FakeLLM) -> None:
    text = sectioned_guideline(24)
    fake.set_script({"checklist": "obligations", "latency": 0.2})

    result = chain(fake, text, chunk_chars=600, llm_concurrency=4)

    calls = fake.requests("checklist")
    sections = checklist_sections(text, 600)
    assert len(sections) > 4 and len(calls) == len(sections)
    assert sorted(guideline_block(r) for r in calls) == sorted(sections)
    assert max(r["in_flight"] for r in calls) == 4
    # The summary is still the first step, and every section's call sees it.
    assert all(result.summary in user_text(r["body"]) for r in calls)
    quotes = [item.source.quote for item in result.checklist if item.source is not None]
    expected = {f"Operators must check valve {n}-{k} daily." for n in range(24) for k in range(3)}
    assert set(quotes) == expected | {"All staff must wear their badges."}
    assert quotes.count("All staff must wear their badges.") == 1  # one item, not 24
    assert len(result.checklist) == len(expected) + 1
    # The shared obligation is one item with every place it is quoted among its sources
    # (each section's own, in the text's order; the first is its `source`), so each of
    # its 24 repeats is covered too.
    [badges] = [i for i in result.checklist if i.source and "badges" in i.source.quote]
    assert len(badges.sources) == 24 and badges.sources[0] == badges.source
    starts = [s.start for s in badges.sources]
    assert starts == sorted(starts) and len(set(starts)) == 24
    assert all(text[s.start : s.end] == "All staff must wear their badges." for s in badges.sources)
    assert all(len(i.sources) == 1 for i in result.checklist if i is not badges)
    assert result.quality.covered_obligations == result.quality.obligations == len(expected) + 24
    assert result.quality.capped is None


def test_the_caps_per_section_and_in_total_are_reported(fake: FakeLLM) -> None:
    text = sectioned_guideline(24)
    fake.set_script({"checklist": "obligations"})

    per_section = chain(fake, text, chunk_chars=600, max_items_per_section=2)

    sections = len(checklist_sections(text, 600))
    assert per_section.quality.capped is not None
    assert per_section.quality.capped.model_dump() == {"per_section": sections, "total": False}

    total = chain(fake, text, chunk_chars=600, max_checklist_items=10)

    assert len(total.checklist) == 10
    assert total.quality.capped is not None and total.quality.capped.total is True
    assert total.to_status()["quality"]["capped"] == {"per_section": 0, "total": True}


def test_the_soft_timeout_abandons_the_calls_in_flight_and_starts_no_more(fake: FakeLLM) -> None:
    fake.set_script({"rules": [{"step": "summarize", "status": "hang", "seconds": 60}]})

    error = failure(
        fake,
        valve_rules(80),
        chunk_chars=700,
        llm_concurrency=4,
        soft_timeout_seconds=1.0,
        soft_timeout_per_round_seconds=0,
        request_timeout_seconds=60,
    )

    assert error.reason is FailureReason.TIMEOUT
    # The four calls in flight, and none started after the limit.
    assert [r["status"] for r in fake.requests()] == ["hang"] * 4
    # Still waiting for their answers, they are abandoned: daemon threads never hold up
    # the runner's exit (SIGTERM, a cancel, ends it at once anyway: os._exit).
    workers = [t for t in threading.enumerate() if t.name.startswith("llm-") and t.is_alive()]
    assert workers and all(t.daemon for t in workers)


def test_a_retry_does_not_redo_the_sections_a_failed_attempt_finished(fake: FakeLLM) -> None:
    text = sectioned_guideline(24)
    sections = checklist_sections(text, 600)
    fake.set_script(
        {
            "checklist": "obligations",
            "rules": [
                {"step": "checklist", "status": 200, "times": 3},
                {"step": "checklist", "status": 503, "times": None},
            ],
        }
    )

    error = failure(fake, text, chunk_chars=600, llm_concurrency=1, sdk_max_retries=0)

    assert error.retryable and error.keep is not None
    done = [guideline_block(r) for r in fake.requests("checklist") if r["status"] == 200]
    assert sorted(error.keep) == sorted(section_key(s) for s in done) and len(done) == 3
    # What the runner writes with runnerError, read back by the next pod.
    partial = PartialSummary.model_validate(
        {"summary": "Kept summary.", "attempt": 1, "sections": error.keep}
    )
    fake.set_script({"checklist": "obligations"})

    result = chain(fake, text, partial=partial, chunk_chars=600, llm_concurrency=1)

    asked = [guideline_block(r) for r in fake.requests("checklist")]
    assert sorted(asked) == sorted(s for s in sections if s not in done)
    assert fake.requests("summarize") == []
    assert result.usage["checklist"].calls_saved == 3
    expected = {f"Operators must check valve {n}-{k} daily." for n in range(24) for k in range(3)}
    assert {i.source.quote for i in result.checklist if i.source} >= expected
