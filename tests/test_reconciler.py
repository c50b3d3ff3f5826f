"""The Reconciler's passes, fast: the operator's real adapter (`kubeapi.Kube`) over the
in-memory fake of the Kubernetes client (tests/support/fake_kube.py, checked against the real
control plane by tests/test_fake_kube.py) and the real database mirror on the tests'
PostgreSQL. The test plays the Job controller and the kubelet (a pod started, terminated, a
Job's verdict) and the API (annotations). End to end, with real pods: test_operator_e2e.py."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from guideline_core import db
from guideline_core import resource as gj
from guideline_core.k8s import paths
from guideline_core.resource import FailureReason
from guideline_core.settings import OperatorSettings
from guideline_operator import manifests, rows
from guideline_operator.kubeapi import Kube
from guideline_operator.metrics import Metrics
from guideline_operator.mirror import DatabaseMirror
from guideline_operator.reconciler import Reconciler
from support.fake_kube import FakeClient

NS = "wards"
TENANT = "wards-team"
TEXT = "Staff must wash hands before and after every patient contact."


class World:
    """A Reconciler over the fake cluster and the real database, and the test's hands."""

    def __init__(self, database: db.Database, **settings: Any) -> None:
        self.database = database
        self.fake = FakeClient()
        self.fake.create_namespace(NS, {gj.LABEL_TENANT: TENANT})
        self.kube = Kube(self.fake)
        self.settings = OperatorSettings(namespace=NS, runner_image="runner:test", **settings)
        metrics = Metrics()
        self.events: list[tuple[str, str, str]] = []  # (object name, reason, message)
        self.rec = Reconciler(
            self.settings,
            self.kube,
            DatabaseMirror(database, metrics),
            metrics,
            namespaces=[NS],
            events=lambda body, _type, reason, message: self.events.append(
                (body["metadata"]["name"], reason, message)
            ),
        )

    # --- kubectl and the API ---------------------------------------------------------------

    def apply(self, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
        """A GuidelineJob as `kubectl apply` makes it."""
        body = {
            "apiVersion": gj.API_VERSION,
            "kind": gj.KIND,
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"guidelineText": TEXT, "title": name},
        }
        return self.fake.create(paths.guidelinejobs(NS), body)

    def annotate(self, name: str, key: str, value: str) -> None:
        self.kube.patch_cr(NS, name, {"metadata": {"annotations": {key: value}}})

    def reconcile(self, name: str) -> dict[str, Any]:
        self.rec.reconcile(NS, name)
        return self.cr(name)

    def cr(self, name: str) -> dict[str, Any]:
        cr = self.kube.get_cr(NS, name)
        assert cr is not None
        return cr

    def row(self, event_id: str) -> db.JobRow:
        with self.database.connection() as conn:
            row = db.get_job(conn, uuid.UUID(event_id))
        assert row is not None
        return row

    def history(self, event_id: str) -> int:
        """Entries in the job's history (one per state the mirror wrote)."""
        with self.database.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM job_events WHERE event_id = %s", (event_id,))
            return int(cur.fetchone()[0])

    # --- the Job controller and the kubelet ------------------------------------------------

    def jobs(self, name: str) -> list[dict[str, Any]]:
        return self.kube.list_jobs(NS, manifests.selector_for(name))

    def job(self, name: str) -> dict[str, Any]:
        [job] = [
            j
            for j in self.jobs(name)
            if j["metadata"]["name"] == self.cr(name)["status"]["jobName"]
        ]
        return job

    def pod_started(self, name: str) -> dict[str, Any]:
        pod = self.fake.start_pod(self.job(name))
        self.rec.child_event(pod, "MODIFIED")
        return pod

    def pod_ended(self, pod: dict[str, Any], exit_code: int, message: str = "") -> None:
        started = pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
        terminated = {"exitCode": exit_code, "startedAt": started, "message": message}
        pod = self.fake.set_container_state(
            pod, {"terminated": {**terminated, "finishedAt": started}}
        )
        self.rec.child_event(pod, "MODIFIED")

    def runner_writes_result(self, name: str, result: dict[str, Any]) -> None:
        self.fake.merge_patch(
            paths.guidelinejobs(NS, name, "status"), {"status": {"result": result}}
        )

    def complete(self, name: str) -> dict[str, Any]:
        """The runner's one attempt succeeds with its result."""
        pod = self.pod_started(name)
        self.runner_writes_result(name, {"summary": "wash hands", "checklist": ["wash"]})
        self.pod_ended(pod, 0)
        return self.cr(name)

    def reasons(self, name: str) -> list[str]:
        return [reason for obj, reason, _ in self.events if obj == name]


