"""The operator's logic: one idempotent reconcile pass per GuidelineJob, and the admission
pass that starts queued jobs when slots free up.

Design decisions (see also docs/contracts.md):

- Level-based, not edge-based. Every entry point (CR created/resumed/annotated, a Job or
  pod event, the resync timer) runs the same `reconcile()`: it lists the CR's Jobs and
  pods, then reads the CR fresh from the API server (in that order, so a `status.result`
  the runner wrote before its Job completed is always seen), computes the state with the
  pure functions of `observe`, and writes only what differs. Re-running it, after a
  restart or a lost watch event, writes the same state and never creates a second Job.
- The queue: Jobs are created only when a slot is free ("create later"), not created
  suspended and unsuspended. The GuidelineJob itself is the durable queue entry (phase
  PENDING, Queued condition), so a restart loses nothing; etcd does not hold a second
  object per waiting job; a queued job picks up the runner image and limits in force when
  it starts; and `activeDeadlineSeconds`/`startTime` are never affected by waiting. Only
  with Kueue (`kueue_queue_name`) are Jobs created at once, suspended, with Kueue's
  queue-name label: admission is then Kueue's job, as Kueue requires.
- Slots are counted from the Jobs themselves (listed, not cached): a Job takes a slot
  until it has a Complete or Failed condition (the Job controller sets those only once its
  pods have terminated). One admission pass runs at a time; a pass requested while another
  runs makes that one go round again.
- `status.jobName` is written before the Job is created. A missing Job whose name is in
  status was either never created (a crash in between: create it) or has finished and
  been removed while the operator was away (the runner's `status.result` or the phase
  PROCESSING tells which): a finished CR never gets a second Job.
- A per-GuidelineJob lock serializes the passes of one CR within this process (kopf runs
  sync handlers in a thread pool, and a Job event and the timer can arrive together);
  peering keeps other replicas passive.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import psycopg2
from guideline_core import db, logs
from guideline_core import resource as gj
from guideline_core.kube import event_id_of
from guideline_core.resource import ConditionType, FailureReason, Phase
from guideline_core.settings import OperatorSettings
from kubernetes.client.exceptions import ApiException

from guideline_operator import manifests, observe, store
from guideline_operator.kubeapi import Kube
from guideline_operator.metrics import Metrics
from guideline_operator.observe import Observation, Stage
from guideline_operator.queue import QueueEntry, Registry, waiting

log = logging.getLogger("guideline_operator")

EventSink = Callable[[Mapping[str, Any], str, str, str], None]


def kopf_event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    """Post a Kubernetes Event on `body` through kopf's background poster."""
    import kopf

    try:
        kopf.event(dict(body), type=type_, reason=reason, message=message[:1000])
    except LookupError:  # outside an operator context (e.g. a script): log only
        log.info("event", extra={"reason": reason, "event_message": message})


def identity() -> str:
    """This operator's identity for the heartbeat: the pod name, else the hostname."""
    return os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or socket.gethostname()


def _fingerprint(state: db.JobState) -> str:
    """A digest of the fields `db.mirror_state` writes."""
    fields = [
        state.status,
        state.attempts,
        state.started_at,
        state.completed_at,
        state.result,
        state.error,
    ]
    return hashlib.sha256(json.dumps(fields, default=str, sort_keys=True).encode()).hexdigest()


