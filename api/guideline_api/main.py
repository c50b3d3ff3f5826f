"""Console script `guideline-api`: apply migrations, then serve the API with uvicorn.

`guideline-api keys create|list|revoke` manages the keys file; `new-key` and `hash-key`
(earlier releases) still print `key_id:sha256hex` lines. `guideline-api webhook-secret
create|rotate|show --tenant T` manages a tenant's webhook signing secrets (in PostgreSQL).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guideline_core import db, logs
from guideline_core.settings import ApiSettings

from guideline_api.auth import KEY_ID_PATTERN, TENANT_PATTERN, Role, hash_key, new_key
from guideline_api.keyfile import KeyFileError, create_key, read_keys, revoke_key
from guideline_api.webhooks import store

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

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep our JSON handler; uvicorn's loggers propagate to it
        access_log=False,  # the metrics middleware logs each request instead
        server_header=False,
        # Bounds on what one client can hold: connections and tasks at once (then 503),
        # idle keep-alive connections, the header buffer of a request, the listen queue.
        limit_concurrency=settings.limit_concurrency,
        timeout_keep_alive=settings.timeout_keep_alive_seconds,
        h11_max_incomplete_event_size=settings.max_header_bytes,
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


def _keys_file(given: str | None, parser: argparse.ArgumentParser) -> Path:
    path = given or ApiSettings().api_keys_file
    if not path:
        parser.error("no keys file: pass --keys-file or set GUIDELINE_API_KEYS_FILE")
    return Path(path)


def keys_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """`guideline-api keys create|list|revoke`."""
    path = _keys_file(args.keys_file, parser)
    if args.keys_command == "create":
        try:
            entry, key = create_key(path, args.tenant, Role(args.role), args.id)
        except KeyFileError as exc:
            parser.error(str(exc))
        print(f"created key {entry.key_id} (tenant {entry.tenant}, role {entry.role}) in {path}")
        print("the key is shown only now; store it safely:")
        print(key)  # alone on the last line, for scripts: `... | tail -n 1`
        return 0
    if args.keys_command == "list":
        print("KEY_ID\tTENANT\tROLE\tSHA256")
        for entry in read_keys(path):
            print(f"{entry.key_id}\t{entry.tenant}\t{entry.role}\t{entry.digest[:8]}…")
        return 0
    removed = revoke_key(path, args.key_id)
    if not removed:
        print(f"no key {args.key_id!r} in {path}", file=sys.stderr)
        return 1
    print(f"revoked key {args.key_id} ({removed} entry) in {path}")
    return 0


def _add_keys_parser(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser(
        "keys",
        help="manage API keys in the keys file (GUIDELINE_API_KEYS_FILE or --keys-file)",
        description="Entries are `key_id:sha256hex:tenant:role` lines; the running API "
        "picks up a changed file without a restart.",
    )
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser(
        "create", help="create a key: prints it once (alone on the last line)"
    )
    create.add_argument("--tenant", required=True, help="the tenant the key belongs to")
    create.add_argument(
        "--role",
        choices=[r.value for r in Role],
        default=Role.MEMBER.value,
        help="member (its tenant's jobs) or admin (every tenant); default member",
    )
    create.add_argument("--id", default=None, help="key id (default: <tenant>-<random>)")
    list_ = keys_sub.add_parser("list", help="key ids, tenants, roles, a hash prefix")
    revoke = keys_sub.add_parser("revoke", help="remove a key: it stops working at once")
    revoke.add_argument("key_id")
    for p in (create, list_, revoke):
        p.add_argument("--keys-file", default=None, help="default: GUIDELINE_API_KEYS_FILE")


def webhook_secret_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """`guideline-api webhook-secret create|rotate|show --tenant T`."""
    if not TENANT_PATTERN.match(args.tenant):
        parser.error("--tenant: letters, digits, '.', '_' or '-' (max 63)")
    settings = ApiSettings()
    database = db.Database(args.database_url or settings.database_url, maxconn=1)
    try:
        with database.connection() as conn:
            if args.secret_command == "rotate":
                grace = settings.webhook_secret_grace_seconds
                grace = grace if args.grace_seconds is None else args.grace_seconds
                new = store.rotate_secret(conn, args.tenant, grace)
                print(
                    f"rotated the webhook secret of tenant {args.tenant}; the previous one "
                    f"keeps signing for {grace:g} s (every delivery carries both signatures)"
                )
                print(new["secret"])
                return 0
            if args.secret_command == "create":
                active = store.ensure_secret(conn, args.tenant)
                print(f"webhook secret of tenant {args.tenant} (the current one):")
                print(active[-1]["secret"])
                return 0
            active = store.active_secrets(conn, args.tenant)
    except db.DatabaseUnavailableError as exc:
        print(f"database unavailable: {exc}", file=sys.stderr)
        return 2
    finally:
        database.close()
    if not active:
        print(f"tenant {args.tenant} has no webhook secret (create one)", file=sys.stderr)
        return 1
    print("CREATED\tEXPIRES\tSECRET")
    for entry in active:  # the current one last
        expires = entry["expires_at"].isoformat() if entry["expires_at"] else "-"
        print(f"{entry['created_at'].isoformat()}\t{expires}\t{entry['secret']}")
    return 0


def _add_webhook_secret_parser(sub: argparse._SubParsersAction) -> None:
    secret = sub.add_parser(
        "webhook-secret",
        help="manage a tenant's webhook signing secrets (whsec_..., kept in PostgreSQL)",
        description="Deliveries are signed with every active secret of the job's tenant "
        "(Standard Webhooks); a tenant without one gets one at its first delivery.",
    )
    secret_sub = secret.add_subparsers(dest="secret_command", required=True)
    create = secret_sub.add_parser(
        "create", help="make the tenant's secret unless it has one; print the current one"
    )
    rotate = secret_sub.add_parser(
        "rotate",
        help="a new current secret (printed alone on the last line); the old one keeps "
        "signing for the grace period",
    )
    rotate.add_argument(
        "--grace-seconds",
        type=float,
        default=None,
        help="how long the old secret keeps signing (default GUIDELINE_WEBHOOK_SECRET_GRACE_"
        "SECONDS, 86400)",
    )
    show = secret_sub.add_parser("show", help="the active secrets, the current one last")
    for p in (create, rotate, show):
        p.add_argument("--tenant", required=True, help="the tenant")
        p.add_argument("--database-url", default=None, help="default: GUIDELINE_DATABASE_URL")


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
    _add_keys_parser(sub)
    _add_webhook_secret_parser(sub)
    args = parser.parse_args(argv)

    if args.command == "keys":
        sys.exit(keys_command(args, parser))
    if args.command == "webhook-secret":
        sys.exit(webhook_secret_command(args, parser))

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
