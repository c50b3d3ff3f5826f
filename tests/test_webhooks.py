"""Webhooks end to end: the real API server (uvicorn), the real PostgreSQL and a real HTTP
receiver on loopback. Terminal states come through the real paths: a cancel through the
API, and COMPLETED/FAILED through `db.mirror_state`, the function the operator mirrors
with. Signatures are checked with `standardwebhooks`, the specification's own library, as
a receiver would. No cluster: the API points at a dead Kubernetes API (jobs stay PENDING
until a test finishes them)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from guideline_api.workers.outbox import backoff_delay
from guideline_api.workers.webhook_delivery import render
from guideline_core import db
from guideline_core.db import webhooks as store
from guideline_core.resource import Phase
from guideline_core.settings import ApiSettings
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from support.api import (
    BOB_KEY,
    api_http,
    auth,
    dead_kubeconfig,
    make_settings,
    post_job,
    problem,
    running_server,
    submit,
)
from support.cluster import REPO_ROOT, wait_for
from support.net import free_port
from support.webhooks import Receiver, run_webhook_secret_cli, webhook_secret_cli

TEXT = "Staff must wash hands before every patient contact."
RESULT = {"summary": "Wash hands.", "checklist": [{"item": "Wash hands"}], "provider": "x"}


def settings_for(database: db.Database, tmp_path: Path, **overrides: Any) -> ApiSettings:
    """A test API whose webhooks may call loopback and retry within fractions of a second."""
    values: dict[str, Any] = {
        "webhook_allow_private": True,
        "webhook_poll_seconds": 0.05,
        "webhook_backoff_base_seconds": 0.2,
        "webhook_max_backoff_seconds": 0.5,
        "webhook_timeout_seconds": 5.0,
        "dispatch_max_backoff_seconds": 5.0,
    }
    values.update(overrides)
    return make_settings(database.url, dead_kubeconfig(tmp_path), **values)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@contextmanager
def api(settings: ApiSettings) -> Iterator[httpx.Client]:
    with running_server(settings) as url, api_http(url) as client:
        yield client


def complete(database: db.Database, event_id: str, status: Phase = Phase.COMPLETED, **kw: Any):
    """What the operator mirrors when the job's run ends."""
    with database.connection() as conn:
        row = db.get_job(conn, uuid.UUID(event_id))
        assert row is not None
        changed = db.mirror_state(
            conn,
            db.JobState(
                event_id=row["event_id"],
                status=status,
                attempts=row["attempts"] + 1,
                completed_at=row["created_at"],
                result=RESULT if status == Phase.COMPLETED else None,
                error=None if status == Phase.COMPLETED else {"reason": "X", "message": "m"},
                run=row["run"],
                **kw,
            ),
        )
        assert changed


def deliveries(client: httpx.Client, event_id: str) -> list[dict[str, Any]]:
    job = client.get(f"/jobs/{event_id}", headers=auth()).json()
    return job["webhook"]["deliveries"]


def delivery_when(client: httpx.Client, event_id: str, check: Any, what: str) -> dict[str, Any]:
    """The job's only delivery (as GET /jobs/{id} shows it) once `check` holds for it."""

    def found() -> dict[str, Any] | None:
        items = deliveries(client, event_id)
        return items[0] if items and check(items[0]) else None

    return wait_for(found, 30, 0.05, what)


def counter(client: httpx.Client, name: str, **labels: str) -> float:
    text = client.get("/metrics").text
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{name}{{{selector}}} (\S+)$" if labels else rf"^{name} (\S+)$"
    match = re.search(pattern, text, re.M)
    return float(match.group(1)) if match else 0.0


# ------------------------------------------------------------------------------ delivery


