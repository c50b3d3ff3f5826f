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
  starting runs (`starts.Starts`), the cancel and retry requests
  (`cancel_retry.CancelRetry`), the status writes and their transitions
  (`transitions.Transitions`), the database mirror (`mirror.DatabaseMirror`) and the
  retention of finished CRs (`housekeeping.Retention`); this class only holds the pass
  itself.
- A per-GuidelineJob lock serializes the passes of one CR within this process (kopf runs
  sync handlers in a thread pool); peering keeps other replicas passive.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from guideline_core import logs
from guideline_core import resource as gj
from guideline_core.guidelinejob import GuidelineJob, metadata_of, spec_of, status_of
from guideline_core.k8s import ForbiddenError
from guideline_core.resource import FailureReason, Phase
from guideline_core.settings import OperatorSettings
from guideline_core.tracing import NOOP, Tracer

from guideline_operator import conditions, manifests, observe, rows
from guideline_operator import tracing as op_tracing
from guideline_operator.admission import Admission
from guideline_operator.cancel_retry import CancelRetry
from guideline_operator.housekeeping import Retention
from guideline_operator.kubeapi import Kube
from guideline_operator.metrics import Metrics
from guideline_operator.mirror import DatabaseMirror
from guideline_operator.observe import Observation, Stage
from guideline_operator.queue import QueueEntry, Registry
from guideline_operator.starts import Starts
from guideline_operator.transitions import EventSink, Transitions, kopf_event, now

log = logging.getLogger("guideline_operator")

NAMESPACE_TENANT_TTL_SECONDS = 30.0


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
        self.tracer = tracer  # spans of transitions (guideline_operator.tracing)
        self.registry = Registry()
        self.transitions = Transitions(kube, self.registry, mirror, metrics, events, tracer)
        self.starts = Starts(settings, kube, self.registry, mirror, self.transitions, tracer)
        self.requests = CancelRetry(kube, mirror, self.transitions)
        self.admission = Admission(self.registry, settings, metrics, self._admit)
        self.retention = Retention(kube, metrics, seconds=settings.cr_retention_seconds)
        self.event_ids: dict[tuple[str, str], str] = {}  # for log lines
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._namespace_tenants: dict[str, tuple[float, str]] = {}

    # --- helpers ---------------------------------------------------------------------------

    def _lock(self, namespace: str, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def _bind(self, cr: GuidelineJob, event_id: str | None = None) -> Any:
        metadata = cr["metadata"]
        return logs.bind(
            event_id=event_id or rows.trusted_event_id(cr) or metadata.get("uid"),
            guidelinejob=metadata["name"],
            namespace=metadata.get("namespace"),
        )

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

    def cr_seen(self, body: GuidelineJob, deleted: bool = False) -> None:
        """Keep the registry (and the name -> event_id map for log lines) current."""
        metadata = metadata_of(body)
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
                    log.info("resumed", extra={"phase": status_of(cr).get("phase")})

    def _reconcile_cr(
        self,
        cr: GuidelineJob,
        event_id: str,
        own_jobs: Mapping[str, dict[str, Any]],
        pods: list[dict[str, Any]],
    ) -> bool | None:
        cr = self._ensure_label(cr, event_id)
        status = status_of(cr)
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
        retried = self.requests.retry_if_requested(cr)
        queue_changed = queue_changed or retried is not cr
        cr = retried
        phase = observe.phase_of(cr) or Phase.PENDING
        job = own_jobs.get(observe.current_job_name(cr))
        run_pods = [p for p in pods if observe.owned_by(p, job["metadata"]["uid"])] if job else []
        if observe.cancel_requested(cr) and not phase.terminal:
            self.requests.cancel(cr, own_jobs, job, run_pods)
            return True
        if phase.terminal:
            self._upkeep_terminal(cr, own_jobs)
            return None
        obs = observe.observe(cr, job, run_pods, now())
        if obs.stage == Stage.MISSING:
            self.starts.create_job(cr)  # admitted before: its Job is (re)created
            return None
        if obs.stage == Stage.QUEUED:
            if self.settings.kueue_queue_name:
                self.starts.start_suspended(cr)  # Kueue admits: the Job is created at once
                return None
            return queue_changed
        self.transitions.apply(cr, obs)
        if obs.phase.terminal or queue_changed:
            return True
        return None

    def _ensure_label(self, cr: GuidelineJob, event_id: str) -> GuidelineJob:
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
    def _accept(self, cr: GuidelineJob, event_id: str) -> GuidelineJob:
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
        patch["conditions"] = conditions.pending_conditions(
            cr,
            patch,
            Stage.QUEUED,
            now=now(),
            queue_message=f"waiting for admission by Kueue (queue {kueue})" if kueue else None,
        )
        cr = self.transitions.patch_status(cr, patch)
        log.info("accepted", extra={"phase": "PENDING", "tenant": row["tenant"], "run": run})
        self.transitions.event(cr, "Normal", "Accepted", f"accepted as event_id {event_id}")
        self.mirror.sync(cr, reason="Accepted")
        return cr

    def _refuse_model(self, cr: GuidelineJob) -> bool:
        """A just-accepted job naming a model outside its tenant's allowlist (possible only
        for a GuidelineJob applied with kubectl: the API answers such a submission 422) is
        FAILED InvalidInput before it takes a slot; True if it was."""
        model = spec_of(cr).get("model")
        tenant = self.registry.tenant(cr["metadata"]["uid"])
        allowed = self.settings.limits_for(tenant).allowed_models if tenant else None
        if not model or allowed is None or model in allowed:
            return False
        message = f"model {model!r} is not allowed for tenant {tenant}"
        log.warning("model not allowed", extra={"model": model, "tenant": tenant})
        self.transitions.apply(
            cr,
            Observation(
                Phase.FAILED,
                Stage.DONE,
                int(status_of(cr).get("attempts") or 0),
                completed_at=now(),
                error={"reason": FailureReason.INVALID_INPUT.value, "message": message},
                reason=FailureReason.INVALID_INPUT.value,
                message=message,
                queued_at=observe.queued_since(cr),
            ),
        )
        return True

    def _upkeep_terminal(self, cr: GuidelineJob, jobs: Mapping[str, Mapping[str, Any]]) -> None:
        metadata = cr["metadata"]
        if observe.phase_of(cr) == Phase.CANCELLED:
            for job_obj in jobs.values():
                if observe.job_outcome(job_obj) is None:
                    # A Job created in a race with the cancel request: it must not run.
                    self.kube.delete_job(metadata["namespace"], job_obj["metadata"]["name"])
        self.mirror.sync(cr)
        self.retention.apply(cr, now())

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
                self.starts.start(cr)
            return True

    # --- deletion and the timer ------------------------------------------------------------

    def deleted(self, body: GuidelineJob) -> None:
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
                    status = status_of(body)
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

    def resync(self, body: GuidelineJob) -> None:
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


def _uuid(event_id: str) -> uuid.UUID:
    return uuid.UUID(event_id)


def _uuids(event_ids: Mapping[str, str]) -> list[uuid.UUID]:
    return [uuid.UUID(e) for e in event_ids]
