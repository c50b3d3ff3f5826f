"""Starting a GuidelineJob's runs: the Job manifest of its current run, creating that Job,
admitting a waiting run (PROCESSING, then its Job) and, with Kueue, creating it suspended
for Kueue admission. The admission pass (`admission.Admission`) decides which run starts;
the reconcile pass re-creates the Job of an admitted run that has none."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from guideline_core.guidelinejob import GuidelineJob, metadata_of, spec_of, status_of
from guideline_core.resource import Phase
from guideline_core.settings import OperatorSettings, RunnerSettings
from guideline_core.splitting import planned_rounds, planned_rounds_for_chars
from guideline_core.tracing import Tracer

from guideline_operator import conditions, manifests, observe
from guideline_operator import tracing as op_tracing
from guideline_operator.kubeapi import Kube
from guideline_operator.mirror import DatabaseMirror
from guideline_operator.observe import Stage
from guideline_operator.queue import Registry
from guideline_operator.transitions import Transitions, now

log = logging.getLogger("guideline_operator")


class Starts:
    """Creates the Jobs of GuidelineJobs' runs through `kube`, writing their status through
    `transitions`; a job's tenant comes from `registry`, else its row (`mirror`)."""

    def __init__(
        self,
        settings: OperatorSettings,
        kube: Kube,
        registry: Registry,
        mirror: DatabaseMirror,
        transitions: Transitions,
        tracer: Tracer,
    ):
        self.settings = settings
        self.kube = kube
        self.registry = registry
        self.mirror = mirror
        self.transitions = transitions
        self.tracer = tracer  # spans of admissions and Job creations

    def tenant_of(self, cr: GuidelineJob) -> str | None:
        """The tenant of an accepted GuidelineJob: the one its row records."""
        uid = metadata_of(cr)["uid"]
        tenant = self.registry.tenant(uid)
        if tenant is None:
            row = self.mirror.row(uuid.UUID(status_of(cr)["eventId"]))
            if row is not None:
                tenant = row["tenant"]
        return tenant

    def job_manifest(self, cr: GuidelineJob, attempts_before: int) -> dict[str, Any]:
        """The Job of the GuidelineJob's current run."""
        metadata, spec = metadata_of(cr), spec_of(cr)
        request = manifests.JobRequest(
            cr_name=metadata["name"],
            cr_uid=metadata["uid"],
            namespace=metadata["namespace"],
            event_id=status_of(cr)["eventId"],
            run=observe.current_run(cr),
            max_retries=spec.get("maxRetries"),
            attempts_before=attempts_before,
            queued_at=observe.queued_since(cr) or now(),
            trace_context=tuple(sorted(op_tracing.runner_context(self.tracer, cr).items())),
            tenant=self.tenant_of(cr),
            rounds=rounds_of(spec, self.settings),
            text_from=manifests.TextFrom.of(spec),
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
    def create_job(self, cr: GuidelineJob, attempts_before: int | None = None) -> None:
        """Create the current run's Job (status.jobName is already written)."""
        if attempts_before is None:
            attempts_before = attempts_before_of(cr)
        manifest = self.job_manifest(cr, attempts_before)
        name = manifest["metadata"]["name"]
        if self.kube.create_job(cr["metadata"]["namespace"], manifest):
            suspended = bool(self.settings.kueue_queue_name)
            log.info("created Job", extra={"job": name, "suspended": suspended})
            self.transitions.event(
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
    def start(self, cr: GuidelineJob) -> GuidelineJob:
        """Admit the current run: write PROCESSING and status.jobName, then create its Job
        (status first: a missing Job whose name is in status is created by the next pass)."""
        before = int(status_of(cr).get("attempts") or 0)
        previous = observe.phase_of(cr)
        obs = observe.admitted(cr, now())
        desired = conditions.desired_status(cr, obs, now=now())
        cr = self.transitions.patch_status(cr, conditions.status_patch(status_of(cr), desired))
        self.transitions.transition(cr, previous, obs)
        self.create_job(cr, attempts_before=before)
        self.mirror.sync(cr, reason="Admitted", message=f"Job {obs.job_name}")
        return cr

    def start_suspended(self, cr: GuidelineJob) -> None:
        """With Kueue: write status.jobName, create the Job suspended; Kueue admission
        starts it."""
        kueue = self.settings.kueue_queue_name
        name = observe.current_job_name(cr)
        pending = conditions.pending_conditions(
            cr,
            {"jobName": name},
            Stage.SUSPENDED,
            now=now(),
            queue_message=f"waiting for admission by Kueue (queue {kueue})",
        )
        before = int(status_of(cr).get("attempts") or 0)
        cr = self.transitions.patch_status(cr, {"jobName": name, "conditions": pending})
        self.create_job(cr, attempts_before=before)


# The text of a job whose spec does not hold it is not known before its runner extracts it:
# its time limits are sized for the most it can plausibly be, at most the runner's character
# limit. A text file's characters are at most its bytes; a PDF's or DOCX's text is stored
# compressed (deflate rarely packs text more than 8:1); a ConfigMap or Secret key holds at
# most 1 MiB of either. Too much only loosens the hard deadline; the runner's soft timeout
# is computed from the text it extracted.
_MAX_CONFIG_BYTES = 1024 * 1024
_COMPRESSION = 8
_MAX_DOCUMENT_CHARS: int = RunnerSettings.model_fields["max_document_chars"].default


def rounds_of(spec: Mapping[str, Any], settings: OperatorSettings) -> int:
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


def attempts_before_of(cr: GuidelineJob) -> int:
    """Attempts of earlier runs, for a Job (re)created after its admission: an admission
    to PROCESSING counted the run's first attempt in status.attempts already."""
    attempts = int(status_of(cr).get("attempts") or 0)
    return max(0, attempts - 1) if observe.phase_of(cr) == Phase.PROCESSING else attempts
