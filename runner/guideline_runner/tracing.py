"""The runner's spans, in the trace of its job (see guideline_core.tracing): the run,
continuing the context the operator put in `TRACEPARENT` / `TRACESTATE`, one span per
chain step (summarize, checklist), and the LLM calls inside them, made by the official
OpenAI instrumentation (`opentelemetry-instrumentation-genai-openai`: a `chat <model>`
client span per call with the GenAI attributes: model, token usage, finish reason; no
prompt or answer content unless `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` asks).

The openai SDK sends through `httpx2`, not `httpx`, so the httpx instrumentation would
not see its calls. With tracing off nothing of OpenTelemetry is imported (start-up CPU);
the OpenAI instrumentation is loaded only with the openai provider.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from guideline_core import tracing
from guideline_core.tracing import NOOP, Span, Tracer

log = logging.getLogger(__name__)

SERVICE_NAME: Final = "guideline-runner"
RUN_SPAN: Final = "guideline.run"
STEP_SPAN_PREFIX: Final = "guideline."

_tracer: Tracer = NOOP
_instrumented = False


def setup() -> Tracer:
    """Start the runner's tracer (the no-op one unless OTLP export is configured)."""
    global _tracer
    _tracer = tracing.setup(SERVICE_NAME)
    return _tracer


def shutdown() -> None:
    """Export what is left (at the end of the run)."""
    _tracer.shutdown()


def instrument_openai() -> None:
    """Trace the openai SDK's calls (once, and only with tracing on)."""
    global _instrumented
    if not _tracer.enabled or _instrumented:
        return
    _instrumented = True
    try:
        from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=_tracer.provider)
    except Exception as exc:  # the run goes on untraced rather than failing
        log.warning("openai calls not traced", extra={"error": f"{type(exc).__name__}: {exc}"})


@contextmanager
def run(event_id: str | None, job: str | None, namespace: str | None) -> Iterator[Span]:
    """The span of this pod's run, continuing the operator's context."""
    with _tracer.span(
        RUN_SPAN,
        parent=tracing.from_env(),
        kind="consumer",
        attributes={
            "guideline.event_id": event_id,
            "guideline.guidelinejob": job,
            "k8s.namespace.name": namespace,
        },
    ) as span:
        yield span


@contextmanager
def step(name: str, fields: dict[str, Any]) -> Iterator[Span]:
    """The span of one chain step (`guideline.summarize`, `guideline.checklist`)."""
    attributes = {f"guideline.{k}": v for k, v in fields.items() if isinstance(v, str | int)}
    with _tracer.span(STEP_SPAN_PREFIX + name, attributes=attributes) as span:
        yield span
