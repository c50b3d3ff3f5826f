"""The operator end to end: the real control plane and node (the node agent, or the real
node with GUIDELINE_NODE=real), real PostgreSQL, the real runner in Job pods, and the fake
LLM server. Each test gets its own namespace, fake and operator (`support.stack.Stack`), so
the operator's settings can differ per test."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
import yaml
from guideline_core import db
from guideline_core import resource as gj
from guideline_operator import manifests
from support import kube_writes
from support.checklists import item_fields
from support.cluster import REPO_ROOT, LocalCluster, process_alive, wait_for
from support.stack import FAKE_CHECKLIST, FAKE_SUMMARY, OPENAI_TEST_KEY, PodWatch, Stack

# On the real node (make test's second session): runner pods in containers of make image.
pytestmark = [pytest.mark.cluster, pytest.mark.node]

EXAMPLE = REPO_ROOT / "examples" / "guidelinejob.yaml"
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


def condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    [found] = [c for c in body["status"]["conditions"] if c["type"] == kind]
    return found


def assert_row_matches(stack: Stack, body: dict[str, Any]) -> dict[str, Any]:
    """The database row says what the CR says. The operator writes the CR's status first
    and mirrors it into the row after that transition's Event, so the row may lag the CR
    by a moment: it is given 30 s to reach the CR's phase."""
    status = body["status"]

    def mirrored() -> dict[str, Any] | None:
        row = stack.row(status["eventId"])
        return row if row is not None and row["status"] == status["phase"] else None

    try:
        row = wait_for(mirrored, timeout=30, interval=0.1, message="the row mirrored")
    except TimeoutError:
        row = stack.row(status["eventId"])
    assert row is not None
    assert row["status"] == status["phase"]
    assert row["attempts"] == status["attempts"]
    if status["phase"] == "COMPLETED":
        assert row["result"] == status["result"]
    if status.get("error") and status["phase"] != "COMPLETED":
        assert row["error"] == status["error"]
    if status.get("completedAt"):
        assert row["completed_at"].strftime("%Y-%m-%dT%H:%M:%SZ") == status["completedAt"]
    return row


def metric(text: str, name: str, labels: str = "") -> float:
    """A sample's value from a Prometheus text exposition (0 if absent)."""
    pattern = re.compile(rf"^{re.escape(name)}{re.escape(labels)}\s+(\S+)$", re.M)
    match = pattern.search(text)
    return float(match.group(1)) if match else 0.0


# --- the job flow -----------------------------------------------------------------------------


