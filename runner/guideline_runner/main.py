"""`guideline-runner`: the process of one Job pod.

Reads the GuidelineJob named by GUIDELINE_JOB_NAME in GUIDELINE_NAMESPACE (in-cluster
ServiceAccount, else KUBECONFIG), runs the chain with the provider and model of its spec
(else of the settings), keeps the summary in `status.partial` as soon as step 1 succeeds,
writes `status.result` and exits 0. On failure it writes `{"reason", "message",
"retryable"}` to the termination message file and to `status.runnerError`, and exits 1
(a new pod may succeed) or 42 (it will not): the contract with the Job's podFailurePolicy.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pydantic
from guideline_core import logs
from guideline_core import resource as gj
from guideline_core.resource import ENV_TERMINATION_MESSAGE_PATH, FailureReason, RunnerExit
from guideline_core.settings import RunnerSettings

from guideline_runner import errors, tracing
from guideline_runner.api_client import RunnerApi
from guideline_runner.chain import run_chain
from guideline_runner.chain.time_budget import soft_timeout
from guideline_runner.chunk_cache import ChunkCache
from guideline_runner.citations import with_citations
from guideline_runner.errors import ChainError
from guideline_runner.fit import fit, room_for_result
from guideline_runner.guidelinejob_client import GuidelineJobClient
from guideline_runner.input import JobInput, read_input
from guideline_runner.models import PartialSummary, ReviewThresholds
from guideline_runner.progress import Progress, Publisher, Snapshot
from guideline_runner.providers import make_provider
from guideline_runner.providers.prompts import SUMMARIZE_PROMPT_VERSION

log = logging.getLogger("guideline_runner")


def write_termination_message(path: str, error: ChainError) -> None:
    """Write the failure where the kubelet reads the container's termination message."""
    try:
        Path(path).write_text(json.dumps(error.to_status(), ensure_ascii=False))
    except OSError as exc:
        log.warning(
            "could not write the termination message", extra={"path": path, "problem": str(exc)}
        )


def _fail(settings: RunnerSettings, job: GuidelineJobClient | None, error: ChainError) -> int:
    log.error(
        "runner failed",
        extra={
            "reason": str(error.reason),
            "error": error.message,
            "retryable": error.retryable,
            "exit_code": error.exit_code,
        },
    )
    write_termination_message(settings.termination_message_path, error)
    if job is not None:
        patch: dict[str, Any] = {"runnerError": error.to_status()}
        if error.keep:  # sections finished before the failure: a new pod skips them
            patch["partial"] = {"sections": error.keep}
        try:
            job.patch_status(patch)
        except ChainError as patch_error:
            log.warning("could not record runnerError", extra={"error": patch_error.message})
    return error.exit_code


def _partial_of(status: dict[str, Any]) -> PartialSummary | None:
    raw = status.get("partial")
    if not raw or not raw.get("summary"):
        return None
    try:
        return PartialSummary.model_validate(raw)
    except pydantic.ValidationError:
        log.warning("status.partial is unusable; running step 1 again")
        return None


def thresholds_of(spec: dict[str, Any], settings: RunnerSettings) -> ReviewThresholds:
    """The job's review thresholds: `spec.review` where it sets them, else the settings'."""
    review = spec.get("review") or {}
    return ReviewThresholds(
        min_grounding=review.get("minGrounding", settings.review_min_grounding),
        min_coverage=review.get("minCoverage", settings.review_min_coverage),
    )


