"""Trust boundaries, each tried as an attacker would, against a real API server (uvicorn),
a real PostgreSQL and the real control plane.

Tenants (API): a member key reads, lists, cancels and retries only its tenant's jobs;
another tenant's job is a 404 exactly like a missing one; admin keys see every tenant;
idempotency keys are scoped by tenant; every read of a guideline text and every state
change is in the audit trail, which only admins may read.

API keys: the `guideline-api keys` CLI, tenants and roles of keys, revocation without a
restart. Unauthenticated requests are cheap: 401 before a body is read, /health and
/metrics from cached figures, uvicorn's limits. /health shows errors and pod names to admins
only. Database passwords never reach a log line. Text processing stays linear on the worst
inputs found and on fuzzed ones.

The operator and the cluster (section "operator" below): a GuidelineJob affects only its
own row (the confused deputy), labels reach Jobs and pods only from an allowlist, Job
names cannot collide, a runner writes only its own GuidelineJob's status, kubectl-applied
jobs belong to their namespace's tenant and record the authenticated creator, the CRD
applies the API's input rules, and admission is fair across tenants under a flood.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from guideline_api.auth import KeyStore, Principal, Role, hash_key
from guideline_core import db, logs
from guideline_core import resource as gj
from guideline_core.resource import Phase
from guideline_core.settings import ApiSettings
from psycopg2.extensions import parse_dsn
from support.api import (
    ADMIN_KEY,
    ALICE2_KEY,
    ALICE_KEY,
    BOB_KEY,
    api_http,
    auth,
    dead_kubeconfig,
    dispatched_row,
    health_when,
    keys_cli,
    make_settings,
    post_job,
    problem,
    running_server,
    submit,
)
from support.cluster import REPO_ROOT, LocalCluster, wait_for
from support.net import free_port
from support.pg import PgServer
from support.rows import set_state
from support.stack import FAKE_CHECKLIST, FAKE_SUMMARY, Stack
from support.textfuzz import MAX_GROWTH, growth

pytestmark = pytest.mark.cluster
SECRET = "CONFIDENTIAL protocol: staff must double-check the dose before administering."


# --------------------------------------------------------------------------- tenants (API)


@pytest.fixture
def http(settings: ApiSettings) -> Iterator[httpx.Client]:
    with running_server(settings) as url, api_http(url, timeout=30) as client:
        yield client


def test_another_tenants_job_is_indistinguishable_from_a_missing_one(
    http: httpx.Client, database: db.Database
) -> None:
    victim = submit(http, SECRET, key=ALICE_KEY)
    missing = str(uuid.uuid4())
    for path in ("", "?include=text", "?include=history"):
        theirs = http.get(f"/jobs/{victim}{path}", headers=auth(BOB_KEY))
        nobody = http.get(f"/jobs/{missing}{path}", headers=auth(BOB_KEY))
        assert theirs.status_code == nobody.status_code == 404
        assert problem(theirs)["reason"] == problem(nobody)["reason"]
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
    submit(http, SECRET, key=ALICE_KEY)
    asked = http.get("/jobs", params={"tenant": "alice"}, headers=auth(BOB_KEY))
    assert asked.status_code == 403
    assert problem(asked)["reason"] == "forbidden"
    own = http.get("/jobs", params={"tenant": "bob"}, headers=auth(BOB_KEY))
    assert own.status_code == 200 and own.json()["items"] == []


def test_members_of_one_tenant_share_its_jobs(http: httpx.Client, database: db.Database) -> None:
    eid = submit(http, SECRET, key=ALICE_KEY)
    got = http.get(f"/jobs/{eid}?include=text", headers=auth(ALICE2_KEY))
    assert got.status_code == 200 and got.json()["guideline_text"] == SECRET
    dispatched_row(database, eid)
    assert http.delete(f"/jobs/{eid}", headers=auth(ALICE2_KEY)).json()["status"] == "CANCELLED"
    assert http.post(f"/jobs/{eid}/retry", headers=auth(ALICE_KEY)).status_code == 202


def test_an_admin_sees_and_filters_every_tenant(http: httpx.Client) -> None:
    alices = {submit(http, SECRET, key=ALICE_KEY) for _ in range(2)}
    bobs = {submit(http, SECRET, key=BOB_KEY)}
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
    alices = submit(http, SECRET, key=ALICE_KEY, headers=key)
    bob = post_job(http, SECRET, key=BOB_KEY, headers=key)
    assert bob.status_code == 202 and bob.json()["event_id"] != alices
    # Same tenant, another member: the tenant's key, so the same job.
    again = post_job(http, SECRET, key=ALICE2_KEY, headers=key)
    assert again.status_code == 200 and again.json()["event_id"] == alices


def test_the_audit_trail_records_reads_and_changes_and_is_for_admins(
    http: httpx.Client, database: db.Database
) -> None:
    eid = submit(http, SECRET, key=ALICE_KEY)
    http.get(f"/jobs/{eid}?include=text", headers=auth(ALICE2_KEY))
    dispatched_row(database, eid)
    http.post(f"/jobs/{eid}/cancel", headers=auth(ALICE_KEY))
    failed = {"reason": "LLMError", "message": "boom"}  # as the operator mirrors a failed pod
    set_state(database, submit(http, SECRET, key=BOB_KEY), Phase.FAILED, 1, error=failed)

    refused = http.get("/audit", headers=auth(ALICE_KEY))
    assert refused.status_code == 403 and problem(refused)["reason"] == "forbidden"
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


# --------------------------------------------------------------------------- API keys


def _created_key(result: subprocess.CompletedProcess[str]) -> str:
    key = result.stdout.splitlines()[-1]
    assert key.startswith("gi_") and " " not in key, result.stdout
    return key


def _key_id(keys_file: Path, tenant: str) -> str:
    rows = [
        line.split("\t") for line in keys_cli("list", "--keys-file", keys_file).stdout.splitlines()
    ]
    [row] = [r for r in rows[1:] if r[1] == tenant]
    return row[0]


def test_keys_cli_round_trip_through_a_real_server(database: db.Database, tmp_path: Path) -> None:
    keys = tmp_path / "keys" / "api-keys"
    member = _created_key(keys_cli("create", "--tenant", "team-a", "--keys-file", keys))
    admin = _created_key(
        keys_cli("create", "--tenant", "ops", "--role", "admin", "--keys-file", keys)
    )
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    listed = keys_cli("list", "--keys-file", keys).stdout
    assert "team-a\tmember" in listed and "ops\tadmin" in listed
    for secret in (member, admin, hash_key(member), hash_key(admin)):
        assert secret not in listed  # neither a key nor a whole hash is ever shown
    store = KeyStore(keys_file=str(keys))
    assert store.verify(member) == Principal(_key_id(keys, "team-a"), "team-a", Role.MEMBER)
    assert store.verify(admin).is_admin

    settings = make_settings(
        database.url, dead_kubeconfig(tmp_path), api_key_hashes="", api_keys_file=str(keys)
    )
    with running_server(settings) as url, api_http(url, timeout=10) as client:
        assert client.get("/jobs", headers=auth(member)).status_code == 200
        assert client.get("/jobs", headers=auth(admin)).status_code == 200
        assert client.get("/jobs").status_code == 401

        # Revoked while the server runs: refused within the reload interval, no restart.
        keys_cli("revoke", _key_id(keys, "team-a"), "--keys-file", keys)
        wait_for(
            lambda: client.get("/jobs", headers=auth(member)).status_code == 401,
            timeout=10,
            message="revoked key refused",
        )
        assert client.get("/jobs", headers=auth(admin)).status_code == 200
        # A key created while it runs is accepted the same way.
        late = _created_key(keys_cli("create", "--tenant", "team-b", "--keys-file", keys))
        wait_for(
            lambda: client.get("/jobs", headers=auth(late)).status_code == 200,
            timeout=10,
            message="new key accepted",
        )
    assert keys_cli("revoke", "no-such-key", "--keys-file", keys, check=False).returncode == 1


def test_concurrent_key_creation_loses_no_key(tmp_path: Path) -> None:
    keys = tmp_path / "api-keys"
    script = Path(sys.executable).parent / "guideline-api"
    procs = [
        subprocess.Popen(
            [str(script), "keys", "create", "--tenant", f"t{i}", "--keys-file", str(keys)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    created = [p.communicate(timeout=60)[0].splitlines()[-1] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    store = KeyStore(keys_file=str(keys))
    assert store.count() == 8
    assert {store.verify(key).tenant for key in created} == {f"t{i}" for i in range(8)}
    assert not [p for p in keys.parent.iterdir() if p.name.endswith(".tmp")]


def test_short_lines_of_earlier_releases_stay_valid(tmp_path: Path) -> None:
    keys = tmp_path / "api-keys"
    keys.write_text(
        f"# mounted Secret\ncarol:{hash_key('carol-key')}\n"
        f"dave:{hash_key('dave-key')}:team-d:admin\nnot a key line\n"
    )
    store = KeyStore(keys_file=str(keys), reload_seconds=0)
    assert store.verify("carol-key") == Principal("carol", "carol", Role.MEMBER)
    assert store.verify("dave-key") == Principal("dave", "team-d", Role.ADMIN)
    assert store.verify("carol-key ") is None
    keys_cli("revoke", "carol", "--keys-file", keys)
    text = keys.read_text()
    assert "carol" not in text and "# mounted Secret" in text and "not a key line" in text
    assert store.verify("carol-key") is None
    assert store.verify("dave-key") is not None


def test_keys_file_is_looked_at_once_per_reload_interval(tmp_path: Path) -> None:
    keys = tmp_path / "api-keys"
    keys.write_text(f"erin:{hash_key('erin-key')}\n")
    now = [0.0]
    store = KeyStore(keys_file=str(keys), reload_seconds=5.0, clock=lambda: now[0])
    assert store.verify("erin-key") is not None
    keys.unlink()
    now[0] = 4.9  # within the interval: the file is not even stat'ed
    assert store.verify("erin-key") is not None
    now[0] = 5.0
    assert store.verify("erin-key") is None


# ------------------------------------------------------- unauthenticated requests are cheap


def _raw_post(url: str, head: dict[str, str], body: bytes, timeout: float = 10) -> int:
    """POST /jobs on a raw socket sending only `body` (maybe less than the headers
    announce); the status code of the answer, read without sending more."""
    parts = urlsplit(url)
    lines = [
        "POST /jobs HTTP/1.1",
        f"Host: {parts.netloc}",
        *(f"{k}: {v}" for k, v in head.items()),
    ]
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_unauthenticated_bodies_are_refused_unread(database: db.Database, tmp_path: Path) -> None:
    settings = make_settings(database.url, dead_kubeconfig(tmp_path))
    json_head = {"Content-Type": "application/json"}
    with running_server(settings) as url:
        # More than the cap announced, 64 KB sent: an answer proves the server did not wait
        # for the rest. 401, not 413: nothing about the request is looked at before the key.
        ten_mb = {**json_head, "Content-Length": str(settings.max_body_bytes + 1)}
        assert _raw_post(url, ten_mb, b"x" * 65536) == 401
        # Within the size cap (which buffers what it admits), still refused before reading.
        under_cap = {**json_head, "Content-Length": str(settings.max_body_bytes - 1)}
        assert _raw_post(url, under_cap, b"{") == 401
        chunked = {**json_head, "Transfer-Encoding": "chunked"}
        assert _raw_post(url, chunked, b"10000\r\n" + b"y" * 1000) == 401
        wrong_key = {**under_cap, "Authorization": "Bearer not-a-key"}
        assert _raw_post(url, wrong_key, b"{") == 401
        # With a key the size cap answers as before, also unread; and so does an upload
        # announcing more than a document and its form fields.
        assert _raw_post(url, {**ten_mb, **auth()}, b"x" * 1024) == 413
        upload = {
            "Content-Type": "multipart/form-data; boundary=b",
            "Content-Length": str(settings.max_document_bytes + 2 * 1024 * 1024),
        }
        assert _raw_post(url, upload, b"--b\r\n") == 401
        assert _raw_post(url, {**upload, **auth()}, b"--b\r\n") == 413
        metrics = httpx.get(f"{url}/metrics").text
        assert 'guideline_api_jobs_rejected_total{reason="missing_api_key"} 4.0' in metrics
        assert 'guideline_api_jobs_rejected_total{reason="document_too_large"} 1.0' in metrics
        assert 'guideline_api_jobs_rejected_total{reason="invalid_api_key"} 1.0' in metrics


def test_health_and_metrics_never_query_per_call(tmp_path: Path) -> None:
    with PgServer(tmp_path / "pg", options="-c log_statement=all") as pg:
        url = pg.create_database("health")
        settings = make_settings(url, dead_kubeconfig(tmp_path), health_cache_seconds=0.5)
        with running_server(settings) as base, api_http(base, timeout=10) as client:
            health_when(client, lambda h: h["database"]["ok"])
            start = time.monotonic()
            for _ in range(150):
                client.get("/health")
                client.get("/metrics")
                client.get("/health/ready")
            elapsed = time.monotonic() - start
            last = client.get("/health").json()
        counted = pg.log.read_text().count("FROM jobs GROUP BY status")
    assert last["figures_age_seconds"] <= 0.5 + settings.db_acquire_timeout_seconds
    # One count per refresh (every 0.5 s), not one per each of the 450 calls.
    assert counted <= elapsed / 0.5 + 4, (counted, elapsed)


def test_server_limits_concurrency(database: db.Database, tmp_path: Path) -> None:
    settings = make_settings(database.url, dead_kubeconfig(tmp_path), limit_concurrency=4)
    with running_server(settings) as url:
        parts = urlsplit(url)
        idle = [socket.create_connection((parts.hostname, parts.port)) for _ in range(4)]
        try:
            time.sleep(0.2)  # the server has accepted them
            assert httpx.get(f"{url}/health/live", timeout=5).status_code == 503
        finally:
            for sock in idle:
                sock.close()
        wait_for(lambda: httpx.get(f"{url}/health/live", timeout=5).status_code == 200, 10)


# ------------------------------------------------------------------------ /health redaction


def test_health_shows_errors_and_pod_names_only_to_admins(
    database: db.Database, tmp_path: Path
) -> None:
    kubeconfig = dead_kubeconfig(tmp_path)
    port = str(urlsplit(kubeconfig.read_text().split("server: ")[1].split()[0]).port)
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO operator_heartbeat (identity) VALUES ('operator-7d9f-x2k4p')")
    settings = make_settings(database.url, kubeconfig)
    with running_server(settings) as url, api_http(url, timeout=10) as client:
        full = health_when(client, lambda h: h["kubernetes"]["error"], auth(ADMIN_KEY))
        assert port in full["kubernetes"]["error"]
        assert full["operator"]["identity"] == "operator-7d9f-x2k4p"
        for headers in ({}, auth(ALICE_KEY), auth("not-a-key")):
            response = client.get("/health", headers=headers)
            assert response.status_code == 200  # Kubernetes down is `degraded`
            body = response.json()
            assert body["kubernetes"] == {"ok": False, "latency_ms": None, "error": None}
            assert body["operator"]["identity"] is None and body["operator"]["alive"] is True
            assert port not in response.text and "operator-7d9f" not in response.text


# ------------------------------------------------------------- database passwords in logs

PASSWORD = "Tr0ub4dor-and-3"


# A port bound for the whole session and never listened on: connecting to it is refused, and
# no other process can take it in the minutes between collection and the test (a port that
# was merely free at collection was once taken by a server of another test run).
_DEAD_PORT = socket.socket()
_DEAD_PORT.bind(("127.0.0.1", 0))


def _dead_urls() -> list[str]:
    port = _DEAD_PORT.getsockname()[1]
    return [
        f"host=127.0.0.1 port={port} user=guideline password={PASSWORD} dbname=guideline",
        f"host=127.0.0.1 port={port} user=guideline password='{PASSWORD}' dbname=guideline",
        f"postgresql://guideline:{PASSWORD}@127.0.0.1:{port}/guideline",
    ]


@pytest.mark.parametrize("url", _dead_urls())
def test_migrate_never_prints_the_password(url: str) -> None:
    script = Path(sys.executable).parent / "guideline-migrate"
    result = subprocess.run(
        [str(script), "--database-url", url], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "Connection refused" in result.stderr  # the real failure is reported...
    assert PASSWORD not in result.stdout + result.stderr  # ...without the password


def _api_log_until(env: dict[str, str], needle: str, timeout: float = 30) -> str:
    """Start `guideline-api` with `env`, read its stderr until `needle` shows, stop it."""
    script = Path(sys.executable).parent / "guideline-api"
    proc = subprocess.Popen(
        [str(script)], env={**os.environ, **env}, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT
    )
    seen = []
    try:
        deadline = time.monotonic() + timeout
        assert proc.stderr is not None
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            seen.append(line)
            if needle in line or not line:
                break
    finally:
        proc.kill()
        proc.wait(timeout=10)
    return "".join(seen)


@pytest.mark.parametrize("url", _dead_urls()[::2])
def test_api_logs_a_failing_database_without_its_password(url: str, tmp_path: Path) -> None:
    log = _api_log_until(
        {
            "GUIDELINE_DATABASE_URL": url,
            "GUIDELINE_PORT": str(free_port()),
            "GUIDELINE_KUBECONFIG": str(dead_kubeconfig(tmp_path)),
        },
        "retrying migrations",
    )
    assert "retrying migrations" in log and "Connection refused" in log
    assert PASSWORD not in log


def test_formatter_masks_passwords_in_messages_tracebacks_and_reprs(postgres_url: str) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("test_security.passwords")
    logger.addHandler(handler)
    try:
        [keyword, _, url] = _dead_urls()
        try:
            db.Database(keyword).ping()
        except db.DatabaseUnavailableError:
            logger.exception("database down", extra={"url": keyword, "other": url})
        # Never registered anywhere: the formatter recognises the connection strings.
        logger.warning("as given: host=h password=An0therOne dbname=x, postgresql://u:Pw9xyz@h/d")
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2 and "Connection refused" in lines[0]["exc"]
    text = stream.getvalue()
    for secret in (PASSWORD, "An0therOne", "Pw9xyz"):
        assert secret not in text


def test_settings_repr_has_no_database_url() -> None:
    url = "postgresql://guideline:ReprOnly77@db.internal:5432/guideline"
    settings = ApiSettings(_env_file=None, database_url=url)
    assert settings.database_url == url and "ReprOnly77" not in repr(settings)


def test_migrations_accept_the_keyword_form(postgres_url: str) -> None:
    params = parse_dsn(postgres_url)
    keyword = " ".join(f"{k}={v}" for k, v in params.items())
    assert "://" not in keyword
    assert db.migrate(keyword) == 0  # connected, found every migration applied


# ---------------------------------------------------------------- cost of text processing


def _textfuzz(*args: str, deadline: float, tmp_path: Path) -> dict:
    """Run support.textfuzz in a child (a catastrophic regex cannot be interrupted) and
    return its report; the input it was stuck on if it missed `deadline`."""
    report = tmp_path / "textfuzz.json"
    cmd = [sys.executable, "-m", "support.textfuzz", *args, "--report", str(report)]
    try:
        done = subprocess.run(cmd, cwd=REPO_ROOT / "tests", timeout=deadline, capture_output=True)
    except subprocess.TimeoutExpired:
        stuck = json.loads(report.read_text())
        pytest.fail(f"{stuck['running']} still busy after {deadline} s on {stuck['input'][:200]!r}")
    result = json.loads(report.read_text())
    assert done.returncode == 0, (done.stderr.decode()[-2000:], result)
    return result


def test_worst_text_inputs_found_grow_linearly(tmp_path: Path) -> None:
    # Each took 5 s to hours before its fix (quadratic or cubic in its pumped run).
    result = _textfuzz("worst", deadline=300, tmp_path=tmp_path)
    assert len(result["results"]) >= 8 and not result["super_linear"], result["results"]


def _quadratic(text: str) -> int:
    n = len(text) // 30  # pure bytecode: no fast C loop to hide the n² behind a constant
    return sum(j for i in range(n) for j in range(i))


def _linear(text: str) -> int:
    return sum(sum(1 for _ in text) for _ in range(40))


def test_growth_check_tells_quadratic_from_linear(tmp_path: Path) -> None:
    """The check the two tests around rely on: it flags a quadratic pass and not a
    linear one of similar cost."""
    report = tmp_path / "r.json"
    shape = ("", " ", "x")
    # Three tries each: a burst of load on these shared cores can slow one measurement.
    quadratic = [growth("quadratic", _quadratic, shape, 240_000, report) for _ in range(3)]
    linear = [growth("linear", _linear, shape, 240_000, report) for _ in range(3)]
    assert max(q["growth"] or 0 for q in quadratic) > MAX_GROWTH, quadratic
    assert min(x["growth"] or 0 for x in linear) < MAX_GROWTH, linear
    assert all(x["growth"] is not None for x in linear), linear  # above the noise floor


def test_fuzzed_text_inputs_grow_linearly(tmp_path: Path) -> None:
    # Pumped inputs of 30,000 characters: beyond the runner's 24,000-character chunks, and
    # long enough that anything quadratic costs well above the noise floor.
    result = _textfuzz(
        "fuzz",
        "--examples",
        "25",
        "--size",
        "30000",
        "--seed",
        "10",
        deadline=300,
        tmp_path=tmp_path,
    )
    assert set(result["slowest"]) >= {"chunk_text", "heading_of", "split_units", "dsn_redact"}


# --------------------------------------------------------------------------- operator

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
HANG = {"rules": [{"step": "any", "times": None, "status": "hang", "seconds": 120}]}


def kubectl_cr(name: str, text: str = "Staff must wash hands.", **metadata: Any) -> dict[str, Any]:
    """A GuidelineJob as a user applies it with kubectl."""
    return {
        "apiVersion": gj.API_VERSION,
        "kind": gj.KIND,
        "metadata": {"name": name, **metadata},
        "spec": {"guidelineText": text},
    }


def victim_snapshot(stack: Stack, name: str, event_id: str) -> dict[str, Any]:
    """Everything of a job an attacker might change: its row, history and CR status."""
    row = stack.row(event_id)
    assert row is not None
    return {"row": row, "history": stack.history(event_id), "status": stack.status(name)}


# --- operator: a GuidelineJob only ever affects its own row (the confused deputy) -------


@pytest.mark.node
@pytest.mark.cluster
def test_operator_a_cr_with_a_victims_event_id_leaves_the_victims_job_unchanged(
    make_stack: Any,
) -> None:
    stack = make_stack()
    victim = stack.submit("The victim's confidential protocol.", tenant="victims")
    name = victim["metadata"]["name"]
    event_id = victim["metadata"]["labels"][gj.LABEL_EVENT_ID]
    assert stack.wait_for_phase(name, *TERMINAL)["status"]["phase"] == "COMPLETED"
    # The CR's phase comes first; the mirror's row and its COMPLETED event follow.
    wait_for(
        lambda: (h := stack.history(event_id)) and h[-1]["status"] == "COMPLETED",
        timeout=30,
        message="the victim's COMPLETED recorded",
    )
    before = victim_snapshot(stack, name, event_id)

    # The attacker may create GuidelineJobs: one claims the victim's job by its label, and
    # asks for a cancel and a retry of it.
    evil = stack.cluster.create(
        kubectl_cr(
            "evil",
            "Attacker text.",
            labels={gj.LABEL_EVENT_ID: event_id},
            annotations={
                gj.ANNOTATION_CANCEL_REQUESTED: "2025-01-01T00:00:00Z",
                gj.ANNOTATION_RETRY_REQUESTED: "5",
            },
        ),
        namespace=stack.namespace,
    )
    done = stack.wait_for_phase("evil", *TERMINAL)
    uid = evil["metadata"]["uid"]
    # The attacker's CR became a job of its own: its uid, its own row and label.
    assert done["status"]["eventId"] == uid
    assert done["metadata"]["labels"][gj.LABEL_EVENT_ID] == uid
    own = stack.row(uid)
    assert own is not None and own["cr_uid"] == uid and own["tenant"] == "default"
    # The victim's row (status, result, attempts, run, updated_at), history and CR status
    # are exactly as they were, also after a few resyncs.
    stack.op.metrics()  # the operator is alive
    wait_for(lambda: stack.history(uid), timeout=30, message="the attacker's own history")
    after = victim_snapshot(stack, name, event_id)
    assert after == before
    assert after["row"]["result"]["summary"] == FAKE_SUMMARY


@pytest.mark.node
@pytest.mark.cluster
def test_operator_a_cr_claiming_a_queued_job_cannot_cancel_or_run_it(make_stack: Any) -> None:
    stack = make_stack(operator={"max_concurrent_jobs": 1}, script=HANG)
    running = stack.submit()["metadata"]["name"]
    stack.wait_for_phase(running, "PROCESSING")
    victim = stack.submit("Queued victim.", tenant="victims")
    name, event_id = victim["metadata"]["name"], victim["metadata"]["labels"][gj.LABEL_EVENT_ID]
    wait_for(lambda: stack.status(name).get("phase") == "PENDING", timeout=30, message="queued")
    stack.cluster.create(
        kubectl_cr(
            "evil-cancel",
            labels={gj.LABEL_EVENT_ID: event_id},
            annotations={gj.ANNOTATION_CANCEL_REQUESTED: "2025-01-01T00:00:00Z"},
        ),
        namespace=stack.namespace,
    )
    stack.wait_for_phase("evil-cancel", "CANCELLED")
    row = stack.row(event_id)
    assert row["status"] == "PENDING" and row["cr_uid"] == victim["metadata"]["uid"]
    assert stack.status(name)["phase"] == "PENDING"


@pytest.mark.node
@pytest.mark.cluster
def test_operator_waits_for_the_dispatcher_to_record_its_cr(make_stack: Any) -> None:
    stack = make_stack()
    created = stack.submit(record=False)
    name, uid = created["metadata"]["name"], created["metadata"]["uid"]
    event_id = created["metadata"]["labels"][gj.LABEL_EVENT_ID]
    # Not recorded yet: the operator neither accepts it nor makes a row of its own for it.
    wait_for(
        lambda: any(
            r.get("msg") == "waiting for the API to record its GuidelineJob"
            for r in stack.op.log_records()
        ),
        timeout=30,
        message="the operator waits",
    )
    assert not stack.status(name).get("phase")
    assert stack.row(uid) is None
    stack.record(uuid.UUID(event_id), created)
    done = stack.wait_for_phase(name, *TERMINAL)
    assert done["status"]["phase"] == "COMPLETED" and done["status"]["eventId"] == event_id


# --- the operator: labels and Job names -----------------------------------------------------


@pytest.mark.node
@pytest.mark.cluster
def test_operator_a_label_push_does_not_reach_the_job_or_pod(make_stack: Any) -> None:
    stack = make_stack(operator={"propagated_labels": ["team"]}, script=HANG)
    pushed = {"app": "payments", "role": "db", "team": "ward-7"}
    stack.cluster.create(kubectl_cr("pushy", labels=pushed), namespace=stack.namespace)
    stack.wait_for_phase("pushy", "PROCESSING")
    [pod] = wait_for(lambda: stack.pods_of("pushy"), timeout=60, message="runner pod")
    [job] = stack.jobs_of("pushy")
    for labels in (job["metadata"]["labels"], pod["metadata"]["labels"]):
        # A Service or NetworkPolicy selecting app=payments never selects a runner pod.
        assert "app" not in labels and "role" not in labels
        assert labels["team"] == "ward-7"  # on the allowlist
    selected = stack.cluster.pods(stack.namespace, "app=payments")
    assert selected == []


@pytest.mark.node
@pytest.mark.cluster
def test_operator_job_names_of_two_guidelinejobs_cannot_collide(make_stack: Any) -> None:
    stack = make_stack(script={"rules": [{"step": "any", "times": None, "status": 401}]})
    first = stack.cluster.create(kubectl_cr("x"), namespace=stack.namespace)
    assert stack.wait_for_phase("x", *TERMINAL)["status"]["phase"] == "FAILED"
    stack.fake.set_script({"summary": FAKE_SUMMARY, "checklist": FAKE_CHECKLIST})
    # Before: CR `x-r1`'s Job was named `x-r1`, exactly the Job of x's first retry.
    second = stack.cluster.create(kubectl_cr("x-r1"), namespace=stack.namespace)
    assert stack.wait_for_phase("x-r1", *TERMINAL)["status"]["phase"] == "COMPLETED"
    stack.retry("x", 1)
    retried = wait_for(
        lambda: (
            (b := stack.get("x"))["status"].get("retryRequests") == 1
            and b["status"]["phase"] in TERMINAL
            and b
        ),
        timeout=120,
        message="x retried",
    )
    assert retried["status"]["phase"] == "COMPLETED"
    jobs = stack.cluster.get_json("jobs", "-n", stack.namespace)["items"]
    owners = {j["metadata"]["name"]: j["metadata"]["ownerReferences"][0]["uid"] for j in jobs}
    assert len(owners) == 3  # x run 0, x run 1, x-r1 run 0: three distinct names
    uids = sorted(owners.values())
    assert uids == sorted([first["metadata"]["uid"]] * 2 + [second["metadata"]["uid"]])


# --- the runner writes only its own status --------------------------------------------------


def pod_token(cluster: LocalCluster, namespace: str, pod: dict[str, Any]) -> str:
    """A runner ServiceAccount token bound to `pod`, as the kubelet mounts it."""
    return cluster.kubectl(
        "create", "token", "guideline-runner", "-n", namespace, "--bound-object-kind=Pod",
        f"--bound-object-name={pod['metadata']['name']}",
        f"--bound-object-uid={pod['metadata']['uid']}",
    ).stdout.strip()  # fmt: skip


def patch_status(
    cluster: LocalCluster, token: str, namespace: str, name: str, status: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl_as_token(
        token, "patch", gj.PLURAL, name, "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": status}),
    )  # fmt: skip


@pytest.mark.node
@pytest.mark.cluster
def test_runner_token_may_write_only_its_own_guidelinejobs_status(make_stack: Any) -> None:
    stack = make_stack(operator={"max_concurrent_jobs": 2}, script=HANG)
    mine = stack.submit("Mine.")["metadata"]["name"]
    other = stack.submit("Someone else's.")["metadata"]["name"]
    for name in (mine, other):
        stack.wait_for_phase(name, "PROCESSING")
    [pod] = wait_for(
        lambda: [p for p in stack.pods_of(mine) if p["status"].get("phase") == "Running"],
        timeout=60,
        message="my runner pod",
    )
    token = pod_token(stack.cluster, stack.namespace, pod)
    # Another GuidelineJob's status: denied by the admission policy (RBAC alone allows it).
    denied = patch_status(stack.cluster, token, stack.namespace, other, {"result": {"x": 1}})
    assert denied.returncode != 0 and "only the status of the GuidelineJob" in denied.stderr
    assert "result" not in stack.status(other)
    # Its own: the runner's fields yes, the operator's no.
    allowed = patch_status(stack.cluster, token, stack.namespace, mine, {"partial": {"s": "x"}})
    assert allowed.returncode == 0, allowed.stderr
    forged = patch_status(stack.cluster, token, stack.namespace, mine, {"phase": "COMPLETED"})
    assert forged.returncode != 0 and "operator's status fields" in forged.stderr
    assert stack.status(mine)["phase"] == "PROCESSING"


# --- kubectl-applied GuidelineJobs: tenant from the namespace, creator from the request -----


@pytest.mark.node
@pytest.mark.cluster
def test_kubectl_cr_belongs_to_its_namespaces_tenant_and_records_the_real_creator(
    make_stack: Any,
) -> None:
    stack = make_stack()
    stack.cluster.kubectl("label", "namespace", stack.namespace, f"{gj.LABEL_TENANT}=ward-7")
    forged = {gj.ANNOTATION_CREATED_BY: "someone-else", gj.ANNOTATION_SUBMITTED_BY: "admin"}
    created = stack.cluster.create(
        kubectl_cr("mine", labels={gj.LABEL_TENANT: "other-tenant"}, annotations=forged),
        namespace=stack.namespace,
    )
    whoami = json.loads(stack.cluster.kubectl("auth", "whoami", "-o", "json").stdout)
    user = whoami["status"]["userInfo"]["username"]
    assert created["metadata"]["annotations"][gj.ANNOTATION_CREATED_BY] == user
    # An update cannot change it either.
    stack.kubectl("annotate", "--overwrite", gj.PLURAL, "mine", f"{gj.ANNOTATION_CREATED_BY}=x")
    assert stack.get("mine")["metadata"]["annotations"][gj.ANNOTATION_CREATED_BY] == user
    done = stack.wait_for_phase("mine", *TERMINAL)
    row = stack.row(done["status"]["eventId"])
    assert row["tenant"] == "ward-7" and row["created_by"] == user
    # The runner's chunk-cache key is the row's tenant, never the CR's (forged) label.
    [job] = stack.jobs_of("mine")
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert {"name": gj.ENV_TENANT, "value": "ward-7"} in container["env"]


@pytest.mark.node
@pytest.mark.cluster
def test_kubectl_cr_with_a_model_outside_its_tenants_allowlist_fails_without_running(
    make_stack: Any,
) -> None:
    """The allowlist holds for kubectl too: the operator fails such a job before it takes
    a slot (the API answers the same submission 422)."""
    limits = {"ward-8": {"allowed_models": ["gpt-4o-mini"]}}
    stack = make_stack(operator={"tenant_limits": limits})
    stack.cluster.kubectl("label", "namespace", stack.namespace, f"{gj.LABEL_TENANT}=ward-8")
    for name, model in (("pricey", "o1-pro"), ("allowed", "gpt-4o-mini")):
        cr = kubectl_cr(name)
        cr["spec"]["model"] = model
        stack.cluster.create(cr, namespace=stack.namespace)
    refused = stack.wait_for_phase("pricey", *TERMINAL)
    assert refused["status"]["phase"] == "FAILED"
    assert refused["status"]["error"]["reason"] == "InvalidInput"
    assert "not allowed for tenant ward-8" in refused["status"]["error"]["message"]
    row = stack.row(refused["status"]["eventId"])
    assert row["status"] == "FAILED" and row["tenant"] == "ward-8"
    assert not stack.cluster.get_json(
        "jobs", "-n", stack.namespace, "-l", f"{gj.LABEL_JOB_NAME}=pricey"
    )["items"]
    assert stack.wait_for_phase("allowed", *TERMINAL)["status"]["phase"] == "COMPLETED"


# --- the CRD applies the API's input rules --------------------------------------------------

BAD_INPUTS = [
    {"guidelineText": "Wash hands.", "title": "Title\nwith a line feed"},
    {"guidelineText": "Wash hands.", "model": "gpt-4o; rm -rf /"},
    {"guidelineText": "Wash hands.", "model": "-leading-dash"},
]
# The CRD refuses these; the API cleans them (tests/test_api_hygiene.py) and accepts.
DIRTY_INPUTS = [
    {"guidelineText": "Wash hands.\x00"},
    {"guidelineText": "Wash\x1b[31m hands."},
    {"guidelineText": "Wash hands.\x81"},
    {"guidelineText": "Wash hands.\x0cPage 2"},
    {"guidelineText": "Disclaimer: AHRQ\u00e2\u0084\u00a2 does not endorse it."},
]
GOOD_INPUTS = [
    {"guidelineText": "Wash hands.\n\tBefore each patient.\r\n"},
    {"guidelineText": "Wash hands.", "title": "Hand hygiene", "model": "org/model-1.5:beta"},
]


@pytest.mark.cluster
def test_crd_admits_exactly_what_the_api_would_create(cluster: LocalCluster) -> None:
    """The CRD refuses what the API refuses, and whatever the API accepts (cleaned) passes
    the CRD; a text the API only cleans is still refused as applied by kubectl."""
    from guideline_api.schemas import SubmitJob
    from pydantic import ValidationError

    def api_spec(spec: dict[str, Any]) -> dict[str, Any] | None:
        """The spec the API would put in the GuidelineJob, or None if it refuses."""
        body = {"guideline_text": spec["guidelineText"]}
        body.update({k: spec[k] for k in ("title", "model") if k in spec})
        try:
            job = SubmitJob.model_validate(body)
        except ValidationError:
            return None
        return {**spec, "guidelineText": job.guideline_text}

    namespace = cluster.create_namespace("t-sec-crd")
    created = 0

    def crd_admits(spec: dict[str, Any]) -> bool:
        nonlocal created
        manifest = kubectl_cr(f"input-{created}")
        created += 1
        manifest["spec"] = spec
        result = cluster.kubectl(
            "create", "-n", namespace, "-f", "-", input=json.dumps(manifest), check=False
        )
        return result.returncode == 0

    try:
        for spec in BAD_INPUTS:
            assert api_spec(spec) is None, spec
            assert not crd_admits(spec), spec
        for spec in GOOD_INPUTS:
            assert api_spec(spec) == spec, spec
            assert crd_admits(spec), spec
        for spec in DIRTY_INPUTS:
            cleaned = api_spec(spec)
            assert cleaned is not None and cleaned != spec, spec
            assert not crd_admits(spec), spec
            assert crd_admits(cleaned), cleaned
    finally:
        cluster.delete_namespace(namespace)


# --- fair admission under a flood -----------------------------------------------------------


@pytest.mark.node
@pytest.mark.cluster
def test_operator_a_tenants_single_job_starts_within_one_slot_turnover_during_a_flood(
    make_stack: Any,
) -> None:
    stack = make_stack(
        operator={"max_concurrent_jobs": 1},
        script={"summary": FAKE_SUMMARY, "checklist": FAKE_CHECKLIST, "latency": 0.5},
    )
    flood = stack.submit_many([f"Flood {i}." for i in range(100)], tenant="flood")
    wait_for(
        lambda: sum(r.get("msg") == "accepted" for r in stack.op.log_records()) >= 100,
        timeout=180,
        message="the flood accepted",
    )
    small = stack.submit("One small job.", tenant="small")["metadata"]["name"]
    done = stack.wait_for_phase(small, *TERMINAL, timeout=120)
    assert done["status"]["phase"] == "COMPLETED"
    records = stack.op.log_records()
    accepted_at = next(
        i
        for i, r in enumerate(records)
        if r.get("msg") == "accepted" and r.get("guidelinejob") == small
    )
    created_after = [
        r["guidelinejob"] for r in records[accepted_at:] if r.get("msg") == "created Job"
    ]
    # At most the one flood job whose slot was turning over went first.
    assert small in created_after[:2], created_after[:5]
    flood_names = {f["metadata"]["name"] for f in flood}
    waiting = [n for n in flood_names if stack.status(n).get("phase") == "PENDING"]
    assert len(waiting) > 80  # the flood was still queued: the turn was fair, not luck