def test_a_completed_job_is_posted_signed_and_its_delivery_is_shown(
    database: db.Database, tmp_path: Path, receiver: Receiver
) -> None:
    secret = webhook_secret_cli(database.url, "create", "--tenant", "alice")
    assert secret.startswith("whsec_")
    with api(settings_for(database, tmp_path)) as client:
        eid = submit(client, TEXT, callback_url=receiver.url)
        job = client.get(f"/jobs/{eid}", headers=auth()).json()
        assert job["webhook"] == {"url": receiver.url, "deliveries": []}
        complete(database, eid)
        (got,) = receiver.answered(1)
        payload = Webhook(secret).verify(got.body, got.headers)
        assert got.headers["content-type"] == "application/json"
        assert re.fullmatch(r"msg_[0-9a-f]{32}", got.webhook_id)
        # The body is the job as GET /jobs/{event_id} shows it (without its webhook part).
        job = client.get(f"/jobs/{eid}", headers=auth()).json()
        (delivery,) = job.pop("webhook")["deliveries"]
        assert payload == job
        assert payload["status"] == "COMPLETED"
        # The result as GET shows it: with usage.cost (null: model "x" has no price) and the
        # submitted text's document.
        expected = {**RESULT, "usage": {"cost": None}, "document": payload["document"]}
        assert payload["result"] == expected
        delivery = delivery_when(client, eid, lambda d: d["state"] == "delivered", "delivered")
        assert delivery["webhook_id"] == got.webhook_id
        assert delivery["status"] == "COMPLETED" and delivery["run"] == 0
        assert delivery["attempts"] == 1 and delivery["last_status"] == 200
        assert delivery["last_error"] is None and delivery["delivered_at"] is not None
        assert delivery["next_attempt_at"] is None
        assert counter(client, "guideline_webhook_deliveries_total", outcome="delivered") == 1
        # A wrong secret does not verify: the check above is not vacuous.
        with pytest.raises(WebhookVerificationError):
            Webhook(secret.replace(secret[8], "A" if secret[8] != "A" else "B", 1)).verify(
                got.body, got.headers
            )


def test_a_receiver_that_drops_the_connection_gets_the_retry_with_the_same_webhook_id(
    database: db.Database, tmp_path: Path
) -> None:
    receiver = Receiver(mode="drop").start()
    try:
        with api(settings_for(database, tmp_path)) as client:
            eid = submit(client, TEXT, callback_url=receiver.url)
            cancelled = client.post(f"/jobs/{eid}/cancel", headers=auth())
            assert cancelled.status_code == 202, cancelled.text
            receiver.wait_until(lambda r: len(r) >= 1)
            failing = delivery_when(
                client, eid, lambda d: d["last_error"] is not None, "a failed attempt recorded"
            )
            assert failing["state"] == "pending" and failing["last_status"] is None
            assert failing["next_attempt_at"] is not None
            receiver.mode = "ok"
            (answered,) = receiver.answered(1)
            secret = webhook_secret_cli(database.url, "show", "--tenant", "alice").split("\t")[-1]
            for attempt in receiver.received:
                assert attempt.webhook_id == failing["webhook_id"]
                assert attempt.body == answered.body  # every retry sends the same bytes
                Webhook(secret).verify(attempt.body, attempt.headers)
            assert json.loads(answered.body)["status"] == "CANCELLED"
            done = delivery_when(client, eid, lambda d: d["state"] == "delivered", "delivered")
            assert done["attempts"] == len(receiver.received) >= 2
            assert counter(client, "guideline_webhook_deliveries_total", outcome="failed") >= 1
    finally:
        receiver.stop()


def test_a_receiver_that_was_down_gets_the_delivery_when_it_is_back(
    database: db.Database, tmp_path: Path
) -> None:
    receiver = Receiver()  # not started: its port refuses connections
    with api(settings_for(database, tmp_path)) as client:
        eid = submit(client, TEXT, callback_url=receiver.url)
        assert client.post(f"/jobs/{eid}/cancel", headers=auth()).status_code == 202
        down = delivery_when(client, eid, lambda d: d["attempts"] >= 2, "two failed attempts")
        assert down["state"] == "pending" and "Connect" in down["last_error"]
        receiver.start()
        try:
            (got,) = receiver.answered(1)
            assert got.webhook_id == down["webhook_id"]
            done = delivery_when(client, eid, lambda d: d["state"] == "delivered", "delivered")
            # `attempts` counts an attempt when it is claimed: the one claimed when `down`
            # was read may be the one that found the receiver up.
            assert done["attempts"] >= down["attempts"] >= 2
        finally:
            receiver.stop()


def test_deliveries_survive_an_api_restart(database: db.Database, tmp_path: Path) -> None:
    """One delivery is retrying when the API stops, another is queued while none runs: the
    next API process makes both (the first under its webhook-id of before)."""
    receiver = Receiver()  # down for now
    settings = settings_for(database, tmp_path)
    with api(settings) as client:
        retrying = submit(client, TEXT, callback_url=receiver.url)
        queued = submit(client, TEXT, callback_url=receiver.url)
        assert client.post(f"/jobs/{retrying}/cancel", headers=auth()).status_code == 202
        before = delivery_when(client, retrying, lambda d: d["attempts"] >= 1, "an attempt")
        assert before["state"] == "pending"
    # The API is gone; the operator finishes the other job: its delivery is in PostgreSQL.
    complete(database, queued)
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT state, attempts FROM webhook_deliveries WHERE event_id = %s", (queued,))
        assert cur.fetchall() == [("pending", 0)]
    receiver.start()
    try:
        with api(settings) as client:
            got = receiver.answered(2)
            ids = {json.loads(g.body)["event_id"]: g.webhook_id for g in got}
            assert set(ids) == {retrying, queued}
            assert ids[retrying] == before["webhook_id"]
            for eid in (retrying, queued):
                delivery_when(client, eid, lambda d: d["state"] == "delivered", "delivered")
    finally:
        receiver.stop()


