"""FastAPI dependencies: the app's context, the caller's principal, the raw body."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from guideline_api.auth import ANONYMOUS, Principal, Role
from guideline_api.context import Context
from guideline_api.errors import ApiError, Reason


def get_ctx(request: Request) -> Context:
    """The app's context."""
    return request.app.state.ctx


CtxDep = Annotated[Context, Depends(get_ctx)]

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key issued by the operator of this service (`Bearer <key>`).",
)


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Principal:
    """The caller's principal; 401 with WWW-Authenticate without a valid bearer key.
    With authentication off every caller is an admin of tenant `default`."""
    ctx = get_ctx(request)
    if not ctx.settings.auth_enabled:
        return Principal(ANONYMOUS, tenant="default", role=Role.ADMIN)
    if credentials is None or not credentials.credentials:
        raise ApiError(
            401,
            Reason.MISSING_API_KEY,
            "an API key is required: send `Authorization: Bearer <key>`",
            headers={"WWW-Authenticate": 'Bearer realm="guideline-ingest"'},
        )
    principal = ctx.keys.verify(credentials.credentials)
    if principal is None:
        raise ApiError(
            401,
            Reason.INVALID_API_KEY,
            "the API key is not valid",
            headers={"WWW-Authenticate": 'Bearer realm="guideline-ingest", error="invalid_token"'},
        )
    request.state.principal = principal  # for the access log line
    return principal


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


async def read_body(request: Request, _principal: CurrentPrincipal) -> bytes:
    """The raw request body, read only after the caller is authenticated (so an anonymous
    client cannot make the API buffer a body), for sync endpoints that cannot await."""
    return await request.body()


RawBody = Annotated[bytes, Depends(read_body)]