@pytest.fixture
def world(database: db.Database) -> Iterator[World]:
    yield World(database)


def runner_error(reason: str, message: str) -> str:
    return json.dumps({"reason": reason, "message": message})


def test_a_kubectl_guidelinejob_is_accepted_with_a_row_of_its_own(database: db.Database) -> None:
    world = World(database, max_concurrent_jobs=1)
    world.apply("first")
    world.reconcile("first")  # takes the only slot
    cr = world.apply("hand-hygiene")
    uid = cr["metadata"]["uid"]
    cr = world.reconcile("hand-hygiene")
    status = cr["status"]
    assert status["phase"] == "PENDING" and status["eventId"] == uid
    assert cr["metadata"]["labels"][gj.LABEL_EVENT_ID] == uid
    assert cr["metadata"]["labels"][gj.LABEL_PART_OF] == gj.PART_OF
    assert "jobName" not in status and world.jobs("hand-hygiene") == []
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions["Accepted"] == ("True", "Accepted")
    assert conditions["Queued"] == ("True", "Queued")
    row = world.row(uid)
    assert (row["status"], row["tenant"], row["cr_uid"]) == ("PENDING", TENANT, uid)
    assert (row["submitted_by"], row["cr_name"], row["title"]) == (
        "kubectl",
        "hand-hygiene",
        "hand-hygiene",
    )
    assert world.reasons("hand-hygiene") == ["Accepted"]


def test_admission_starts_it_with_the_right_job(world: World) -> None:
    uid = world.apply("hand-hygiene")["metadata"]["uid"]
    cr = world.reconcile("hand-hygiene")
    status = cr["status"]
    expected = manifests.job_name("hand-hygiene", uid, 0)
    assert (status["phase"], status["attempts"], status["jobName"]) == ("PROCESSING", 1, expected)
    assert status["startedAt"]
    [job] = world.jobs("hand-hygiene")
    meta, spec = job["metadata"], job["spec"]
    assert meta["name"] == expected
    assert [(o["kind"], o["uid"]) for o in meta["ownerReferences"]] == [(gj.KIND, uid)]
    assert meta["labels"][gj.LABEL_EVENT_ID] == uid
    assert meta["annotations"][manifests.ANNOTATION_ATTEMPTS_BEFORE] == "0"
    assert spec["suspend"] is False and spec["backoffLimit"] == world.settings.backoff_limit
    [container] = spec["template"]["spec"]["containers"]
    assert container["image"] == "runner:test"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env[gj.ENV_EVENT_ID] == uid and env[gj.ENV_TENANT] == TENANT
    assert world.row(uid)["status"] == "PROCESSING" and world.row(uid)["attempts"] == 1
    assert world.reasons("hand-hygiene") == ["Accepted", "JobCreated"]


def test_the_pod_starting_costs_no_write_and_its_result_completes_the_job(world: World) -> None:
    uid = world.apply("hand-hygiene")["metadata"]["uid"]
    world.reconcile("hand-hygiene")
    writes = world.fake.writes()
    pod = world.pod_started("hand-hygiene")
    cr = world.cr("hand-hygiene")
    assert cr["status"]["phase"] == "PROCESSING" and cr["status"]["attempts"] == 1
    assert world.fake.writes() == writes + 2  # the pod's create and its status: the test's
    assert world.reasons("hand-hygiene")[-1] == "Processing"
    result = {"summary": "wash hands", "checklist": ["wash"]}
    world.runner_writes_result("hand-hygiene", result)
    world.pod_ended(pod, 0)
    status = world.cr("hand-hygiene")["status"]
    assert status["phase"] == "COMPLETED" and status["completedAt"]
    row = world.row(uid)
    assert (row["status"], row["attempts"], row["result"]) == ("COMPLETED", 1, result)
    assert world.reasons("hand-hygiene")[-1] == "Completed"


def test_a_second_pass_writes_nothing(world: World) -> None:
    uid = world.apply("hand-hygiene")["metadata"]["uid"]
    world.reconcile("hand-hygiene")
    world.pod_started("hand-hygiene")
    writes, history = world.fake.writes(), world.history(uid)
    world.reconcile("hand-hygiene")
    world.rec.resync(world.cr("hand-hygiene"))
    assert (world.fake.writes(), world.history(uid)) == (writes, history)
    world.runner_writes_result("hand-hygiene", {"summary": "s"})
    world.pod_ended(world.fake.list_items(paths.pods(NS))[0], 0)
    assert world.cr("hand-hygiene")["status"]["phase"] == "COMPLETED"
    writes, history, events = world.fake.writes(), world.history(uid), len(world.events)
    world.reconcile("hand-hygiene")
    world.rec.resync(world.cr("hand-hygiene"))
    assert (world.fake.writes(), world.history(uid), len(world.events)) == (writes, history, events)


