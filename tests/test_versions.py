"""Versions of a guideline and the review listing, without a cluster: `changes` between
two stored results (a pure function), `supersedes` and `review` validated on submission,
`result.changes` when reading a COMPLETED job that supersedes another, and
`GET /jobs?needs_review=true`. Results are produced by the real extractive chain."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from guideline_core import db, kube
from guideline_core.changes import checklist_changes
from guideline_core.resource import Phase
from guideline_core.settings import RunnerSettings
from guideline_runner.chain import run_chain
from guideline_runner.providers import make_provider
from support.api import api_client, auth, dead_kubeconfig, make_settings, problem
from support.rows import add_job

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


@pytest.fixture
def client(database: db.Database, tmp_path: Path) -> Iterator[TestClient]:
    with api_client(make_settings(database.url, dead_kubeconfig(tmp_path))) as c:
        yield c


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
    spec = kube.guideline_job_manifest(
        event_id=uuid.uuid4(),
        guideline_text=V2,
        supersedes=event_id,
        review={"min_coverage": 0.5},
    )["spec"]
    assert spec["supersedes"] == str(event_id) and spec["review"] == {"minCoverage": 0.5}
    plain = kube.guideline_job_manifest(event_id=uuid.uuid4(), guideline_text=V2)["spec"]
    assert "supersedes" not in plain and "review" not in plain
