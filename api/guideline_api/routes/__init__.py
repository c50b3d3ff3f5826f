"""The API's routers, one module per resource (health included), and where they are served.
`descriptions` holds the `/jobs` operations' OpenAPI prose, `intake` how they read a
submission from the request."""

from __future__ import annotations

from fastapi import FastAPI

from guideline_api.openapi import alias_id, versioned_id
from guideline_api.routes import audit, exports, jobs, runner

VERSION_PREFIX = "/v1"
VERSIONED = (jobs.router, exports.router, audit.router)


def mount(app: FastAPI) -> None:
    """Serve every versioned router under `/v1` and, as deprecated aliases kept for older
    clients, at its unversioned path (`/jobs`, `/audit`): a route added to one of these
    routers is served under both."""
    for router in VERSIONED:
        app.include_router(router, prefix=VERSION_PREFIX, generate_unique_id_function=versioned_id)
    for router in VERSIONED:
        app.include_router(
            router, deprecated=True, tags=["unversioned"], generate_unique_id_function=alias_id
        )
    # The runner's API is new: served under /v1 only.
    app.include_router(
        runner.router, prefix=VERSION_PREFIX, generate_unique_id_function=versioned_id
    )