def test_a_cancel_request_deletes_the_job(world: World) -> None:
    uid = world.apply("hand-hygiene")["metadata"]["uid"]
    world.reconcile("hand-hygiene")
    world.pod_started("hand-hygiene")
    world.annotate("hand-hygiene", gj.ANNOTATION_CANCEL_REQUESTED, "2025-03-01T12:00:00Z")
    status = world.reconcile("hand-hygiene")["status"]
    assert status["phase"] == "CANCELLED"
    assert status["error"] == {
        "reason": "Cancelled",
        "message": "cancelled on request (2025-03-01T12:00:00Z)",
    }
    assert world.jobs("hand-hygiene") == [] and world.fake.list_items(paths.pods(NS)) == []
    row = world.row(uid)
    assert (row["status"], row["error"]["reason"]) == ("CANCELLED", "Cancelled")
    assert world.reasons("hand-hygiene")[-1] == "Cancelled"


def test_backoff_exhausted_fails_with_the_last_error_then_a_retry_runs_again(world: World) -> None:
    uid = world.apply("hand-hygiene")["metadata"]["uid"]
    world.reconcile("hand-hygiene")
    first_job = world.job("hand-hygiene")
    for _ in range(2):
        world.pod_ended(
            world.pod_started("hand-hygiene"), 1, runner_error("LLMError", "rate limited")
        )
    status = world.cr("hand-hygiene")["status"]
    assert (status["phase"], status["attempts"]) == ("PROCESSING", 2)  # the Job retried
    assert "AttemptStarted" in world.reasons("hand-hygiene")
    world.fake.set_job_condition(first_job, "Failed", "BackoffLimitExceeded", failed=2)
    world.rec.child_event(first_job, "MODIFIED")
    status = world.cr("hand-hygiene")["status"]
    assert (status["phase"], status["attempts"]) == ("FAILED", 2)
    assert status["error"]["reason"] == FailureReason.BACKOFF_LIMIT_EXCEEDED
    assert status["error"]["message"].endswith("last error: LLMError: rate limited")
    row = world.row(uid)
    assert (row["status"], row["error"]["reason"]) == ("FAILED", "BackoffLimitExceeded")

    world.annotate("hand-hygiene", gj.ANNOTATION_RETRY_REQUESTED, "1")
    status = world.reconcile("hand-hygiene")["status"]
    second = manifests.job_name("hand-hygiene", uid, 1)
    assert second != first_job["metadata"]["name"]
    assert (status["phase"], status["retryRequests"], status["jobName"]) == (
        "PROCESSING",
        1,
        second,
    )
    assert status["attempts"] == 3 and "error" not in status
    new_job = world.job("hand-hygiene")
    assert new_job["metadata"]["annotations"][manifests.ANNOTATION_ATTEMPTS_BEFORE] == "2"
    row = world.row(uid)
    assert (row["status"], row["run"], row["attempts"]) == ("PROCESSING", 1, 3)
    assert world.complete("hand-hygiene")["status"]["attempts"] == 3
    assert world.reasons("hand-hygiene")[-4:] == [
        "RetryRequested",
        "JobCreated",
        "Processing",
        "Completed",
    ]


def test_a_claimed_event_id_is_not_believed(world: World) -> None:
    victim = world.apply("victim")["metadata"]["uid"]
    world.reconcile("victim")
    squatter = world.apply("squatter", labels={gj.LABEL_EVENT_ID: victim})["metadata"]["uid"]
    cr = world.reconcile("squatter")
    assert cr["status"]["eventId"] == squatter
    assert cr["metadata"]["labels"][gj.LABEL_EVENT_ID] == squatter
    assert world.job("squatter")["metadata"]["labels"][gj.LABEL_EVENT_ID] == squatter
    assert world.row(victim)["cr_uid"] == victim and world.row(victim)["cr_name"] == "victim"
    assert world.row(squatter)["cr_uid"] == squatter


