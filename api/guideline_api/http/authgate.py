"""Authentication as the outermost gate: a request without a valid key is answered 401
before anything reads its body, opens a database connection or routes it.

FastAPI reads a declared body before it solves an endpoint's dependencies, and the size cap
buffers bodies up to `max_body_bytes`; doing authentication here, in front of both, keeps
an unauthenticated request at the cost of one SHA-256. Every path needs a key except the
open ones (health, metrics, the API docs), including paths that do not exist (no probing
for routes without a key). The principal is left in `scope["state"]["principal"]`.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from guideline_api.auth import Principal
from guideline_api.http.errors import ApiError, Reason, error_response

OPEN_PATHS = frozenset({"/health", "/metrics", "/docs", "/redoc", "/openapi.json"})
# The runner routes check their own credential (a runner pod's token; runner_auth).
OPEN_PREFIXES = ("/health/", "/docs/", "/v1/runner/")
_REALM = 'Bearer realm="guideline-ingest"'


def is_open(path: str) -> bool:
    """True for a path served without a key."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def bearer_token(scope: Scope) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


def unauthorized(reason: str) -> ApiError:
    """The 401 for a missing or an invalid key."""
    if reason == Reason.MISSING_API_KEY:
        return ApiError(
            401,
            Reason.MISSING_API_KEY,
            "an API key is required: send `Authorization: Bearer <key>`",
            headers={"WWW-Authenticate": _REALM},
        )
    return ApiError(
        401,
        Reason.INVALID_API_KEY,
        "the API key is not valid",
        headers={"WWW-Authenticate": f'{_REALM}, error="invalid_token"'},
    )


class AuthGate:
    """Answers 401 to a request for a non-open path without a valid key (see the module
    docstring); `verify` maps a presented key to its principal or None."""

    def __init__(
        self,
        app: ASGIApp,
        verify: Callable[[str], Principal | None],
        on_reject: Callable[[Scope, str], None] | None = None,
    ):
        self.app = app
        self.verify = verify
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        principal = self.verify(token) if token is not None else None
        if principal is None:
            reason = Reason.MISSING_API_KEY if token is None else Reason.INVALID_API_KEY
            if self.on_reject is not None:
                self.on_reject(scope, reason)
            response = error_response(unauthorized(reason), scope["path"])
            # The body is never read: close the connection rather than drain it.
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)