def test_example_applied_with_kubectl_completes(make_stack: Any) -> None:
    stack = make_stack()
    assert (
        yaml.safe_load(EXAMPLE.read_text())["spec"]["guidelineText"]
        == (REPO_ROOT / "examples" / "hand-hygiene.md").read_text()
    )
    stack.kubectl("apply", "-f", str(EXAMPLE))

    done = stack.wait_for_phase("hand-hygiene", *TERMINAL)
    status = done["status"]
    assert status["phase"] == "COMPLETED", status
    uid = done["metadata"]["uid"]
    # A CR made without the API: its event_id is its uid, and the operator labelled it.
    assert status["eventId"] == uid
    assert done["metadata"]["labels"][gj.LABEL_EVENT_ID] == uid
    assert status["result"]["summary"] == FAKE_SUMMARY
    assert item_fields(status["result"]["checklist"]) == item_fields(FAKE_CHECKLIST)
    assert status["attempts"] == 1 and status["jobName"] == manifests.job_name("hand-hygiene", uid)
    assert status["observedGeneration"] == done["metadata"]["generation"]
    assert condition(done, "Succeeded")["status"] == "True"
    assert condition(done, "Running")["status"] == "False"
    assert condition(done, "Accepted")["status"] == "True"
    # The checklist was asked for from the summary.
    [checklist_request] = stack.fake.requests("checklist")
    assert FAKE_SUMMARY in json.dumps(checklist_request["body"])
    # The Job and its pod carry the event_id; the Job is owned by the CR.
    [job] = stack.jobs_of("hand-hygiene")
    assert job["metadata"]["labels"][gj.LABEL_EVENT_ID] == uid
    assert job["metadata"]["ownerReferences"][0]["uid"] == uid
    assert job["spec"]["backoffLimit"] == 2  # the manifest's maxRetries
    [pod] = stack.pods_of("hand-hygiene")
    assert pod["metadata"]["labels"][gj.LABEL_EVENT_ID] == uid
    # The operator created the row the API never made, and it agrees with the CR.
    row = assert_row_matches(stack, done)
    assert row["submitted_by"] == "kubectl" and row["cr_name"] == "hand-hygiene"
    # Its tenant is its namespace's (no tenant label: the default); its creator is the user
    # kube-apiserver authenticated (set by admission), and the row records the CR's uid.
    assert row["tenant"] == "default" and row["cr_uid"] == uid
    assert (
        row["created_by"]
        and row["created_by"] == done["metadata"]["annotations"][gj.ANNOTATION_CREATED_BY]
    )
    assert [h["status"] for h in stack.history(uid)] == ["PENDING", "PROCESSING", "COMPLETED"]
    # One Kubernetes Event per transition.
    reasons = [e["reason"] for e in stack.events_of("hand-hygiene")]
    for reason in ("Accepted", "JobCreated", "Processing", "Completed"):
        assert reason in reasons, reasons
    # Metrics of the completed job, once.
    text = stack.op.metrics()
    assert metric(text, "guideline_jobs_finished_total", '{outcome="completed",reason=""}') == 1
    assert metric(text, "guideline_job_processing_seconds_count", '{outcome="completed"}') == 1
    assert metric(text, "guideline_job_end_to_end_seconds_count", '{outcome="completed"}') == 1
    assert metric(text, "guideline_job_queue_wait_seconds_count") == 1
    assert (
        metric(text, "guideline_llm_tokens_total", '{kind="prompt",model="other",step="summarize"}')
        > 0
    )
    assert (
        metric(
            text, "guideline_llm_step_duration_seconds_count", '{model="other",step="checklist"}'
        )
        == 1
    )
    for name in (
        "guideline_operator_queue_length",
        "guideline_operator_jobs_active",
        "guideline_jobs_finished_total",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text
    # JSON logs: the lines about this job carry its event_id; the key is nowhere.
    records = stack.op.log_records()
    about_job = [r for r in records if r.get("guidelinejob") == "hand-hygiene"]
    assert about_job and all(r.get("event_id") == uid for r in about_job)
    assert OPENAI_TEST_KEY not in stack.op.log_text()
    assert OPENAI_TEST_KEY not in json.dumps(stack.get("hand-hygiene"))
    assert OPENAI_TEST_KEY not in json.dumps(job)
    assert OPENAI_TEST_KEY not in json.dumps(stack.events_of("hand-hygiene"))
    # The operator's heartbeat is in the database.
    with stack.database.connection() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM operator_heartbeat WHERE seen_at > now() - interval '1 minute'"
        )
        assert cur.fetchone()[0] >= 1


def test_maximum_size_guideline_submitted_like_the_api(make_stack: Any) -> None:
    stack = make_stack(runner={"GUIDELINE_CHUNK_CHARS": "40000"})
    # 100,000 characters, mostly two bytes each in UTF-8 and six JSON-escaped: had kopf
    # copied the spec into its annotation, the object could not be written at all.
    text = (
        "Le personnel doit se laver les mains avant chaque contact. Évitez les bijoux. " * 2000
    )[: gj.MAX_GUIDELINE_CHARS]
    assert len(text) == gj.MAX_GUIDELINE_CHARS
    job = stack.submit(text, title="Maximum size")
    name = job["metadata"]["name"]
    event_id = job["metadata"]["labels"][gj.LABEL_EVENT_ID]

    done = stack.wait_for_phase(name, *TERMINAL, timeout=180)
    assert done["status"]["phase"] == "COMPLETED", done["status"]
    assert done["status"]["eventId"] == event_id
    annotations = done["metadata"].get("annotations") or {}
    assert f"{gj.GROUP}/last-handled-configuration" not in annotations  # no kopf diff base
    assert sum(len(k) + len(v) for k, v in annotations.items()) < 16_384
    # The whole text reached the runner (map-reduce over parts, nothing truncated).
    summarized = "".join(
        json.dumps(r["body"], ensure_ascii=False) for r in stack.fake.requests("summarize")
    )
    assert summarized.count("Le personnel doit") >= text.count("Le personnel doit")
    row = assert_row_matches(stack, done)
    assert row["submitted_by"] == "e2e"