def test_a_stopping_api_gives_back_the_deliveries_it_claimed_but_did_not_attempt(
    database: db.Database, tmp_path: Path
) -> None:
    """One attempt at a time; the API stops while the first of five claimed deliveries
    is under way: that one ends (a timeout), the other four are due again at once, their
    attempt not counted, and the next API process delivers each of them once."""
    receiver = Receiver(mode="hold").start()
    settings = settings_for(
        database, tmp_path, webhook_concurrency=1, webhook_batch_size=5, webhook_timeout_seconds=1
    )
    try:
        with api(settings) as client:
            eids = [submit(client, TEXT, callback_url=receiver.url) for _ in range(5)]
            with database.connection() as conn:  # finished together: claimed in one batch
                for eid in eids:
                    db.mirror_state(
                        conn,
                        db.JobState(event_id=uuid.UUID(eid), status=Phase.COMPLETED, attempts=1),
                    )
            (held,) = receiver.wait_until(lambda r: len(r) == 1)
        with database.connection() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT webhook_id, attempts, last_error IS NULL, next_attempt_at <= now() "
                "FROM webhook_deliveries"
            )
            rows = {r[0]: r[1:] for r in cur.fetchall()}
        assert rows.pop(held.webhook_id)[:2] == (1, False)  # attempted: it timed out
        assert sorted(rows.values()) == [(0, True, True)] * 4
        receiver.let_go()
        receiver.mode = "ok"
        with api(settings) as client:
            got = receiver.answered(5)
            assert len({g.webhook_id for g in got}) == 5
            for eid in eids:
                delivery_when(client, eid, lambda d: d["state"] == "delivered", "delivered")
    finally:
        receiver.stop()
    assert len(receiver.received) == 6  # the held attempt, then each delivery once


def test_two_api_replicas_make_each_attempt_once(
    database: db.Database, tmp_path: Path, receiver: Receiver
) -> None:
    settings = settings_for(database, tmp_path, webhook_batch_size=2)
    with api(settings) as first, api(settings) as second:
        eids = [
            submit(client, TEXT, callback_url=receiver.url)
            for client in (first, second)
            for _ in range(6)
        ]
        with database.connection() as conn:  # all finish at once: both replicas race
            for eid in eids:
                row = db.get_job(conn, uuid.UUID(eid))
                assert row is not None
                db.mirror_state(
                    conn,
                    db.JobState(
                        event_id=row["event_id"], status=Phase.COMPLETED, attempts=1, result=RESULT
                    ),
                )
        got = receiver.answered(len(eids))
        assert sorted(json.loads(g.body)["event_id"] for g in got) == sorted(eids)
        assert len({g.webhook_id for g in got}) == len(eids)
        for eid in eids:
            done = delivery_when(first, eid, lambda d: d["state"] == "delivered", "delivered")
            assert done["attempts"] == 1
    assert len(receiver.received) == len(eids)


def finish_all(database: db.Database, eids: list[str]) -> None:
    """The operator finishes these jobs (COMPLETED), one transaction each."""
    for eid in eids:
        complete(database, eid)


def lease_of(database: db.Database, webhook_id: str) -> tuple[int, bool]:
    """(attempts, whether its lease runs now) of one delivery."""
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT attempts, coalesce(leased_until > now(), false) FROM webhook_deliveries "
            "WHERE webhook_id = %s",
            (webhook_id,),
        )
        row = cur.fetchone()
        assert row is not None
        return row[0], row[1]


def test_a_tarpit_of_one_tenant_does_not_hold_another_tenants_deliveries(
    database: db.Database, tmp_path: Path, receiver: Receiver
) -> None:
    """Alice's receiver trickles its answer (no per-read timeout ever fires) and her
    attempts have all the time in the world; Bob's delivery still goes out while hers is
    open, and her other deliveries wait for her slot instead of taking the rest."""
    tarpit = Receiver(mode="tarpit").start()
    settings = settings_for(
        database,
        tmp_path,
        webhook_concurrency=2,
        webhook_tenant_concurrency=1,
        webhook_attempt_deadline_seconds=600,
    )
    try:
        with api(settings) as client:
            alices = [submit(client, TEXT, callback_url=tarpit.url) for _ in range(3)]
            bobs = submit(client, TEXT, key=BOB_KEY, callback_url=receiver.url)
            finish_all(database, alices)
            tarpit.wait_for(lambda: sum(tarpit.live.values()) == 1)
            finish_all(database, [bobs])
            (got,) = receiver.answered(1)
            assert json.loads(got.body)["event_id"] == bobs
            # Bob's went out while Alice's attempt was still open: the tarpit has not let go
            # nor been hung up on, and Alice's other two deliveries were not attempted.
            assert sum(tarpit.live.values()) == 1 and tarpit.hung_up == []
            (held,) = tarpit.received
            assert lease_of(database, held.webhook_id) == (1, True)  # leased while live
            with database.connection() as conn, conn.cursor() as cur:
                cur.execute(
                    "SELECT attempts FROM webhook_deliveries WHERE tenant = 'alice' "
                    "AND webhook_id <> %s",
                    (held.webhook_id,),
                )
                assert cur.fetchall() == [(0,), (0,)]
            tarpit.let_go()
    finally:
        tarpit.stop()


