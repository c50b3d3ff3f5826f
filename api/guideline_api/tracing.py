"""The API's spans: one trace per accepted job, started by its submission, and the
dispatcher's creation of its GuidelineJob in the same trace (see guideline_core.tracing).

`Submissions` holds the spans of one request's submissions until the transaction is over,
so a span ends when its job is committed, or with an error when the whole request failed
(nothing was recorded). The submission span's context is stored with the row; the
dispatcher continues it and passes its own span's context on in the CR's annotations.
A request that comes with a W3C `traceparent` header (a traced client or gateway) is
linked from each of its submission spans (`CallerContext` keeps it for the request): a
job's trace stays its own, and the caller's trace finds it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any, Final

from guideline_core import tracing
from guideline_core.tracing import Span, Tracer
from starlette.types import ASGIApp, Receive, Scope, Send

SERVICE_NAME: Final = "guideline-api"
SUBMIT_SPAN: Final = "guideline.submit"
DISPATCH_SPAN: Final = "guideline.dispatch"


_caller: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "trace_caller", default=None
)


def setup() -> Tracer:
    """The API's tracer (the no-op one unless OTLP export is configured)."""
    return tracing.setup(SERVICE_NAME)


class CallerContext:
    """ASGI middleware (installed only with tracing on): the request's own W3C trace
    context, for the submission spans to link to."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name in (b"traceparent", b"tracestate")
        }
        token = _caller.set(tracing.clean(headers) or None)
        try:
            await self.app(scope, receive, send)
        finally:
            _caller.reset(token)


class Submissions:
    """The submission spans of one request (`with Submissions(...) as spans:` around its
    transaction); each span ends when the block does."""

    def __init__(self, tracer: Tracer, tenant: str, count: int):
        self._tracer = tracer
        self._tenant = tenant
        self._count = count
        self._spans: list[Span] = []

    def __enter__(self) -> Submissions:
        return self

    def start(self, index: int) -> Span:
        """The span of item `index`: a new trace (a job's trace is its own, also inside a
        batch)."""
        caller = _caller.get()
        span = self._tracer.start(
            SUBMIT_SPAN,
            parent={},
            links=[caller] if caller else (),
            kind="server",
            attributes={
                "guideline.tenant": self._tenant,
                "guideline.submission.index": index,
                "guideline.submission.count": self._count,
            },
        )
        self._spans.append(span)
        return span

    @staticmethod
    def accepted(span: Span, row: Mapping[str, Any], created: bool) -> None:
        """Record what the item came to (a new job, or the job of its Idempotency-Key)."""
        span.set("guideline.event_id", str(row["event_id"]))
        span.set("guideline.idempotent_replay", not created)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for span in self._spans:
            if exc is not None:
                span.fail(f"not recorded: {type(exc).__name__}: {exc}")
            span.end()


@contextlib.contextmanager
def dispatch(tracer: Tracer, row: Mapping[str, Any]) -> Iterator[dict[str, str]]:
    """A span around creating a job's GuidelineJob, continuing the row's trace; yields the
    annotations that carry the trace on to the operator (the row's own context when this
    API has tracing off but the replica that accepted the job had it on)."""
    stored = tracing.clean(row.get("trace_context"))
    if not tracer.enabled:
        yield tracing.to_annotations(stored)
        return
    with tracer.span(
        DISPATCH_SPAN,
        parent=stored,
        kind="producer",
        attributes={
            "guideline.event_id": str(row["event_id"]),
            "guideline.tenant": row.get("tenant"),
            "guideline.dispatch.attempt": row.get("dispatch_attempts"),
        },
    ) as span:
        yield tracing.to_annotations(span.carrier())