def test_two_failed_pods_then_success_makes_three_attempts(make_stack: Any) -> None:
    # SDK retries 1: two requests per pod; four 500s fail exactly two pods.
    stack = make_stack(
        script={
            "summary": FAKE_SUMMARY,
            "checklist": FAKE_CHECKLIST,
            "rules": [{"step": "any", "times": 4, "status": 500}],
        }
    )
    name = stack.submit()["metadata"]["name"]
    done = stack.wait_for_phase(name, *TERMINAL, timeout=180)
    assert done["status"]["phase"] == "COMPLETED", done["status"]
    assert done["status"]["attempts"] == 3
    assert len(stack.pods_of(name)) == 3 and len(stack.jobs_of(name)) == 1
    assert "error" not in done["status"]
    assert_row_matches(stack, done)
    reasons = [e["reason"] for e in stack.events_of(name)]
    assert reasons.count("AttemptStarted") >= 1 and "Completed" in reasons


def test_checklist_failure_retries_only_the_checklist(make_stack: Any) -> None:
    stack = make_stack(
        script={
            "summary": FAKE_SUMMARY,
            "checklist": FAKE_CHECKLIST,
            "rules": [{"step": "checklist", "times": 2, "status": 500}],
        }
    )
    name = stack.submit()["metadata"]["name"]
    done = stack.wait_for_phase(name, *TERMINAL, timeout=120)
    assert done["status"]["phase"] == "COMPLETED", done["status"]
    assert done["status"]["attempts"] == 2
    assert len(stack.fake.requests("summarize")) == 1  # the second pod reused status.partial
    assert len(stack.fake.requests("checklist")) == 3
    assert done["status"]["result"]["summary"] == FAKE_SUMMARY
    assert_row_matches(stack, done)


def test_always_500_fails_after_backoff_limit_plus_one_attempts(make_stack: Any) -> None:
    stack = make_stack(script={"rules": [{"step": "any", "times": None, "status": 500}]})
    name = stack.submit(max_retries=1)["metadata"]["name"]
    done = stack.wait_for_phase(name, *TERMINAL, timeout=120)
    status = done["status"]
    assert status["phase"] == "FAILED"
    assert status["attempts"] == 2 == len(stack.pods_of(name))
    assert status["error"]["reason"] == "BackoffLimitExceeded"
    assert "2 attempt(s)" in status["error"]["message"]
    assert condition(done, "Failed")["reason"] == "BackoffLimitExceeded"
    row = assert_row_matches(stack, done)
    assert row["error"]["reason"] == "BackoffLimitExceeded"
    text = stack.op.metrics()
    assert (
        metric(
            text,
            "guideline_jobs_finished_total",
            '{outcome="failed",reason="BackoffLimitExceeded"}',
        )
        == 1
    )


def test_401_fails_after_exactly_one_attempt(make_stack: Any) -> None:
    stack = make_stack(
        script={"rules": [{"step": "any", "times": None, "status": 401, "message": "bad key"}]}
    )
    name = stack.submit()["metadata"]["name"]
    done = stack.wait_for_phase(name, *TERMINAL, timeout=120)
    status = done["status"]
    assert status["phase"] == "FAILED"
    assert status["attempts"] == 1 and len(stack.pods_of(name)) == 1
    assert status["error"]["reason"] == "LLMRejected", status["error"]
    assert_row_matches(stack, done)
    # The key the runner sent never shows in the error (the fake echoes it back if asked).
    assert OPENAI_TEST_KEY not in json.dumps(status)