def test_claims_take_tenants_in_turn_and_cap_each_tenants_attempts_in_flight(
    database: db.Database, tmp_path: Path, receiver: Receiver
) -> None:
    """The claim itself, on the outbox the API's trigger filled (no worker running): Bob's
    one delivery is not queued behind Alice's five older ones, and a tenant at its cap of
    attempts in flight gets no more until one is recorded."""
    with api(settings_for(database, tmp_path, webhook_enabled=False)) as client:
        alices = [submit(client, TEXT, callback_url=receiver.url) for _ in range(5)]
        bobs = submit(client, TEXT, key=BOB_KEY, callback_url=receiver.url)
    finish_all(database, [*alices, bobs])

    def claim(limit: int, per_tenant: int) -> list[dict[str, Any]]:
        with database.connection() as conn:
            return store.claim_deliveries(conn, limit, 60, per_tenant)

    first = claim(limit=2, per_tenant=1)
    assert sorted(r["tenant"] for r in first) == ["alice", "bob"]
    assert str(next(r for r in first if r["tenant"] == "alice")["event_id"]) == alices[0]
    assert claim(limit=10, per_tenant=1) == []  # both at their cap
    (alice_first,) = [r for r in first if r["tenant"] == "alice"]
    with database.connection() as conn:
        state = store.finish_attempt(
            conn,
            alice_first["webhook_id"],
            1,
            status_code=200,
            error=None,
            retry_in=1,
            max_age_seconds=3600,
        )
        assert state == "delivered"
    (second,) = claim(limit=10, per_tenant=1)
    assert str(second["event_id"]) == alices[1]
    more = claim(limit=10, per_tenant=3)  # Alice has one in flight: two more
    assert [str(r["event_id"]) for r in more] == alices[2:4]


def test_an_attempt_ends_at_its_deadline_and_no_other_starts_while_it_is_live(
    database: db.Database, tmp_path: Path
) -> None:
    """A tarpit keeps httpx's per-read timeout (30 s here) alive forever; the attempt's
    wall-clock deadline ends it. Two replicas race for the retries: none of them starts an
    attempt of the delivery while another is open."""
    tarpit = Receiver(mode="tarpit").start()
    settings = settings_for(
        database,
        tmp_path,
        webhook_timeout_seconds=30,
        webhook_attempt_deadline_seconds=1,
        webhook_backoff_base_seconds=1,
        webhook_max_backoff_seconds=1,
    )
    try:
        with api(settings) as first, api(settings) as second:
            eid = submit(first, TEXT, callback_url=tarpit.url)
            complete(database, eid)
            tarpit.wait_for(lambda: len(tarpit.hung_up) >= 3)  # three attempts, each cut off
            failed = delivery_when(
                second, eid, lambda d: d["attempts"] >= 3 and d["last_error"], "failed"
            )
            assert failed["state"] == "pending"
            assert failed["last_error"].startswith("DeadlineExceeded"), failed
            assert failed["last_status"] is None
            (webhook_id,) = set(tarpit.most_live)
            assert tarpit.most_live[webhook_id] == 1  # never two attempts open at once
            tarpit.let_go()
    finally:
        tarpit.stop()


def test_a_retry_that_finishes_again_is_delivered_again(
    database: db.Database, tmp_path: Path, receiver: Receiver
) -> None:
    with api(settings_for(database, tmp_path)) as client:
        eid = submit(client, TEXT, callback_url=receiver.url)
        assert client.post(f"/jobs/{eid}/cancel", headers=auth()).status_code == 202
        receiver.answered(1)
        assert client.post(f"/jobs/{eid}/retry", headers=auth()).status_code == 202
        complete(database, eid, Phase.FAILED)
        first, second = receiver.answered(2)
        assert [json.loads(g.body)["status"] for g in (first, second)] == ["CANCELLED", "FAILED"]
        assert first.webhook_id != second.webhook_id
        wait_for(
            lambda: [d["state"] for d in deliveries(client, eid)] == ["delivered"] * 2 or None,
            30,
            0.05,
            "both delivered",
        )
        assert [(d["run"], d["status"]) for d in deliveries(client, eid)] == [
            (0, "CANCELLED"),
            (1, "FAILED"),
        ]


