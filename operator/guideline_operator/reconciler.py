"""The reconcile pass: one idempotent pass per GuidelineJob that accepts it, starts its
runs, carries out cancel and retry requests, and mirrors what its Job and pods show.

Design decisions (see also docs/contracts.md):

- Level-based, not edge-based. Every entry point (a CR, Job or pod event, the resync
  timer) runs the same `reconcile()`: it lists the CR's Jobs and pods, then reads the CR
  fresh from the API server (in that order, so a `status.result` the runner wrote before
  its pod ended is always seen), computes the state with the pure functions of `observe`,
  and writes only what differs. Re-running it writes nothing and never creates a second Job.
- Constant work per job: a job's CR is written when its state changes and only then
  (accepted; admitted = PROCESSING, just before its Job is created; finished), never
  while it waits in the queue. The pod starting is not a write: the admission write
  already says what the running pod's status says.
- Trust: the event-id label is believed only on the CR its row records (`rows.identify`);
  once accepted, a CR's event_id is its `status.eventId`, which only the operator writes.
- Collaborators: the queue and admission (`admission.Admission` over `queue.Registry`),
  the database mirror (`mirror.DatabaseMirror`) and the retention of finished CRs
  (`housekeeping.Retention`); this class only holds the pass itself.
- A per-GuidelineJob lock serializes the passes of one CR within this process (kopf runs
  sync handlers in a thread pool); peering keeps other replicas passive.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from guideline_core import logs
from guideline_core import resource as gj
from guideline_core.k8s import ForbiddenError
from guideline_core.resource import FailureReason, Phase
from guideline_core.settings import OperatorSettings, RunnerSettings
from guideline_core.splitting import planned_rounds, planned_rounds_for_chars
from guideline_core.tracing import NOOP, Tracer

from guideline_operator import manifests, observe, rows
from guideline_operator import tracing as op_tracing
from guideline_operator.admission import Admission
from guideline_operator.housekeeping import Retention
from guideline_operator.kubeapi import Kube
from guideline_operator.metrics import Metrics
from guideline_operator.mirror import DatabaseMirror
from guideline_operator.observe import Observation, Stage
from guideline_operator.queue import QueueEntry, Registry

log = logging.getLogger("guideline_operator")

EventSink = Callable[[Mapping[str, Any], str, str, str], None]
NAMESPACE_TENANT_TTL_SECONDS = 30.0


def kopf_event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    """Post a Kubernetes Event on `body` through kopf's background poster."""
    import kopf

    try:
        kopf.event(dict(body), type=type_, reason=reason, message=message[:1000])  # type: ignore[arg-type]
    except LookupError:  # outside an operator context (e.g. a script): log only
        log.info("event", extra={"reason": reason, "event_message": message})


def now() -> datetime:
    """The current time, to the second (the precision the API stores)."""
    return datetime.now(UTC).replace(microsecond=0)


