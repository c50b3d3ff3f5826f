"""OpenTelemetry tracing shared by the components: one trace per job, from the API's
submission through the dispatcher, the operator and the runner to its LLM calls.

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set:
then no OpenTelemetry module is imported at all (the runner's start-up CPU) and every span
is a no-op. On: an SDK `TracerProvider` with a batch processor and the OTLP/HTTP (protobuf)
exporter, configured by the standard variables (`OTEL_SERVICE_NAME`, default per component,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_EXPORTER_OTLP_HEADERS`, ...);
`OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it off again.

The context travels as a W3C trace-context carrier, `{"traceparent": ..., "tracestate":
...}`: in the job's row (`jobs.trace_context`), in the GuidelineJob's annotations
(`ingest.guidelines.dev/traceparent`, `.../tracestate`) and in the runner pod's env
(`TRACEPARENT`, `TRACESTATE`). Anyone who may create a GuidelineJob writes its annotations,
so every carrier is validated (`clean`) before it is used or passed on; a malformed one is
dropped (the span then starts a trace of its own).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

from guideline_core import logs
from guideline_core import resource as gj

log = logging.getLogger(__name__)

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
ANNOTATION_TRACEPARENT: Final = f"{gj.GROUP}/traceparent"
ANNOTATION_TRACESTATE: Final = f"{gj.GROUP}/tracestate"
ENV_TRACEPARENT: Final = "TRACEPARENT"
ENV_TRACESTATE: Final = "TRACESTATE"
ENDPOINT_VARIABLES: Final = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

# W3C Trace Context, version 00: trace id and parent id not all zeros.
_TRACEPARENT_RE = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")
# tracestate: at most 32 comma-separated `key=value` members of printable ASCII, 512 chars.
_TRACESTATE_MEMBER_RE = re.compile(
    r"^[a-z0-9][a-z0-9_\-*/@]{0,255}=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,256}$"
)
_TRACESTATE_MAX_CHARS: Final = 512
_OWS: Final = " \t"  # the optional whitespace W3C allows around members


# --- carriers: pure functions, no OpenTelemetry import ----------------------------------------


def clean(carrier: Mapping[str, Any] | None) -> dict[str, str]:
    """The valid part of a W3C carrier: `traceparent` (and `tracestate` if it is valid too),
    or {} if there is no valid traceparent."""
    if not carrier:
        return {}
    parent = carrier.get(TRACEPARENT)
    if not isinstance(parent, str) or not _TRACEPARENT_RE.fullmatch(parent):
        return {}
    out = {TRACEPARENT: parent}
    state = carrier.get(TRACESTATE)
    if isinstance(state, str) and _valid_tracestate(state):
        out[TRACESTATE] = state.strip(_OWS)
    return out


def _valid_tracestate(state: str) -> bool:
    state = state.strip(_OWS)
    if not state or len(state) > _TRACESTATE_MAX_CHARS:
        return False
    members = [m.strip(_OWS) for m in state.split(",")]
    return len(members) <= 32 and all(_TRACESTATE_MEMBER_RE.fullmatch(m) for m in members)


def to_annotations(carrier: Mapping[str, Any] | None) -> dict[str, str]:
    """A carrier as GuidelineJob annotations ({} for no valid context)."""
    valid = clean(carrier)
    names = {TRACEPARENT: ANNOTATION_TRACEPARENT, TRACESTATE: ANNOTATION_TRACESTATE}
    return {names[k]: v for k, v in valid.items()}


def from_annotations(annotations: Mapping[str, Any] | None) -> dict[str, str]:
    """The (validated) carrier in a GuidelineJob's annotations."""
    notes = annotations or {}
    return clean(
        {
            TRACEPARENT: notes.get(ANNOTATION_TRACEPARENT),
            TRACESTATE: notes.get(ANNOTATION_TRACESTATE),
        }
    )


def to_env(carrier: Mapping[str, Any] | None) -> dict[str, str]:
    """A carrier as the runner's environment variables ({} for no valid context)."""
    valid = clean(carrier)
    names = {TRACEPARENT: ENV_TRACEPARENT, TRACESTATE: ENV_TRACESTATE}
    return {names[k]: v for k, v in valid.items()}


def from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The (validated) carrier in `TRACEPARENT` / `TRACESTATE` (default: os.environ)."""
    env = os.environ if environ is None else environ
    return clean({TRACEPARENT: env.get(ENV_TRACEPARENT), TRACESTATE: env.get(ENV_TRACESTATE)})


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """True if the standard variables ask for OTLP export of traces."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(env.get(name, "").strip() for name in ENDPOINT_VARIABLES)


# --- spans ------------------------------------------------------------------------------------


class Span:
    """One span as the components see it; does nothing when tracing is off."""

    def set(self, key: str, value: Any) -> None:
        """Set an attribute (None is left out)."""

    def fail(self, message: str) -> None:
        """Mark the span as failed with `message` (the job failed, not the code)."""

    def carrier(self) -> dict[str, str]:
        """This span's context as a W3C carrier ({} when tracing is off)."""
        return {}

    def end(self) -> None:
        """End a span made by `Tracer.start` (spans of `Tracer.span` end by themselves)."""

    def current(self) -> contextlib.AbstractContextManager[None]:
        """A block in which this span is current (and its ids are in the log lines); the
        span ends with the block, failed if an exception leaves it."""
        return contextlib.nullcontext()


