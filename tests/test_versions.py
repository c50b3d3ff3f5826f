"""Versions of a guideline and the review listing, without a cluster: `changes` between
two stored results (a pure function with bounded work), `supersedes` and `review`
validated on submission, `result.changes` stored when a job that supersedes another
completes and read (never recomputed) afterwards, and `GET /jobs?needs_review=true`.
Results are produced by the real extractive chain."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Mapping, Sequence
from difflib import SequenceMatcher
from typing import Any

import pytest
from fastapi.testclient import TestClient
from guideline_core import changes as changes_module
from guideline_core import db
from guideline_core.changes import Work, checklist_changes
from guideline_core.resource import Phase, guideline_job_manifest
from guideline_core.settings import RunnerSettings
from guideline_runner.chain import run_chain
from guideline_runner.providers import make_provider
from support.api import auth, problem
from support.cluster import REPO_ROOT
from support.rows import add_job, mirror

V1 = """## Sharps

Used sharps must be discarded into a sharps bin at the point of use.
Needles shall not be re-sheathed.
Bins should be closed when two-thirds full.

## Injuries

Report every needlestick injury to Occupational Health on the same day.
"""
# v2: one sentence edited, one removed, one added.
V2 = """## Sharps

Used sharps must be discarded into a sharps bin at the point of use.
Needles shall not be re-sheathed.
Bins must be closed and locked when two-thirds full.

## Injuries

Report every needlestick injury to Occupational Health within one hour.
Staff must attend the sharps safety course every year.
"""


def extractive_result(text: str, **settings: Any) -> dict[str, Any]:
    config = RunnerSettings(provider="extractive", **settings)
    return run_chain(text, config, make_provider(config)).to_status()


def test_changes_match_items_by_their_source_passages() -> None:
    old, new = extractive_result(V1), extractive_result(V2)

    changes = checklist_changes(old, new, "job-1")

    assert changes["supersedes"] == "job-1"
    assert changes["unchanged"] == 2  # discard, re-sheath: same passage, same item
    assert [i["source"]["quote"] for i in changes["added"]] == [
        "Staff must attend the sharps safety course every year."
    ]
    assert changes["removed"] == []
    edited = {
        (c["before"]["source"]["quote"], c["after"]["source"]["quote"]) for c in changes["changed"]
    }
    assert edited == {
        (
            "Bins should be closed when two-thirds full.",
            "Bins must be closed and locked when two-thirds full.",
        ),
        (
            "Report every needlestick injury to Occupational Health on the same day.",
            "Report every needlestick injury to Occupational Health within one hour.",
        ),
    }


def test_removed_items_and_newly_uncovered_obligations() -> None:
    old = extractive_result(V1)
    # The new version's checklist keeps only one item: the others are gone, and the
    # obligations they covered are uncovered now.
    new = extractive_result(V1, max_checklist_items=1)

    changes = checklist_changes(old, new, "job-1")

    assert changes["unchanged"] == 1 and not changes["added"] and not changes["changed"]
    assert len(changes["removed"]) == 3
    assert [p["text"] for p in changes["newly_uncovered"]] == [
        p["text"] for p in new["quality"]["uncovered"]
    ]
    assert len(changes["newly_uncovered"]) == 3
    assert checklist_changes(new, new, "same")["newly_uncovered"] == []


def _norm(text: str | None) -> str:
    return re.sub(r"\s+", " ", text or "").strip().casefold()


def quadratic_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The matching before issue 23, as the reference for small inputs: every new passage
    against every free old one with difflib (quadratic), a ratio of at least 0.6."""
    old_items, new_items = old["checklist"], new["checklist"]

    def passage(item: Mapping[str, Any]) -> str:
        return _norm((item.get("source") or {}).get("quote"))

    def key(item: Mapping[str, Any]) -> str:
        return passage(item) or "\0item:" + _norm(item.get("item"))

    matched: dict[int, int] = {}
    free = list(range(len(old_items)))
    for j, item in enumerate(new_items):
        same = [i for i in free if key(old_items[i]) == key(item)]
        if same:
            matched[j] = same[0]
            free.remove(same[0])
    for j, item in enumerate(new_items):
        if j in matched or not passage(item):
            continue
        best, best_ratio = None, 0.6
        for i in free:
            if passage(old_items[i]):
                ratio = SequenceMatcher(
                    None, passage(old_items[i]), passage(item), autojunk=False
                ).ratio()
                if ratio >= best_ratio:
                    best, best_ratio = i, ratio
        if best is not None:
            matched[j] = best
            free.remove(best)
    for j, item in enumerate(new_items):
        same = [i for i in free if _norm(old_items[i]["item"]) == _norm(item["item"])]
        if j not in matched and same:
            matched[j] = same[0]
            free.remove(same[0])
    return {
        "added": [item for j, item in enumerate(new_items) if j not in matched],
        "removed": [old_items[i] for i in free],
        "pairs": sorted(matched.items()),
    }


