"""Grounding, obligations and the quality block, in-process: quotes found exactly or after
normalisation with offsets into the original text, invented quotes left ungrounded (or
dropped), obligation sentences of real guideline wording, coverage, duplicates, the
review gate, and the extractive provider's items standing alone. The chain runs against
the fake OpenAI-compatible server (the one stand-in)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from guideline_core.settings import RunnerSettings
from guideline_runner.chain import run_chain
from guideline_runner.grounding import Locator, covers, ground
from guideline_runner.main import thresholds_of
from guideline_runner.models import DraftItem, Priority
from guideline_runner.obligations import obligations_of
from guideline_runner.providers import make_provider
from guideline_runner.providers.extractive import extractive_checklist
from guideline_runner.text import content_chunks
from support.checklists import assert_grounded_in
from support.fake_llm import FakeLLM

EXAMPLE = (Path(__file__).resolve().parent.parent / "examples" / "hand-hygiene.md").read_text()

# Wording as real guidelines write it: abbreviations with full stops, numbered steps,
# "e.g." mid-sentence, quoted terms, a prohibition without a modal verb.
WARDS = """3. Sharps

3.1 Used sharps (e.g. needles, scalpels) must be discarded into an approved sharps bin at the
point of use. Needles shall not be re-sheathed.
3.2 Bins should be closed when two-thirds full. Dr. Patel's team audits bins approx. every
4 wks.; results are published on the intranet.
3.3 Never leave a sharps bin on the floor. Report every needlestick injury to Occupational
Health on the same day.
"""


def draft(item: str, quote: str | None, priority: str = "high") -> DraftItem:
    return DraftItem(item=item, priority=priority, category="test", quote=quote)


def test_an_exact_quote_gets_its_offsets_in_the_original_text() -> None:
    quote = "Needles shall not be re-sheathed."
    result = ground([draft("No re-sheathing", quote)], WARDS)

    (item,) = result.items
    assert item.grounded and item.source is not None
    assert (item.source.start, item.source.end) == (WARDS.index(quote), WARDS.index(quote) + 33)
    assert item.source.match == "exact"


def test_whitespace_quote_marks_and_case_are_normalised_and_mapped_back() -> None:
    text = (
        "Staff \u201cmust\u201d clean their\n  hands \u2013 always \u2013 "
        "before touching a patient."
    )
    quote = '"MUST" clean their hands - always - before touching'

    found = Locator(text).find(quote)

    assert found is not None and found.match == "normalized"
    passage = text[found.start : found.end]
    assert passage == "\u201cmust\u201d clean their\n  hands \u2013 always \u2013 before touching"


def test_an_invented_quote_is_not_grounded_and_never_repaired() -> None:
    drafts = [
        draft("Discard sharps at once", "Used sharps must be discarded at once."),  # paraphrase
        draft("Wear two pairs of gloves", "Staff must wear two pairs of gloves."),
        draft("Close bins", "must"),  # too short to prove anything
        draft("No quote", None),
    ]
    kept = ground(drafts, WARDS)
    assert [i.grounded for i in kept.items] == [False, False, False, False]
    assert all(i.source is None for i in kept.items)

    dropped = ground(drafts, WARDS, drop_ungrounded=True)
    assert (dropped.items, dropped.proposed, dropped.dropped) == ([], 4, 4)


def test_a_repeated_passage_is_given_to_each_item_in_turn() -> None:
    text = "Wash hands before care.\nGloves on.\nWash hands before care.\n"
    result = ground(
        [draft("a", "Wash hands before care."), draft("b", "wash hands before care")], text
    )
    starts = [i.source.start for i in result.items if i.source]
    assert starts == [0, text.rindex("Wash hands")]


def test_claimed_offsets_are_checked_not_trusted() -> None:
    quote = "Needles shall not be re-sheathed."
    lying = DraftItem(item="x", priority="high", category="c", quote=quote, start=0, end=33)
    (item,) = ground([lying], WARDS).items
    assert item.source is not None and item.source.start == WARDS.index(quote)


def test_obligation_sentences_of_real_guideline_wording() -> None:
    found = obligations_of(WARDS)

    assert {o.heading for o in found} == {"Sharps"}  # "3. Sharps" is a heading
    assert [o.quote for o in found] == [
        "Used sharps (e.g. needles, scalpels) must be discarded into an approved sharps bin "
        "at the\npoint of use.",
        "Needles shall not be re-sheathed.",
        "Bins should be closed when two-thirds full.",
        "Never leave a sharps bin on the floor.",
        "Report every needlestick injury to Occupational\nHealth on the same day.",
    ]
    for obligation in found:
        assert WARDS[obligation.start : obligation.end] == obligation.quote


def test_obligations_of_the_example_guideline() -> None:
    found = obligations_of(EXAMPLE)
    # Seven sentences require or recommend; "may remind" is an option, the purpose
    # statement describes.
    assert len(found) == 7
    assert {o.priority for o in found} == {Priority.HIGH, Priority.MEDIUM}
    assert not any("may remind" in o.quote for o in found)
    assert not any(o.quote.startswith("This guideline sets out") for o in found)


def test_coverage_needs_half_of_the_shorter_span() -> None:
    assert covers((10, 20), (0, 100))  # a quote inside a sentence
    assert covers((0, 100), (40, 60))  # a quote spanning two sentences covers both
    assert not covers((0, 12), (10, 60))  # touching the edge is not covering
    assert not covers((5, 5), (0, 10))


def test_extractive_items_stand_alone_and_are_grounded_by_construction() -> None:
    items = extractive_checklist(EXAMPLE, max_items=30)
    gloves = next(i for i in items if "put on immediately" in (i.quote or ""))

    # The pronoun's antecedent comes along, in the item and in its quote.
    assert gloves.item.startswith("Gloves are not a substitute for hand hygiene. They must")
    assert gloves.quote == EXAMPLE[gloves.start : gloves.end]
    first_in_section = extractive_checklist(
        "## Visitors\n\nThey must sign in at reception.\n", max_items=5
    )
    assert first_in_section[0].item == "Visitors: They must sign in at reception."


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


def chain_with(fake: FakeLLM, text: str, **overrides: Any):
    values: dict[str, Any] = {
        "provider": "openai",
        "model": "fake-model-1",
        "openai_api_key": "sk-test-grounding",
        "openai_base_url": fake.base_url,
        "soft_timeout_seconds": 60.0,
    }
    values.update(overrides)
    settings = RunnerSettings(**values)
    provider = make_provider(settings)
    try:
        return run_chain(text, settings, provider)
    finally:
        provider.close()


def test_an_invented_item_and_a_dropped_obligation_need_review(fake: FakeLLM) -> None:
    obligations = [o.quote for o in obligations_of(WARDS)]
    answered = [
        {
            "item": "Discard sharps at the point of use",
            "priority": "high",
            "category": "sharps",
            "quote": obligations[0],
        },
        {
            "item": "Do not re-sheath needles",
            "priority": "high",
            "category": "sharps",
            "quote": "needles shall NOT be re-sheathed",
        },
        {
            "item": "Close bins at two-thirds",
            "priority": "medium",
            "category": "sharps",
            "quote": obligations[2],
        },
        {
            "item": "Keep bins off the floor",
            "priority": "high",
            "category": "sharps",
            "quote": obligations[3],
        },
        # Invented: the guideline says nothing about gloves.
        {
            "item": "Wear double gloves",
            "priority": "high",
            "category": "ppe",
            "quote": "Staff must wear two pairs of gloves when handling sharps.",
        },
    ]  # and the needlestick-reporting obligation is dropped
    fake.set_script({"summary": "Sharps go into bins; report injuries.", "checklist": answered})

    result = chain_with(fake, WARDS, review_min_coverage=0.9)

    assert [i.grounded for i in result.checklist] == [True, True, True, True, False]
    assert result.checklist[1].source.match == "normalized"
    assert_grounded_in(result.checklist[:4], WARDS)
    assert result.checklist[4].source is None
    quality = result.quality
    assert (quality.items, quality.grounded_items, quality.ungrounded_items) == (5, 4, 1)
    assert (quality.obligations, quality.covered_obligations) == (5, 4)
    (uncovered,) = quality.uncovered
    assert uncovered.text == obligations[4]
    assert WARDS[uncovered.start : uncovered.end] == uncovered.text
    assert result.needs_review is True
    assert result.review.reasons == [
        "1 of 5 items quote nothing in the guideline (grounding 80% < 100%)",
        "1 of 5 obligations are covered by no item (coverage 80% < 90%)",
    ]
    assert result.to_status()["needs_review"] is True


def test_thresholds_per_job_and_drop_by_setting(fake: FakeLLM) -> None:
    obligations = [o.quote for o in obligations_of(WARDS)]
    answered = [
        {"item": f"Item {n}", "priority": "high", "category": "c", "quote": q}
        for n, q in enumerate(obligations)
    ] + [{"item": "Item 0", "priority": "high", "category": "c", "quote": "invented words here"}]
    fake.set_script({"summary": "s", "checklist": answered})

    kept = chain_with(fake, WARDS, review_min_grounding=0.8)
    assert kept.needs_review is False and kept.quality.grounding == pytest.approx(5 / 6, abs=1e-3)
    assert kept.quality.duplicates == [[0, 5]]  # the same words twice

    dropped = chain_with(fake, WARDS, drop_ungrounded_items=True)
    assert len(dropped.checklist) == 5 and dropped.quality.dropped_items == 1
    assert dropped.needs_review is True  # the count is reported either way


def test_offsets_are_global_across_map_reduce_parts(fake: FakeLLM) -> None:
    sections = [
        f"## Area {n}\n\n" + " ".join(f"Item {n}.{k} must be checked daily." for k in range(12))
        for n in range(12)
    ]
    text = "\n\n".join(sections)
    parts = content_chunks(text, 1200)
    assert len(parts) >= 4
    boundary = len(parts[0]) + len(parts[1])  # where part 3 starts in the text
    spanning = text[boundary - 40 : boundary + 30]  # the end of part 2 and the start of part 3
    last = "Item 11.7 must be checked daily."
    fake.set_script(
        {
            "summary": "part",
            "checklist": [
                {"item": "Check 11.7", "priority": "high", "category": "c", "quote": last},
                {"item": "Across", "priority": "high", "category": "c", "quote": spanning},
            ],
        }
    )

    result = chain_with(fake, text, chunk_chars=1200)

    assert len(fake.requests("summarize")) == len([p for p in parts if p.strip()])
    late, across = result.checklist
    assert late.source is not None and late.source.start == text.index(last) > boundary
    assert across.source is not None and across.source.start == boundary - 40
    assert_grounded_in(result.checklist, text)


def test_a_jobs_own_thresholds_come_from_its_spec() -> None:
    settings = RunnerSettings(review_min_grounding=0.9, review_min_coverage=0.7)
    assert thresholds_of({"review": {"minCoverage": 0.5}}, settings).model_dump() == {
        "min_grounding": 0.9,
        "min_coverage": 0.5,
    }
    assert thresholds_of({}, settings).model_dump() == {"min_grounding": 0.9, "min_coverage": 0.7}


def test_the_same_obligation_quoted_in_several_places_keeps_every_source() -> None:
    rule = "All staff must wear their badges."
    sections = [f"# Ward {n}\n\nNurses must chart vitals. {rule}\n\n" for n in range(3)]
    text = "".join(sections)
    spans, offset = [], 0
    for section in sections:
        spans.append((offset, offset + len(section)))
        offset += len(section)

    def draft(within: tuple[int, int], quote: str = rule) -> DraftItem:
        return DraftItem(
            item="Wear badges", priority="high", category="id", quote=quote, within=within
        )

    merged = draft(spans[2])
    merged.also.extend(
        [draft(spans[0]), draft(spans[1], "All visitors must sign in."), draft(spans[1])]
    )

    [item] = ground([merged], text).items

    # Each quote is found in its own section first: the item's source in section 3, then
    # sections 1 and 2; the quote the text lacks adds nothing.
    assert item.source is not None and item.sources[0] == item.source
    assert [
        spans.index(next(s for s in spans if s[0] <= x.start < s[1])) for x in item.sources
    ] == [
        2,
        0,
        1,
    ]
    assert all(text[s.start : s.end] == rule for s in item.sources)


def test_the_extractive_provider_keeps_a_repeat_in_one_section_as_a_second_source() -> None:
    from guideline_runner.providers.extractive import ExtractiveProvider

    text = "Hygiene\n\nStaff must wash hands. Gloves should be worn. Staff must wash hands.\n"
    drafts = ExtractiveProvider().checklist("", guideline=text).value

    [item] = [i for i in ground(drafts, text).items if "wash" in i.item.lower()]
    assert [text[s.start : s.end] for s in item.sources] == ["Staff must wash hands."] * 2
    assert item.sources[0].start < item.sources[1].start
