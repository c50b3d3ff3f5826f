"""Fault injection: the whole stack (a real uvicorn API server, the operator, the real
control plane and the real node, runner pods in containers, PostgreSQL) keeps every
accepted job through a crash or an outage of one of its parts.

"Nothing lost" (`assert_nothing_lost`) means: every POST that got a 202 reaches exactly one
terminal state, its database row and its GuidelineJob agree, no Job of it ran to completion
twice (Complete Jobs and Succeeded pods are counted per event_id), and the API answered no
5xx other than 503, and a 503 only while a dependency was really down.

These tests get their own PostgreSQL server (which one of them restarts) with a fresh
database per test, and their own namespace and operator per test (`support.stack.Stack`).
The kube-apiserver test stops the session's control plane for a few seconds: other test
sessions sharing it see that outage too (run these alone: `make test-faults`).

Not here, to avoid duplicates: the LLM hanging until the soft timeout (FAILED, "Processing
timeout") is `test_operator_e2e.py::test_soft_timeout_fails_with_processing_timeout_without_
retries`; the operator restarted over a finished Job is `test_operator_e2e.py::
test_no_second_job_for_a_finished_guidelinejob_after_a_restart`.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from guideline_core import db
from guideline_core import resource as gj
from support.api import auth, make_settings
from support.cluster import LocalCluster, wait_for
from support.contract import CHECKS
from support.pg import PgServer
from support.stack import DEFAULT_SCRIPT, Stack

pytestmark = [pytest.mark.fault, pytest.mark.cluster, pytest.mark.node, pytest.mark.timeout(420)]

TERMINAL = {p.value for p in gj.TERMINAL_PHASES}
# A POST sent this long after a dependency came back must not fail any more.
RECOVERY_GRACE_SECONDS = 1.0


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def fault_db(restartable_pg: PgServer) -> str:
    """A fresh, migrated database on the module's own server (one test restarts it)."""
    return restartable_pg.fresh_database()


@contextlib.contextmanager
def stack_with_api(
    cluster: LocalCluster, database_url: str, workdir: Path, **options: Any
) -> Iterator[tuple[Stack, str]]:
    """A Stack (namespace, fake LLM, operator) and a real uvicorn API server in front of it."""
    with (
        Stack(cluster, database_url, workdir, prefix="t-fault", **options) as stack,
        stack.api_server(kube_timeout_seconds=3.0, db_acquire_timeout_seconds=3.0) as url,
    ):
        yield stack, url


def script(latency: float) -> dict[str, Any]:
    """The default fake-LLM answers, each after `latency` seconds."""
    return {**DEFAULT_SCRIPT, "latency": latency}


@contextlib.contextmanager
def submitting_while_jobs_run(
    cluster: LocalCluster, database_url: str, workdir: Path, concurrency: int, latency: float
) -> Iterator[tuple[Stack, str, Submitter]]:
    """`stack_with_api` (`concurrency` jobs at once, each LLM answer after `latency` s) and a
    Submitter POSTing every second; yields them once a job runs and three were accepted."""
    with (
        stack_with_api(
            cluster,
            database_url,
            workdir,
            operator={"max_concurrent_jobs": concurrency},
            script=script(latency),
        ) as (stack, url),
        Submitter(url, interval=1.0) as submitter,
    ):
        wait_for(
            lambda: statuses(database_url)["PROCESSING"] >= 1 and len(submitter.accepted()) >= 3,
            timeout=60,
            message="jobs running",
        )
        yield stack, url, submitter


# --- submissions -----------------------------------------------------------------------------


@dataclass
class Outcome:
    """One POST /jobs and its answer (status 0: no HTTP answer at all)."""

    sent: float
    done: float
    status: int
    event_id: str | None = None
    reason: str | None = None