def test_deleting_the_guidelinejob_removes_job_and_pods_and_keeps_the_row(
    make_stack: Any,
) -> None:
    stack = make_stack(
        script={"rules": [{"step": "any", "times": None, "status": "hang", "seconds": 120}]}
    )
    job = stack.submit()
    name, event_id = job["metadata"]["name"], job["metadata"]["labels"][gj.LABEL_EVENT_ID]
    stack.wait_for_phase(name, "PROCESSING")
    assert stack.jobs_of(name) and stack.pods_of(name)

    stack.kubectl("delete", gj.PLURAL, name, "--wait=false")
    wait_for(lambda: stack.try_get(name) is None, timeout=60, message="CR gone")
    wait_for(lambda: not stack.jobs_of(name), timeout=60, message="Job gone")
    wait_for(lambda: not stack.pods_of(name), timeout=90, message="pods gone")
    row = stack.row(event_id)
    assert row is not None and row["status"] == "CANCELLED"
    assert row["error"]["reason"] == "Deleted"
    assert row["attempts"] == 1


def test_a_guidelinejob_with_an_invalid_event_id_label_is_a_job_of_its_own(
    make_stack: Any,
) -> None:
    stack = make_stack()
    manifest = {
        "apiVersion": gj.API_VERSION,
        "kind": gj.KIND,
        "metadata": {"name": "mislabelled", "labels": {gj.LABEL_EVENT_ID: "not-a-uuid"}},
        "spec": {"guidelineText": "Staff must wash hands."},
    }
    created = stack.cluster.create(manifest, namespace=stack.namespace)
    uid = created["metadata"]["uid"]
    done = stack.wait_for_phase("mislabelled", *TERMINAL, timeout=60)
    assert done["status"]["phase"] == "COMPLETED"
    assert done["status"]["eventId"] == uid  # the label was not believed
    assert done["metadata"]["labels"][gj.LABEL_EVENT_ID] == uid
    assert_row_matches(stack, done)
    stack.kubectl("delete", gj.PLURAL, "mislabelled", "--wait=true", "--timeout=60s")
    assert stack.try_get("mislabelled") is None


# --- cancellation and retry -----------------------------------------------------------------


def test_cancel_pending_and_processing(make_stack: Any) -> None:
    stack = make_stack(
        operator={"max_concurrent_jobs": 1},
        script={"rules": [{"step": "any", "times": None, "status": "hang", "seconds": 120}]},
    )
    running = stack.submit()["metadata"]["name"]
    stack.wait_for_phase(running, "PROCESSING")
    queued = stack.submit()["metadata"]["name"]
    waiting = wait_for(
        lambda: (b := stack.get(queued)).get("status", {}).get("conditions") and b,
        timeout=30,
        message="queued job accepted",
    )
    assert condition(waiting, "Queued")["status"] == "True"
    assert "queuePosition" not in waiting["status"]  # positions are computed on read
    # PROCESSING is set when the Job is created; its pod runs a moment later (a container on
    # the real node starts in about a second).
    [pod] = wait_for(
        lambda: [p for p in stack.pods_of(running) if p["status"].get("phase") == "Running"],
        timeout=60,
        message="the runner pod running",
    )
    pid, started = stack.cluster.pod_process(pod)
    assert process_alive(pid, started)

    stack.cancel(queued)
    done = stack.wait_for_phase(queued, "CANCELLED", timeout=30)
    assert done["status"]["error"]["reason"] == "Cancelled"
    assert condition(done, "Queued")["status"] == "False"
    assert stack.jobs_of(queued) == []

    stack.cancel(running)
    done = stack.wait_for_phase(running, "CANCELLED", timeout=30)
    assert done["status"]["error"]["reason"] == "Cancelled"
    assert done["status"]["attempts"] == 1
    wait_for(lambda: not stack.jobs_of(running), timeout=60, message="Job deleted")
    wait_for(lambda: not process_alive(pid, started), timeout=60, message="runner process ended")
    wait_for(lambda: not stack.pods_of(running), timeout=60, message="pod deleted")
    for name in (queued, running):
        assert_row_matches(stack, stack.get(name))
    # The cancelled queued job never got a Job, even after a resync.
    assert stack.jobs_of(queued) == []


