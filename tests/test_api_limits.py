"""Request limits attacked the way a member key would (issue 23): cancel/retry loops, refused
work and the rate, runs per job, a batch of callback URLs and its DNS lookups, two tenants
filling the backlog, expensive models and retries, `?include=text` reads flooding the
audit trail, and batch Idempotency-Keys. The real app on a real PostgreSQL; the app points
at a dead Kubernetes API (the row is the acceptance, no cluster is needed)."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from guideline_api.webhooks import targets
from guideline_core import db
from guideline_core.resource import Phase
from guideline_core.settings import ApiSettings
from support.api import (
    ADMIN_KEY,
    ALICE2_KEY,
    BOB_KEY,
    SettingsFor,
    api_client,
    auth,
    post_job,
    problem,
    submit,
)
from support.rows import add_job, mirror

TEXT = "Staff must wash hands before every patient contact."


def auth_of(key: str | None) -> dict[str, str]:
    return auth(key) if key else auth()


def batch(client: TestClient, items: list[Any], key: str | None = None, **headers: str) -> Any:
    return client.post("/jobs/batch", json={"items": items}, headers={**auth_of(key), **headers})


def count_jobs(database: db.Database) -> int:
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM jobs")
        return int(cur.fetchone()[0])


# --------------------------------------------------------------------------- the rate


def test_cancel_and_retry_loops_are_rate_limited(settings_for: SettingsFor) -> None:
    with api_client(settings_for(rate_limit_per_minute=6)) as client:
        eid = submit(client, TEXT)
        codes = []
        for _ in range(5):
            for action in ("cancel", "retry"):
                codes.append(client.post(f"/jobs/{eid}/{action}", headers=auth()).status_code)
        # 1 submission + 5 requests fill the minute; the rest are refused, not carried out.
        assert codes[:5] == [202] * 5
        assert set(codes[5:]) == {429}
        limited = client.post(f"/jobs/{eid}/cancel", headers=auth())
        body = problem(limited, 429)
        assert body["reason"] == "rate_limited"
        assert "requests per minute" in body["detail"]
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert client.delete(f"/jobs/{eid}", headers=auth()).status_code == 429
        job = client.get(f"/jobs/{eid}?include=history", headers=auth()).json()
        assert job["status"] == "CANCELLED"  # the third cancel was never carried out
        assert len(job["history"]) == 6  # Accepted + 5 requests
        # Another tenant has its own minute.
        assert post_job(client, TEXT, key=BOB_KEY).status_code == 202


def test_refused_submissions_count_against_the_rate(
    settings_for: SettingsFor, database: db.Database
) -> None:
    with api_client(settings_for(rate_limit_per_minute=5)) as client:
        invalid = post_job(client, " ")
        assert invalid.status_code == 422
        garbage = client.post(
            "/jobs", content=b"{", headers={**auth(), "Content-Type": "application/json"}
        )
        assert garbage.status_code == 422
        answer = batch(client, [{"guideline_text": TEXT}, {"title": "no text"}]).json()
        assert answer["accepted"] == 1 and answer["rejected"] == 1
        assert problem(batch(client, []), 422)["reason"] == "validation_error"
        assert problem(post_job(client, TEXT), 429)["reason"] == "rate_limited"
        # A cancel of another tenant's job (404) is charged to the caller, not to that tenant.
        bobs = submit(client, TEXT, key=BOB_KEY)
        assert client.post(f"/jobs/{bobs}/cancel", headers=auth()).status_code == 429
    assert count_jobs(database) == 2


def test_idempotent_replays_are_not_charged(settings_for: SettingsFor) -> None:
    with api_client(settings_for(rate_limit_per_minute=2)) as client:
        key = {"Idempotency-Key": "once"}
        first = post_job(client, TEXT, headers=key)
        assert first.status_code == 202
        for _ in range(3):
            again = post_job(client, TEXT, headers=key)
            assert again.status_code == 200
        assert post_job(client, TEXT).status_code == 202
        assert post_job(client, TEXT).status_code == 429


def test_another_tenant_filling_the_backlog_spends_none_of_this_tenants_rate(
    settings_for: SettingsFor, database: db.Database
) -> None:
    settings = settings_for(rate_limit_per_minute=2, max_pending_jobs=2)
    with api_client(settings) as client:
        bobs = [submit(client, TEXT, key=BOB_KEY) for _ in range(2)]
        for _ in range(4):
            assert problem(post_job(client, TEXT), 429)["reason"] == "backlog_full"
        for eid in bobs:  # the operator starts bob's jobs: room again
            mirror(database, eid, Phase.PROCESSING, 1)
        assert [post_job(client, TEXT).status_code for _ in range(2)] == [202, 202]
        assert problem(post_job(client, TEXT), 429)["reason"] == "rate_limited"


def test_a_job_has_at_most_max_runs_per_job_runs(settings_for: SettingsFor) -> None:
    with api_client(settings_for(max_runs_per_job=3)) as client:
        eid = submit(client, TEXT)
        for _ in range(2):
            assert client.post(f"/jobs/{eid}/cancel", headers=auth()).status_code == 202
            assert client.post(f"/jobs/{eid}/retry", headers=auth()).status_code == 202
        assert client.post(f"/jobs/{eid}/cancel", headers=auth()).status_code == 202
        refused = client.post(f"/jobs/{eid}/retry", headers=auth())
        body = problem(refused, 409)
        assert body["reason"] == "too_many_runs"
        assert "3 runs (limit 3)" in body["detail"]
        assert client.get(f"/jobs/{eid}", headers=auth()).json()["status"] == "CANCELLED"


# --------------------------------------------------------------------------- callbacks


class CountingResolver:
    """Stands in for the DNS: counts lookups per host; `internal.example` resolves to a
    private address, `slow.example` never answers while the test runs."""

    def __init__(self) -> None:
        self.lookups: Counter[str] = Counter()
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, url: str, allow_private: bool) -> targets.Target:
        host = urlsplit(url).hostname or ""
        with self._lock:
            self.lookups[host] += 1
        if host == "slow.example":
            self.release.wait(30)
        if host == "internal.example":
            raise targets.TargetRefusedError(f"host {host!r} is not allowed")
        return targets.Target(url=url, host=host, address="93.184.216.34")


@pytest.fixture
def resolver() -> Any:
    fake = CountingResolver()
    yield fake
    fake.release.set()


def with_resolver(client: TestClient, resolver: CountingResolver) -> None:
    client.app.state.ctx.resolve_target = resolver  # type: ignore[attr-defined]


def test_a_batch_resolves_each_distinct_callback_host_once(
    settings_for: SettingsFor, resolver: CountingResolver
) -> None:
    urls = [
        "https://hooks.example.com/a",
        "https://hooks.example.com:8443/b",
        "https://HOOKS.example.com/c?x=1",
        "https://other.example.org/d",
        "https://internal.example/e",
        "https://internal.example/f",
    ] * 20
    items = [{"guideline_text": f"{TEXT} {n}", "callback_url": u} for n, u in enumerate(urls)]
    with api_client(settings_for()) as client:
        with_resolver(client, resolver)
        answer = batch(client, items)
        assert answer.status_code == 202, answer.text
    assert resolver.lookups == {
        "hooks.example.com": 1,
        "other.example.org": 1,
        "internal.example": 1,
    }
    results = answer.json()["items"]
    refused = [r["index"] for r in results if "error" in r]
    assert refused == [i for i, u in enumerate(urls) if "internal" in u]
    assert all(results[i]["error"]["reason"] == "callback_url_refused" for i in refused)
    assert answer.json()["accepted"] == len(urls) - len(refused)


def test_a_host_not_resolved_within_the_budget_refuses_only_its_items(
    settings_for: SettingsFor, resolver: CountingResolver, database: db.Database
) -> None:
    items = [
        {"guideline_text": f"{TEXT} 1", "callback_url": "https://slow.example/hook"},
        {"guideline_text": f"{TEXT} 2", "callback_url": "https://hooks.example.com/hook"},
        {"guideline_text": f"{TEXT} 3"},
        {"guideline_text": f"{TEXT} 4", "callback_url": "https://slow.example/other"},
    ]
    with api_client(settings_for(callback_dns_budget_seconds=0.5)) as client:
        with_resolver(client, resolver)
        answer = batch(client, items).json()
    assert resolver.lookups["slow.example"] == 1
    errors = {r["index"]: r["error"] for r in answer["items"] if "error" in r}
    assert set(errors) == {0, 3}
    assert errors[0]["reason"] == "callback_url_refused"
    assert "could not be checked within 0.5 s" in errors[0]["message"]
    assert answer["accepted"] == 2 and count_jobs(database) == 2


def test_rate_and_backlog_refuse_a_batch_before_any_lookup(
    settings_for: SettingsFor, resolver: CountingResolver
) -> None:
    items = [
        {"guideline_text": f"{TEXT} {n}", "callback_url": f"https://h{n}.example.com/"}
        for n in range(3)
    ]
    with api_client(settings_for(max_pending_jobs=2)) as client:
        with_resolver(client, resolver)
        assert problem(batch(client, items), 429)["reason"] == "backlog_full"
    with api_client(settings_for(rate_limit_per_minute=2)) as client:
        with_resolver(client, resolver)
        assert problem(batch(client, items), 429)["reason"] == "rate_limited"
    assert resolver.lookups == {}


def test_a_retried_batch_replays_at_its_tenants_cap_without_lookups(
    settings_for: SettingsFor, resolver: CountingResolver
) -> None:
    items = [
        {"guideline_text": f"{TEXT} {n}", "callback_url": "https://hooks.example.com/"}
        for n in range(3)
    ]
    key = {"Idempotency-Key": f"corpus-{uuid.uuid4()}"}
    with api_client(settings_for(tenant_max_pending_jobs=3)) as client:
        with_resolver(client, resolver)
        first = batch(client, items, **key).json()
        again = batch(client, items, **key)
    assert first["accepted"] == 3
    assert again.status_code == 202, again.text
    assert all(r["replayed"] for r in again.json()["items"])
    assert resolver.lookups == {"hooks.example.com": 1}


# --------------------------------------------------------------------------- the backlog


def fair(settings_for: SettingsFor, **overrides: Any) -> ApiSettings:
    """A backlog of 20: 2 jobs guaranteed per tenant, half of it shared by what tenants
    hold beyond their guarantee."""
    values = {
        "max_pending_jobs": 20,
        "tenant_max_pending_jobs": 15,
        "tenant_guaranteed_pending_jobs": 2,
        "backlog_reserved_share": 0.5,
    }
    return settings_for(**{**values, **overrides})


def test_two_tenants_cannot_fill_the_backlog_for_the_others(settings_for: SettingsFor) -> None:
    items = [{"guideline_text": f"{TEXT} {n}"} for n in range(15)]
    with api_client(fair(settings_for)) as client:
        # alice may borrow at most the 10 shared jobs beyond her guaranteed 2.
        assert problem(batch(client, items[:13]), 429)["reason"] == "backlog_full"
        assert batch(client, items[:12]).json()["accepted"] == 12
        # bob, second, gets his guaranteed 2 and nothing beyond: the shared part is full.
        refused = problem(batch(client, items[:3], BOB_KEY), 429)
        assert refused["reason"] == "backlog_full"
        assert "guaranteed 2" in refused["detail"]
        assert batch(client, items[:2], BOB_KEY).json()["accepted"] == 2
        # A third tenant still has room for its guaranteed share.
        assert batch(client, items[:2], ADMIN_KEY).json()["accepted"] == 2
        # The tenant's own cap is its own refusal.
        capped = fair(settings_for, tenant_max_pending_jobs=12)
        with api_client(capped) as again:
            assert problem(post_job(again, TEXT), 429)["reason"] == "tenant_backlog_full"


def test_jobs_beyond_a_tenants_cap_made_with_kubectl_do_not_block_the_others(
    settings_for: SettingsFor, database: db.Database
) -> None:
    for _ in range(30):  # kubectl-applied GuidelineJobs of one namespace's tenant
        add_job(database, tenant="ward-8")
    with api_client(fair(settings_for, tenant_max_pending_jobs=5)) as client:
        items = [{"guideline_text": f"{TEXT} {n}"} for n in range(5)]
        assert batch(client, items).json()["accepted"] == 5
        assert batch(client, items, BOB_KEY).json()["accepted"] == 5


# --------------------------------------------------------------------------- cost


def test_models_outside_the_default_allowlist_are_refused(settings_for: SettingsFor) -> None:
    with api_client(settings_for()) as client:
        refused = problem(post_job(client, TEXT, model="o1-pro"), 422)
        assert refused["reason"] == "model_not_allowed"
        assert "gpt-4o-mini" in refused["detail"]
        assert post_job(client, TEXT, model="gpt-4o-mini").status_code == 202
    with api_client(settings_for(allowed_models=[])) as client:
        assert post_job(client, TEXT, model="o1-pro").status_code == 202  # [] set on purpose: any


def test_max_retries_is_capped_by_the_setting(settings_for: SettingsFor) -> None:
    with api_client(settings_for()) as client:
        refused = problem(post_job(client, TEXT, max_retries=4), 422)
        assert refused["reason"] == "validation_error"
        assert refused["details"][0]["field"] == "max_retries"
        assert post_job(client, TEXT, max_retries=3).status_code == 202
        item = batch(client, [{"guideline_text": TEXT, "max_retries": 10}]).json()["items"][0]
        assert item["error"]["details"][0]["field"] == "max_retries"
    with api_client(settings_for(max_retries_limit=1)) as client:
        assert post_job(client, TEXT, max_retries=2).status_code == 422


# --------------------------------------------------------------------------- audit


def text_reads(database: db.Database, event_id: str) -> list[dict[str, Any]]:
    with database.connection() as conn:
        entries = db.list_audit(conn, limit=100, event_id=uuid.UUID(event_id))
    return [e for e in entries if e["action"] == "read_text"]


def test_text_reads_are_one_audit_entry_per_key_and_window(
    settings_for: SettingsFor, database: db.Database
) -> None:
    with api_client(settings_for()) as client:
        eid = submit(client, TEXT)
        for _ in range(25):
            assert client.get(f"/jobs/{eid}?include=text", headers=auth()).status_code == 200
        [entry] = text_reads(database, eid)
        assert entry["actor"] == "alice" and entry["detail"]["reads"] == 25
        client.get(f"/jobs/{eid}?include=text", headers=auth(ALICE2_KEY))
        assert sorted(e["actor"] for e in text_reads(database, eid)) == ["alice", "alice2"]
        # Once the window has passed, the next read opens a new entry.
        with database.connection() as conn, conn.cursor() as cur:
            cur.execute("UPDATE audit_log SET at = at - interval '2 hours'")
        client.get(f"/jobs/{eid}?include=text", headers=auth())
        reads = [e["detail"]["reads"] for e in text_reads(database, eid) if e["actor"] == "alice"]
        assert reads == [1, 25]


def test_audit_entries_are_purged_after_their_retention(database: db.Database) -> None:
    from guideline_operator.housekeeping import Heartbeat
    from guideline_operator.metrics import Metrics

    eid = add_job(database)
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute("UPDATE audit_log SET at = now() - interval '40 days'")
        db.add_audit(conn, tenant="alice", actor="alice", action="read_text", event_id=eid)
    heartbeat = Heartbeat(
        database,
        Metrics(),
        identity="t",
        interval=1,
        retention_days=0,  # the jobs are kept forever...
        purge_interval=1,
        audit_retention_days=30,  # ...their audit trail is not
    )
    heartbeat.purge()
    with database.connection() as conn:
        assert [e["action"] for e in db.list_audit(conn, limit=10)] == ["read_text"]
        assert db.get_job(conn, eid) is not None


# --------------------------------------------------------------------------- batch keys


def test_one_key_with_two_bodies_in_a_batch_refuses_only_the_second(
    settings_for: SettingsFor, database: db.Database
) -> None:
    items = [
        {"guideline_text": f"{TEXT} A", "idempotency_key": "k"},
        {"guideline_text": f"{TEXT} B", "idempotency_key": "k"},
        {"guideline_text": f"{TEXT} A", "idempotency_key": "k"},
        {"guideline_text": f"{TEXT} C"},
    ]
    with api_client(settings_for()) as client:
        answer = batch(client, items)
    assert answer.status_code == 202, answer.text
    first, second, third, fourth = answer.json()["items"]
    assert "event_id" in first and "event_id" in fourth
    assert second["error"]["reason"] == "idempotency_key_reused"
    assert "item 0 of this batch" in second["error"]["message"]
    assert third["event_id"] == first["event_id"] and third["replayed"] is True
    assert count_jobs(database) == 2


def test_a_255_character_batch_key_works_and_replays(
    settings_for: SettingsFor, database: db.Database
) -> None:
    key = {"Idempotency-Key": "k" * 255}
    items = [{"guideline_text": f"{TEXT} {n}"} for n in range(3)]
    with api_client(settings_for()) as client:
        first = batch(client, items, **key).json()
        again = batch(client, items, **key).json()
    assert first["accepted"] == 3 and first["rejected"] == 0
    assert again["accepted"] == 0
    assert [r["event_id"] for r in again["items"]] == [r["event_id"] for r in first["items"]]
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT idempotency_key FROM jobs ORDER BY idempotency_key")
        stored = [k for (k,) in cur.fetchall()]
    assert all(k.startswith("sha256:") and len(k) <= 255 for k in stored)
