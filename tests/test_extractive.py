"""The offline `extractive` provider: a real extractive summary (sentences of the text, in
order), a checklist made of the guideline's normative sentences with priorities from
their modal verbs, determinism, and honest labelling of the result."""

from __future__ import annotations

import re

from guideline_core.settings import RunnerSettings
from guideline_runner.chain import run_chain
from guideline_runner.models import Priority
from guideline_runner.providers import ExtractiveProvider, make_provider
from guideline_runner.providers.extractive import (
    extractive_checklist,
    extractive_summary,
    priority_of,
)
from guideline_runner.text import split_units

GUIDELINE = """# Data protection

This guideline describes how the clinic handles personal data. It applies to every site.
Patient records must be stored in the electronic record system only. Staff shall lock
their screen when leaving the workstation. Passwords should be changed every 90 days.
Departments may appoint a local privacy champion.

## Incidents

The privacy office was founded in 2019 and has four members.
- Report every suspected data breach to the privacy office within 24 hours.
- Never send patient data to a personal e-mail address.
- Do not discuss patients in public areas.

Training:
New employees are required to complete the privacy course in their first month.
Refresher courses can be taken online. Managers should ensure attendance is recorded.
"""

NORMATIVE = {
    "Patient records must be stored in the electronic record system only.": Priority.HIGH,
    "Staff shall lock their screen when leaving the workstation.": Priority.HIGH,
    "Passwords should be changed every 90 days.": Priority.MEDIUM,
    "Departments may appoint a local privacy champion.": Priority.LOW,
    "Report every suspected data breach to the privacy office within 24 hours.": Priority.MEDIUM,
    "Never send patient data to a personal e-mail address.": Priority.HIGH,
    "Do not discuss patients in public areas.": Priority.HIGH,
    "New employees are required to complete the privacy course in their first month.": (
        Priority.HIGH
    ),
    "Refresher courses can be taken online.": Priority.LOW,
    "Managers should ensure attendance is recorded.": Priority.MEDIUM,
}
DESCRIPTIVE = [
    "This guideline describes how the clinic handles personal data.",
    "It applies to every site.",
    "The privacy office was founded in 2019 and has four members.",
]


def test_checklist_is_made_of_the_normative_sentences_with_modal_priorities() -> None:
    items = extractive_checklist(GUIDELINE, max_items=30)

    assert {i.item: i.priority for i in items} == NORMATIVE
    assert [i.item for i in items] == list(NORMATIVE)  # the guideline's order
    assert not {i.item for i in items} & set(DESCRIPTIVE)


def test_categories_come_from_the_section_headings() -> None:
    categories = {i.item: i.category for i in extractive_checklist(GUIDELINE, max_items=30)}

    assert categories["Staff shall lock their screen when leaving the workstation."] == (
        "data protection"
    )
    assert categories["Do not discuss patients in public areas."] == "incidents"
    assert categories["Refresher courses can be taken online."] == "training"


def test_without_headings_the_category_is_a_topic_or_general() -> None:
    items = extractive_checklist(
        "Passwords must be rotated. Everyone should drink water.", max_items=5
    )
    assert [(i.category, i.priority) for i in items] == [
        ("security", Priority.HIGH),
        ("general", Priority.MEDIUM),
    ]


def test_priority_follows_the_strongest_modal() -> None:
    assert priority_of("You may leave, but you must sign out.") is Priority.HIGH
    assert priority_of("Staff should wear a badge.") is Priority.MEDIUM
    assert priority_of("Visitors can park here.") is Priority.LOW
    assert priority_of("Wear gloves when handling samples.") is Priority.MEDIUM
    assert priority_of("Use of phones is discouraged on the ward.") is None
    assert priority_of("The ward has twelve beds.") is None


def test_too_many_items_keep_the_higher_priorities_in_order() -> None:
    items = extractive_checklist(GUIDELINE, max_items=4)

    assert [i.item for i in items] == [s for s, p in NORMATIVE.items() if p is Priority.HIGH][:4]


def test_summary_is_sentences_of_the_text_in_their_order() -> None:
    summary = extractive_summary(GUIDELINE)
    units = [u.text for u in split_units(GUIDELINE)]

    picked = [u for u in units if u in summary]
    assert len(picked) >= 3
    assert " ".join(picked) == summary  # nothing but whole sentences, in original order
    assert len(summary) < len(GUIDELINE)


def test_summary_favours_what_the_text_is_about() -> None:
    text = " ".join(
        [
            "The cafeteria opens at eight.",
            "Sterile instruments must be kept in sealed trays.",
            "Sterile trays must be checked before use.",
            "Opened sterile trays must be reprocessed.",
            "The car park is behind the building.",
            "Sterile storage shall stay dry.",
            "The lift was renovated last year.",
            "Parking permits are issued at reception.",
            "Reception is staffed around the clock.",
            "Sterile stock should be rotated monthly.",
            "The garden has benches.",
            "Lunch is served in the cafeteria.",
            "Instruments dropped on the floor must not be used.",
            "The chapel is on the ground floor.",
            "Sterile packs must show an expiry date.",
            "Wi-fi is available for visitors.",
        ]
    )
    summary = extractive_summary(text)
    assert "Sterile" in summary
    assert "chapel" not in summary and "benches" not in summary


def test_deterministic() -> None:
    long_text = "\n\n".join([GUIDELINE] * 40)
    first = ExtractiveProvider().checklist("", guideline=long_text).value
    assert first == ExtractiveProvider().checklist("", guideline=long_text).value
    assert extractive_summary(long_text) == extractive_summary(long_text)


def test_chain_with_the_extractive_provider_is_labelled_and_offline() -> None:
    # An unreachable endpoint and no key: the extractive provider must need neither.
    settings = RunnerSettings(
        provider="extractive",
        openai_api_key=None,
        openai_base_url="http://127.0.0.1:9/v1",
        max_checklist_items=30,
        chunk_chars=1000,
    )
    provider = make_provider(settings)
    long_text = "\n\n".join([GUIDELINE] * 50)  # far beyond chunk_chars: no map-reduce needed

    result = run_chain(long_text, settings, provider)

    assert (result.provider, result.model, result.degraded) == (
        "extractive",
        "extractive-v1",
        False,
    )
    assert result.usage["summarize"].total_tokens == 0
    assert result.usage["checklist"].calls == 0
    assert {i.item for i in result.checklist} == set(NORMATIVE)  # duplicates removed
    assert not re.search(r"\bGPT\b|openai", result.summary, re.IGNORECASE)