def edited(text: str, rng: random.Random) -> str:
    """`text` with one to three words replaced, inserted or deleted (never the last: the
    sentence keeps its end)."""
    words = text.split()
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(words) - 1)
        choice = rng.choice(("replace", "insert", "delete"))
        if choice == "replace":
            words[at] = rng.choice(["must", "should", "always", "every", "clean"])
        elif choice == "insert":
            words.insert(at, rng.choice(["and", "always", "new", "each"]))
        elif len(words) > 4:
            del words[at]
    return " ".join(words)


def test_the_bounded_matching_agrees_with_the_quadratic_one_on_edited_guidelines() -> None:
    """Versions of the example guideline with sentences edited, dropped and added: the
    bounded matching pairs the same items as the old quadratic one."""
    base = (REPO_ROOT / "examples" / "hand-hygiene.md").read_text()
    old = extractive_result(base, max_checklist_items=200)
    assert len(old["checklist"]) >= 8
    quotes = [i["source"]["quote"] for i in old["checklist"]]
    rng = random.Random(23)
    for _ in range(20):
        text = base
        for quote in rng.sample(quotes, 3):
            text = text.replace(quote, edited(quote, rng), 1)
        text = text.replace(rng.choice(quotes), "", 1)
        text += "\n\nStaff must attend the sharps safety course every year.\n"
        new = extractive_result(text, max_checklist_items=200)

        changes = checklist_changes(old, new, "job-1")
        reference = quadratic_changes(old, new)

        assert changes["added"] == reference["added"]
        assert changes["removed"] == reference["removed"]
        assert changes["unchanged"] + len(changes["changed"]) == len(reference["pairs"])
        at_old = {id(item): i for i, item in enumerate(old["checklist"])}
        at_new = {id(item): j for j, item in enumerate(new["checklist"])}
        changed = {(at_new[id(c["after"])], at_old[id(c["before"])]) for c in changes["changed"]}
        assert changed <= set(reference["pairs"])


def checklist_of(passages: Sequence[str]) -> dict[str, Any]:
    """A result whose checklist has one item per passage (offsets as in one text)."""
    items, at = [], 0
    for n, quote in enumerate(passages):
        source = {"quote": quote, "start": at, "end": at + len(quote)}
        items.append({"item": f"Obligation {n}: {quote}", "priority": "high", "source": source})
        at += len(quote) + 1
    return {"summary": "s", "checklist": items, "quality": {"uncovered": []}}


def ward_passages(count: int) -> list[str]:
    """Passages that share most of their words, each with a ward number of its own."""
    return [
        f"Staff on ward {n} must wash hands before and after patient contact." for n in range(count)
    ]


def test_the_work_is_bounded_per_item_whatever_the_passages() -> None:
    n = 500
    old_passages = ward_passages(n)
    new_passages = [
        p.replace("wash hands", "clean their hands") if k % 5 == 0 else p
        for k, p in enumerate(old_passages)
    ]
    work = Work()

    changes = checklist_changes(
        checklist_of(old_passages), checklist_of(new_passages), "job-1", work
    )

    assert changes["unchanged"] == 400 and not changes["added"] and not changes["removed"]
    assert len(changes["changed"]) == 100
    for change in changes["changed"]:  # each edit found its own ward, not a neighbour's
        assert change["before"]["item"].split(":")[0] == change["after"]["item"].split(":")[0]
    assert 0 < work.similarities <= changes_module.CANDIDATES_PER_ITEM * 100
    assert work.postings <= changes_module.POSTINGS_PER_ITEM * 100
    # Passages made of the same few words: every word is in every index list, so only the
    # per-item caps keep the work linear (all pairs would be 250,000 comparisons).
    rng = random.Random(5)
    vocabulary = [
        "staff",
        "must",
        "wash",
        "hands",
        "before",
        "after",
        "each",
        "patient",
        "contact",
        "clean",
        "gloves",
    ]
    crowd_old = [" ".join(rng.choices(vocabulary, k=12)) + "." for _ in range(n)]
    crowd_new = [" ".join(rng.choices(vocabulary, k=12)) + "!" for _ in range(n)]
    work = Work()
    checklist_changes(checklist_of(crowd_old), checklist_of(crowd_new), "job-1", work)
    assert 0 < work.similarities <= changes_module.CANDIDATES_PER_ITEM * n
    assert work.postings <= changes_module.POSTINGS_PER_ITEM * n