def _job_input(spec: dict[str, Any], settings: RunnerSettings, event_id: str) -> JobInput:
    """The job's text; one extracted from a document is put to the API first (when the pod
    has one), so that the job's text there is the one the chain ran on and cited."""
    if isinstance(spec.get("guidelineText"), str):
        return read_input(spec, settings, None)
    api = (
        RunnerApi(
            settings.api_url, settings.runner_token_file, event_id, retries=settings.api_retries
        )
        if settings.api_url
        else None
    )
    try:
        started = time.monotonic()
        job_input = read_input(spec, settings, api)
        assert job_input.info is not None  # a document's input always has its metadata
        log.info(
            "document extracted",
            extra={
                "input": job_input.source,
                "media_type": job_input.info.media_type,
                "bytes": job_input.info.bytes,
                "pages": job_input.info.pages,
                "chars": job_input.info.characters,
                "extractor": job_input.info.extractor,
                "duration_s": round(time.monotonic() - started, 3),
            },
        )
        if api is not None:
            api.put_text(job_input.text, job_input.info.model_dump(mode="json"))
        return job_input
    finally:
        if api is not None:
            api.close()


def _process(settings: RunnerSettings) -> int:
    started = time.monotonic()
    if not settings.job_name:
        return _fail(
            settings,
            None,
            ChainError(
                FailureReason.INVALID_INPUT, "GUIDELINE_JOB_NAME is not set", retryable=False
            ),
        )
    try:
        job = GuidelineJobClient(settings.job_name, settings.namespace)
    except Exception as exc:  # no in-cluster credentials and no kubeconfig
        return _fail(
            settings,
            None,
            ChainError(
                FailureReason.INTERNAL,
                f"No Kubernetes credentials: {type(exc).__name__}: {exc}",
                retryable=False,
            ),
        )
    try:
        body = job.read()
    except ChainError as error:
        return _fail(settings, None, error)

    spec = body.get("spec") or {}
    status = body.get("status") or {}
    # Best effort: the operator counts attempts when it sees a pod start, maybe not yet ours.
    attempt = max(1, int(status.get("attempts") or 0))
    event_id = settings.event_id or gj.event_id_of(body)
    with logs.bind(event_id=event_id, attempt=attempt):
        if status.get("result"):
            log.info("status.result is already written; nothing to do")
            return RunnerExit.OK
        try:
            job_input = _job_input(spec, settings, event_id)
        except ChainError as error:
            return _fail(settings, job, error)
        text = job_input.text
        provider = make_provider(settings, spec.get("provider"), spec.get("model"))
        log.info(
            "runner started",
            extra={
                "provider": provider.name,
                "model": provider.model,
                "chars": len(text),
                "soft_timeout_s": soft_timeout(text, settings),
                # What the pod's start cost before its first LLM call (the budget).
                "cpu_s": round(time.process_time(), 3),
            },
        )

        def save_partial(partial: PartialSummary) -> None:
            try:
                job.patch_status({"partial": partial.to_status()})
                log.info("summary kept in status.partial")
            except ChainError as error:  # only an optimization for a retried pod
                log.warning("could not keep the summary", extra={"error": error.message})

        def publish_progress(snapshot: Snapshot) -> None:
            job.patch_status({"progress": snapshot.to_status()})

        publisher = Publisher(publish_progress, settings.progress_interval_seconds)
        url = settings.cache_database_url
        cache = ChunkCache(
            url.get_secret_value() if url else None,
            settings.tenant,
            provider.model,
            SUMMARIZE_PROMPT_VERSION,
        )
        try:
            result = run_chain(
                text,
                settings,
                provider,
                _partial_of(status),
                on_summary=save_partial,
                attempt=attempt,
                thresholds=thresholds_of(spec, settings),
                cache=cache,
                progress=Progress(publisher.offer),
            )
        except ChainError as error:
            return _fail(settings, job, error)
        except Exception as exc:
            log.exception("unexpected error in the chain")
            return _fail(
                settings,
                job,
                ChainError(
                    FailureReason.INTERNAL,
                    f"Unexpected error: {type(exc).__name__}: {exc}",
                    retryable=True,
                ),
            )
        finally:
            publisher.close()
            provider.close()
            cache.close()
        result = with_citations(result, job_input.document, job_input.info)
        bound = room_for_result(body, settings.max_result_bytes)
        fitted = fit(result, bound)
        if fitted is not result:
            log.warning(
                "result shortened to fit the GuidelineJob",
                extra={
                    "max_bytes": bound,
                    "uncovered_omitted": fitted.quality.uncovered_omitted,
                    "items_cut": len(result.checklist) - len(fitted.checklist),
                },
            )
        result = fitted
        try:
            job.patch_status({"result": result.to_status()})
        except ChainError as error:
            return _fail(settings, job, error)
        log.info(
            "runner finished",
            extra={
                "provider": result.provider,
                "model": result.model,
                "degraded": result.degraded,
                "summary_reused": result.summary_reused,
                "checklist_items": len(result.checklist),
                "needs_review": result.needs_review,
                "calls_saved": sum(u.calls_saved for u in result.usage.values()),
                "duration_s": round(time.monotonic() - started, 3),
            },
        )
        return RunnerExit.OK