@dataclass
class Submitter:
    """POSTs a guideline every `interval` seconds from a thread until stopped."""

    url: str
    interval: float = 0.4
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _paused: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _busy: threading.Lock = field(default_factory=threading.Lock)

    def post(self, client: httpx.Client) -> Outcome:
        """One submission, recorded."""
        marker = uuid.uuid4().hex[:8]
        sent = time.time()
        try:
            response = client.post(
                f"{self.url}/jobs",
                json={"guideline_text": f"Guideline {marker}: staff must wash hands."},
                headers=auth(),
            )
            body = response.json()
            outcome = Outcome(
                sent,
                time.time(),
                response.status_code,
                body.get("event_id"),
                body.get("reason"),  # a problem's (absent from a job)
            )
        except httpx.HTTPError as exc:
            outcome = Outcome(sent, time.time(), 0, reason=repr(exc))
        with self._lock:
            self.outcomes.append(outcome)
        return outcome

    def burst(self, count: int) -> list[Outcome]:
        """`count` submissions at once, from as many threads."""
        limits = httpx.Limits(max_connections=count)
        with httpx.Client(timeout=20, limits=limits) as client, ThreadPoolExecutor(count) as pool:
            return list(pool.map(lambda _: self.post(client), range(count)))

    def _run(self) -> None:
        with httpx.Client(timeout=20) as client:
            while not self._stop.is_set():
                if not self._paused.is_set():
                    with self._busy:
                        self.post(client)
                self._stop.wait(self.interval)

    def pause(self) -> None:
        """Stop submitting (returns once the request in flight is answered)."""
        self._paused.set()
        with self._busy:
            pass

    def resume(self) -> None:
        """Submit again."""
        self._paused.clear()

    def __enter__(self) -> Submitter:
        self._thread = threading.Thread(target=self._run, name="submitter", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop after the request in flight."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def snapshot(self) -> list[Outcome]:
        """The outcomes so far."""
        with self._lock:
            return list(self.outcomes)

    def accepted(self) -> list[str]:
        """event_ids of the 202 answers so far."""
        return [o.event_id for o in self.snapshot() if o.status == 202 and o.event_id]

    def wait_accepted_after(self, since: float) -> None:
        """Waits (a minute at most) until a POST sent after `since` was accepted (202)."""
        wait_for(
            lambda: any(o.status == 202 and o.sent >= since for o in self.snapshot()),
            timeout=60,
            message="POST succeeds after the restart",
        )


# --- what the tests look at --------------------------------------------------------------------


def rows(database_url: str) -> dict[str, dict[str, Any]]:
    """Every job row by event_id."""
    database = db.Database(database_url)
    try:
        with database.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT event_id FROM jobs")
            ids = [r[0] for r in cur.fetchall()]
            return {str(i): db.get_job(conn, i) or {} for i in ids}
    finally:
        database.close()


def history(database_url: str, event_id: str) -> list[dict[str, Any]]:
    """A job's status history."""
    database = db.Database(database_url)
    try:
        with database.connection() as conn:
            return db.job_history(conn, uuid.UUID(event_id))
    finally:
        database.close()


def statuses(database_url: str) -> collections.Counter[str]:
    """How many rows are in each status."""
    return collections.Counter(r["status"] for r in rows(database_url).values())


def by_event_id(items: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Objects grouped by their event-id label."""
    grouped: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for item in items:
        label = (item["metadata"].get("labels") or {}).get(gj.LABEL_EVENT_ID)
        if label:
            grouped[label].append(item)
    return grouped


def completed_crs(stack: Stack) -> set[str]:
    """Names of the namespace's COMPLETED GuidelineJobs."""
    items = stack.cluster.get_json(gj.PLURAL, "-n", stack.namespace)["items"]
    return {
        cr["metadata"]["name"]
        for cr in items
        if (cr.get("status") or {}).get("phase") == "COMPLETED"
    }


def complete(job: dict[str, Any]) -> bool:
    """True if a batch Job has the Complete condition."""
    return any(
        c["type"] == "Complete" and c["status"] == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def assert_nothing_lost(
    stack: Stack,
    api_url: str,
    outcomes: list[Outcome],
    *,
    outages: tuple[tuple[float, float], ...] = (),
    timeout: float = 180,
) -> dict[str, dict[str, Any]]:
    """The module docstring's "nothing lost", for jobs expected to COMPLETE. `outages` are
    the (start, end) times a dependency was down; a 503 must overlap one of them. Returns
    the CRs by event_id."""
    database_url = stack.database_url
    # No 5xx but a 503 during an outage; every request got an HTTP answer.
    for o in outcomes:
        assert o.status != 0, f"a POST got no HTTP answer: {o}"
        if o.status == 503:
            assert any(o.sent <= end and o.done >= start for start, end in outages), (
                f"503 outside any outage: {o}; outages {outages}"
            )
        else:
            assert o.status == 202, o
    accepted = [o.event_id for o in outcomes if o.status == 202]
    assert accepted and all(accepted) and len(set(accepted)) == len(accepted)

    # Every accepted job (and any job the operator recorded for a CR whose POST failed
    # after creating it) reaches a terminal state.
    def all_terminal() -> bool:
        found = rows(database_url)
        return all(eid in found for eid in accepted) and all(
            r["status"] in TERMINAL for r in found.values()
        )

    wait_for(
        all_terminal,
        timeout=timeout,
        interval=1.0,
        message=f"all jobs terminal (now {dict(statuses(database_url))})",
    )
    found = rows(database_url)

    # COMPLETED is written as soon as the result is in and a pod succeeded; the Job
    # controller marks the Job Complete a moment later.
    def jobs_complete() -> bool:
        jobs = by_event_id(stack.cluster.get_json("jobs", "-n", stack.namespace)["items"])
        return all(any(complete(j) for j in jobs.get(eid, [])) for eid in found)

    wait_for(jobs_complete, timeout=120, interval=1.0, message="every Job Complete")
    crs = {
        k: v[0]
        for k, v in by_event_id(
            stack.cluster.get_json(gj.PLURAL, "-n", stack.namespace)["items"]
        ).items()
    }
    jobs = by_event_id(stack.cluster.get_json("jobs", "-n", stack.namespace)["items"])
    pods = by_event_id(stack.cluster.pods(stack.namespace))
    assert set(crs) == set(found), "a GuidelineJob without a row, or a row without one"
    for event_id, row in found.items():
        status = crs[event_id].get("status") or {}
        assert row["status"] == status.get("phase") == "COMPLETED", (event_id, row, status)
        assert row["attempts"] == status["attempts"] >= 1
        assert row["result"] == status["result"] and row["result"]["summary"]
        terminal = [h["status"] for h in history(database_url, event_id) if h["status"] in TERMINAL]
        assert terminal == ["COMPLETED"], (event_id, terminal)
        assert sum(1 for j in jobs[event_id] if complete(j)) == 1, (event_id, jobs[event_id])
        succeeded = [p for p in pods[event_id] if p["status"].get("phase") == "Succeeded"]
        assert len(succeeded) == 1, (event_id, [p["metadata"]["name"] for p in pods[event_id]])
    # The API shows the same.
    with httpx.Client(base_url=api_url, headers=auth(), timeout=20) as client:
        for event_id in accepted:
            view = client.get(f"/jobs/{event_id}").json()
            view["result"]["usage"].pop("cost")  # added by the API from the stored cost
            # The API adds the submitted text's `document` unless the result has one.
            expected = {"document": view["document"], **found[event_id]["result"]}
            assert view["status"] == "COMPLETED" and view["result"] == expected
    return crs


# --- the faults -----------------------------------------------------------------------------


def test_operator_sigkilled_twice_mid_run_loses_nothing(
    cluster: LocalCluster, fault_db: str, tmp_path: Path
) -> None:
    with (
        stack_with_api(
            cluster, fault_db, tmp_path, operator={"max_concurrent_jobs": 3}, script=script(0.5)
        ) as (stack, url),
        Submitter(url, interval=1.0) as submitter,
    ):
        # 1: while the first jobs are being accepted and admitted (a Job just created).
        wait_for(
            lambda: any(
                (cr.get("status") or {}).get("jobName")
                for cr in stack.cluster.get_json(gj.PLURAL, "-n", stack.namespace)["items"]
            ),
            timeout=60,
            message="a first Job created",
        )
        stack.op.kill()
        time.sleep(1.0)
        stack.start_operator()
        # 2: while runners are mid-chain; stay down until a runner finished unobserved
        # (its result written, its phase still PROCESSING).
        wait_for(lambda: statuses(fault_db)["PROCESSING"] >= 1, timeout=60, message="running")
        stack.op.kill()
        wait_for(
            lambda: any(
                (s := cr.get("status") or {}).get("result") and s.get("phase") == "PROCESSING"
                for cr in stack.cluster.get_json(gj.PLURAL, "-n", stack.namespace)["items"]
            ),
            timeout=60,
            message="a runner finished while no operator ran",
        )
        time.sleep(1.0)
        stack.start_operator()
        time.sleep(3.0)
        submitter.stop()
        crs = assert_nothing_lost(stack, url, submitter.snapshot())
    assert len(crs) >= 5


def test_kube_apiserver_outage_still_accepts_and_runs_each_job_once(
    cluster: LocalCluster, fault_db: str, tmp_path: Path
) -> None:
    """PostgreSQL is the system of record: while kube-apiserver is down every POST is
    still a 202 (the row waits in the outbox), /health says `degraded`, and once it is back
    each job accepted meanwhile gets its GuidelineJob and runs exactly once."""
    with submitting_while_jobs_run(cluster, fault_db, tmp_path, 4, 1.0) as (stack, url, submitter):
        down = time.time()
        try:
            cluster.cluster_sh("stop", "kube-apiserver")
            time.sleep(4.0)
            health = httpx.get(f"{url}/health", timeout=20)
            assert health.status_code == 200, health.text
            assert health.json()["status"] == "degraded"
            assert health.json()["kubernetes"]["ok"] is False
            assert health.json()["database"]["ok"] is True
        finally:
            cluster.cluster_sh("up")
        up = time.time()
        during = [o for o in submitter.snapshot() if down + 1.0 <= o.sent <= up - 1.0]
        assert len(during) >= 3 and all(o.status == 202 for o in during), during
        submitter.wait_accepted_after(up + 2.0)
        submitter.stop()
        outcomes = submitter.snapshot()
        assert all(o.status == 202 for o in outcomes), [o for o in outcomes if o.status != 202]
        assert_nothing_lost(stack, url, outcomes, timeout=600)
    # The node (kubelet, containerd, kube-proxy) and the controllers lived through it.
    status = cluster.cluster_sh("status").stdout
    assert "stopped" not in status, status


def test_postgres_restart_while_jobs_run_the_mirror_catches_up(
    cluster: LocalCluster, restartable_pg: PgServer, fault_db: str, tmp_path: Path
) -> None:
    with submitting_while_jobs_run(cluster, fault_db, tmp_path, 3, 1.5) as (stack, url, submitter):
        # Concurrent requests leave several connections in the API's pool; during the
        # outage only one request is made, so most of them are still there, dead, when
        # the database is back: they must not turn into 503s then.
        assert {o.status for o in submitter.burst(8)} == {202}
        submitter.pause()
        before = completed_crs(stack)
        down = time.time()
        try:
            restartable_pg.stop()
            with httpx.Client(timeout=20) as client:
                probe = submitter.post(client)
            assert probe.status == 503 and probe.reason == "database_unavailable", probe
            # Jobs finish on the cluster while their rows cannot be written.
            wait_for(
                lambda: completed_crs(stack) - before,
                timeout=60,
                message="a job completed during the outage",
            )
        finally:
            restartable_pg.start()
        up = time.time()
        time.sleep(RECOVERY_GRACE_SECONDS)
        after = submitter.burst(8)
        submitter.resume()
        submitter.wait_accepted_after(up + 2.0)
        submitter.stop()
        assert {o.status for o in after} == {202}, after
        assert_nothing_lost(
            stack, url, submitter.snapshot(), outages=((down, up + RECOVERY_GRACE_SECONDS),)
        )


def test_runner_killed_is_retried_by_backoff_limit(
    cluster: LocalCluster, fault_db: str, tmp_path: Path
) -> None:
    with stack_with_api(cluster, fault_db, tmp_path, script=script(3.0)) as (stack, url):
        submitter = Submitter(url)
        with httpx.Client(timeout=20) as client:
            outcome = submitter.post(client)
        assert outcome.status == 202
        name = wait_for(
            lambda: stack.row(outcome.event_id)["cr_name"], timeout=30, message="CR name"
        )
        [pod] = wait_for(
            lambda: [p for p in stack.pods_of(name) if p["status"].get("phase") == "Running"],
            timeout=60,
            message="runner pod running",
        )
        # Mid-chain: the fake holds the summarize call for 3 s.
        wait_for(lambda: stack.fake.requests("summarize"), timeout=30, message="LLM called")
        cluster.kill_pod_process(pod)

        crs = assert_nothing_lost(stack, url, submitter.snapshot())
        status = crs[outcome.event_id]["status"]
        assert status["attempts"] == 2
        pods = {p["metadata"]["name"]: p for p in stack.pods_of(name)}
        killed = pods[pod["metadata"]["name"]]["status"]
        assert killed["phase"] == "Failed"
        assert killed["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137
        assert len(pods) == 2 and len(stack.jobs_of(name)) == 1


def test_bad_input_sweep_finds_no_server_error(
    cluster: LocalCluster, fault_db: str, tmp_path: Path
) -> None:
    """schemathesis generates valid and invalid requests for every operation of the
    OpenAPI schema and sends them to the app in-process (real database and cluster); every
    answer is below 500 and conforms to the document (status, media type, headers, body)."""
    import hypothesis
    import schemathesis
    from guideline_api.app import create_app
    from hypothesis import strategies as st
    from schemathesis.generation.modes import GenerationMode

    namespace = cluster.create_namespace("t-fuzz")
    app = create_app(
        make_settings(fault_db, cluster.kubeconfig, namespace=namespace, max_pending_jobs=100_000)
    )
    seen: collections.Counter[int] = collections.Counter()
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        strategy = st.one_of(
            schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE)
        )

        @hypothesis.settings(
            max_examples=1000,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        @hypothesis.given(case=strategy)
        def sweep(case: Any) -> None:
            response = case.call(headers=auth())
            seen[response.status_code] += 1
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{response.text[:500]}"
            )
            case.validate_response(response, checks=CHECKS)

        sweep()
    finally:
        app.state.ctx.store.close()
        app.state.ctx.kube.close()
        cluster.delete_namespace(namespace)
    # The sweep reached the handlers: reads were served and bad input was refused. (Generated
    # submissions rarely make a job now: most name a random `supersedes` job, a 422.)
    assert seen[422] >= 1 and seen[200] >= 1, seen