def test_items_past_the_cap_are_not_compared_and_the_result_says_so() -> None:
    many = ward_passages(changes_module.MAX_ITEMS + 5)
    changes = checklist_changes(checklist_of(many[:10]), checklist_of(many), "job-1")
    assert changes["capped"] is True
    assert len(changes["added"]) == changes_module.MAX_ITEMS - 10
    assert (
        checklist_changes(checklist_of(many[:10]), checklist_of(many[:20]), "j")["capped"] is False
    )


def test_a_completed_superseding_job_shows_its_changes(
    client: TestClient, database: db.Database
) -> None:
    old = add_job(database, status=Phase.COMPLETED, text=V1, result=extractive_result(V1))
    new = add_job(
        database, status=Phase.COMPLETED, text=V2, result=extractive_result(V2), supersedes=old
    )

    job = client.get(f"/jobs/{new}", headers=auth()).json()

    assert job["supersedes"] == str(old)
    changes = job["result"]["changes"]
    assert changes["available"] is True and changes["supersedes"] == str(old)
    assert (len(changes["added"]), len(changes["changed"]), changes["unchanged"]) == (1, 2, 2)
    assert "changes" not in client.get(f"/jobs/{old}", headers=auth()).json()["result"]


def test_changes_wait_for_the_superseded_result(client: TestClient, database: db.Database) -> None:
    old = add_job(database, status=Phase.FAILED, text=V1, error={"reason": "Timeout"})
    new = add_job(
        database, status=Phase.COMPLETED, text=V2, result=extractive_result(V2), supersedes=old
    )
    changes = client.get(f"/jobs/{new}", headers=auth()).json()["result"]["changes"]
    assert changes["available"] is False and "FAILED" in changes["reason"]


def test_changes_never_compare_with_another_tenants_job(
    client: TestClient, database: db.Database
) -> None:
    """A kubectl-applied job may name any event_id in spec.supersedes: another tenant's
    checklist stays out of its answer, as if that job did not exist."""
    theirs = add_job(
        database, status=Phase.COMPLETED, text=V1, result=extractive_result(V1), tenant="bob"
    )
    mine = add_job(
        database, status=Phase.COMPLETED, text=V2, result=extractive_result(V2), supersedes=theirs
    )
    changes = client.get(f"/jobs/{mine}", headers=auth()).json()["result"]["changes"]
    assert changes["available"] is False and "gone" in changes["reason"]
    assert "added" not in changes and "changed" not in changes


def stored_changes(database: db.Database, event_id: uuid.UUID) -> Any:
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT changes FROM jobs WHERE event_id = %s", (event_id,))
        return cur.fetchone()[0]


def test_a_large_superseding_job_is_answered_from_its_stored_changes(
    client: TestClient, database: db.Database
) -> None:
    """500 items against 500: the changes are computed once, when the job completes, and
    a read answers the stored value (an altered stored value is what it answers)."""
    passages = ward_passages(500)
    old = add_job(database, status=Phase.COMPLETED, result=checklist_of(passages))
    passages[7] = passages[7].replace("wash hands", "clean their hands")
    new = add_job(database, status=Phase.COMPLETED, result=checklist_of(passages), supersedes=old)
    stored = stored_changes(database, new)
    assert stored["available"] is True and stored["unchanged"] == 499
    assert len(stored["changed"]) == 1 and stored["capped"] is False

    first = client.get(f"/jobs/{new}", headers=auth()).json()["result"]["changes"]
    assert first == stored
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE jobs SET changes = jsonb_set(changes, '{unchanged}', '-1') WHERE event_id = %s",
            (new,),
        )
    again = client.get(f"/jobs/{new}", headers=auth()).json()["result"]["changes"]
    assert again["unchanged"] == -1  # read, not recomputed
    assert stored_changes(database, old) is None  # it supersedes nothing


def test_a_job_completed_before_the_changes_were_stored_gets_them_at_its_first_read(
    client: TestClient, database: db.Database
) -> None:
    old = add_job(database, status=Phase.COMPLETED, text=V1, result=extractive_result(V1))
    new = add_job(
        database, status=Phase.COMPLETED, text=V2, result=extractive_result(V2), supersedes=old
    )
    computed = stored_changes(database, new)
    with database.connection() as conn, conn.cursor() as cur:  # as migration 0007 leaves it
        cur.execute("UPDATE jobs SET changes = NULL WHERE event_id = %s", (new,))

    changes = client.get(f"/jobs/{new}", headers=auth()).json()["result"]["changes"]

    assert changes == computed == stored_changes(database, new)


