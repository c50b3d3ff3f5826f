"""Trust boundaries, each tried as an attacker would, against a real API server (uvicorn),
a real PostgreSQL and the real control plane.

Tenants (API): a member key reads, lists, cancels and retries only its tenant's jobs;
another tenant's job is a 404 exactly like a missing one; admin keys see every tenant;
idempotency keys are scoped by tenant; every read of a guideline text and every state
change is in the audit trail, which only admins may read.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from guideline_core import db
from guideline_core.resource import Phase
from guideline_core.settings import ApiSettings
from support.api import (
    ADMIN_KEY,
    ALICE2_KEY,
    ALICE_KEY,
    BOB_KEY,
    auth,
    dispatched_row,
    make_settings,
    running_server,
)
from support.cluster import LocalCluster

pytestmark = pytest.mark.cluster
SECRET = "CONFIDENTIAL protocol: staff must double-check the dose before administering."


# --------------------------------------------------------------------------- tenants (API)


@pytest.fixture(scope="module")
def namespace(cluster: LocalCluster) -> Iterator[str]:
    name = cluster.create_namespace("security-api")
    yield name
    cluster.delete_namespace(name)


@pytest.fixture
def settings(database: db.Database, cluster: LocalCluster, namespace: str) -> ApiSettings:
    cluster.kubectl("delete", "guidelinejobs", "--all", "-n", namespace, "--wait=false")
    return make_settings(database.url, cluster.kubeconfig, namespace=namespace)


@pytest.fixture
def http(settings: ApiSettings) -> Iterator[httpx.Client]:
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def _submit(http: httpx.Client, key: str, text: str = SECRET, **headers: str) -> str:
    response = http.post("/jobs", json={"guideline_text": text}, headers={**auth(key), **headers})
    assert response.status_code == 202, response.text
    return response.json()["event_id"]


def _fail(database: db.Database, event_id: str) -> None:
    """What the operator would mirror for a job whose pod failed."""
    with database.connection() as conn:
        db.mirror_state(
            conn,
            db.JobState(
                event_id=uuid.UUID(event_id),
                status=Phase.FAILED,
                attempts=1,
                error={"reason": "LLMError", "message": "boom"},
            ),
        )


def test_another_tenants_job_is_indistinguishable_from_a_missing_one(
    http: httpx.Client, database: db.Database
) -> None:
    victim = _submit(http, ALICE_KEY)
    missing = str(uuid.uuid4())
    for path in ("", "?include=text", "?include=history"):
        theirs = http.get(f"/jobs/{victim}{path}", headers=auth(BOB_KEY))
        nobody = http.get(f"/jobs/{missing}{path}", headers=auth(BOB_KEY))
        assert theirs.status_code == nobody.status_code == 404
        assert theirs.json()["error"]["reason"] == nobody.json()["error"]["reason"]
        assert SECRET not in theirs.text
    for method, path in (
        ("DELETE", f"/jobs/{victim}"),
        ("POST", f"/jobs/{victim}/cancel"),
        ("POST", f"/jobs/{victim}/retry"),
    ):
        assert http.request(method, path, headers=auth(BOB_KEY)).status_code == 404
    listed = http.get("/jobs", headers=auth(BOB_KEY)).json()["items"]
    assert victim not in {j["event_id"] for j in listed}
    # The victim's job is untouched by all of that.
    assert http.get(f"/jobs/{victim}", headers=auth(ALICE_KEY)).json()["status"] == "PENDING"


def test_a_member_may_not_list_another_tenant_even_by_asking(http: httpx.Client) -> None:
    _submit(http, ALICE_KEY)
    asked = http.get("/jobs", params={"tenant": "alice"}, headers=auth(BOB_KEY))
    assert asked.status_code == 403
    assert asked.json()["error"]["reason"] == "forbidden"
    own = http.get("/jobs", params={"tenant": "bob"}, headers=auth(BOB_KEY))
    assert own.status_code == 200 and own.json()["items"] == []


def test_members_of_one_tenant_share_its_jobs(http: httpx.Client, database: db.Database) -> None:
    eid = _submit(http, ALICE_KEY)
    got = http.get(f"/jobs/{eid}?include=text", headers=auth(ALICE2_KEY))
    assert got.status_code == 200 and got.json()["guideline_text"] == SECRET
    dispatched_row(database, eid)
    assert http.delete(f"/jobs/{eid}", headers=auth(ALICE2_KEY)).json()["status"] == "CANCELLED"
    assert http.post(f"/jobs/{eid}/retry", headers=auth(ALICE_KEY)).status_code == 202


def test_an_admin_sees_and_filters_every_tenant(http: httpx.Client) -> None:
    alices = {_submit(http, ALICE_KEY) for _ in range(2)}
    bobs = {_submit(http, BOB_KEY)}
    everything = http.get("/jobs", headers=auth(ADMIN_KEY)).json()["items"]
    assert {j["event_id"] for j in everything} == alices | bobs
    only_bob = http.get("/jobs", params={"tenant": "bob"}, headers=auth(ADMIN_KEY)).json()
    assert {j["event_id"] for j in only_bob["items"]} == bobs
    assert all(j["tenant"] == "bob" for j in only_bob["items"])
    one = http.get(f"/jobs/{next(iter(alices))}?include=text", headers=auth(ADMIN_KEY))
    assert one.status_code == 200 and one.json()["guideline_text"] == SECRET


def test_idempotency_keys_are_scoped_by_tenant(http: httpx.Client) -> None:
    """Bob cannot learn or replay alice's job by guessing her Idempotency-Key."""
    key = {"Idempotency-Key": "nightly-import-1"}
    alices = _submit(http, ALICE_KEY, **key)
    bob = http.post("/jobs", json={"guideline_text": SECRET}, headers={**auth(BOB_KEY), **key})
    assert bob.status_code == 202 and bob.json()["event_id"] != alices
    # Same tenant, another member: the tenant's key, so the same job.
    again = http.post("/jobs", json={"guideline_text": SECRET}, headers={**auth(ALICE2_KEY), **key})
    assert again.status_code == 200 and again.json()["event_id"] == alices