def test_a_superseding_job_is_delivered_with_its_stored_changes(
    database: db.Database, tmp_path: Path, receiver: Receiver
) -> None:
    """The payload's `result.changes` is the value stored when the job completed: the
    trigger's copy of the row carries it, and rendering a delivery computes nothing."""
    with api(settings_for(database, tmp_path)) as client:
        old = submit(client, TEXT)
        complete(database, old)
        new = submit(client, TEXT, supersedes=old, callback_url=receiver.url)
        complete(database, new)
        (got,) = receiver.answered(1)
        changes = json.loads(got.body)["result"]["changes"]
        assert changes["available"] is True and changes["supersedes"] == old
        assert changes["unchanged"] == 1
        assert client.get(f"/jobs/{new}", headers=auth()).json()["result"]["changes"] == changes
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT job FROM webhook_deliveries WHERE event_id = %s", (new,))
        (snapshot,) = cur.fetchone()
        assert snapshot["changes"] == changes
        # A snapshot's changes are rendered as they are, not recomputed.
        snapshot["changes"] = {**changes, "unchanged": -1}
        body = json.loads(render(conn, snapshot))
    assert body["result"]["changes"]["unchanged"] == -1


def test_a_delivery_is_given_up_after_the_max_age(database: db.Database, tmp_path: Path) -> None:
    nobody = Receiver()  # never started
    with api(settings_for(database, tmp_path, webhook_max_age_seconds=1.0)) as client:
        eid = submit(client, TEXT, callback_url=nobody.url)
        assert client.post(f"/jobs/{eid}/cancel", headers=auth()).status_code == 202
        gone = delivery_when(client, eid, lambda d: d["state"] == "failed", "given up")
        assert gone["attempts"] >= 1 and gone["next_attempt_at"] is None
        assert gone["last_error"] and gone["delivered_at"] is None
        assert counter(client, "guideline_webhook_deliveries_abandoned_total") == 1


# ------------------------------------------------------------------------------ targets


# One address in each range webhooks refuse (IANA's special-purpose registries), and the
# embedded IPv4 forms: an IPv4-mapped or NAT64 address is judged by the IPv4 inside it.
REFUSED_ADDRESSES = [
    "0.0.0.0",
    "0.1.2.3",
    "10.1.2.3",
    "100.64.0.1",
    "127.0.0.1",
    "169.254.169.254",
    "172.16.5.4",
    "192.0.0.192",
    "192.0.0.8",
    "192.0.2.10",
    "192.88.99.1",
    "192.168.0.10",
    "198.18.0.1",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "::127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:127.0.0.1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::a00:1",
    "100::1",
    "2001::1",
    "2001:2::1",
    "2001:db8::1",
    "2002:a00:1::1",
    "2002:808:808::1",
    "3fff::1",
    "5f00::1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fec0::1",
    "ff02::1",
]
ALLOWED_ADDRESSES = ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.4.4", "64:ff9b::808:808"]


def _url_of(address: str) -> str:
    return f"http://[{address}]:8080/hook" if ":" in address else f"http://{address}:8080/hook"


def test_every_special_purpose_range_is_refused_and_public_addresses_are_not(
    database: db.Database, tmp_path: Path
) -> None:
    with api(settings_for(database, tmp_path, webhook_allow_private=False)) as client:
        let_through = []
        for address in REFUSED_ADDRESSES:
            response = post_job(client, TEXT, callback_url=_url_of(address))
            if response.status_code != 422:
                let_through.append(address)
                continue
            error = problem(response)
            assert error["reason"] == "callback_url_refused"
            assert error["detail"] == "callback_url: not allowed"
            assert error["details"][0] == {
                "field": "callback_url",
                "message": "not allowed",
                "type": "callback_url",
            }
        assert let_through == []
        for address in ALLOWED_ADDRESSES:  # accepted (nothing is sent until the job ends)
            submit(client, TEXT, callback_url=_url_of(address))