def test_a_late_result_of_the_superseded_job_fills_in_the_changes(
    client: TestClient, database: db.Database
) -> None:
    """The superseded job failed, so the changes stored with the new one are unavailable;
    a retry of it that completes stores the changes after all."""
    old = add_job(database, status=Phase.FAILED, text=V1, error={"reason": "Timeout"})
    new = add_job(
        database, status=Phase.COMPLETED, text=V2, result=extractive_result(V2), supersedes=old
    )
    assert stored_changes(database, new)["available"] is False
    with database.connection() as conn:
        row = db.lock_job(conn, old)
        assert row is not None
        run = db.request_retry(conn, row, "alice", "again")
    mirror(database, str(old), Phase.COMPLETED, 2, result=extractive_result(V1), run=run)

    changes = client.get(f"/jobs/{new}", headers=auth()).json()["result"]["changes"]
    assert changes["available"] is True
    assert (len(changes["added"]), len(changes["changed"]), changes["unchanged"]) == (1, 2, 2)
    assert stored_changes(database, new) == changes


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"supersedes": "not-a-uuid"}, "supersedes"),
        ({"supersedes": "0192f7a0-0000-7000-8000-000000000000"}, "supersedes"),  # no such job
        ({"review": {"min_coverage": 1.5}}, "review.min_coverage"),
        ({"review": {"min_grounding": "high"}}, "review.min_grounding"),
        ({"review": {"coverage": 0.5}}, "review.coverage"),
    ],
)
def test_bad_version_or_review_fields_are_422_with_a_reason(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    response = client.post(
        "/jobs", json={"guideline_text": "Staff must wash hands.", **body}, headers=auth()
    )
    assert response.status_code == 422, response.text
    error = problem(response)
    assert error["reason"] == "validation_error"
    assert any(d["field"] == field for d in error["details"]), error


def test_the_review_listing_shows_only_flagged_results(
    client: TestClient, database: db.Database
) -> None:
    flagged_result = extractive_result(V1, max_checklist_items=1)  # coverage 25%
    assert flagged_result["needs_review"] is True
    fine_result = extractive_result(V1)
    assert fine_result["needs_review"] is False
    flagged = add_job(database, status=Phase.COMPLETED, result=flagged_result)
    fine = add_job(database, status=Phase.COMPLETED, result=fine_result)
    add_job(database, status=Phase.PENDING)

    listed = client.get("/jobs", params={"needs_review": "true"}, headers=auth()).json()
    assert [j["event_id"] for j in listed["items"]] == [str(flagged)]
    assert listed["items"][0]["needs_review"] is True
    passed = client.get("/jobs", params={"needs_review": "false"}, headers=auth()).json()
    assert [j["event_id"] for j in passed["items"]] == [str(fine)]
    bad = client.get("/jobs", params={"needs_review": "maybe"}, headers=auth())
    assert bad.status_code == 422


def test_a_submission_records_what_it_supersedes_and_its_thresholds(
    client: TestClient, database: db.Database
) -> None:
    mine = add_job(database, status=Phase.COMPLETED, text=V1, result=extractive_result(V1))
    bobs = add_job(database, status=Phase.COMPLETED, text=V1, tenant="bob")
    body = {"guideline_text": V2, "supersedes": str(mine), "review": {"min_coverage": 0.5}}

    accepted = client.post("/jobs", json=body, headers=auth())

    assert accepted.status_code == 202, accepted.text
    event_id = accepted.json()["event_id"]
    assert accepted.json()["supersedes"] == str(mine)
    with database.connection() as conn:
        row = db.get_job(conn, uuid.UUID(event_id))
    assert row is not None and row["supersedes"] == mine
    assert row["review_thresholds"] == {"min_coverage": 0.5}
    # Another tenant's job is as unknown as a missing one.
    other = client.post("/jobs", json={**body, "supersedes": str(bobs)}, headers=auth())
    assert other.status_code == 422 and "no job with event_id" in problem(other)["detail"]
    batch = client.post(
        "/jobs/batch",
        json={"items": [{"guideline_text": V2, "supersedes": str(bobs)}, {"guideline_text": V2}]},
        headers=auth(),
    ).json()
    assert "error" in batch["items"][0] and "event_id" in batch["items"][1]


def test_the_guideline_job_carries_supersedes_and_the_thresholds_in_camel_case() -> None:
    event_id = uuid.uuid4()
    spec = guideline_job_manifest(
        event_id=uuid.uuid4(),
        guideline_text=V2,
        supersedes=event_id,
        review={"min_coverage": 0.5},
    )["spec"]
    assert spec["supersedes"] == str(event_id) and spec["review"] == {"minCoverage": 0.5}
    plain = guideline_job_manifest(event_id=uuid.uuid4(), guideline_text=V2)["spec"]
    assert "supersedes" not in plain and "review" not in plain