def test_the_audit_trail_records_reads_and_changes_and_is_for_admins(
    http: httpx.Client, database: db.Database
) -> None:
    eid = _submit(http, ALICE_KEY)
    http.get(f"/jobs/{eid}?include=text", headers=auth(ALICE2_KEY))
    dispatched_row(database, eid)
    http.post(f"/jobs/{eid}/cancel", headers=auth(ALICE_KEY))
    _fail(database, _submit(http, BOB_KEY))

    refused = http.get("/audit", headers=auth(ALICE_KEY))
    assert refused.status_code == 403 and refused.json()["error"]["reason"] == "forbidden"
    trail = http.get("/audit", params={"event_id": eid}, headers=auth(ADMIN_KEY)).json()
    entries = [(e["actor"], e["action"]) for e in reversed(trail["items"])]
    assert entries == [
        ("alice", "submit"),
        ("alice2", "read_text"),
        ("alice", "status:CANCELLED"),
    ]
    assert all(e["tenant"] == "alice" for e in trail["items"])
    bobs = http.get("/audit", params={"tenant": "bob"}, headers=auth(ADMIN_KEY)).json()["items"]
    assert [e["action"] for e in reversed(bobs)] == ["submit", "status:FAILED"]
    assert bobs[0]["actor"] == "operator"
    # Pages: newest first, the cursor continues without repeats.
    first = http.get("/audit", params={"limit": 2}, headers=auth(ADMIN_KEY)).json()
    rest = http.get(
        "/audit", params={"limit": 50, "cursor": first["next_cursor"]}, headers=auth(ADMIN_KEY)
    ).json()
    ids = [e["id"] for e in first["items"] + rest["items"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == len(set(ids)) == 5
