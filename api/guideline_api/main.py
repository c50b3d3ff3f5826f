"""Console script `guideline-api`: apply migrations, then serve the API with uvicorn.
The admin commands (`keys`, `webhook-secret`, `new-key`, `hash-key`) live in
`admin_cli`."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

from guideline_core import db, logs
from guideline_core.settings import ApiSettings

from guideline_api import admin_cli

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger("guideline_api")


def _migrate_with_retry(url: str, wait_seconds: float = 30.0) -> None:
    """Migrations at start-up; waits a little for a database that is still starting."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            db.migrate(url)
            return
        except Exception as exc:  # yoyo/psycopg2 raise several types for "not up yet"
            if time.monotonic() > deadline:
                raise
            log.warning("database not ready, retrying migrations", extra={"error": str(exc)})
            time.sleep(1.0)


def uvicorn_config(app: Any, settings: ApiSettings) -> uvicorn.Config:
    """The HTTP server's configuration for `app` (also what the tests serve with)."""
    import uvicorn

    from guideline_api.http.heads import HeadLimits, head_limited_protocol

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep our JSON handler; uvicorn's loggers propagate to it
        access_log=False,  # the metrics middleware logs each request instead
        server_header=False,
        # Bounds on what one client can hold: connections and tasks at once (then 503),
        # idle keep-alive connections, a request's head (bytes, fields, time), the listen
        # queue. httptools, as uvicorn would pick, with the head bounds it lacks (http.heads).
        limit_concurrency=settings.limit_concurrency,
        timeout_keep_alive=settings.timeout_keep_alive_seconds,
        http=head_limited_protocol(
            HeadLimits(
                max_bytes=settings.max_header_bytes,
                max_fields=settings.max_header_fields,
                timeout_seconds=settings.header_timeout_seconds,
            )
        ),
        backlog=settings.backlog,
        # Event streams last up to sse_max_stream_seconds: cut what still runs after this.
        timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
    )


def serve(settings: ApiSettings) -> None:
    """Migrate and serve until interrupted."""
    import uvicorn

    from guideline_api.app import create_app

    _migrate_with_retry(settings.database_url)
    app = create_app(settings)
    log.info("serving", extra={"host": settings.host, "port": settings.port})
    uvicorn.Server(uvicorn_config(app, settings)).run()


def main(argv: list[str] | None = None) -> None:
    """Entry point of `guideline-api`."""
    parser = argparse.ArgumentParser(
        prog="guideline-api",
        description="The guideline-ingest REST API. Configured by GUIDELINE_* environment "
        "variables (see ApiSettings): GUIDELINE_DATABASE_URL, GUIDELINE_HOST, GUIDELINE_PORT, "
        "GUIDELINE_NAMESPACE, GUIDELINE_API_KEYS_FILE, GUIDELINE_API_KEY_HASHES, ...",
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="apply migrations and serve (the default)")
    admin_cli.add_commands(sub)
    args = parser.parse_args(argv)
    if args.command in admin_cli.COMMANDS:
        sys.exit(admin_cli.run(args, parser))

    settings = ApiSettings()
    logs.configure(settings.log_level, component="api")
    serve(settings)


if __name__ == "__main__":
    main()
