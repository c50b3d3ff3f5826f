"""The HTTP server's protocol: uvicorn's httptools protocol with bounds on a request's head.

uvicorn picks httptools when it is installed (as in the image), and httptools ignores
`h11_max_incomplete_event_size`: it buffers a header of any size. uvicorn also has no
deadline for a head that never completes (`timeout_keep_alive` runs only between requests).
This protocol counts the bytes of each request line and headers as they arrive, before the
parser sees (and buffers) them, counts the header fields, and gives each head a deadline
from its first byte (the first head: from the connection's opening). Past a bound it
answers 431 or 408 with a problem body and closes the connection.

One bound is approximate: bytes of a pipelined request that arrive in the same read as the
end of the request before it are not counted against its head (at most one read, 256 KiB).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from guideline_api.http.errors import PROBLEM_MEDIA_TYPE, Reason, problem_bytes


@dataclass(frozen=True)
class HeadLimits:
    """What one request's line and headers may take."""

    max_bytes: int
    max_fields: int
    timeout_seconds: float


class HeadRefusedError(Exception):
    """Raised in a parser callback to stop parsing a head past its bounds."""


class HeadLimitedProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that refuses heads past `limits` (set by `head_limited_protocol`)."""

    limits: ClassVar[HeadLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_pending = True
        self._head_bytes = 0
        self._head_fields = 0
        self._head_heard = False  # a byte of the head arrived
        self._head_started: float | None = None
        self._head_deadline: asyncio.TimerHandle | None = None
        self._refusal: tuple[int, str, str] | None = None

    # Connection events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        # A connection that never sends a byte is held no longer than a slow head.
        self._head_started = self.loop.time()
        self._arm_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._head_pending:
            super().data_received(data)
            return
        self._head_heard = True
        if self._head_started is None:
            self._head_started = self.loop.time()
        allowance = self.limits.max_bytes - self._head_bytes
        if len(data) > allowance:
            # Feed only what the bound allows: the head may end within it, and what follows
            # is a body or the next request, counted on its own.
            self._head_bytes += allowance
            super().data_received(data[:allowance])
            if self.transport.is_closing():
                return
            if self._head_pending:
                self._refuse(
                    431,
                    Reason.HEADERS_TOO_LARGE,
                    f"the request line and headers exceed {self.limits.max_bytes} bytes",
                )
                return
            self.data_received(data[allowance:])
            return
        self._head_bytes += len(data)
        super().data_received(data)
        if self._head_pending and self._head_deadline is None:
            self._arm_deadline()

    # Parser callbacks

    def on_message_begin(self) -> None:
        self._head_fields = 0
        self._head_heard = True
        if self._head_started is None:  # a pipelined head, begun in the read that ended
            self._head_started = self.loop.time()  # the request before it
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_fields += 1
        if self._head_fields > self.limits.max_fields:
            self._refusal = (
                431,
                Reason.TOO_MANY_HEADERS,
                f"the request has more than {self.limits.max_fields} header fields",
            )
            raise HeadRefusedError
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_pending = False
        self._cancel_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_pending = True
        self._head_bytes = 0
        self._head_heard = False
        self._head_started = None

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers every parser error (ours included, raised in on_header) with this.
        if self._refusal is None:
            super().send_400_response(msg)
        else:
            self._refuse(*self._refusal)

    # The head's bounds

    def _arm_deadline(self) -> None:
        if self._head_started is None or self.transport.is_closing():
            return
        self._head_deadline = self.loop.call_at(
            self._head_started + self.limits.timeout_seconds, self._head_timed_out
        )

    def _cancel_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if not self._head_pending or self.transport.is_closing():
            return
        if not self._head_heard:  # nothing was asked: nothing to answer
            self.transport.close()
            return
        self._refuse(
            408,
            Reason.HEADERS_TIMEOUT,
            f"the request line and headers did not arrive within {self.limits.timeout_seconds:g} s",
        )

    def _refuse(self, status: int, reason: str, detail: str) -> None:
        """Answer with a problem and close the connection (the rest is never read)."""
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head while a response is still being written: no answer fits.
            self.transport.close()
            return
        body = problem_bytes(status, reason, detail, self._instance())
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-type: " + PROBLEM_MEDIA_TYPE.encode() + b"\r\n")
        head.append(b"content-length: " + str(len(body)).encode() + b"\r\n")
        head.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join(head) + body)
        self.transport.close()

    def _instance(self) -> str:
        """The request's path when its request line is complete (a header followed it)."""
        if self._head_fields == 0:
            return ""
        try:
            return httptools.parse_url(self.url).path.decode("latin-1")
        except httptools.HttpParserInvalidURLError:
            return ""


def head_limited_protocol(limits: HeadLimits) -> type[HeadLimitedProtocol]:
    """The protocol class for uvicorn's `http` option, bound to `limits`."""
    return type("HeadLimitedProtocol", (HeadLimitedProtocol,), {"limits": limits})
