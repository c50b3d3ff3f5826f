"""The limits on GET /jobs/{event_id}/events, attacked as issue 23 did, through real
`guideline-api` processes (uvicorn, as the image serves) on PostgreSQL: one key's streams
cannot take the server's connections (caps per key, per tenant and per process, 429
`too_many_streams`; probes and other requests still answered), a stream ends after its
lifetime and is resumed without a gap, and a revoked key's open stream is ended."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from guideline_core import db
from guideline_core.resource import Phase
from guideline_core.settings import ApiSettings
from pydantic import ValidationError
from support.api import (
    ALICE2_KEY,
    ALICE_KEY,
    BOB_KEY,
    ApiProcess,
    auth,
    keys_cli,
    problem,
    submit,
)
from support.cli import CliProcess
from support.cluster import wait_for
from support.events import StreamReader, stored_ids
from support.rows import mirror


@pytest.fixture
def readers() -> Iterator[list[StreamReader]]:
    """Streams opened by a test, all dropped at its end."""
    opened: list[StreamReader] = []
    yield opened
    for reader in opened:
        reader.close()


def open_stream(
    api: ApiProcess, readers: list[StreamReader], event_id: str, key: str
) -> StreamReader:
    """An open stream (its first event read), kept in `readers`."""
    reader = StreamReader(api.url, event_id, key)
    readers.append(reader)
    assert reader.status_code == 200, reader.next()
    assert reader.next().event == "status"
    return reader


def refused(api: ApiProcess, event_id: str, key: str) -> dict[str, object]:
    """The 429 problem of one more stream of `key` (checked: reason and Retry-After)."""
    url = f"{api.url}/v1/jobs/{event_id}/events"
    with httpx.stream("GET", url, headers=auth(key), timeout=10) as response:
        if response.status_code == 200:  # a stream would be read until its end: not at all
            pytest.fail(f"one more stream of {key[:5]}... was accepted")
        response.read()
    body = problem(response, 429)
    assert body["reason"] == "too_many_streams"
    assert int(response.headers["retry-after"]) > 0
    return body


def opens(api: ApiProcess, event_id: str, key: str) -> bool:
    """True if a stream of `key` is accepted now (it is dropped at once)."""
    with httpx.stream(
        "GET", f"{api.url}/v1/jobs/{event_id}/events", headers=auth(key), timeout=10
    ) as response:
        return response.status_code == 200


def metric(api: ApiProcess, sample: str) -> float:
    """One sample of the API's /metrics (0 if absent)."""
    for line in httpx.get(f"{api.url}/metrics", timeout=10).text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def refusals(api: ApiProcess, cap: str) -> float:
    """Streams refused so far at `cap` (key, tenant or process)."""
    return metric(api, f'guideline_api_event_streams_refused_total{{cap="{cap}"}}')


def no_streams_open(api: ApiProcess) -> None:
    """Wait until the API holds no stream (the last test's dropped ones are noticed)."""
    wait_for(lambda: metric(api, "guideline_api_event_streams") == 0, 30, 0.1, "no streams")


# ------------------------------------------------------------------- caps per key and tenant