def test_a_refusal_tells_neither_what_a_host_resolves_to_nor_whether_it_exists(
    database: db.Database, tmp_path: Path
) -> None:
    """No DNS oracle: a name of the service's network, one that does not exist and a
    private literal are refused in the very same words."""
    urls = [
        "http://localhost:8080/hook",
        "http://no-such-host.invalid/hook",
        "http://10.0.0.1/hook",
        "http://[::ffff:127.0.0.1]/hook",
    ]
    with api(settings_for(database, tmp_path, webhook_allow_private=False)) as client:
        answers = set()
        for url in urls:
            response = post_job(client, TEXT, callback_url=url)
            assert response.status_code == 422, response.text
            body = problem(response)
            body.pop("instance", None)
            answers.add(json.dumps(body, sort_keys=True))
            for leak in ("127.0.0.1", "::1", "loopback", "private", "resolve", "invalid"):
                assert leak not in response.text
        assert len(answers) == 1, answers
    with database.connection() as conn:
        assert db.count_status(conn, Phase.PENDING) == 0


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("ftp://example.com/hook", "http:// or https://"),
        ("https://user:pw@example.com/hook", "credentials"),
        ("https:///hook", "no host"),
        ("https://exa mple.com/", "spaces"),
        ("http://example.com:99999/", "not a valid URL"),
    ],
)
def test_malformed_callback_urls_are_refused(
    database: db.Database, tmp_path: Path, url: str, complaint: str
) -> None:
    with api(settings_for(database, tmp_path)) as client:
        response = post_job(client, TEXT, callback_url=url)
        assert response.status_code == 422, response.text
        error = problem(response)
        assert error["reason"] == "validation_error" and complaint in error["detail"]
        assert error["details"][0]["field"] == "callback_url"


def test_a_tenant_default_callback_url_is_used_and_checked(
    database: db.Database, tmp_path: Path, receiver: Receiver
) -> None:
    limits = {"alice": {"callback_url": receiver.url}}
    with api(settings_for(database, tmp_path, tenant_limits=limits)) as client:
        eid = submit(client, TEXT)
        own = submit(client, TEXT, callback_url=f"{receiver.url}?own=1")
        assert client.post(f"/jobs/{eid}/cancel", headers=auth()).status_code == 202
        assert client.post(f"/jobs/{own}/cancel", headers=auth()).status_code == 202
        receiver.answered(2)
        job = client.get(f"/jobs/{eid}", headers=auth()).json()
        assert job["webhook"]["url"] == receiver.url
        assert client.get(f"/jobs/{own}", headers=auth()).json()["webhook"]["url"].endswith("=1")
    strict = settings_for(database, tmp_path, tenant_limits=limits, webhook_allow_private=False)
    with api(strict) as client:
        response = client.post(
            "/jobs/batch", json={"items": [{"guideline_text": TEXT}]}, headers=auth()
        )
        assert response.status_code == 202, response.text
        (item,) = response.json()["items"]
        assert item["error"]["reason"] == "callback_url_refused"
        assert "default callback_url of tenant alice" in item["error"]["message"]


def test_the_target_is_checked_again_at_delivery(
    database: db.Database, tmp_path: Path, receiver: Receiver
) -> None:
    with api(settings_for(database, tmp_path)) as client:
        eid = submit(client, TEXT, callback_url=receiver.url)  # accepted where loopback was allowed
    complete(database, eid)
    with api(settings_for(database, tmp_path, webhook_allow_private=False)) as client:
        refused = delivery_when(
            client, eid, lambda d: d["last_error"] is not None, "a refused attempt"
        )
        assert refused["state"] == "pending"
        assert refused["last_error"] == "callback_url not allowed"  # not what it resolved to
    assert receiver.received == []  # refused before any connection was made


# ------------------------------------------------------------------------------ secrets


def test_during_a_rotation_both_secrets_verify_and_after_it_only_the_new(
    database: db.Database, tmp_path: Path, receiver: Receiver
) -> None:
    old = webhook_secret_cli(database.url, "create", "--tenant", "alice")
    assert webhook_secret_cli(database.url, "create", "--tenant", "alice") == old  # idempotent
    new = webhook_secret_cli(database.url, "rotate", "--tenant", "alice", "--grace-seconds", "3600")
    assert new.startswith("whsec_") and new != old
    with api(settings_for(database, tmp_path)) as client:
        eid = submit(client, TEXT, callback_url=receiver.url)
        assert client.post(f"/jobs/{eid}/cancel", headers=auth()).status_code == 202
        (got,) = receiver.answered(1)
        assert len(got.headers["webhook-signature"].split(" ")) == 2
        assert Webhook(old).verify(got.body, got.headers)["event_id"] == eid
        assert Webhook(new).verify(got.body, got.headers)["event_id"] == eid
        # Rotating again without grace: only the newest secret signs from now on.
        newest = webhook_secret_cli(
            database.url, "rotate", "--tenant", "alice", "--grace-seconds", "0"
        )
        again = submit(client, TEXT, callback_url=receiver.url)
        assert client.post(f"/jobs/{again}/cancel", headers=auth()).status_code == 202
        _, later = receiver.answered(2)
        assert len(later.headers["webhook-signature"].split(" ")) == 2  # old still in grace
        Webhook(newest).verify(later.body, later.headers)
        Webhook(old).verify(later.body, later.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(new).verify(later.body, later.headers)


def test_a_tenant_without_a_secret_gets_one_at_its_first_delivery(
    database: db.Database, tmp_path: Path, receiver: Receiver
) -> None:
    with api(settings_for(database, tmp_path)) as client:
        eid = submit(client, TEXT, callback_url=receiver.url)
        assert client.post(f"/jobs/{eid}/cancel", headers=auth()).status_code == 202
        (got,) = receiver.answered(1)
    shown = webhook_secret_cli(database.url, "show", "--tenant", "alice")
    Webhook(shown.split("\t")[-1]).verify(got.body, got.headers)


def secret_rows(database: db.Database) -> list[tuple[str, str, bool]]:
    """Every stored secret: (tenant, secret, whether it has expired)."""
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT tenant, secret, coalesce(expires_at <= now(), false) FROM webhook_secrets "
            "ORDER BY id"
        )
        return cur.fetchall()