def setup_logging(settings: RunnerSettings) -> None:
    """JSON-lines logs on stderr, with the API key and the cache's database URL redacted
    from every log line and from every message the runner writes (status, termination
    message)."""
    logs.configure(settings.log_level, component="runner")
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    cache_url = settings.cache_database_url
    for secret in (key, cache_url.get_secret_value() if cache_url else None):
        logs.register_secret(secret)
        errors.register_secret(secret)


def _bad_settings(exc: pydantic.ValidationError) -> int:
    """Invalid configuration: no pod will do better, so do not retry."""
    logs.configure("INFO", component="runner")
    fields = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())
    error = ChainError(
        FailureReason.INVALID_INPUT, f"Invalid runner settings: {fields}", retryable=False
    )
    path = os.environ.get(
        ENV_TERMINATION_MESSAGE_PATH,
        RunnerSettings.model_fields["termination_message_path"].default,
    )
    log.error("invalid settings", extra={"error": error.message})
    write_termination_message(path, error)
    return error.exit_code


def run(settings: RunnerSettings | None = None) -> int:
    """Configure logging and secrets, process the job, and return the exit code."""
    if settings is None:
        try:
            settings = RunnerSettings()
        except pydantic.ValidationError as exc:
            return _bad_settings(exc)
    setup_logging(settings)
    tracing.setup()
    try:
        with (
            logs.bind(
                event_id=settings.event_id, job=settings.job_name, namespace=settings.namespace
            ),
            tracing.run(settings.event_id, settings.job_name, settings.namespace) as span,
        ):
            code = _run_logged(settings)
            span.set("guideline.exit_code", int(code))
            if code != RunnerExit.OK:
                span.fail(f"runner exit code {int(code)}")
            return code
    finally:
        tracing.shutdown()


def _run_logged(settings: RunnerSettings) -> int:
    """`_process`, with a crash turned into a failure of the exit-code contract."""
    try:
        return _process(settings)
    except Exception as exc:  # last resort: still honour the exit-code contract
        log.exception("runner crashed")
        return _fail(
            settings,
            None,
            ChainError(
                FailureReason.INTERNAL,
                f"Runner crashed: {type(exc).__name__}: {exc}",
                retryable=True,
            ),
        )


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    # As a container's PID 1 the runner would otherwise ignore SIGTERM and make a
    # cancelled or deadline-exceeded pod wait out its whole grace period.
    log.warning("terminated by signal", extra={"signal": signal.Signals(signum).name})
    logging.shutdown()
    os._exit(128 + signum)


def main() -> None:
    """Console script entry point."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # The openai SDK imports its optional aiohttp transport whenever aiohttp is installed
    # (the image has it, for kopf); the runner uses only the SDK's sync client. Marking the
    # module absent in this process saves a pod about 0.05 s of CPU before its first call.
    sys.modules.setdefault("aiohttp", None)  # type: ignore[arg-type]
    sys.exit(run())
