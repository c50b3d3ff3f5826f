"""The operator's spans, in the trace of the job (see guideline_core.tracing): accepting a
GuidelineJob, admitting a run, creating its Job, and mirroring its outcome.

Each span continues the context in the GuidelineJob's annotations (put there by the API's
dispatcher; a GuidelineJob applied with kubectl has none, so its spans start their own
traces), or the current span when one is open (the Job's creation inside its admission).
The runner pod gets the Job-creation span's context in `TRACEPARENT` / `TRACESTATE`, or
the annotations' as they are when the operator has tracing off. Spans are made only on
transitions, never by passes that change nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Concatenate, Final, ParamSpec, Protocol, TypeVar

from guideline_core import tracing
from guideline_core.guidelinejob import GuidelineJob
from guideline_core.resource import Phase
from guideline_core.tracing import Span, Tracer

SERVICE_NAME: Final = "guideline-operator"
ACCEPT_SPAN: Final = "guideline.accept"
ADMIT_SPAN: Final = "guideline.admit"
JOB_CREATE_SPAN: Final = "guideline.job.create"
OUTCOME_SPAN: Final = "guideline.outcome"

P = ParamSpec("P")
R = TypeVar("R")


class Traced(Protocol):
    """What the decorators need of the object whose methods they wrap."""

    tracer: Tracer


S = TypeVar("S", bound=Traced)


def setup() -> Tracer:
    """The operator's tracer (the no-op one unless OTLP export is configured)."""
    return tracing.setup(SERVICE_NAME)


def carrier_of(cr: Mapping[str, Any]) -> dict[str, str]:
    """The (validated) trace context in a GuidelineJob's annotations."""
    return tracing.from_annotations((cr.get("metadata") or {}).get("annotations"))


def _attributes(cr: Mapping[str, Any]) -> dict[str, Any]:
    metadata = cr.get("metadata") or {}
    status = cr.get("status") or {}
    return {
        "guideline.event_id": status.get("eventId"),  # set once accepted (trusted)
        "guideline.guidelinejob": metadata.get("name"),
        "k8s.namespace.name": metadata.get("namespace"),
        "guideline.run": int(status.get("retryRequests") or 0),
    }


@contextmanager
def job_span(tracer: Tracer, name: str, cr: Mapping[str, Any]) -> Iterator[Span]:
    """A span about one GuidelineJob: the current span's child, else continuing the
    trace of its annotations."""
    parent = None if tracer.active() else carrier_of(cr)
    with tracer.span(name, parent=parent, attributes=_attributes(cr)) as span:
        yield span


def runner_context(tracer: Tracer, cr: Mapping[str, Any]) -> dict[str, str]:
    """The trace context the runner pod continues: the current span's (the Job's
    creation), else the GuidelineJob's own."""
    return tracer.current_carrier() or carrier_of(cr)


def traced(
    name: str,
) -> Callable[
    [Callable[Concatenate[S, GuidelineJob, P], R]],
    Callable[Concatenate[S, GuidelineJob, P], R],
]:
    """A method `(self, cr, ...)` of an object with a `tracer` inside a span `name`."""

    def wrap(
        method: Callable[Concatenate[S, GuidelineJob, P], R],
    ) -> Callable[Concatenate[S, GuidelineJob, P], R]:
        @functools.wraps(method)
        def run(self: S, cr: GuidelineJob, *args: P.args, **kwargs: P.kwargs) -> R:
            if not self.tracer.enabled:
                return method(self, cr, *args, **kwargs)
            with job_span(self.tracer, name, cr) as span:
                result = method(self, cr, *args, **kwargs)
                if isinstance(result, dict):  # the CR as written: accepted, it has its event_id
                    span.set("guideline.event_id", (result.get("status") or {}).get("eventId"))
                return result

        return run  # type: ignore[return-value]  # functools.wraps' _Wrapped is that callable

    return wrap


def traced_outcome(
    method: Callable[Concatenate[S, GuidelineJob, Any, P], R],
) -> Callable[Concatenate[S, GuidelineJob, Any, P], R]:
    """`Transitions.apply(self, cr, obs)` inside an outcome span when it turns the job
    terminal (COMPLETED, FAILED: the span fails with the reason, CANCELLED)."""

    @functools.wraps(method)
    def run(self: S, cr: GuidelineJob, obs: Any, *args: P.args, **kwargs: P.kwargs) -> R:
        previous = (cr.get("status") or {}).get("phase")
        if not self.tracer.enabled or not obs.phase.terminal or obs.phase == previous:
            return method(self, cr, obs, *args, **kwargs)
        with job_span(self.tracer, OUTCOME_SPAN, cr) as span:
            span.set("guideline.phase", str(obs.phase))
            span.set("guideline.attempts", obs.attempts)
            span.set("guideline.reason", obs.reason)
            if obs.phase == Phase.FAILED:
                span.fail(f"{obs.reason}: {obs.message}")
            return method(self, cr, obs, *args, **kwargs)

    return run  # type: ignore[return-value]  # as above
