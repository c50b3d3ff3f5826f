"""The outbox dispatcher: makes the cluster match what the API committed.

A submission, a cancel and a retry are decided in PostgreSQL and answered at once; each
leaves its row `dispatch_pending`. This thread (one per API process, an
`outbox.OutboxWorker`) claims such rows in batches (`FOR UPDATE SKIP LOCKED` under a lease,
so API replicas never take the same row), and for each one creates its GuidelineJob (named
after the event_id: a repeated create is recognised as the same object) or carries the
cancel/retry request to the GuidelineJob's annotations, with bounded concurrency and
exponential backoff while kube-apiserver is slow or down. A row whose dispatcher died is
taken again when its lease runs out.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any, cast

from guideline_core import db, logs
from guideline_core import resource as gj
from guideline_core.resource import FailureReason, Phase
from guideline_core.settings import ApiSettings
from guideline_core.tracing import NOOP, Tracer

from guideline_api import tracing
from guideline_api.kubeapi import (
    AlreadyExistsError,
    ConflictError,
    KubeGateway,
    KubernetesRejectedError,
    KubernetesUnavailableError,
)
from guideline_api.metrics import ApiMetrics
from guideline_api.workers.outbox import OutboxWorker, backoff_delay

log = logging.getLogger(__name__)


class NameTakenError(RuntimeError):
    """The GuidelineJob name of a job is held by an object that is not its own."""


def desired_annotations(row: dict[str, Any]) -> dict[str, str | None]:
    """The request annotations a job's GuidelineJob must carry for its row (None: absent)."""
    cancel = row.get("cancel_requested_at")
    return {
        gj.ANNOTATION_RETRY_REQUESTED: str(row["run"]) if row["run"] else None,
        gj.ANNOTATION_CANCEL_REQUESTED: cancel.isoformat() if cancel else None,
    }