class Reconciler:
    """Reconciles GuidelineJobs with their Jobs, pods and database rows."""

    def __init__(
        self,
        settings: OperatorSettings,
        kube: Kube,
        database: db.Database,
        metrics: Metrics,
        *,
        namespaces: list[str] | None,
        events: EventSink = kopf_event,
        heartbeat_identity: str | None = None,
    ):
        self.settings = settings
        self.kube = kube
        self.db = database
        self.metrics = metrics
        self.namespaces = namespaces  # None: every namespace
        self.events = events
        self.registry = Registry()
        self.event_ids: dict[tuple[str, str], str] = {}
        self.identity = heartbeat_identity or identity()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._mirrored: dict[str, str] = {}  # event_id -> fingerprint of the state written
        self._rows: set[str] = set()  # event_ids whose row is known to exist
        self._pump_lock = threading.Lock()
        self._pump_wanted = threading.Event()
        self._last_pump = 0.0
        self._last_refresh = 0.0
        self._stop = threading.Event()
        self._background: threading.Thread | None = None

    # --- helpers ---------------------------------------------------------------------------

    @staticmethod
    def now() -> datetime:
        """The current time, to the second (the precision the API stores)."""
        return datetime.now(UTC).replace(microsecond=0)

    def _lock(self, namespace: str, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def _event(self, cr: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self.events(cr, type_, reason, message)

    def _bind(self, cr: Mapping[str, Any]) -> Any:
        metadata = cr["metadata"]
        return logs.bind(
            event_id=event_id_of(dict(cr)),
            guidelinejob=metadata["name"],
            namespace=metadata.get("namespace"),
        )

    def _patch_status(self, cr: Mapping[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        metadata = cr["metadata"]
        updated = self.kube.patch_cr_status(metadata["namespace"], metadata["name"], patch)
        self.registry.upsert(updated)
        return updated

    # --- watch-fed bookkeeping ------------------------------------------------------------

    def cr_seen(self, body: Mapping[str, Any], deleted: bool = False) -> None:
        """Keep the registry (and the name -> event_id map for log lines) current."""
        metadata = body.get("metadata") or {}
        key = (metadata.get("namespace") or "", metadata.get("name") or "")
        if deleted:
            self.registry.remove(metadata.get("uid") or "")
            self.event_ids.pop(key, None)
            return
        self.registry.upsert(body)
        if metadata.get("uid"):
            self.event_ids[key] = event_id_of(dict(body))

    def load_registry(self) -> int:
        """Fill the registry from one list of every GuidelineJob in scope (at start-up, so
        the first admission pass already knows the whole queue)."""
        count = 0
        for namespace in self.namespaces or [None]:
            for body in self.kube.list_crs(namespace):
                self.cr_seen(body)
                count += 1
        return count

    # --- the reconcile pass -----------------------------------------------------------------

    def reconcile(self, namespace: str, name: str, *, cause: str = "") -> None:
        """Bring one GuidelineJob, its Job and its row in line with what is observed."""
        with self._lock(namespace, name):
            wake = self._reconcile_locked(namespace, name, cause)
        if wake is not None:
            self.pump(force=wake)

    def _reconcile_locked(self, namespace: str, name: str, cause: str) -> bool | None:
        """One pass; returns whether to run the admission pass: True now (a job was
        accepted, retried or finished: the queue changed), False when it has not run for a
        second (the job still waits), None not at all."""
        selector = manifests.selector_for(name)
        jobs = self.kube.list_jobs(namespace, selector)
        pods = self.kube.list_pods(namespace, selector)
        cr = self.kube.get_cr(namespace, name)
        if cr is None or cr["metadata"].get("deletionTimestamp"):
            return None
        self.cr_seen(cr)
        uid = cr["metadata"]["uid"]
        own_jobs = {j["metadata"]["name"]: j for j in jobs if observe.owned_by(j, uid)}
        event_id = event_id_of(cr)
        with self._bind(cr):
            log.debug("reconcile", extra={"cause": cause})
            try:
                return self._reconcile_cr(cr, event_id, own_jobs, pods)
            finally:
                if cause == "resume":  # logged once the pass is over (tests wait for it)
                    log.info("resumed", extra={"phase": (cr.get("status") or {}).get("phase")})

    def _reconcile_cr(
        self,
        cr: dict[str, Any],
        event_id: str,
        own_jobs: Mapping[str, dict[str, Any]],
        pods: list[dict[str, Any]],
    ) -> bool | None:
        try:
            uuid.UUID(event_id)
        except ValueError:
            self._reject(cr, f"label {gj.LABEL_EVENT_ID}={event_id!r} is not a UUID")
            return None
        cr = self._ensure_label(cr, event_id)
        status = cr.get("status") or {}
        queue_changed = False
        if not status.get("phase"):
            cr = self._accept(cr, event_id)
            queue_changed = True
        elif status.get("eventId") != event_id:
            cr = self._patch_status(cr, {"eventId": event_id})
        retried = self._maybe_retry(cr)
        queue_changed = queue_changed or retried is not cr
        cr = retried
        phase = observe.phase_of(cr) or Phase.PENDING
        job = own_jobs.get(observe.current_job_name(cr))
        run_pods = [p for p in pods if observe.owned_by(p, job["metadata"]["uid"])] if job else []
        if observe.cancel_requested(cr) and not phase.terminal:
            self._cancel(cr, own_jobs, job, run_pods)
            return True
        if phase.terminal:
            self._upkeep_terminal(cr, own_jobs)
            return None
        obs = observe.observe(cr, job, run_pods, self.now())
        if obs.stage == Stage.MISSING or (
            obs.stage == Stage.QUEUED and self.settings.kueue_queue_name
        ):
            # With Kueue, Kueue admits (the Job is created suspended at once); the missing
            # Job of an admitted run is recreated: the run was admitted already.
            self._start_run(cr)
            return None
        self._apply(cr, obs)
        if obs.phase.terminal or queue_changed:
            return True
        return False if obs.stage == Stage.QUEUED else None

    def _reject(self, cr: dict[str, Any], message: str) -> None:
        """FAILED without a Job or a row: the GuidelineJob cannot be identified."""
        if observe.phase_of(cr) == Phase.FAILED:
            return
        error = {"reason": FailureReason.INVALID_INPUT.value, "message": message}
        rejected = Observation(
            Phase.FAILED,
            Stage.DONE,
            0,
            completed_at=self.now(),
            error=error,
            reason=error["reason"],
            message=message,
        )
        self._patch_status(cr, observe.desired_status(cr, rejected, now=self.now()))
        log.warning("rejected a GuidelineJob", extra={"problem": message})
        self._event(cr, "Warning", "Rejected", message)

    def _ensure_label(self, cr: dict[str, Any], event_id: str) -> dict[str, Any]:
        labels = cr["metadata"].get("labels") or {}
        if labels.get(gj.LABEL_EVENT_ID) == event_id:
            return cr
        metadata = cr["metadata"]
        log.info("labelling a GuidelineJob made without the API with its event_id")
        return self.kube.patch_cr(
            metadata["namespace"],
            metadata["name"],
            {"metadata": {"labels": {gj.LABEL_EVENT_ID: event_id, gj.LABEL_PART_OF: gj.PART_OF}}},
        )

    def _accept(self, cr: dict[str, Any], event_id: str) -> dict[str, Any]:
        attempts = self._ensure_row(cr)
        # A GuidelineJob the API re-created for a retry carries its run number; its states
        # are of that run (so the row, already at that run, takes them).
        run = observe.retry_requested(cr) or 0
        staged = copy.deepcopy(cr)
        staged.setdefault("status", {}).update(
            {
                "eventId": event_id,
                "phase": Phase.PENDING.value,
                "attempts": attempts,
                "retryRequests": run,
            }
        )
        kueue = self.settings.kueue_queue_name
        conditions = observe.conditions_for(
            staged,
            Phase.PENDING,
            Stage.QUEUED,
            now=self.now(),
            queue_message=f"waiting for admission by Kueue (queue {kueue})" if kueue else None,
        )
        cr = self._patch_status(
            cr,
            {
                "eventId": event_id,
                "phase": Phase.PENDING.value,
                "attempts": attempts,
                "retryRequests": run,
                "observedGeneration": cr["metadata"].get("generation"),
                "conditions": conditions,
            },
        )
        log.info("accepted", extra={"phase": "PENDING"})
        self._event(cr, "Normal", "Accepted", f"accepted as event_id {event_id}")
        self._sync_db(cr, reason="Accepted")
        return cr

    def _maybe_retry(self, cr: dict[str, Any]) -> dict[str, Any]:
        requested = observe.retry_requested(cr)
        status = cr.get("status") or {}
        done = int(status.get("retryRequests") or 0)
        phase = observe.phase_of(cr)
        if requested is None or requested <= done or phase not in (Phase.FAILED, Phase.CANCELLED):
            return cr
        metadata = cr["metadata"]
        if observe.cancel_requested(cr):
            # The cancel request was honoured by the previous run; it must not cancel this one.
            cr = self.kube.patch_cr(
                metadata["namespace"],
                metadata["name"],
                {"metadata": {"annotations": {gj.ANNOTATION_CANCEL_REQUESTED: None}}},
            )
        staged = copy.deepcopy(cr)
        staged["status"].update({"retryRequests": requested, "phase": Phase.PENDING.value})
        staged["status"].pop("jobName", None)
        conditions = observe.conditions_for(
            staged,
            Phase.PENDING,
            Stage.QUEUED,
            now=self.now(),
            queue_message=f"retry {requested}: waiting for a free slot",
        )
        cr = self._patch_status(
            cr,
            {
                "phase": Phase.PENDING.value,
                "retryRequests": requested,
                "error": None,
                "completedAt": None,
                "jobName": None,
                "queuePosition": None,
                # The runner's fields of the failed run; status.partial stays so the new
                # run can skip the summary step.
                "result": None,
                "runnerError": None,
                "conditions": conditions,
                "observedGeneration": metadata.get("generation"),
            },
        )
        new_job = manifests.job_name(metadata["name"], requested)
        log.info("retry requested", extra={"retry": requested, "job": new_job})
        self._event(
            cr,
            "Normal",
            "RetryRequested",
            f"retry {requested}: a new run will start as Job {new_job}",
        )
        self._sync_db(cr, reason="RetryRequested", message=f"retry {requested}")
        return cr

    def _cancel(
        self,
        cr: dict[str, Any],
        jobs: Mapping[str, Mapping[str, Any]],
        job: Mapping[str, Any] | None,
        run_pods: list[dict[str, Any]],
    ) -> None:
        metadata = cr["metadata"]
        now = self.now()
        seen = observe.observe(cr, job, run_pods, now) if job is not None else None
        if seen is not None and seen.phase.terminal:
            self._apply(cr, seen)  # it finished before the request was seen: that stands
            return
        for job_obj in jobs.values():
            if observe.job_outcome(job_obj) is None:
                self.kube.delete_job(metadata["namespace"], job_obj["metadata"]["name"])
                log.info("deleted Job (cancel)", extra={"job": job_obj["metadata"]["name"]})
        requested_at = (metadata.get("annotations") or {}).get(gj.ANNOTATION_CANCEL_REQUESTED)
        message = f"cancelled on request ({requested_at})"
        status = cr.get("status") or {}
        cancelled = Observation(
            Phase.CANCELLED,
            Stage.DONE,
            seen.attempts if seen else int(status.get("attempts") or 0),
            started_at=seen.started_at if seen else observe.parse_time(status.get("startedAt")),
            run_started_at=seen.run_started_at if seen else None,
            completed_at=now,
            error={"reason": FailureReason.CANCELLED.value, "message": message},
            reason=FailureReason.CANCELLED.value,
            message=message,
            job_name=status.get("jobName"),
            queued_at=(seen.queued_at if seen else None) or observe.queued_since(cr),
        )
        self._apply(cr, cancelled)

    def _upkeep_terminal(self, cr: dict[str, Any], jobs: Mapping[str, Mapping[str, Any]]) -> None:
        metadata = cr["metadata"]
        if observe.phase_of(cr) == Phase.CANCELLED:
            for job_obj in jobs.values():
                if observe.job_outcome(job_obj) is None:
                    # A Job created in a race with the cancel request: it must not run.
                    self.kube.delete_job(metadata["namespace"], job_obj["metadata"]["name"])
        self._sync_db(cr)
        self._retention(cr)

    def _retention(self, cr: Mapping[str, Any]) -> bool:
        completed = observe.parse_time((cr.get("status") or {}).get("completedAt"))
        if completed is None:
            return False
        age = (self.now() - completed).total_seconds()
        if age < self.settings.cr_retention_seconds:
            return False
        metadata = cr["metadata"]
        if self.kube.delete_cr(metadata["namespace"], metadata["name"]):
            self.metrics.crs_deleted.inc()
            log.info("retention: deleted the finished GuidelineJob", extra={"age_s": int(age)})
        return True

    def _apply(self, cr: dict[str, Any], obs: Observation) -> dict[str, Any]:
        status = cr.get("status") or {}
        previous = observe.phase_of(cr)
        previous_attempts = int(status.get("attempts") or 0)
        desired = observe.desired_status(cr, obs, now=self.now())
        patch = observe.status_patch(status, desired)
        if patch:
            cr = self._patch_status(cr, patch)
        if obs.phase != previous:
            self._transition(cr, previous, obs)
        elif obs.phase == Phase.PROCESSING and obs.attempts > previous_attempts:
            log.info("runner attempt started", extra={"attempt": obs.attempts})
            self._event(cr, "Normal", "AttemptStarted", f"runner attempt {obs.attempts} started")
        self._sync_db(cr, reason=obs.reason, message=obs.message)
        return cr

    def _transition(self, cr: Mapping[str, Any], previous: Phase | None, obs: Observation) -> None:
        new = obs.phase
        log.info(
            "phase changed",
            extra={
                "from": previous.value if previous else None,
                "to": new.value,
                "attempts": obs.attempts,
                "reason": obs.reason,
            },
        )
        queued_at = obs.queued_at or observe.parse_time(cr["metadata"].get("creationTimestamp"))
        if previous == Phase.PENDING and obs.run_started_at is not None:
            self.metrics.started(queued_at, obs.run_started_at)
        if new == Phase.PROCESSING:
            self._event(cr, "Normal", "Processing", f"runner pod started (attempt {obs.attempts})")
        elif new.terminal:
            outcome = {Phase.COMPLETED: "completed", Phase.FAILED: "failed"}.get(new, "cancelled")
            self.metrics.finished(
                outcome,
                reason=obs.reason,
                queued_at=queued_at,
                run_started_at=obs.run_started_at,
                completed_at=obs.completed_at,
                result=(cr.get("status") or {}).get("result"),
            )
            if new == Phase.COMPLETED:
                self._event(cr, "Normal", "Completed", obs.message or "completed")
            elif new == Phase.FAILED:
                self._event(cr, "Warning", "Failed", f"{obs.reason}: {obs.message}")
            else:
                self._event(cr, "Normal", "Cancelled", obs.message)

    def _start_run(self, cr: dict[str, Any]) -> dict[str, Any]:
        """Create the current run's Job (status.jobName first, see the module docs)."""
        metadata = cr["metadata"]
        status = cr.get("status") or {}
        run = observe.current_run(cr)
        name = manifests.job_name(metadata["name"], run)
        request = manifests.JobRequest(
            cr_name=metadata["name"],
            cr_uid=metadata["uid"],
            namespace=metadata["namespace"],
            event_id=event_id_of(cr),
            run=run,
            max_retries=(cr.get("spec") or {}).get("maxRetries"),
            attempts_before=int(status.get("attempts") or 0),
            queued_at=observe.queued_since(cr) or self.now(),
            cr_labels=tuple(sorted((metadata.get("labels") or {}).items())),
        )
        manifest = manifests.build_job(request, self.settings)
        kueue = self.settings.kueue_queue_name
        staged = copy.deepcopy(cr)
        staged.setdefault("status", {})["jobName"] = name
        conditions = observe.conditions_for(
            staged,
            Phase.PENDING,
            Stage.SUSPENDED if kueue else Stage.STARTING,
            now=self.now(),
            queue_message=f"waiting for admission by Kueue (queue {kueue})" if kueue else None,
        )
        cr = self._patch_status(
            cr, {"jobName": name, "queuePosition": None, "conditions": conditions}
        )
        created = self.kube.create_job(metadata["namespace"], manifest)
        if created:
            log.info("created Job", extra={"job": name, "run": run, "suspended": bool(kueue)})
            self._event(
                cr,
                "Normal",
                "JobCreated",
                f"created Job {name}"
                + (f" (suspended; Kueue queue {kueue} admits it)" if kueue else ""),
            )
        return cr

    # --- the database mirror ----------------------------------------------------------------

    def _ensure_row(self, cr: Mapping[str, Any]) -> int:
        """Make sure the job's row exists; returns the attempts it records (a GuidelineJob
        the API re-created for a retry after retention continues the count)."""
        event_id = event_id_of(dict(cr))
        if event_id in self._rows:
            return 0
        try:
            with self.db.connection() as conn:
                if store.ensure_row(conn, cr):
                    log.info("recorded a GuidelineJob that had no database row")
                row = db.get_job(conn, uuid.UUID(event_id))
            self._rows.add(event_id)
            return int(row["attempts"]) if row else 0
        except (db.DatabaseUnavailableError, psycopg2.Error) as exc:
            self.metrics.reconcile_errors.labels(stage="database").inc()
            log.warning(
                "could not record the job's row; the resync retries", extra={"error": str(exc)}
            )
            return 0

    def _sync_db(
        self, cr: Mapping[str, Any], reason: str | None = None, message: str | None = None
    ) -> None:
        """Mirror the CR's state into its row, unless this process already wrote it."""
        if not (cr.get("status") or {}).get("phase"):
            return
        state = store.job_state(cr, reason, message)
        event_id = str(state.event_id)
        fingerprint = _fingerprint(state)
        if self._mirrored.get(event_id) == fingerprint:
            return
        self._ensure_row(cr)
        try:
            with self.db.connection() as conn:
                changed = db.mirror_state(conn, state)
            self._mirrored[event_id] = fingerprint
            if changed:
                log.debug("mirrored into the database", extra={"status": state.status.value})
        except (db.DatabaseUnavailableError, psycopg2.Error) as exc:
            # Forget the older state written: resync() skips finished jobs it holds a
            # fingerprint of, and this one's row does not show the finished state yet.
            self._mirrored.pop(event_id, None)
            self.metrics.reconcile_errors.labels(stage="database").inc()
            log.warning(
                "could not mirror the job's state; the resync retries", extra={"error": str(exc)}
            )

    # --- deletion and the timer ------------------------------------------------------------

    def deleted(self, body: Mapping[str, Any]) -> None:
        """A GuidelineJob is being deleted: stop its Job now and, if it had not finished,
        record that in its row (which stays as history). Raises on a database error, so
        kopf retries and keeps its finalizer until the row is right."""
        metadata = body["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        with self._lock(namespace, name), self._bind(body):
            phase = observe.phase_of(body)
            try:
                uuid.UUID(event_id_of(dict(body)))
            except ValueError:
                phase = Phase.FAILED  # rejected: it never had a Job or a row
            if phase is None or not phase.terminal:
                for job_obj in self.kube.list_jobs(namespace, manifests.selector_for(name)):
                    if observe.owned_by(job_obj, metadata["uid"]):
                        self.kube.delete_job(namespace, job_obj["metadata"]["name"])
                status = body.get("status") or {}
                with self.db.connection() as conn:
                    db.mark_deleted(
                        conn,
                        event_id_of(dict(body)),
                        int(status.get("attempts") or 0),
                        observe.parse_time(status.get("startedAt")),
                    )
                log.info("deleted before it finished: recorded as CANCELLED (Deleted)")
            event_id = event_id_of(dict(body))
            self._mirrored.pop(event_id, None)
            self._rows.discard(event_id)
        self.cr_seen(body, deleted=True)
        with self._locks_guard:
            self._locks.pop((namespace, name), None)
        self.pump()

    def resync(self, body: Mapping[str, Any]) -> None:
        """The periodic pass (kopf timer). A finished job this process already mirrored
        only gets its retention checked; everything else is reconciled in full."""
        metadata = body["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        phase = observe.phase_of(body)
        retry = observe.retry_requested(body)
        retry_pending = retry is not None and retry > int(
            (body.get("status") or {}).get("retryRequests") or 0
        )
        if phase is not None and phase.terminal and not retry_pending:
            try:
                state = store.job_state(body)
            except ValueError:  # a rejected GuidelineJob (its event_id is not a UUID)
                state = None
            # Mirrored by this process in exactly this state: nothing to do but retention.
            if state and self._mirrored.get(str(state.event_id)) == _fingerprint(state):
                completed = observe.parse_time((body.get("status") or {}).get("completedAt"))
                age = (self.now() - completed).total_seconds() if completed else 0.0
                if age < self.settings.cr_retention_seconds:
                    return
        self.reconcile(namespace, name, cause="resync")
        self.pump(force=False)

    def child_event(self, body: Mapping[str, Any], type_: str | None) -> None:
        """A Job or pod of ours changed: reconcile the GuidelineJob it belongs to."""
        metadata = body.get("metadata") or {}
        name = (metadata.get("annotations") or {}).get(manifests.ANNOTATION_CR_NAME)
        if not name or not metadata.get("namespace"):
            return
        self.reconcile(metadata["namespace"], name, cause=f"{body.get('kind')} {type_}")
        if body.get("kind") == "Job" and (type_ == "DELETED" or observe.job_outcome(body)):
            self.pump()

    # --- the admission pass ---------------------------------------------------------------

    def pump(self, *, force: bool = True) -> None:
        """Start queued jobs while slots are free and refresh queue positions. Never blocks
        on another pass: if one is running, it is asked to go round once more."""
        if not force and time.monotonic() - self._last_pump < 1.0:
            return
        self._pump_wanted.set()
        while self._pump_wanted.is_set():
            if not self._pump_lock.acquire(blocking=False):
                return
            try:
                self._pump_wanted.clear()
                self._pump_once()
            except Exception:
                self.metrics.reconcile_errors.labels(stage="queue").inc()
                log.exception("admission pass failed; the next event or resync retries")
                return
            finally:
                self._last_pump = time.monotonic()
                self._pump_lock.release()

    def _pump_once(self) -> None:
        jobs: list[dict[str, Any]] = []
        for namespace in self.namespaces or [None]:
            jobs.extend(self.kube.list_jobs(namespace, manifests.managed_selector()))
        running = sum(1 for j in jobs if observe.job_active(j))
        existing = {(j["metadata"]["namespace"], j["metadata"]["name"]) for j in jobs}
        queue = waiting(self.registry.snapshot(), existing)
        if self.settings.kueue_queue_name:
            self.metrics.queue_size.set(len(queue))
            self.metrics.jobs_running.set(running)
            return
        free = max(0, self.settings.max_concurrent_jobs - running)
        still: list[QueueEntry] = []
        for entry in queue:
            if free > 0 and self._admit(entry):
                free -= 1
                running += 1
                continue
            still.append(entry)
        self.metrics.queue_size.set(len(still))
        self.metrics.jobs_running.set(running)
        self._refresh_positions(still, running)

    def _admit(self, entry: QueueEntry) -> bool:
        with self._lock(entry.namespace, entry.name):
            cr = self.kube.get_cr(entry.namespace, entry.name)
            if cr is None or cr["metadata"].get("deletionTimestamp"):
                return False
            self.cr_seen(cr)
            if cr["metadata"]["uid"] != entry.uid:
                return False
            if observe.phase_of(cr) != Phase.PENDING or observe.cancel_requested(cr):
                return False
            with self._bind(cr):
                self._start_run(cr)
            return True

    def _refresh_positions(self, queue: list[QueueEntry], running: int) -> None:
        now = time.monotonic()
        # A full refresh rewrites every queued CR; its period grows with the queue so a
        # long backlog costs about 20 writes a second at most.
        interval = max(self.settings.queue_refresh_seconds, len(queue) / 20.0)
        full = now - self._last_refresh >= interval
        if full:
            self._last_refresh = now
        for position, entry in enumerate(queue, start=1):
            if entry.phase != Phase.PENDING or not entry.queued:
                continue  # not accepted yet (its accept pass asks for a new pass)
            if entry.queue_position is not None and not full:
                continue
            message = observe.queue_message(position, len(queue), running)
            if entry.queue_position == position and entry.queued_message == message:
                continue
            conditions = observe.set_condition(
                entry.conditions,
                ConditionType.QUEUED,
                True,
                Stage.QUEUED.value,
                message,
                now=self.now(),
                generation=entry.generation,
            )
            try:
                updated = self.kube.patch_cr_status(
                    entry.namespace,
                    entry.name,
                    {"queuePosition": position, "conditions": conditions},
                    resource_version=entry.resource_version,
                )
            except ApiException as exc:
                if exc.status in (404, 409):
                    continue  # changed or gone since the registry saw it: next pass
                raise
            self.registry.upsert(updated)

    # --- heartbeat and database retention ------------------------------------------------

    def start_background(self) -> None:
        """Start the heartbeat / purge thread."""
        self._stop.clear()
        self._background = threading.Thread(
            target=self._background_loop, name="heartbeat", daemon=True
        )
        self._background.start()

    def stop_background(self, timeout: float = 5.0) -> None:
        """Stop the heartbeat / purge thread."""
        self._stop.set()
        if self._background is not None:
            self._background.join(timeout)
            self._background = None

    def _background_loop(self) -> None:
        next_purge = 0.0
        while True:
            try:
                with self.db.connection() as conn:
                    db.heartbeat(conn, self.identity)
            except (db.DatabaseUnavailableError, psycopg2.Error) as exc:
                log.warning("heartbeat failed", extra={"error": str(exc)})
            if self.settings.db_retention_days > 0 and time.monotonic() >= next_purge:
                next_purge = time.monotonic() + self.settings.db_purge_interval_seconds
                self.purge()
            if self._stop.wait(self.settings.heartbeat_interval_seconds):
                return

    def purge(self) -> int:
        """Delete rows of jobs finished more than `db_retention_days` ago; returns how many."""
        days = self.settings.db_retention_days
        if days <= 0:
            return 0
        try:
            with self.db.connection() as conn:
                purged = db.purge_finished(conn, days)
        except (db.DatabaseUnavailableError, psycopg2.Error) as exc:
            log.warning("retention purge failed", extra={"error": str(exc)})
            return 0
        self.metrics.db_purged_rows.inc(purged)
        log.info("retention purge", extra={"purged_rows": purged, "older_than_days": days})
        return purged