def test_the_apis_guidelinejob_is_believed_once_its_row_records_it(world: World) -> None:
    event_id = gj.new_event_id()
    with world.database.connection() as conn:
        db.insert_job(
            conn,
            db.NewJob(event_id=event_id, namespace=NS, guideline_text=TEXT, tenant="api-team"),
        )
    manifest = gj.guideline_job_manifest(event_id=event_id, guideline_text=TEXT)
    uid = world.fake.create(paths.guidelinejobs(NS), manifest)["metadata"]["uid"]
    name = gj.cr_name_for(event_id)
    with pytest.raises(rows.NotRecordedYetError):  # the dispatcher has not recorded it yet
        world.rec.reconcile(NS, name)
    with world.database.connection() as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE jobs SET cr_uid = %s, cr_name = %s WHERE event_id = %s", (uid, name, event_id)
        )
    cr = world.reconcile(name)
    assert cr["status"]["eventId"] == str(event_id) and cr["status"]["phase"] == "PROCESSING"
    env = {
        e["name"]: e.get("value")
        for e in world.job(name)["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env[gj.ENV_TENANT] == "api-team"  # the row's tenant, not the namespace's


def test_the_second_job_waits_for_the_only_slot(database: db.Database) -> None:
    world = World(database, max_concurrent_jobs=1)
    world.apply("first")
    world.apply("second")
    assert world.reconcile("first")["status"]["phase"] == "PROCESSING"
    assert world.reconcile("second")["status"]["phase"] == "PENDING"
    assert world.jobs("second") == []
    world.complete("first")
    assert world.cr("first")["status"]["phase"] == "COMPLETED"
    status = world.cr("second")["status"]
    assert status["phase"] == "PROCESSING" and [
        j["metadata"]["name"] for j in world.jobs("second")
    ] == [status["jobName"]]


def test_with_kueue_the_job_is_created_suspended_and_kueue_starts_it(database: db.Database) -> None:
    world = World(database, kueue_queue_name="guidelines")
    world.apply("hand-hygiene")
    status = world.reconcile("hand-hygiene")["status"]
    job = world.job("hand-hygiene")
    assert status["phase"] == "PENDING" and status["jobName"] == job["metadata"]["name"]
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"][manifests.KUEUE_QUEUE_LABEL] == "guidelines"
    queued = {c["type"]: c for c in status["conditions"]}["Queued"]
    assert queued["reason"] == "WaitingForKueue"
    world.kube.client.merge_patch(
        paths.jobs(NS, job["metadata"]["name"]), {"spec": {"suspend": False}}
    )
    world.pod_started("hand-hygiene")
    assert world.cr("hand-hygiene")["status"]["phase"] == "PROCESSING"


def test_a_job_deleted_under_a_running_job_is_created_again(world: World) -> None:
    world.apply("hand-hygiene")
    world.reconcile("hand-hygiene")
    job = world.job("hand-hygiene")
    world.kube.delete_job(NS, job["metadata"]["name"])  # by someone else
    cr = world.reconcile("hand-hygiene")
    again = world.job("hand-hygiene")
    assert again["metadata"]["name"] == job["metadata"]["name"] != "" and again != job
    # The admission counted the run's first attempt already: none before it.
    assert again["metadata"]["annotations"][manifests.ANNOTATION_ATTEMPTS_BEFORE] == "0"
    assert (cr["status"]["phase"], cr["status"]["attempts"]) == ("PROCESSING", 1)


def test_a_running_guidelinejob_deleted_stops_its_job_and_stays_in_its_row(world: World) -> None:
    body = world.apply("hand-hygiene")
    world.kube.patch_cr(NS, "hand-hygiene", {"metadata": {"finalizers": [gj.FINALIZER]}})
    world.reconcile("hand-hygiene")
    uid = body["metadata"]["uid"]
    assert world.kube.delete_cr(NS, "hand-hygiene")
    deleting = world.cr("hand-hygiene")  # held by the operator's finalizer
    writes = world.fake.writes()
    world.rec.reconcile(NS, "hand-hygiene")  # a pass leaves a GuidelineJob being deleted alone
    assert world.fake.writes() == writes
    world.rec.deleted(deleting)
    assert world.jobs("hand-hygiene") == []
    row = world.row(uid)
    assert (row["status"], row["error"]["reason"], row["attempts"]) == ("CANCELLED", "Deleted", 1)


def test_a_finished_guidelinejob_leaves_the_cluster_after_its_retention(
    database: db.Database,
) -> None:
    world = World(database, cr_retention_seconds=0)
    uid = world.apply("hand-hygiene")["metadata"]["uid"]
    world.reconcile("hand-hygiene")
    assert world.complete("hand-hygiene")["status"]["phase"] == "COMPLETED"
    world.rec.resync(world.cr("hand-hygiene"))  # the timer's pass over a finished job
    assert world.kube.get_cr(NS, "hand-hygiene") is None
    assert world.jobs("hand-hygiene") == []  # its Job and pods with it
    assert world.row(uid)["status"] == "COMPLETED"