def test_retry_of_a_failed_job(make_stack: Any) -> None:
    stack = make_stack(script={"rules": [{"step": "any", "times": None, "status": 401}]})
    job = stack.submit()
    name, event_id = job["metadata"]["name"], job["metadata"]["labels"][gj.LABEL_EVENT_ID]
    failed = stack.wait_for_phase(name, *TERMINAL)
    assert failed["status"]["phase"] == "FAILED" and failed["status"]["attempts"] == 1

    stack.fake.set_script({"summary": FAKE_SUMMARY, "checklist": FAKE_CHECKLIST})
    stack.retry(name, 1)
    done = wait_for(
        lambda: (
            (b := stack.get(name))["status"].get("retryRequests") == 1
            and b["status"]["phase"] in TERMINAL
            and b
        ),
        timeout=120,
        message="retry finished",
    )
    status = done["status"]
    assert status["phase"] == "COMPLETED", status
    assert status["eventId"] == event_id and "error" not in status and "runnerError" not in status
    assert status["attempts"] == 2  # attempts keep counting across runs
    uid = done["metadata"]["uid"]
    assert sorted(j["metadata"]["name"] for j in stack.jobs_of(name)) == sorted(
        manifests.job_name(name, uid, run) for run in (0, 1)
    )
    assert_row_matches(stack, done)
    assert [h["status"] for h in stack.history(event_id)] == [
        "PENDING",
        "PROCESSING",
        "FAILED",
        "PENDING",
        "PROCESSING",
        "COMPLETED",
    ]
    # The same retry request again does nothing.
    stack.retry(name, 1)
    stack.restart_operator(kill=False)
    stack.wait_for_phase(name, "COMPLETED")
    assert len(stack.jobs_of(name)) == 2


def test_a_guidelinejob_recreated_for_a_retry_keeps_counting_attempts(make_stack: Any) -> None:
    stack = make_stack(script={"rules": [{"step": "any", "times": None, "status": 401}]})
    job = stack.submit("Staff must wash hands.")
    name, event_id = job["metadata"]["name"], job["metadata"]["labels"][gj.LABEL_EVENT_ID]
    failed = stack.wait_for_phase(name, *TERMINAL)["status"]
    assert failed["phase"] == "FAILED" and failed["attempts"] == 1
    stack.fake.set_script({"summary": FAKE_SUMMARY, "checklist": FAKE_CHECKLIST})
    # Retention removed the CR; a retry through the API makes the row PENDING for run 1
    # and its dispatcher re-creates the CR (same name) asking for run 1.
    stack.kubectl("delete", gj.PLURAL, name, "--wait=true")
    with stack.database.connection() as conn:
        row = db.lock_job(conn, uuid.UUID(event_id))
        assert row is not None and row["status"] == "FAILED"
        db.request_retry(conn, row, "e2e", "retry after retention")
    again = stack.submit(
        "Staff must wash hands.",
        event_id=uuid.UUID(event_id),
        annotations={gj.ANNOTATION_RETRY_REQUESTED: "1"},
    )
    done = stack.wait_for_phase(again["metadata"]["name"], *TERMINAL)
    assert done["status"]["phase"] == "COMPLETED"
    assert done["status"]["eventId"] == event_id and done["status"]["attempts"] == 2
    assert done["status"]["retryRequests"] == 1
    assert_row_matches(stack, done)
    assert stack.row(event_id)["run"] == 1


# --- queue, timeouts, retention ----------------------------------------------------------------


