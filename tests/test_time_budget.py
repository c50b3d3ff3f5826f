"""Time limits grown by a guideline's size: the rounds of LLM calls its splitting implies
(`guideline_core.splitting`, shared by the runner and the operator), the runner's soft
timeout and the operator's hard deadline of its Job."""

from __future__ import annotations

from guideline_core.settings import OperatorSettings, RunnerSettings
from guideline_core.splitting import checklist_sections, map_parts, planned_rounds, time_limit
from guideline_operator import manifests
from guideline_runner.chain.time_budget import soft_timeout

SHORT = "Staff must wash their hands.\n\nIncidents must be reported within 24 hours."


def rules(count: int) -> str:
    sentences = [
        f"Rule {n:03d}: every operator must check valve {n:03d} daily." for n in range(count)
    ]
    return "\n\n".join("\n".join(sentences[i : i + 5]) for i in range(0, count, 5))


def test_a_short_guideline_is_two_rounds_and_keeps_the_base_limits() -> None:
    assert planned_rounds(SHORT, 24_000, 4) == 2
    runner = RunnerSettings(soft_timeout_seconds=240, soft_timeout_per_round_seconds=60)
    assert soft_timeout(SHORT, runner) == 240
    operator = OperatorSettings(active_deadline_seconds=300, active_deadline_per_round_seconds=75)
    assert manifests.hard_deadline(2, operator) == 300


def test_rounds_follow_the_parts_and_the_concurrency() -> None:
    text = rules(300)
    parts = len(map_parts(text, 700))
    sections = len(checklist_sections(text, 700))
    assert parts >= 20 and sections >= 20
    sequential = planned_rounds(text, 700, 1)
    assert sequential == parts + (parts - 1) + sections
    assert planned_rounds(text, 700, 4) == -(-parts // 4) + -(-(parts - 1) // 4) + -(-sections // 4)
    assert planned_rounds(text, 700, 4) < sequential


def test_limits_grow_with_the_rounds_of_a_long_guideline() -> None:
    text = rules(300)
    rounds = planned_rounds(text, 700, 4)
    runner = RunnerSettings(
        soft_timeout_seconds=240, soft_timeout_per_round_seconds=60, chunk_chars=700
    )
    assert soft_timeout(text, runner) == 240 + 60 * (rounds - 2)
    operator = OperatorSettings(active_deadline_seconds=300, active_deadline_per_round_seconds=75)
    assert manifests.hard_deadline(rounds, operator) == 300 + 75 * (rounds - 2)
    assert time_limit(10, 5, 1) == 10  # never below the base


def test_the_jobs_deadline_is_grown_by_its_rounds() -> None:
    settings = OperatorSettings(
        runner_image="registry.local/guideline:1",
        active_deadline_seconds=300,
        active_deadline_per_round_seconds=75,
    )
    request = manifests.JobRequest(
        cr_name="gj-long", cr_uid="uid-long", namespace="ns1", event_id="e1", rounds=12
    )

    spec = manifests.build_job(request, settings)["spec"]

    assert spec["activeDeadlineSeconds"] == 300 + 75 * 10


GUIDELINE = """# Hand hygiene

Staff must wash their hands before every patient contact.

# Sharps

Needles must never be recapped. Containers should be closed when three quarters full.

3. WASTE

Clinical waste must be stored in yellow bags.
"""


def test_sections_start_at_the_guidelines_own_headings_then_size() -> None:
    sections = checklist_sections(GUIDELINE, 60)

    assert "".join(sections) == GUIDELINE
    assert all(len(s) <= 60 for s in sections)
    starts = [s.lstrip().splitlines()[0] for s in sections]
    # Every heading opens a section; the long one is cut again by size.
    assert {"# Hand hygiene", "# Sharps", "3. WASTE"} <= set(starts)
    assert len(sections) == 5
    assert checklist_sections(GUIDELINE, len(GUIDELINE)) == [GUIDELINE]


def test_short_sections_are_packed_up_to_the_size() -> None:
    sections = checklist_sections(GUIDELINE, 180)

    assert "".join(sections) == GUIDELINE
    assert len(sections) == 2
    assert sections[0].startswith("# Hand hygiene") and "# Sharps" in sections[0]
    assert sections[1].startswith("3. WASTE")