def test_the_secret_cli_takes_no_password_on_the_command_line(
    database: db.Database, tmp_path: Path
) -> None:
    for url in (
        "postgresql://guideline:hunter2pw@127.0.0.1:5432/guideline",
        "host=127.0.0.1 dbname=guideline password=hunter2pw",
        "postgresql://guideline@127.0.0.1/guideline?password=hunter2pw",
    ):
        done = run_webhook_secret_cli(
            "create", "--tenant", "alice", "--database-url", url, check=False
        )
        assert done.returncode == 2, done
        assert "must not carry a password" in done.stderr
        assert "GUIDELINE_DATABASE_URL" in done.stderr and "--database-url-file" in done.stderr
        assert "hunter2pw" not in done.stderr + done.stdout
    assert secret_rows(database) == []  # refused before connecting
    # The URL in a file (GUIDELINE_DATABASE_URL points elsewhere: the file wins) ...
    url_file = tmp_path / "database-url"
    url_file.write_text(database.url + "\n")
    url_file.chmod(0o600)
    made = run_webhook_secret_cli(
        "create",
        "--tenant",
        "alice",
        "--database-url-file",
        str(url_file),
        database_url="postgresql://nobody@127.0.0.1:1/none",
    )
    secret = made.stdout.strip().splitlines()[-1]
    # ... or in the environment; a URL without a password still works on the command line.
    assert webhook_secret_cli(database.url, "show", "--tenant", "alice").endswith(secret)
    shown = run_webhook_secret_cli(
        "show", "--tenant", "alice", "--database-url", database.url
    ).stdout
    assert shown.strip().endswith(secret)
    missing = run_webhook_secret_cli(
        "show", "--tenant", "alice", "--database-url-file", str(tmp_path / "nope"), check=False
    )
    assert missing.returncode == 2 and "--database-url-file" in missing.stderr