def test_max_concurrent_jobs_is_honoured_and_the_queue_says_where_a_job_stands(
    cluster: LocalCluster, make_stack: Any
) -> None:
    stack = make_stack(
        operator={"max_concurrent_jobs": 2},
        script={"summary": FAKE_SUMMARY, "checklist": FAKE_CHECKLIST, "latency": 1.5},
    )
    with PodWatch(cluster, stack.namespace) as watch:
        names = [
            stack.submit(f"Guideline {i}: staff must wash hands.")["metadata"]["name"]
            for i in range(6)
        ]
        # While jobs wait, the last one says so (its position is the API's to compute).
        last = wait_for(
            lambda: (
                (b := stack.get(names[-1])).get("status", {}).get("phase") == "PENDING"
                and condition(b, "Queued")["status"] == "True"
                and b
            ),
            timeout=60,
            message="the last job queued",
        )
        assert "queuePosition" not in last["status"]
        for name in names:
            assert (
                stack.wait_for_phase(name, *TERMINAL, timeout=180)["status"]["phase"] == "COMPLETED"
            )
    assert watch.max_running <= 2
    assert watch.max_running == 2  # the slots were used
    # The first two take the free slots in whatever order the operator sees them (their
    # events are handled concurrently); every job that had to wait is admitted in
    # submission order.
    created = [r["guidelinejob"] for r in stack.op.log_records() if r.get("msg") == "created Job"]
    assert sorted(created) == sorted(names)
    assert created[2:] == [n for n in names if n not in created[:2]]
    assert len(watch.started) == 6
    # COMPLETED comes with the runner's result; its slot frees when the operator sees the
    # Job end, which may be a moment later.
    text = wait_for(
        lambda: (
            (t := stack.op.metrics()) and metric(t, "guideline_operator_jobs_active") == 0 and t
        ),
        timeout=60,
        message="every slot free",
    )
    assert metric(text, "guideline_operator_queue_length") == 0
    assert metric(text, "guideline_jobs_finished_total", '{outcome="completed",reason=""}') == 6


def wait_no_namespace_deleted(cluster: LocalCluster) -> None:
    """Another test's namespace being emptied deletes its collections of every resource
    (GuidelineJobs too), which the write counter cannot tell apart: measure once it is done."""
    wait_for(
        lambda: (
            not [
                n
                for n in cluster.get_json("namespaces")["items"]
                if n["status"].get("phase") == "Terminating"
            ]
        ),
        timeout=180,
        message="no namespace being deleted",
    )


def test_writes_per_job_are_at_most_six_whatever_the_queue(
    cluster: LocalCluster, make_stack: Any
) -> None:
    stack = make_stack(operator={"max_concurrent_jobs": 2})
    for count in (1, 16):  # alone, and 14 of them queued behind 2 slots
        wait_no_namespace_deleted(cluster)
        before = kube_writes.scrape(cluster)
        created = stack.submit_many([f"Guideline {i}: wash hands." for i in range(count)])
        for body in created:
            done = stack.wait_for_phase(body["metadata"]["name"], *TERMINAL, timeout=180)
            assert done["status"]["phase"] == "COMPLETED", done["status"]
        delta = kube_writes.writes_since(before, kube_writes.scrape(cluster))
        # kube-apiserver's own count: the create, the operator's and the runner's writes.
        total = kube_writes.guidelinejob_writes(delta)
        print(f"{count} job(s): {total} GuidelineJob writes, {total / count:.2f} per job")
        print(json.dumps(kube_writes.summary(delta, count), indent=1))
        assert total <= 6 * count, kube_writes.breakdown(delta)
        # Every writer's write is accepted: none is wasted on a conflict or a refusal.
        assert kube_writes.guidelinejob_by_code(delta).keys() <= {"200", "201"}, (
            kube_writes.breakdown(delta)
        )