def _is_own(obj: dict[str, Any], row: dict[str, Any]) -> bool:
    """True if an existing GuidelineJob is the one this job's dispatch created earlier."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    spec = obj.get("spec") or {}
    ref = row.get("document_ref")
    same_input = (
        spec.get("documentRef") == _spec_ref(ref)
        if ref is not None
        else spec.get("guidelineText") == row["guideline_text"]
    )
    return (
        labels.get(gj.LABEL_EVENT_ID) == str(row["event_id"])
        and same_input
        and not meta.get("deletionTimestamp")
    )


def _spec_ref(ref: dict[str, Any]) -> dict[str, Any]:
    """A row's document reference as the GuidelineJob's spec holds it."""
    return gj.guideline_job_manifest(event_id=uuid.UUID(int=0), document_ref=ref)["spec"][
        "documentRef"
    ]


class Dispatcher(OutboxWorker):
    """Carries committed rows to the cluster; `wake()` after a commit starts a pass now."""

    name = "dispatcher"

    def __init__(
        self,
        store: db.Database,
        kube_api: KubeGateway,
        settings: ApiSettings,
        metrics: ApiMetrics,
        *,
        tracer: Tracer = NOOP,
    ):
        super().__init__(
            batch_size=settings.dispatch_batch_size,
            concurrency=settings.dispatch_concurrency,
            poll_seconds=settings.dispatch_poll_seconds,
        )
        self._store = store
        self._tracer = tracer
        self._kube = kube_api
        self._settings = settings
        self._metrics = metrics

    def claim(self) -> list[dict[str, Any]]:
        """Lease one batch of rows whose cluster state is behind."""
        with self._store.connection() as conn:
            rows = db.claim_dispatch(
                conn, self._settings.dispatch_batch_size, self._settings.dispatch_lease_seconds
            )
        return cast(list[dict[str, Any]], rows)  # OutboxWorker's rows are plain dicts

    def handle(self, row: dict[str, Any]) -> None:
        """Dispatch one claimed row."""
        self.dispatch(row)

    def release(self, rows: list[dict[str, Any]]) -> None:
        """Rows this process will not dispatch (it is stopping): due again at once."""
        with self._store.connection() as conn:
            db.release_dispatch(conn, [row["event_id"] for row in rows])

    def dispatch(self, row: dict[str, Any]) -> None:
        """Bring one claimed row's GuidelineJob in line with it; on a transient failure,
        leave the row for a later try with backoff."""
        eid = row["event_id"]
        with logs.bind(event_id=str(eid)):
            try:
                cr_name, cr_uid = self._carry(row)
            except KubernetesUnavailableError as exc:
                self._defer(row, str(exc))
                return
            except (KubernetesRejectedError, NameTakenError) as exc:
                self._fail(row, str(exc))
                return
            with self._store.connection() as conn:
                db.finish_dispatch(conn, eid, row["dispatch_seq"], cr_name=cr_name, cr_uid=cr_uid)
            if cr_uid is not None:
                lag = (datetime.now(UTC) - row["created_at"]).total_seconds()
                self._metrics.dispatch_lag.observe(max(lag, 0.0))
                log.info("GuidelineJob created", extra={"cr_name": cr_name})

    def _carry(self, row: dict[str, Any]) -> tuple[str | None, str | None]:
        """Create or annotate the row's GuidelineJob; returns (name, uid) of a CR created."""
        if row["cr_uid"] is None:
            if Phase(row["status"]).terminal:
                return None, None  # cancelled before it ever reached the cluster
            return self._create(row)
        current = self._kube.get(row["cr_name"])
        if current is None or current["metadata"].get("uid") != row["cr_uid"]:
            # Retention (or a user) deleted it: a retry needs it back, anything else is done.
            if row["status"] == Phase.PENDING:
                return self._create(row)
            return None, None
        wanted = desired_annotations(row)
        have = current["metadata"].get("annotations") or {}
        changes = {k: v for k, v in wanted.items() if have.get(k) != v}
        if changes:
            try:
                self._kube.patch_annotations(row["cr_name"], changes)
            except ConflictError:
                return None, None  # deleted meanwhile: nothing left to carry the request to
        return None, None

    def _create(self, row: dict[str, Any]) -> tuple[str, str]:
        with tracing.dispatch(self._tracer, row) as trace_annotations:
            return self._create_traced(row, trace_annotations)

    def _create_traced(
        self, row: dict[str, Any], trace_annotations: dict[str, str]
    ) -> tuple[str, str]:
        annotations = {k: v for k, v in desired_annotations(row).items() if v is not None}
        annotations.update(trace_annotations)
        manifest = gj.guideline_job_manifest(
            event_id=row["event_id"],
            guideline_text=row["guideline_text"] if row.get("document_ref") is None else None,
            document_ref=row.get("document_ref"),
            title=row["title"],
            model=row["model"],
            provider=row["provider"],
            max_retries=row["max_retries"],
            submitted_by=row["submitted_by"],
            tenant=row["tenant"],
            annotations=annotations,
            supersedes=row.get("supersedes"),
            review=row.get("review_thresholds"),
        )
        name = manifest["metadata"]["name"]
        try:
            created = self._kube.create(manifest)
        except AlreadyExistsError:
            # Our own earlier attempt (its answer lost), or an object squatting the name.
            existing = self._kube.get(name)
            if existing is None:
                raise KubernetesUnavailableError(f"{name} exists and vanished; retrying") from None
            if existing["metadata"].get("deletionTimestamp"):
                raise KubernetesUnavailableError(
                    f"the previous GuidelineJob {name} is still being deleted"
                ) from None
            if not _is_own(existing, row):
                raise NameTakenError(
                    f"the GuidelineJob name {name} is taken by an object this job did not create"
                ) from None
            created = existing
        return name, created["metadata"]["uid"]

    def _defer(self, row: dict[str, Any], error: str) -> None:
        attempts = max(1, int(row["dispatch_attempts"]))
        delay = backoff_delay(attempts, 1.0, self._settings.dispatch_max_backoff_seconds)
        self._metrics.dispatch_failures.labels("unavailable").inc()
        log.warning(
            "GuidelineJob not created yet; retrying",
            extra={"error": error, "attempt": attempts, "retry_in_s": round(delay, 2)},
        )
        with self._store.connection() as conn:
            db.defer_dispatch(conn, row["event_id"], error, delay)

    def _fail(self, row: dict[str, Any], message: str) -> None:
        """A job Kubernetes will never take (refused by the CRD schema, name squatted):
        FAILED with the reason, never silently dropped."""
        self._metrics.dispatch_failures.labels("rejected").inc()
        log.error("GuidelineJob refused; job FAILED", extra={"error": message})
        with self._store.connection() as conn:
            db.finish_if_active(
                conn,
                db.JobState(
                    event_id=row["event_id"],
                    status=Phase.FAILED,
                    attempts=row["attempts"],
                    completed_at=datetime.now(UTC),
                    error={"reason": FailureReason.INVALID_INPUT, "message": message},
                    reason=FailureReason.INVALID_INPUT,
                    message=message,
                    run=row["run"],
                    actor="dispatcher",
                ),
            )
            db.finish_dispatch(conn, row["event_id"], row["dispatch_seq"])
