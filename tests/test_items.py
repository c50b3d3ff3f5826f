"""What a checklist item is: an action someone can take or check, with the strength its
text words and the grade the guideline states for it, verbatim. On real guideline wording
(USPSTF statements, GRADE, VA/DoD, ACC/AHA and the sentences of issue 21), through the
real chain (extractive provider, and the LLM provider against the fake OpenAI server), and
on the real test set in tests/data/guidelines (coverage of its obligations)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from guideline_core.settings import RunnerSettings
from guideline_runner.chain import run_chain
from guideline_runner.models import checklist_response_format
from guideline_runner.providers import make_provider
from support.checklists import assert_grounded_in
from support.documents import GUIDELINES
from support.fake_llm import FakeLLM

TEST_SET = sorted(p for p in GUIDELINES.glob("*.md") if p.name != "PROVENANCE.md")

# Sentences no one can act on, as published guidelines word them.
NOT_ITEMS = [
    "Should Diabetes-Specific Enteral Formulas Be Used in the Critically Ill Patient?",
    "The authors cannot make a recommendation at this time.",
    "In a 2009 study, approximately half of responding pediatricians reported that they "
    "should screen every child.",
    "The USPSTF concludes that the current evidence is insufficient to assess the balance "
    "of benefits and harms of screening for speech and language delay and disorders in "
    "children aged 5 years or younger.",
    "The USPSTF found adequate evidence that screening must be followed by treatment.",
    "There is insufficient evidence to recommend for or against routine screening.",
    "No recommendation can be made for the use of daily chlorhexidine bathing.",
]
ITEMS = [
    "The USPSTF recommends screening for prediabetes and type 2 diabetes in adults aged 35 "
    "to 70 years who have overweight or obesity.",
    "Clinicians should offer or refer patients with prediabetes to effective preventive "
    "interventions.",
    "The USPSTF recommends against screening for ovarian cancer in asymptomatic women.",
]
GRADED = "\n\n".join(
    [
        "## Recommendations",
        "The USPSTF recommends screening for prediabetes and type 2 diabetes in adults aged 35 "
        "to 70 years who have overweight or obesity. (B recommendation)",
        "We suggest against the use of fresh frozen plasma to correct clotting abnormalities "
        "in the absence of bleeding or planned invasive procedures (weak recommendation, very "
        "low quality of evidence).",
        "We recommend that enteral nutrition be started within 24 to 48 hours of admission. "
        "(Strong)",
        "Clinicians should offer or refer patients with prediabetes to effective preventive "
        "interventions.",
        "In patients with heart failure, an ACE inhibitor is recommended to reduce morbidity "
        "and mortality (Class I, Level of Evidence: A).",
        "Beta blockers are recommended for all patients with stable heart failure with "
        "reduced ejection fraction. COR I, LOE B-R",
        "## Grade: B",
        "Clinicians should screen for intimate partner violence in women of reproductive age.",
        "## Insomnia",
        "We suggest offering cognitive behavioral therapy for insomnia. Weak for",
        "Hand hygiene must be performed before every patient contact.\n",
    ]
)
# Quote opening -> the grade its item must carry (None: the text states none).
EXPECTED_GRADES = {
    "The USPSTF recommends screening": "B recommendation",
    "We suggest against the use": "weak recommendation, very low quality of evidence",
    "We recommend that enteral": "Strong",
    # "(Strong)" above ends the item before: it is not this one's grade.
    "Clinicians should offer": None,
    "In patients with heart failure": "Class I, Level of Evidence: A",
    "Beta blockers": "COR I, LOE B-R",
    "Clinicians should screen for intimate": "Grade: B",
    "We suggest offering": "Weak for",
    "Hand hygiene must": None,
}


def extractive(text: str, **settings: Any) -> Any:
    config = RunnerSettings(provider="extractive", **settings)
    return run_chain(text, config, make_provider(config))


def quotes(result: Any) -> list[str]:
    return [item.source.quote for item in result.checklist]


@pytest.mark.parametrize("sentence", NOT_ITEMS)
def test_questions_non_recommendations_evidence_and_background_are_not_items(
    sentence: str,
) -> None:
    text = "## Screening\n\n" + " ".join([ITEMS[0], sentence, ITEMS[1]]) + "\n"

    result = extractive(text)

    assert quotes(result) == ITEMS[:2]
    # Nor does coverage count them as obligations a checklist has missed.
    assert result.quality.obligations == 2
    assert result.quality.coverage == 1.0


@pytest.mark.parametrize(
    ("sentence", "strength"),
    [
        ("Verifiers SHALL NOT permit the subscriber to store a hint.", "must_not"),
        ("Memorized secrets SHALL be at least 8 characters in length.", "must"),
        ("Do not use opioids as first-line therapy for acute low back pain.", "must_not"),
        (ITEMS[1], "should"),
        (ITEMS[2], "should_not"),
        ("Clinicians should not prescribe benzodiazepines with opioids.", "should_not"),
        ("Verifiers MAY make limited allowances for mistyping.", "may"),
        ("Use short sentences in every notice.", "should"),
    ],
)
def test_strength_is_as_the_source_words_it(sentence: str, strength: str) -> None:
    result = extractive(f"## Rules\n\n{sentence}\n")

    assert [item.strength for item in result.checklist] == [strength]


def test_grades_are_verbatim_near_the_quote_with_their_own_offsets() -> None:
    result = extractive(GRADED)

    found = {}
    for item in result.checklist:
        opening = next(k for k in EXPECTED_GRADES if item.source.quote.startswith(k))
        found[opening] = item.grade.text if item.grade else None
        if item.grade:
            assert GRADED[item.grade.start : item.grade.end] == item.grade.text
    assert found == EXPECTED_GRADES
    status = result.to_status()["checklist"]
    assert status[0]["grade"] == {
        "text": "B recommendation",
        "start": GRADED.index("B recommendation"),
        "end": GRADED.index("B recommendation") + len("B recommendation"),
    }
    assert status[0]["strength"] == "should"


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


def test_the_llm_path_derives_strength_and_grade_from_the_text_not_the_model(
    fake: FakeLLM,
) -> None:
    fake.set_script(
        {
            "summary": "Screen adults 35 to 70 with overweight; no plasma without bleeding.",
            "checklist": [
                {
                    "item": "Screen adults aged 35 to 70 with overweight for diabetes",
                    "priority": "medium",
                    "strength": "must",  # the text says "recommends": should
                    "category": "screening",
                    "quote": "The USPSTF recommends screening for prediabetes and type 2 "
                    "diabetes in adults aged 35 to 70 years who have overweight or obesity.",
                },
                {
                    "item": "Give aspirin to everyone",
                    "priority": "high",
                    "strength": "Must",
                    "category": "invented",
                    "quote": "All adults must take aspirin daily (Grade A).",
                },
            ],
        }
    )
    config = RunnerSettings(
        provider="openai",
        model="fake-model-1",
        openai_api_key="sk-test-NOTAREALKEY",
        openai_base_url=fake.base_url,
        request_timeout_seconds=10.0,
        sdk_max_retries=0,
    )
    provider = make_provider(config)
    try:
        result = run_chain(GRADED, config, provider)
    finally:
        provider.close()

    screened, invented = result.checklist
    assert (screened.strength, screened.grade.text) == ("should", "B recommendation")
    assert GRADED[screened.grade.start : screened.grade.end] == "B recommendation"
    assert (invented.grounded, invented.strength, invented.grade) == (False, None, None)
    checklist_call = fake.requests("checklist")[0]["body"]
    schema = checklist_call["response_format"]["json_schema"]["schema"]
    item_schema = schema["properties"]["items"]["items"]
    assert item_schema["properties"]["strength"]["enum"] == [
        "must",
        "must_not",
        "should",
        "should_not",
        "may",
    ]
    assert "strength" in item_schema["required"]
    assert "question" in item_schema["properties"]["item"]["description"].lower()
    assert (
        item_schema
        == checklist_response_format(5)["json_schema"]["schema"]["properties"]["items"]["items"]
    )


def test_the_cap_is_reported_in_quality() -> None:
    text = "## Rules\n\n" + "\n".join(f"Operators must check valve {n}." for n in range(12))

    capped = extractive(text, max_checklist_items=5)
    whole = extractive(text)

    assert (len(capped.checklist), capped.quality.capped_items) == (5, 7)
    assert (len(whole.checklist), whole.quality.capped_items) == (12, 0)


# Independent of the runner's rules: words that make a sentence something to do.
_MODAL = re.compile(
    r"\b(must|shall|should|may|can|cannot|required?|requires|recommends?|recommended|"
    r"suggests?|ensure|avoid|never|always|do not|don't|need|needs|prohibited|mandatory|"
    r"consider|expected|ought|optional|encouraged|ha(?:s|ve) to|make sure)\b",
    re.IGNORECASE,
)
_NOT_IMPERATIVE_OPENERS = frozenset(
    [
        "the",
        "a",
        "an",
        "this",
        "these",
        "those",
        "that",
        "it",
        "its",
        "in",
        "on",
        "at",
        "for",
        "of",
        "our",
        "we",
        "they",
        "there",
        "when",
        "if",
        "as",
        "some",
        "many",
        "most",
    ]
)


@pytest.mark.parametrize("path", TEST_SET, ids=lambda p: p.stem)
def test_the_real_test_set_is_covered_by_actionable_items(path: Path) -> None:
    text = path.read_text(encoding="utf-8")

    result = extractive(text)

    assert result.quality.coverage >= 0.9, (path.stem, result.quality.coverage)
    assert result.quality.capped_items == 0
    assert_grounded_in(result.checklist, text)
    for item in result.checklist:
        quote = item.source.quote.strip()
        assert not quote.endswith("?"), quote
        assert not re.search(r"(cannot|can not|not) make a recommendation", quote, re.I), quote
        assert not re.match(r"In an? (\d{4} )?(study|survey)\b", quote), quote
        first = quote.split()[0].strip("*_(").lower()
        assert _MODAL.search(quote) or first not in _NOT_IMPERATIVE_OPENERS, quote
        assert item.strength is not None or not _MODAL.search(quote), quote
        if item.grade is not None:
            assert text[item.grade.start : item.grade.end] == item.grade.text


def test_the_api_documents_the_items_the_runner_writes() -> None:
    from guideline_api.schemas import CHECKLIST_ITEM_SCHEMA, JobView
    from guideline_runner.models import ChecklistItem, Strength

    documented = CHECKLIST_ITEM_SCHEMA["properties"]
    assert set(documented) == set(ChecklistItem.model_fields)
    strength = documented["strength"]["anyOf"][0]
    assert strength["enum"] == [s.value for s in Strength]
    result = JobView.model_json_schema()["properties"]["result"]
    assert result["properties"]["checklist"]["items"] == CHECKLIST_ITEM_SCHEMA


def test_the_uspstf_grades_are_the_statements_own_labels() -> None:
    path = GUIDELINES / "uspstf-specific-recommendations.md"
    text = path.read_text(encoding="utf-8")
    labels = {
        (m.start(1), m.group(1))
        for m in re.finditer(r"\(([ABCD] recommendation|I statement)\)", text)
    }

    result = extractive(text)

    graded = [item for item in result.checklist if item.grade is not None]
    assert len(graded) >= 100
    assert {(i.grade.start, i.grade.text) for i in graded} <= labels
    # Every recommendation statement (A to D; an I statement makes none, so is no item)
    # lends its label to an item.
    recommendations = {label for label in labels if label[1] != "I statement"}
    assert recommendations <= {(i.grade.start, i.grade.text) for i in graded}


def test_the_cdc_categories_are_each_recommendations_own_label() -> None:
    path = GUIDELINES / "cdc-opioid-prescribing-2022-recommendations.md"
    text = path.read_text(encoding="utf-8")
    labels = {
        int(m.group(1)): (m.start(2), m.group(2))
        for m in re.finditer(
            r"^(\d+)\. .*\((recommendation category: [AB]; evidence type: [1-4])\)\.$",
            text,
            re.M,
        )
    }
    assert len(labels) == 12

    result = extractive(text)

    graded = [item for item in result.checklist if item.grade is not None]
    assert graded == result.checklist  # every item is a recommendation's sentence
    for item in graded:
        # The label of the numbered recommendation the item quotes, nothing nearer or farther.
        number_line = text.rfind("\n", 0, item.source.start) + 1
        assert item.grade.start > item.source.start
        assert text.find("\n", number_line) > item.grade.start
        assert text[item.grade.start : item.grade.end] == item.grade.text
    # Each of the twelve lends its label to at least one item.
    assert {(i.grade.start, i.grade.text) for i in graded} == set(labels.values())