def test_revoke_ends_secrets_at_once(
    database: db.Database, tmp_path: Path, receiver: Receiver
) -> None:
    old = webhook_secret_cli(database.url, "create", "--tenant", "alice")
    new = webhook_secret_cli(database.url, "rotate", "--tenant", "alice", "--grace-seconds", "3600")
    webhook_secret_cli(database.url, "create", "--tenant", "bob")
    revoked = run_webhook_secret_cli(
        "revoke", "--tenant", "alice", "--all-previous", database_url=database.url
    )
    assert "revoked 1 webhook secret" in revoked.stdout
    assert [(t, s) for t, s, _ in secret_rows(database) if t == "alice"] == [("alice", new)]
    with api(settings_for(database, tmp_path)) as client:
        eid = submit(client, TEXT, callback_url=receiver.url)
        assert client.post(f"/jobs/{eid}/cancel", headers=auth()).status_code == 202
        (got,) = receiver.answered(1)
        assert len(got.headers["webhook-signature"].split(" ")) == 1  # the old one is gone
        Webhook(new).verify(got.body, got.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(old).verify(got.body, got.headers)
        # Revoking the current secret by its id (as `show` lists it): the next delivery
        # is signed with a fresh one.
        current_id = webhook_secret_cli(database.url, "show", "--tenant", "alice").split("\t")[0]
        run_webhook_secret_cli(
            "revoke", "--tenant", "alice", "--id", current_id, database_url=database.url
        )
        gone = run_webhook_secret_cli(
            "show", "--tenant", "alice", database_url=database.url, check=False
        )
        assert gone.returncode == 1 and "no webhook secret" in gone.stderr
        again = submit(client, TEXT, callback_url=receiver.url)
        assert client.post(f"/jobs/{again}/cancel", headers=auth()).status_code == 202
        _, later = receiver.answered(2)
        with pytest.raises(WebhookVerificationError):
            Webhook(new).verify(later.body, later.headers)
        fresh = webhook_secret_cli(database.url, "show", "--tenant", "alice").split("\t")[-1]
        assert fresh not in (old, new)
        Webhook(fresh).verify(later.body, later.headers)
    nothing = run_webhook_secret_cli(
        "revoke", "--tenant", "alice", "--id", "999999999", database_url=database.url, check=False
    )
    assert nothing.returncode == 1 and "no secret 999999999" in nothing.stderr
    assert [t for t, _, _ in secret_rows(database)].count("bob") == 1  # other tenants untouched


def test_expired_secrets_are_deleted_by_the_delivery_worker(
    database: db.Database, tmp_path: Path
) -> None:
    """A secret whose grace period ended signs nothing: it is not kept in plaintext until
    the tenant's next rotation. One still in its grace period stays."""
    webhook_secret_cli(database.url, "create", "--tenant", "alice")
    current = webhook_secret_cli(
        database.url, "rotate", "--tenant", "alice", "--grace-seconds", "0"
    )
    webhook_secret_cli(database.url, "create", "--tenant", "bob")
    bobs = webhook_secret_cli(database.url, "rotate", "--tenant", "bob", "--grace-seconds", "3600")
    assert [(t, expired) for t, _, expired in secret_rows(database)] == [
        ("alice", True),
        ("alice", False),
        ("bob", False),
        ("bob", False),
    ]
    with api(settings_for(database, tmp_path)):
        wait_for(
            lambda: not any(expired for _, _, expired in secret_rows(database)) or None,
            30,
            0.05,
            "the expired secret deleted",
        )
    rows = secret_rows(database)
    assert [(t, s) for t, s, _ in rows if t == "alice"] == [("alice", current)]
    assert [t for t, _, _ in rows].count("bob") == 2 and rows[-1][1] == bobs


def test_the_readme_receiver_example_verifies_and_prints_each_delivery(
    database: db.Database, tmp_path: Path
) -> None:
    secret = webhook_secret_cli(database.url, "create", "--tenant", "alice")
    port = free_port()
    example = REPO_ROOT / "examples" / "webhook-receiver.py"
    proc = subprocess.Popen(
        [sys.executable, str(example), str(port)],
        env={**os.environ, "WEBHOOK_SECRET": secret},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/hook"
        forged = wait_for(lambda: _post_or_none(url), 30, 0.1, "the example listening")
        assert forged.status_code == 400  # unsigned: rejected
        with api(settings_for(database, tmp_path)) as client:
            eid = submit(client, TEXT, callback_url=url)
            assert client.post(f"/jobs/{eid}/cancel", headers=auth()).status_code == 202
            line = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
            assert line["event_id"] == eid and line["status"] == "CANCELLED"
            assert line["reason"] == "Cancelled"
            done = delivery_when(client, eid, lambda d: d["state"] == "delivered", "delivered")
            assert done["last_status"] == 204
    finally:
        proc.terminate()
        proc.wait(10)


def _post_or_none(url: str) -> httpx.Response | None:
    try:
        return httpx.post(url, content=b"{}", headers={"webhook-id": "msg_x"})
    except httpx.TransportError:
        return None


def test_the_backoff_doubles_with_jitter_up_to_its_ceiling() -> None:
    """The schedule both outbox workers use (webhooks: base 5 s, ceiling 1 h by default)."""
    for attempt in range(1, 16):
        top = min(3600.0, 5.0 * 2 ** (attempt - 1))
        delays = [backoff_delay(attempt, 5.0, 3600.0) for _ in range(200)]
        assert all(top / 2 <= d <= top for d in delays), (attempt, min(delays), max(delays))
        assert len(set(delays)) > 1  # jittered, not in step
    assert backoff_delay(10_000, 5.0, 3600.0) <= 3600.0


def test_the_openapi_document_describes_the_webhook(database: db.Database, tmp_path: Path) -> None:
    with api(settings_for(database, tmp_path)) as client:
        document = client.get("/openapi.json").json()
        assert client.post("/job-finished", headers=auth()).status_code == 404  # not served
    post = document["webhooks"]["job-finished"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/JobView"}
    headers = {p["name"] for p in post["parameters"] if p["in"] == "header"}
    assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    submission = document["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
    assert submission["application/json"]["schema"] == {"$ref": "#/components/schemas/SubmitJob"}
    assert "callback_url" in document["components"]["schemas"]["SubmitJob"]["properties"]
