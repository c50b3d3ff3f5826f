"""The request-size cap, enforced before any body is parsed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from guideline_api.http.errors import PROBLEM_MEDIA_TYPE, Reason, problem_bytes

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class UploadTooLargeError(Exception):
    """A streamed (multipart) body passed its cap while the app was reading it."""


@dataclass(frozen=True)
class UploadCap:
    """The cap of a multipart body on one path, and the reason a body past it gets."""

    max_bytes: int
    reason: str
    limit: str  # the limit as the 413 says it


class BodyLimitMiddleware:
    """Refuses request bodies over their cap with 413 before the app parses them.

    A Content-Length above the cap is refused without reading a byte; a chunked (or
    lying) body is read only up to the cap. JSON bodies (`max_bytes`) are buffered and
    replayed to the app, so the endpoint never parses more than `max_bytes`. Multipart
    bodies (`upload_cap` of the path; None: under `max_bytes` like any other) are passed
    through as they arrive, counted: the multipart parser spools files to disk, so an
    upload is never held whole in memory, and the one that passes its cap is answered 413
    as soon as it does."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        on_reject: Callable[[Scope, str], None] | None = None,
        upload_cap: Callable[[str], UploadCap | None] | None = None,
    ):
        self.app = app
        self.max_bytes = max_bytes
        self.on_reject = on_reject
        self.upload_cap = upload_cap

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        cap = self._upload_cap(scope)
        if cap is not None:
            await self._streamed(scope, receive, send, cap)
            return
        length = _content_length(scope)
        if length is not None and length > self.max_bytes:
            await self._reject(scope, send, f"declared Content-Length {length}")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(scope, send, f"more than {self.max_bytes} bytes received")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _upload_cap(self, scope: Scope) -> UploadCap | None:
        if self.upload_cap is None or _media_type(scope) != "multipart/form-data":
            return None
        return self.upload_cap(scope["path"])

    async def _streamed(self, scope: Scope, receive: Receive, send: Send, cap: UploadCap) -> None:
        length = _content_length(scope)
        if length is not None and length > cap.max_bytes:
            await self._reject(scope, send, f"declared Content-Length {length}", cap)
            return
        size = 0
        started = False

        async def counted() -> Message:
            nonlocal size
            message = await receive()
            size += len(message.get("body", b""))
            if size > cap.max_bytes:
                raise UploadTooLargeError
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except UploadTooLargeError:
            if started:
                raise
            await self._reject(scope, send, f"more than {cap.max_bytes} bytes received", cap)

    async def _reject(
        self, scope: Scope, send: Send, what: str, cap: UploadCap | None = None
    ) -> None:
        reason = cap.reason if cap else Reason.BODY_TOO_LARGE
        limit = cap.max_bytes if cap else self.max_bytes
        if self.on_reject is not None:
            self.on_reject(scope, reason)
        said = cap.limit if cap else f"{limit} bytes"
        kind = "upload" if cap else "request body"
        payload = problem_bytes(
            413, reason, f"{kind} too large ({what}); the limit is {said}", scope["path"]
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _media_type(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return value.decode("latin-1").split(";", 1)[0].strip().lower()
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