def test_where_kopf_adds_its_finalizer_no_guidelinejob_write_is_rejected(
    cluster: LocalCluster, make_stack: Any
) -> None:
    """In a namespace without the finalizer admission (`make up`'s default namespace),
    kopf adds its finalizer with a patch conditional on the event's resourceVersion; a
    status write of the operator in that same pass made it fail (422) once per job."""
    stack = make_stack(operator={"max_concurrent_jobs": 2})
    cluster.kubectl("label", "namespace", stack.namespace, f"{gj.GROUP}/operator-")
    count = 4
    wait_no_namespace_deleted(cluster)
    before = kube_writes.scrape(cluster)
    created = stack.submit_many([f"Guideline {i}: wash hands." for i in range(count)])
    for body in created:
        done = stack.wait_for_phase(body["metadata"]["name"], *TERMINAL, timeout=180)
        assert done["status"]["phase"] == "COMPLETED", done["status"]
        assert "ingest.guidelines.dev/operator" in done["metadata"]["finalizers"]
    delta = kube_writes.writes_since(before, kube_writes.scrape(cluster))
    assert kube_writes.guidelinejob_by_code(delta).keys() <= {"200", "201"}, kube_writes.breakdown(
        delta
    )
    # The six of a job, and kopf's finalizer.
    assert kube_writes.guidelinejob_writes(delta) <= 7 * count, kube_writes.breakdown(delta)


def test_soft_timeout_fails_with_processing_timeout_without_retries(make_stack: Any) -> None:
    stack = make_stack(
        runner={"GUIDELINE_SOFT_TIMEOUT_SECONDS": "3"},
        script={"rules": [{"step": "any", "times": None, "status": "hang", "seconds": 60}]},
    )
    name = stack.submit()["metadata"]["name"]
    done = stack.wait_for_phase(name, *TERMINAL, timeout=120)
    status = done["status"]
    assert status["phase"] == "FAILED"
    assert status["error"]["reason"] == "Timeout"
    assert status["error"]["message"].startswith("Processing timeout")
    assert status["attempts"] == 1 and len(stack.pods_of(name)) == 1
    assert_row_matches(stack, done)


def test_hard_deadline_fails_with_deadline_exceeded(make_stack: Any) -> None:
    stack = make_stack(
        operator={"active_deadline_seconds": 10},
        runner={"GUIDELINE_SOFT_TIMEOUT_SECONDS": "120"},
        script={"rules": [{"step": "any", "times": None, "status": "hang", "seconds": 120}]},
    )
    name = stack.submit()["metadata"]["name"]
    done = stack.wait_for_phase(name, *TERMINAL, timeout=120)
    status = done["status"]
    assert status["phase"] == "FAILED"
    assert status["error"]["reason"] == "DeadlineExceeded"
    assert "10 s" in status["error"]["message"]
    assert_row_matches(stack, done)


def test_retention_deletes_finished_guidelinejobs_and_keeps_rows(make_stack: Any) -> None:
    stack = make_stack(operator={"cr_retention_seconds": 2, "resync_interval_seconds": 1})
    job = stack.submit()
    name, event_id = job["metadata"]["name"], job["metadata"]["labels"][gj.LABEL_EVENT_ID]
    wait_for(lambda: stack.try_get(name) is None, timeout=90, message="CR deleted by retention")
    row = stack.row(event_id)
    assert row is not None and row["status"] == "COMPLETED"
    assert row["result"]["summary"] == FAKE_SUMMARY
    assert metric(stack.op.metrics(), "guideline_operator_retention_deleted_total") == 1


# --- restarts ---------------------------------------------------------------------------------


@pytest.mark.fault
def test_operator_killed_and_restarted_while_jobs_run(make_stack: Any) -> None:
    stack = make_stack(
        operator={"max_concurrent_jobs": 2},
        script={"summary": FAKE_SUMMARY, "checklist": FAKE_CHECKLIST, "latency": 2.0},
    )
    names = [stack.submit(f"Guideline {i}.")["metadata"]["name"] for i in range(4)]
    stack.wait_for_phase(names[0], "PROCESSING")
    stack.restart_operator(kill=True)
    stack.wait_for_phase(names[1], "PROCESSING", "COMPLETED")
    stack.restart_operator(kill=True)
    for name in names:
        done = stack.wait_for_phase(name, *TERMINAL, timeout=180)
        assert done["status"]["phase"] == "COMPLETED", done["status"]
        # Run once to completion: one Job, one pod, one summary request for its text.
        assert len(stack.jobs_of(name)) == 1
        assert len(stack.pods_of(name)) == 1 and done["status"]["attempts"] == 1
        assert_row_matches(stack, done)
    assert len(stack.fake.requests("checklist")) == len(names)