@pytest.fixture(scope="module")
def capped_api(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    """3 streams per key, 4 per tenant (alice and alice2 share tenant alice)."""
    api = ApiProcess(
        postgres_url,
        tmp_path_factory.mktemp("capped"),
        GUIDELINE_SSE_MAX_STREAMS_PER_KEY="3",
        GUIDELINE_SSE_MAX_STREAMS_PER_TENANT="4",
        GUIDELINE_SSE_HEARTBEAT_SECONDS="0.5",
    ).start()
    yield api
    api.stop()


@pytest.fixture
def capped(capped_api: ApiProcess) -> ApiProcess:
    """The capped API with every slot free."""
    no_streams_open(capped_api)
    return capped_api


def test_a_key_past_its_cap_gets_429_while_other_tenants_and_probes_are_served(
    capped: ApiProcess, readers: list[StreamReader]
) -> None:
    before = refusals(capped, "key"), refusals(capped, "tenant")
    event_id = submit(capped.url)
    for _ in range(3):
        open_stream(capped, readers, event_id, ALICE_KEY)
    body = refused(capped, event_id, ALICE_KEY)
    assert "API key 'alice' has 3 event streams open" in str(body["detail"])
    # The tenant's other key has the tenant's last slot, then the tenant is at its cap.
    open_stream(capped, readers, event_id, ALICE2_KEY)
    assert "tenant 'alice' has 4" in str(refused(capped, event_id, ALICE2_KEY)["detail"])
    # Meanwhile another tenant streams, and everything else answers.
    bob_job = submit(capped.url, key=BOB_KEY)
    open_stream(capped, readers, bob_job, BOB_KEY)
    assert httpx.get(f"{capped.url}/health/live", timeout=10).status_code == 200
    assert httpx.get(f"{capped.url}/v1/jobs/{event_id}", headers=auth(), timeout=10).is_success
    assert (refusals(capped, "key"), refusals(capped, "tenant")) == (before[0] + 1, before[1] + 1)
    assert metric(capped, "guideline_api_event_streams") == 5


def test_a_slot_comes_back_when_the_client_goes_and_when_the_job_ends(
    capped: ApiProcess, database: db.Database, readers: list[StreamReader]
) -> None:
    event_id = submit(capped.url)
    streams = [open_stream(capped, readers, event_id, ALICE_KEY) for _ in range(3)]
    refused(capped, event_id, ALICE_KEY)
    streams[0].close()  # the client goes away
    wait_for(lambda: opens(capped, event_id, ALICE_KEY), 30, 0.1, "a slot after a disconnect")

    # The job ends: its streams end after the terminal event and give their slots back.
    assert mirror(database, event_id, Phase.CANCELLED, 0, reason="Cancelled")
    for stream in streams[1:]:
        assert [e.data["status"] for e in stream.until_end()] == ["CANCELLED"]
    other = submit(capped.url)
    wait_for(lambda: opens(capped, other, ALICE_KEY), 30, 0.1, "slots after the terminal event")
    for _ in range(3):
        open_stream(capped, readers, other, ALICE_KEY)
    refused(capped, other, ALICE_KEY)


# ------------------------------------------------------------------------ the process's cap


def test_streams_never_take_the_servers_last_connections(
    postgres_url: str, tmp_path: Path, readers: list[StreamReader]
) -> None:
    """The issue's attack at a small scale: one key opens as many streams as uvicorn's
    limit_concurrency (24); three quarters (18) are served, the rest get 429, and the probes
    and other requests are still answered (before, they got uvicorn's 503)."""
    api = ApiProcess(
        postgres_url,
        tmp_path / "crowded",
        GUIDELINE_LIMIT_CONCURRENCY="24",
        GUIDELINE_SSE_MAX_STREAMS_PER_KEY="100",
        GUIDELINE_SSE_MAX_STREAMS_PER_TENANT="100",
    ).start()
    try:
        event_id = submit(api.url)
        for _ in range(18):
            open_stream(api, readers, event_id, ALICE_KEY)
        for _ in range(6):
            body = refused(api, event_id, ALICE_KEY)
            assert "this API process has 18 event streams open" in str(body["detail"])
        bob_job = submit(api.url, key=BOB_KEY)
        assert "this API process" in str(refused(api, bob_job, BOB_KEY)["detail"])
        for path in ("/health/live", "/health/ready", "/metrics"):
            assert httpx.get(f"{api.url}{path}", timeout=10).status_code == 200, path
        got = httpx.get(f"{api.url}/v1/jobs/{bob_job}", headers=auth(BOB_KEY), timeout=10)
        assert got.json()["status"] == "PENDING"
        assert refusals(api, "process") == 7 and refusals(api, "key") == 0
    finally:
        for reader in readers:
            reader.close()
        api.stop()


def test_the_process_cap_stays_below_the_servers_limit() -> None:
    assert ApiSettings(_env_file=None).stream_capacity == 192  # of limit_concurrency 256
    assert ApiSettings(_env_file=None, limit_concurrency=None).stream_capacity is None
    assert ApiSettings(_env_file=None, sse_max_streams=50).stream_capacity == 50
    with pytest.raises(ValidationError, match="must be below limit_concurrency"):
        ApiSettings(_env_file=None, sse_max_streams=256)
    settings = ApiSettings(
        _env_file=None, tenant_limits={"big": {"max_event_streams": 500}}, limit_concurrency=None
    )
    assert settings.limits_for("big").max_event_streams == 500
    assert settings.limits_for("other").max_event_streams == 100


# ------------------------------------------------------------------------- the lifetime


@pytest.fixture(scope="module")
def short_lived(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    """Streams last about a second; one stream per key (so a resume needs the slot back)."""
    api = ApiProcess(
        postgres_url,
        tmp_path_factory.mktemp("short-lived"),
        GUIDELINE_SSE_MAX_STREAM_SECONDS="1",
        GUIDELINE_SSE_MAX_STREAMS_PER_KEY="1",
    ).start()
    yield api
    api.stop()


def test_a_stream_ends_at_its_lifetime_and_the_resumed_stream_misses_nothing(
    short_lived: ApiProcess, database: db.Database
) -> None:
    event_id = submit(short_lived.url)
    first = StreamReader(short_lived.url, event_id, ALICE_KEY)
    try:
        seen = [first.next()]
        assert mirror(database, event_id, Phase.PROCESSING, 1)
        rest = first.until_end()  # ends by itself, the job still running
    finally:
        first.close()
    *more, goodbye = rest
    seen += more
    # No id of its own: the client's last event id stays that of the last status event.
    assert (goodbye.event, goodbye.id) == ("reconnect", seen[-1].id)
    assert goodbye.data == {"event_id": event_id, "reason": "lifetime"}
    # While no stream is open the job goes on; the resumed stream has the rest.
    assert mirror(database, event_id, Phase.COMPLETED, 1, result={"summary": "ok"})
    resumed = StreamReader(short_lived.url, event_id, ALICE_KEY, last_event_id=seen[-1].id)
    try:
        assert resumed.status_code == 200  # the ended stream gave its slot back
        seen += resumed.until_end()
    finally:
        resumed.close()
    assert [int(e.id) for e in seen if e.id] == stored_ids(database, event_id)
    assert [e.data["status"] for e in seen] == ["PENDING", "PROCESSING", "COMPLETED"]


def test_the_clients_wait_follows_a_job_across_stream_lifetimes(
    short_lived: ApiProcess, database: db.Database
) -> None:
    event_id = submit(short_lived.url, key=BOB_KEY)
    cli = CliProcess(short_lived.url, "wait", event_id, "--timeout", "120", key=BOB_KEY)
    try:
        cli.expect("PENDING")
        cli.expect("the stream ended early")
        assert mirror(database, event_id, Phase.PROCESSING, 1)
        cli.expect("PROCESSING | attempt 1")
        cli.expect("the stream ended early")
        assert mirror(database, event_id, Phase.COMPLETED, 1, result={"summary": "ok"})
        code, stdout = cli.finish()
    finally:
        cli.kill()
    assert code == 0, cli.stderr_lines
    assert f"Job {event_id}: COMPLETED" in stdout


# ------------------------------------------------------------------------- a revoked key


def test_a_revoked_keys_open_stream_is_ended(
    postgres_url: str, database: db.Database, tmp_path: Path, readers: list[StreamReader]
) -> None:
    keys_file = tmp_path / "keys"
    carol = keys_cli("create", "--tenant", "carol", "--keys-file", keys_file).stdout
    carol2 = keys_cli("create", "--tenant", "carol", "--keys-file", keys_file).stdout
    carol_id = carol.split()[2]  # "created key <id> (tenant ...)"
    carol_key, carol2_key = carol.splitlines()[-1], carol2.splitlines()[-1]
    api = ApiProcess(
        postgres_url,
        tmp_path / "api",
        GUIDELINE_API_KEYS_FILE=str(keys_file),
        GUIDELINE_API_KEYS_RELOAD_SECONDS="0.1",
        GUIDELINE_SSE_KEY_RECHECK_SECONDS="0.2",
    ).start()
    try:
        event_id = submit(api.url, key=carol_key)
        revoked = open_stream(api, readers, event_id, carol_key)
        kept = open_stream(api, readers, event_id, carol2_key)
        keys_cli("revoke", carol_id, "--keys-file", keys_file)
        # Heartbeats (15 s) and the lifetime (15 min) are far: only the re-check ends it.
        assert revoked.until_end() == []
        again = httpx.get(f"{api.url}/v1/jobs/{event_id}/events", headers=auth(carol_key))
        assert problem(again, 401)["reason"] == "invalid_api_key"
        # The tenant's other key still follows the job.
        assert mirror(database, event_id, Phase.PROCESSING, 1)
        assert kept.next().data["status"] == "PROCESSING"
    finally:
        for reader in readers:
            reader.close()
        api.stop()