class Tracer:
    """The spans of one component. This base class is the no-op used when tracing is off;
    `setup()` returns the real one when it is on."""

    enabled = False
    provider: Any = None  # the SDK TracerProvider when on (for instrumentations)

    @contextlib.contextmanager
    def span(
        self,
        name: str,
        *,
        parent: Mapping[str, Any] | None = None,
        attributes: Mapping[str, Any] | None = None,
        kind: str = "internal",
    ) -> Iterator[Span]:
        """A span around the block, current inside it. `parent`: a W3C carrier to continue
        (an invalid or empty one starts a new trace); None: the current span's child (or a
        new trace). An exception leaving the block marks the span as failed."""
        opened = self.start(name, parent=parent, attributes=attributes, kind=kind)
        with opened.current():
            yield opened

    def start(
        self,
        name: str,
        *,
        parent: Mapping[str, Any] | None = None,
        attributes: Mapping[str, Any] | None = None,
        kind: str = "internal",
        links: Sequence[Mapping[str, Any]] = (),
    ) -> Span:
        """A span that is not made current; the caller ends it (`Span.end`). `links`: W3C
        carriers of related spans of other traces (invalid ones are left out)."""
        return _NOOP_SPAN

    def active(self) -> bool:
        """True if a span of ours is current (in this thread / context)."""
        return False

    def current_carrier(self) -> dict[str, str]:
        """The current span's context as a W3C carrier ({} if none, or tracing is off)."""
        return {}

    def force_flush(self, timeout_millis: int = 5000) -> None:
        """Export what is buffered (bounded by `timeout_millis`)."""

    def shutdown(self) -> None:
        """Flush and stop the exporter (at process or app end)."""


_NOOP_SPAN = Span()
NOOP: Final = Tracer()


def setup(service_name: str, environ: Mapping[str, str] | None = None) -> Tracer:
    """The component's tracer: the no-op `NOOP` unless `enabled(environ)`; else an SDK
    provider exporting over OTLP/HTTP, `service.name` from `OTEL_SERVICE_NAME` (or
    `OTEL_RESOURCE_ATTRIBUTES`) else `service_name`. `environ` is for the on/off decision
    (the SDK reads os.environ). Never raises: a broken configuration logs a warning and
    leaves tracing off."""
    if not enabled(environ):
        return NOOP
    try:
        return _OtelTracer(service_name)
    except Exception as exc:
        log.warning("tracing not started", extra={"error": f"{type(exc).__name__}: {exc}"})
        return NOOP


class _OtelSpan(Span):
    def __init__(self, span: Any, tracer: _OtelTracer):
        self._span = span
        self._tracer = tracer

    def set(self, key: str, value: Any) -> None:
        if value is not None:
            self._span.set_attribute(key, value)

    def fail(self, message: str) -> None:
        self._tracer.set_error(self._span, message)

    def carrier(self) -> dict[str, str]:
        return self._tracer.carrier_of(self._span)

    def end(self) -> None:
        self._span.end()

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        ids = self._span.get_span_context()
        with (
            self._tracer.made_current(self._span),
            logs.bind(trace_id=f"{ids.trace_id:032x}", span_id=f"{ids.span_id:016x}"),
        ):
            yield


class _OtelTracer(Tracer):
    """Tracing on: the OpenTelemetry SDK, imported only here."""

    enabled = True

    def __init__(self, service_name: str):
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        from guideline_core import version

        for name in ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"):
            if os.environ.get(name, "http/protobuf") != "http/protobuf":
                log.warning("only OTLP over http/protobuf is supported", extra={name: "ignored"})
        detected = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
        name = str(detected.attributes.get(SERVICE_NAME) or "")
        defaults = {SERVICE_VERSION: version()}
        if not name or name.startswith("unknown_service"):
            defaults[SERVICE_NAME] = service_name
        self.provider = TracerProvider(resource=detected.merge(Resource(defaults)))
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self._trace = trace
        self._tracer = self.provider.get_tracer("guideline_ingest", version())
        self._propagator = TraceContextTextMapPropagator()
        self._kinds = {k.name.lower(): k for k in trace.SpanKind}
        self.service_name = self.provider.resource.attributes.get(SERVICE_NAME)
        log.info("tracing on (OTLP/HTTP)", extra={"service_name": self.service_name})

    def _context(self, parent: Mapping[str, Any] | None) -> Any:
        if parent is None:
            return None  # the current context
        from opentelemetry.context import Context

        return self._propagator.extract(clean(parent), context=Context())

    def start(
        self,
        name: str,
        *,
        parent: Mapping[str, Any] | None = None,
        attributes: Mapping[str, Any] | None = None,
        kind: str = "internal",
        links: Sequence[Mapping[str, Any]] = (),
    ) -> Span:
        related = [self._trace.get_current_span(self._context(c)) for c in links if clean(c)]
        span = self._tracer.start_span(
            name,
            context=self._context(parent),
            kind=self._kinds[kind],
            attributes={k: v for k, v in (attributes or {}).items() if v is not None},
            links=[self._trace.Link(s.get_span_context()) for s in related],
        )
        return _OtelSpan(span, self)

    def active(self) -> bool:
        return self._trace.get_current_span().get_span_context().is_valid

    def current_carrier(self) -> dict[str, str]:
        return self.carrier_of(self._trace.get_current_span()) if self.active() else {}

    def carrier_of(self, span: Any) -> dict[str, str]:
        """The W3C carrier of `span`."""
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=self._trace.set_span_in_context(span))
        return carrier

    def made_current(self, span: Any) -> contextlib.AbstractContextManager[Any]:
        """A block in which `span` is current, ended with the block (failed on an exception)."""
        return self._trace.use_span(span, end_on_exit=True, record_exception=True)

    def set_error(self, span: Any, message: str) -> None:
        """Mark `span` as failed."""
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, message[:500]))

    def force_flush(self, timeout_millis: int = 5000) -> None:
        self.provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.force_flush()
        self.provider.shutdown()