class Reconciler:
    """Reconciles GuidelineJobs with their Jobs, pods and database rows."""

    def __init__(
        self,
        settings: OperatorSettings,
        kube: Kube,
        mirror: DatabaseMirror,
        metrics: Metrics,
        *,
        namespaces: list[str] | None,
        events: EventSink = kopf_event,
        tracer: Tracer = NOOP,
    ):
        self.settings = settings
        self.kube = kube
        self.mirror = mirror
        self.metrics = metrics
        self.namespaces = namespaces  # None: every namespace
        self.events = events
        self.tracer = tracer  # spans of transitions (guideline_operator.tracing)
        self.registry = Registry()
        self.admission = Admission(self.registry, settings, metrics, self._admit)
        self.retention = Retention(kube, metrics, seconds=settings.cr_retention_seconds)
        self.event_ids: dict[tuple[str, str], str] = {}  # for log lines
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._started_runs: set[tuple[str, int]] = set()  # (uid, run) whose pod start was seen
        self._namespace_tenants: dict[str, tuple[float, str]] = {}

    # --- helpers ---------------------------------------------------------------------------

    def _lock(self, namespace: str, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def _event(self, cr: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self.events(cr, type_, reason, message)

    def _bind(self, cr: Mapping[str, Any], event_id: str | None = None) -> Any:
        metadata = cr["metadata"]
        return logs.bind(
            event_id=event_id or rows.trusted_event_id(cr) or metadata.get("uid"),
            guidelinejob=metadata["name"],
            namespace=metadata.get("namespace"),
        )

    def _patch_status(self, cr: Mapping[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        metadata = cr["metadata"]
        updated = self.kube.patch_cr_status(metadata["namespace"], metadata["name"], patch)
        self.registry.upsert(updated)
        return updated

    def namespace_tenant(self, namespace: str) -> str:
        """The tenant of a namespace: its `ingest.guidelines.dev/tenant` label, else the
        `default_tenant` setting (cached for a short while)."""
        cached = self._namespace_tenants.get(namespace)
        if cached and time.monotonic() - cached[0] < NAMESPACE_TENANT_TTL_SECONDS:
            return cached[1]
        try:
            labels = self.kube.namespace_labels(namespace)
        except ForbiddenError:
            # No RBAC to read namespaces (the chart grants none cluster-wide): the
            # operator's configured default is this namespace's tenant.
            log.warning("cannot read the namespace's tenant label; using default_tenant")
            labels = {}
        tenant = labels.get(gj.LABEL_TENANT) or self.settings.default_tenant
        self._namespace_tenants[namespace] = (time.monotonic(), tenant)
        return tenant

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
            self.event_ids[key] = rows.trusted_event_id(body) or metadata["uid"]

    def queued(self, uid: str) -> bool:
        """True if the GuidelineJob waits in the queue with its tenant known: nothing but
        admission, or an event that takes it out of the queue (a cancel request, deletion),
        changes it, so a pass over it would read three objects to write nothing (and
        passes over every waiting job, at start-up or on each resync, cost O(queue))."""
        entry = self.registry.get(uid)
        return entry is not None and entry.waiting and self.registry.tenant(uid) is not None

    def load_registry(self) -> int:
        """Fill the registry from one list of every GuidelineJob in scope and their tenants
        from one query (at start-up, so the first admission pass knows the whole queue)."""
        accepted: dict[str, str] = {}
        scopes: list[str | None] = [*(self.namespaces or [])] or [None]  # None: all of them
        for namespace in scopes:
            for body in self.kube.list_crs(namespace):
                self.cr_seen(body)
                if event_id := rows.trusted_event_id(body):
                    accepted[event_id] = body["metadata"]["uid"]
        try:
            tenants = self.mirror.tenants(_uuids(accepted))
        except Exception as exc:  # the passes learn each tenant from its row then
            log.warning("could not read the tenants of queued jobs", extra={"error": str(exc)})
            tenants = {}
        for event_id, tenant in tenants.items():
            self.registry.set_tenant(accepted[event_id], tenant)
        return len(self.registry)

    # --- the reconcile pass -----------------------------------------------------------------

    def reconcile(self, namespace: str, name: str, *, cause: str = "") -> None:
        """Bring one GuidelineJob, its Job and its row in line with what is observed.
        Raises rows.NotRecordedYetError, or an API / database error, to be retried."""
        with self._lock(namespace, name):
            wake = self._reconcile_locked(namespace, name, cause)
        if wake is not None:
            self.admission.pump(force=wake)

    def _reconcile_locked(self, namespace: str, name: str, cause: str) -> bool | None:
        """One pass; returns whether to run the admission pass: True now (the queue
        changed), False when it has not run for a second (the job still waits), None not
        at all."""
        selector = manifests.selector_for(name)
        jobs = self.kube.list_jobs(namespace, selector)
        pods = self.kube.list_pods(namespace, selector)
        cr = self.kube.get_cr(namespace, name)
        if cr is None or cr["metadata"].get("deletionTimestamp"):
            return None
        self.cr_seen(cr)
        uid = cr["metadata"]["uid"]
        own_jobs = {j["metadata"]["name"]: j for j in jobs if observe.owned_by(j, uid)}
        event_id = rows.trusted_event_id(cr)
        if event_id is None:
            event_id, _ = rows.identify(cr, lambda e: self.mirror.row(e))
        with self._bind(cr, event_id):
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
        cr = self._ensure_label(cr, event_id)
        status = cr.get("status") or {}
        queue_changed = False
        if not status.get("phase"):
            cr = self._accept(cr, event_id)
            if self._refuse_model(cr):
                return True
            queue_changed = True
        elif self.registry.tenant(cr["metadata"]["uid"]) is None:
            row = self.mirror.row(_uuid(event_id))
            if row is not None:
                self.registry.set_tenant(cr["metadata"]["uid"], row["tenant"])
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
        obs = observe.observe(cr, job, run_pods, now())
        if obs.stage == Stage.MISSING:
            self._create_job(cr)  # admitted before: its Job is (re)created
            return None
        if obs.stage == Stage.QUEUED:
            if self.settings.kueue_queue_name:
                self._start_suspended(cr)  # Kueue admits: the Job is created at once
                return None
            return queue_changed
        self._apply(cr, obs)
        if obs.phase.terminal or queue_changed:
            return True
        return None

    def _ensure_label(self, cr: dict[str, Any], event_id: str) -> dict[str, Any]:
        labels = cr["metadata"].get("labels") or {}
        if labels.get(gj.LABEL_EVENT_ID) == event_id:
            return cr
        metadata = cr["metadata"]
        log.info(
            "labelling a GuidelineJob with its own event_id",
            extra={"claimed": labels.get(gj.LABEL_EVENT_ID)},
        )
        return self.kube.patch_cr(
            metadata["namespace"],
            metadata["name"],
            {"metadata": {"labels": {gj.LABEL_EVENT_ID: event_id, gj.LABEL_PART_OF: gj.PART_OF}}},
        )

    @op_tracing.traced(op_tracing.ACCEPT_SPAN)
    def _accept(self, cr: dict[str, Any], event_id: str) -> dict[str, Any]:
        metadata = cr["metadata"]
        row = self.mirror.row(_uuid(event_id))
        if row is None:  # a GuidelineJob made with kubectl (or claiming a job not its own)
            tenant = self.namespace_tenant(metadata["namespace"])
            row = self.mirror.ensure_row(rows.new_row(cr, event_id, tenant))
        self.registry.set_tenant(metadata["uid"], row["tenant"])
        # A CR the API re-created for a retry (the old one was retained away) carries its
        # run number: it is accepted as that run, and the attempts continue the row's count.
        run = observe.retry_requested(cr) or 0
        patch: dict[str, Any] = {
            "eventId": event_id,
            "phase": Phase.PENDING.value,
            "attempts": int(row.get("attempts") or 0),
            "observedGeneration": metadata.get("generation"),
        }
        if run:
            patch["retryRequests"] = run
        kueue = self.settings.kueue_queue_name
        patch["conditions"] = observe.pending_conditions(
            cr,
            patch,
            Stage.QUEUED,
            now=now(),
            queue_message=f"waiting for admission by Kueue (queue {kueue})" if kueue else None,
        )
        cr = self._patch_status(cr, patch)
        log.info("accepted", extra={"phase": "PENDING", "tenant": row["tenant"], "run": run})
        self._event(cr, "Normal", "Accepted", f"accepted as event_id {event_id}")
        self.mirror.sync(cr, reason="Accepted")
        return cr

    def _refuse_model(self, cr: dict[str, Any]) -> bool:
        """A just-accepted job naming a model outside its tenant's allowlist (possible only
        for a GuidelineJob applied with kubectl: the API answers such a submission 422) is
        FAILED InvalidInput before it takes a slot; True if it was."""
        model = (cr.get("spec") or {}).get("model")
        tenant = self.registry.tenant(cr["metadata"]["uid"])
        allowed = self.settings.limits_for(tenant).allowed_models if tenant else None
        if not model or allowed is None or model in allowed:
            return False
        message = f"model {model!r} is not allowed for tenant {tenant}"
        log.warning("model not allowed", extra={"model": model, "tenant": tenant})
        self._apply(
            cr,
            Observation(
                Phase.FAILED,
                Stage.DONE,
                int((cr.get("status") or {}).get("attempts") or 0),
                completed_at=now(),
                error={"reason": FailureReason.INVALID_INPUT.value, "message": message},
                reason=FailureReason.INVALID_INPUT.value,
                message=message,
                queued_at=observe.queued_since(cr),
            ),
        )
        return True

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
        conditions = observe.pending_conditions(
            cr,
            {"retryRequests": requested, "phase": Phase.PENDING.value, "jobName": None},
            Stage.QUEUED,
            now=now(),
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
                # The runner's fields of the failed run; status.partial stays so the new
                # run can skip the summary step.
                "result": None,
                "runnerError": None,
                "progress": None,
                "conditions": conditions,
                "observedGeneration": metadata.get("generation"),
            },
        )
        new_job = manifests.job_name(metadata["name"], metadata["uid"], requested)
        log.info("retry requested", extra={"retry": requested, "job": new_job})
        self._event(
            cr,
            "Normal",
            "RetryRequested",
            f"retry {requested}: a new run will start as Job {new_job}",
        )
        self.mirror.sync(cr, reason="RetryRequested", message=f"retry {requested}")
        return cr

    def _cancel(
        self,
        cr: dict[str, Any],
        jobs: Mapping[str, Mapping[str, Any]],
        job: Mapping[str, Any] | None,
        run_pods: list[dict[str, Any]],
    ) -> None:
        metadata = cr["metadata"]
        at = now()
        seen = observe.observe(cr, job, run_pods, at) if job is not None else None
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
            completed_at=at,
            error={"reason": FailureReason.CANCELLED.value, "message": message},
            reason=FailureReason.CANCELLED.value,
            message=message,
            job_name=status.get("jobName"),
            queued_at=(seen.queued_at if seen else None) or observe.queued_since(cr),
        )
        self._apply(cr, cancelled)

    @op_tracing.traced_outcome
    def _apply(self, cr: dict[str, Any], obs: Observation) -> dict[str, Any]:
        status = cr.get("status") or {}
        previous = observe.phase_of(cr)
        previous_attempts = int(status.get("attempts") or 0)
        desired = observe.desired_status(cr, obs, now=now())
        patch = observe.status_patch(status, desired)
        if patch:
            cr = self._patch_status(cr, patch)
        if obs.phase != previous:
            self._transition(cr, previous, obs)
        elif obs.phase == Phase.PROCESSING and obs.attempts > previous_attempts:
            log.info("runner attempt started", extra={"attempt": obs.attempts})
            self._event(cr, "Normal", "AttemptStarted", f"runner attempt {obs.attempts} started")
        self._pod_started(cr, obs)
        self.mirror.sync(cr, reason=obs.reason, message=obs.message)
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
        if new.terminal:
            outcome = {Phase.COMPLETED: "completed", Phase.FAILED: "failed"}.get(new, "cancelled")
            self.metrics.finished(
                outcome,
                reason=obs.reason,
                queued_at=queued_at,
                run_started_at=obs.run_started_at,
                completed_at=obs.completed_at,
                result=(cr.get("status") or {}).get("result"),
                tenant=self.registry.tenant(cr["metadata"]["uid"]),
            )
            if new == Phase.COMPLETED:
                self._event(cr, "Normal", "Completed", obs.message or "completed")
            elif new == Phase.FAILED:
                self._event(cr, "Warning", "Failed", f"{obs.reason}: {obs.message}")
            else:
                self._event(cr, "Normal", "Cancelled", obs.message)

    def _pod_started(self, cr: Mapping[str, Any], obs: Observation) -> None:
        """The first runner pod of a run started: its queue wait and an Event (no write)."""
        if obs.run_started_at is None:
            return
        key = (cr["metadata"]["uid"], observe.current_run(cr))
        if key in self._started_runs:
            return
        self._started_runs.add(key)
        queued_at = obs.queued_at or observe.parse_time(cr["metadata"].get("creationTimestamp"))
        self.metrics.started(queued_at, obs.run_started_at)
        self._event(cr, "Normal", "Processing", f"runner pod started (attempt {obs.attempts})")

    def _upkeep_terminal(self, cr: dict[str, Any], jobs: Mapping[str, Mapping[str, Any]]) -> None:
        metadata = cr["metadata"]
        if observe.phase_of(cr) == Phase.CANCELLED:
            for job_obj in jobs.values():
                if observe.job_outcome(job_obj) is None:
                    # A Job created in a race with the cancel request: it must not run.
                    self.kube.delete_job(metadata["namespace"], job_obj["metadata"]["name"])
        self.mirror.sync(cr)
        self.retention.apply(cr, now())

    # --- starting runs ----------------------------------------------------------------------

    def _tenant_of(self, cr: Mapping[str, Any]) -> str | None:
        """The tenant of an accepted GuidelineJob: the one its row records."""
        uid = cr["metadata"]["uid"]
        tenant = self.registry.tenant(uid)
        if tenant is None:
            row = self.mirror.row(_uuid((cr.get("status") or {})["eventId"]))
            if row is not None:
                tenant = row["tenant"]
        return tenant

    def _job_manifest(self, cr: Mapping[str, Any], attempts_before: int) -> dict[str, Any]:
        metadata = cr["metadata"]
        request = manifests.JobRequest(
            cr_name=metadata["name"],
            cr_uid=metadata["uid"],
            namespace=metadata["namespace"],
            event_id=(cr.get("status") or {})["eventId"],
            run=observe.current_run(cr),
            max_retries=(cr.get("spec") or {}).get("maxRetries"),
            attempts_before=attempts_before,
            queued_at=observe.queued_since(cr) or now(),
            trace_context=tuple(sorted(op_tracing.runner_context(self.tracer, cr).items())),
            tenant=self._tenant_of(cr),
            rounds=_rounds_of(cr.get("spec") or {}, self.settings),
            text_from=manifests.TextFrom.of(cr.get("spec") or {}),
            cr_labels=tuple(
                sorted(
                    manifests.allowed_labels(
                        metadata.get("labels") or {}, self.settings.propagated_labels
                    ).items()
                )
            ),
        )
        return manifests.build_job(request, self.settings)

    @op_tracing.traced(op_tracing.JOB_CREATE_SPAN)
    def _create_job(self, cr: dict[str, Any], attempts_before: int | None = None) -> None:
        """Create the current run's Job (status.jobName is already written)."""
        if attempts_before is None:
            attempts_before = _attempts_before_of(cr)
        manifest = self._job_manifest(cr, attempts_before)
        name = manifest["metadata"]["name"]
        if self.kube.create_job(cr["metadata"]["namespace"], manifest):
            suspended = bool(self.settings.kueue_queue_name)
            log.info("created Job", extra={"job": name, "suspended": suspended})
            self._event(
                cr,
                "Normal",
                "JobCreated",
                f"created Job {name}"
                + (
                    f" (suspended; Kueue queue {self.settings.kueue_queue_name} admits it)"
                    if suspended
                    else ""
                ),
            )

    @op_tracing.traced(op_tracing.ADMIT_SPAN)
    def _start(self, cr: dict[str, Any]) -> dict[str, Any]:
        """Admit the current run: write PROCESSING and status.jobName, then create its Job
        (status first: a missing Job whose name is in status is created by the next pass)."""
        before = int((cr.get("status") or {}).get("attempts") or 0)
        previous = observe.phase_of(cr)
        obs = observe.admitted(cr, now())
        desired = observe.desired_status(cr, obs, now=now())
        cr = self._patch_status(cr, observe.status_patch(cr.get("status") or {}, desired))
        self._transition(cr, previous, obs)
        self._create_job(cr, attempts_before=before)
        self.mirror.sync(cr, reason="Admitted", message=f"Job {obs.job_name}")
        return cr

    def _start_suspended(self, cr: dict[str, Any]) -> None:
        """With Kueue: write status.jobName, create the Job suspended; Kueue starts it."""
        kueue = self.settings.kueue_queue_name
        name = observe.current_job_name(cr)
        conditions = observe.pending_conditions(
            cr,
            {"jobName": name},
            Stage.SUSPENDED,
            now=now(),
            queue_message=f"waiting for admission by Kueue (queue {kueue})",
        )
        before = int((cr.get("status") or {}).get("attempts") or 0)
        cr = self._patch_status(cr, {"jobName": name, "conditions": conditions})
        self._create_job(cr, attempts_before=before)

    def _admit(self, entry: QueueEntry) -> bool:
        """The admission pass's starter: re-read the CR, start it if it still waits."""
        with self._lock(entry.namespace, entry.name):
            cr = self.kube.get_cr(entry.namespace, entry.name)
            if cr is None or cr["metadata"].get("deletionTimestamp"):
                if cr is None:
                    self.registry.remove(entry.uid)
                return False
            self.cr_seen(cr)
            fresh = self.registry.get(entry.uid)
            if cr["metadata"]["uid"] != entry.uid or fresh is None or not fresh.waiting:
                return False
            with self._bind(cr):
                self._start(cr)
            return True

    # --- deletion and the timer ------------------------------------------------------------

    def deleted(self, body: Mapping[str, Any]) -> None:
        """A GuidelineJob is being deleted: stop its Job now and, if it had not finished,
        record that in its row (which stays as history). Raises on a database error, so
        kopf retries and keeps its finalizer until the row is right."""
        metadata = body["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        event_id = rows.trusted_event_id(body)
        with self._lock(namespace, name), self._bind(body):
            phase = observe.phase_of(body)
            if phase is None or not phase.terminal:
                for job_obj in self.kube.list_jobs(namespace, manifests.selector_for(name)):
                    if observe.owned_by(job_obj, metadata["uid"]):
                        self.kube.delete_job(namespace, job_obj["metadata"]["name"])
                if event_id is not None:  # never accepted: no row of its own to record in
                    status = body.get("status") or {}
                    self.mirror.mark_deleted(
                        event_id,
                        int(status.get("attempts") or 0),
                        observe.parse_time(status.get("startedAt")),
                    )
                    log.info("deleted before it finished: recorded as CANCELLED (Deleted)")
            if event_id is not None:
                self.mirror.forget(event_id)
        self.cr_seen(body, deleted=True)
        with self._locks_guard:
            self._locks.pop((namespace, name), None)
        self.admission.pump()

    def resync(self, body: Mapping[str, Any]) -> None:
        """The periodic pass (kopf timer). A finished job this process already mirrored
        only gets its retention checked; everything else is reconciled in full."""
        metadata = body["metadata"]
        if self.queued(metadata.get("uid") or ""):
            self.admission.pump(force=False)
            return
        phase = observe.phase_of(body)
        retry = observe.retry_requested(body)
        retry_pending = retry is not None and retry > observe.current_run(body)
        if phase is not None and phase.terminal and not retry_pending:
            state = rows.job_state(body) if rows.trusted_event_id(body) else None
            if state and self.mirror.already(state) and not self.retention.due(body, now()):
                return
        self.reconcile(metadata["namespace"], metadata["name"], cause="resync")
        self.admission.pump(force=False)

    def child_event(self, body: Mapping[str, Any], type_: str | None) -> None:
        """A Job or pod of ours changed: reconcile the GuidelineJob it belongs to."""
        metadata = body.get("metadata") or {}
        name = (metadata.get("annotations") or {}).get(manifests.ANNOTATION_CR_NAME)
        if not name or not metadata.get("namespace"):
            return
        self.reconcile(metadata["namespace"], name, cause=f"{body.get('kind')} {type_}")


# The text of a job whose spec does not hold it is not known before its runner extracts it:
# its time limits are sized for the most it can plausibly be, at most the runner's character
# limit. A text file's characters are at most its bytes; a PDF's or DOCX's text is stored
# compressed (deflate rarely packs text more than 8:1); a ConfigMap or Secret key holds at
# most 1 MiB of either. Too much only loosens the hard deadline; the runner's soft timeout
# is computed from the text it extracted.
_MAX_CONFIG_BYTES = 1024 * 1024
_COMPRESSION = 8
_MAX_DOCUMENT_CHARS: int = RunnerSettings.model_fields["max_document_chars"].default


def _rounds_of(spec: Mapping[str, Any], settings: OperatorSettings) -> int:
    """Rounds of LLM calls a job's text implies (its Job's deadline grows with them)."""
    text = spec.get("guidelineText")
    if isinstance(text, str):
        return planned_rounds(text, settings.chunk_chars, settings.llm_concurrency)
    ref = spec.get("documentRef")
    if isinstance(ref, Mapping):
        plain = str(ref.get("mediaType") or "").startswith("text/")
        chars = int(ref.get("bytes") or 0) * (1 if plain else _COMPRESSION)
    else:
        chars = _MAX_CONFIG_BYTES * _COMPRESSION
    return planned_rounds_for_chars(
        min(chars, _MAX_DOCUMENT_CHARS), settings.chunk_chars, settings.llm_concurrency
    )


def _attempts_before_of(cr: Mapping[str, Any]) -> int:
    """Attempts of earlier runs, for a Job (re)created after its admission: an admission
    to PROCESSING counted the run's first attempt in status.attempts already."""
    attempts = int((cr.get("status") or {}).get("attempts") or 0)
    return max(0, attempts - 1) if observe.phase_of(cr) == Phase.PROCESSING else attempts


def _uuid(event_id: str) -> uuid.UUID:
    return uuid.UUID(event_id)


def _uuids(event_ids: Mapping[str, str]) -> list[uuid.UUID]:
    return [uuid.UUID(e) for e in event_ids]
