"""Console script `guideline-api`: apply migrations, then serve the API with uvicorn.

`guideline-api new-key` and `guideline-api hash-key` help provision API keys.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from guideline_core import db, logs
from guideline_core.settings import ApiSettings

from guideline_api.auth import KEY_ID_PATTERN, hash_key, new_key

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


def serve(settings: ApiSettings) -> None:
    """Migrate and serve until interrupted."""
    import uvicorn

    from guideline_api.app import create_app

    _migrate_with_retry(settings.database_url)
    app = create_app(settings)
    log.info("serving", extra={"host": settings.host, "port": settings.port})
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep our JSON handler; uvicorn's loggers propagate to it
        access_log=False,  # the metrics middleware logs each request instead
        server_header=False,
    )


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
    nk = sub.add_parser(
        "new-key",
        help="create an API key: writes the key to --key-file (mode 600) and prints the "
        "`key_id:sha256hex` line for GUIDELINE_API_KEY_HASHES or the keys file",
    )
    nk.add_argument("--id", default="local", help="key id recorded as submitted_by")
    nk.add_argument("--key-file", required=True, help="where to write the plaintext key")
    hk = sub.add_parser(
        "hash-key", help="read a key on stdin and print its `key_id:sha256hex` line"
    )
    hk.add_argument("--id", required=True, help="key id recorded as submitted_by")
    args = parser.parse_args(argv)

    if args.command in ("new-key", "hash-key"):
        if not KEY_ID_PATTERN.match(args.id):
            parser.error("--id must be letters, digits, '.', '_' or '-' (max 63)")
        if args.command == "new-key":
            key = new_key()
            fd = os.open(args.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(key + "\n")
        else:
            key = sys.stdin.readline().strip()
            if not key:
                parser.error("no key on stdin")
        print(f"{args.id}:{hash_key(key)}")
        return

    settings = ApiSettings()
    logs.configure(settings.log_level, component="api")
    serve(settings)


if __name__ == "__main__":
    main()
