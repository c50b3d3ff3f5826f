"""FastAPI dependencies: the app's context, the caller's principal, the raw body."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from guideline_api.auth import ANONYMOUS, Principal, Role
from guideline_api.context import Context
from guideline_api.http.authgate import unauthorized
from guideline_api.http.errors import Reason


def get_ctx(request: Request) -> Context:
    """The app's context."""
    return request.app.state.ctx


async def ctx_dependency(request: Request) -> Context:
    """`get_ctx` as a dependency: a coroutine, because FastAPI runs a sync dependency in its
    thread pool, a thread hop per request that costs CPU and, on busy cores, latency."""
    return get_ctx(request)


CtxDep = Annotated[Context, Depends(ctx_dependency)]

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key issued by the operator of this service (`Bearer <key>`).",
)


async def authenticate(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Principal:
    """The caller's principal, verified by the AuthGate in front of the app (which answers
    401 itself, before any body is read). With authentication off every caller is an admin
    of tenant `default`."""
    ctx = get_ctx(request)
    if not ctx.settings.auth_enabled:
        return Principal(ANONYMOUS, tenant="default", role=Role.ADMIN)
    principal = request.scope.get("state", {}).get("principal")  # also the access log's
    if principal is None:  # only on a path the gate leaves open: never a /jobs path
        raise unauthorized(Reason.MISSING_API_KEY)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


async def read_body(request: Request, _principal: CurrentPrincipal) -> bytes:
    """The raw request body, read only after the caller is authenticated (so an anonymous
    client cannot make the API buffer a body), for sync endpoints that cannot await."""
    return await request.body()


RawBody = Annotated[bytes, Depends(read_body)]


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Makes retries of this request safe: one key, one job (in a batch, item "
        "i gets `<key>:<i>` unless it has its own `idempotency_key`).",
    ),
]