@pytest.mark.fault
def test_no_second_job_for_a_finished_guidelinejob_after_a_restart(make_stack: Any) -> None:
    stack = make_stack()
    names = [stack.submit()["metadata"]["name"] for _ in range(2)]
    for name in names:
        assert stack.wait_for_phase(name, *TERMINAL)["status"]["phase"] == "COMPLETED"
    stack.op.stop()
    # One finished Job is removed while no operator runs (as ttlSecondsAfterFinished does).
    first_job = stack.get(names[0])["status"]["jobName"]
    stack.kubectl("delete", "job", first_job, "--cascade=background", "--wait=true")
    op = stack.start_operator()
    wait_for(
        lambda: (
            {r.get("guidelinejob") for r in op.log_records() if r.get("msg") == "resumed"}
            >= set(names)
        ),
        timeout=60,
        message="both resumed",
    )
    for name in names:
        assert stack.get(name)["status"]["phase"] == "COMPLETED"
    assert stack.jobs_of(names[0]) == []
    assert len(stack.jobs_of(names[1])) == 1
    assert len(stack.fake.requests("checklist")) == 2


def test_kueue_mode_creates_suspended_jobs_and_waits_for_admission(make_stack: Any) -> None:
    stack = make_stack(operator={"kueue_queue_name": "team-queue"})
    name = stack.submit()["metadata"]["name"]
    [job] = wait_for(lambda: stack.jobs_of(name), timeout=30, message="Job created")
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-queue"
    body = stack.get(name)
    assert body["status"]["phase"] == "PENDING"
    queued = condition(body, "Queued")
    assert queued["status"] == "True" and "Kueue" in queued["message"]
    assert stack.pods_of(name) == []
    # Kueue's one action: admit the Job by unsuspending it.
    stack.kubectl(
        "patch", "job", job["metadata"]["name"], "--type=merge", "-p", '{"spec":{"suspend":false}}'
    )
    done = stack.wait_for_phase(name, *TERMINAL)
    assert done["status"]["phase"] == "COMPLETED"
    assert condition(done, "Queued")["status"] == "False"


def accepted_by(op: Any, name: str) -> bool:
    return any(
        r.get("msg") == "accepted" and r.get("guidelinejob") == name for r in op.log_records()
    )


@pytest.mark.fault
def test_replicas_with_peering_only_the_highest_priority_one_acts(make_stack: Any) -> None:
    stack = make_stack(operator_args=("--peering", "guideline-test", "--priority", "10"))
    low = stack.op
    high = stack.start_operator("--peering", "guideline-test", "--priority", "20", keep=True)
    # The operator created its KopfPeering object; both replicas announce themselves in it.
    wait_for(
        lambda: (
            len(
                stack.cluster.get_json(
                    "kopfpeerings.kopf.dev", "guideline-test", "-n", stack.namespace
                ).get("status")
                or {}
            )
            == 2
        ),
        timeout=60,
        message="two peers",
    )
    wait_for(
        lambda: any(
            "Pausing operations in favour of" in r.get("msg", "") for r in low.log_records()
        ),
        timeout=60,
        message="the low-priority replica pauses",
    )
    first = stack.submit()["metadata"]["name"]
    assert stack.wait_for_phase(first, *TERMINAL)["status"]["phase"] == "COMPLETED"
    assert accepted_by(high, first) and not accepted_by(low, first)

    high.stop()  # a clean exit leaves the peering at once; the standby resumes
    second = stack.submit()["metadata"]["name"]
    assert stack.wait_for_phase(second, *TERMINAL, timeout=120)["status"]["phase"] == "COMPLETED"
    assert accepted_by(low, second) and not accepted_by(high, second)
