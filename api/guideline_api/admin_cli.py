"""The admin commands of `guideline-api` (dispatched by `main`):

- `keys create|list|revoke` edit the keys file; `new-key` and `hash-key` (earlier
  releases) still print `key_id:sha256hex` lines.
- `webhook-secret create|rotate|show|revoke --tenant T` manage a tenant's webhook signing
  secrets in PostgreSQL. The database URL comes from GUIDELINE_DATABASE_URL or
  `--database-url-file`, never with a password on the command line (every process of the
  host can read another's argv): `--database-url` is refused when its URL carries one.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import psycopg2
from guideline_core import db
from guideline_core.db import webhooks as store
from guideline_core.settings import ApiSettings
from psycopg2.extensions import connection as PgConnection  # noqa: N812
from psycopg2.extensions import parse_dsn

from guideline_api.auth import KEY_ID_PATTERN, TENANT_PATTERN, Role, hash_key, new_key
from guideline_api.keyfile import KeyFileError, create_key, read_keys, revoke_key

COMMANDS = ("keys", "webhook-secret", "new-key", "hash-key")


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


def _database_url(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    """The database URL of a `webhook-secret` command: `--database-url-file`, else
    `--database-url` (only without a password), else GUIDELINE_DATABASE_URL."""
    if args.database_url_file is not None:
        try:
            url = Path(args.database_url_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            parser.error(f"--database-url-file: {exc.strerror}: {args.database_url_file}")
        if not url:
            parser.error(f"--database-url-file: {args.database_url_file} is empty")
        return url
    if args.database_url is not None:
        try:
            has_password = "password" in parse_dsn(args.database_url)
        except psycopg2.ProgrammingError:
            parser.error("--database-url: not a valid PostgreSQL URL")
        if has_password:
            parser.error(
                "--database-url must not carry a password (the command line is visible to "
                "every process on the host): give the URL in GUIDELINE_DATABASE_URL or in a "
                "file named by --database-url-file, or the password in PGPASSWORD/.pgpass"
            )
        return args.database_url
    return ApiSettings().database_url


def webhook_secret_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """`guideline-api webhook-secret create|rotate|show|revoke --tenant T`."""
    if not TENANT_PATTERN.match(args.tenant):
        parser.error("--tenant: letters, digits, '.', '_' or '-' (max 63)")
    database = db.Database(_database_url(args, parser), maxconn=1)
    try:
        with database.connection() as conn:
            if args.secret_command == "rotate":
                grace = args.grace_seconds
                if grace is None:
                    grace = ApiSettings().webhook_secret_grace_seconds
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
            if args.secret_command == "revoke":
                return _revoke(conn, args)
            store.purge_expired_secrets(conn, args.tenant)
            active = store.active_secrets(conn, args.tenant)
    except db.DatabaseUnavailableError as exc:
        print(f"database unavailable: {exc}", file=sys.stderr)
        return 2
    finally:
        database.close()
    if not active:
        print(f"tenant {args.tenant} has no webhook secret (create one)", file=sys.stderr)
        return 1
    print("ID\tCREATED\tEXPIRES\tSECRET")
    for entry in active:  # the current one last
        expires = entry["expires_at"].isoformat() if entry["expires_at"] else "-"
        print(f"{entry['id']}\t{entry['created_at'].isoformat()}\t{expires}\t{entry['secret']}")
    return 0


def _revoke(conn: PgConnection, args: argparse.Namespace) -> int:
    ended = store.revoke_secrets(conn, args.tenant, secret_id=args.id, previous=args.all_previous)
    if not ended:
        what = "previous secrets" if args.all_previous else f"secret {args.id}"
        print(f"tenant {args.tenant} has no {what} to revoke", file=sys.stderr)
        return 1
    print(f"revoked {ended} webhook secret(s) of tenant {args.tenant}: deleted, they sign nothing")
    if not store.active_secrets(conn, args.tenant):
        print("the tenant has no secret now: its next delivery makes one (or run create)")
    return 0


def _add_webhook_secret_parser(sub: argparse._SubParsersAction) -> None:
    secret = sub.add_parser(
        "webhook-secret",
        help="manage a tenant's webhook signing secrets (whsec_..., kept in PostgreSQL)",
        description="Deliveries are signed with every active secret of the job's tenant "
        "(Standard Webhooks); a tenant without one gets one at its first delivery. The "
        "database URL: GUIDELINE_DATABASE_URL or --database-url-file.",
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
    show = secret_sub.add_parser(
        "show", help="the active secrets with their ids, the current one last"
    )
    revoke = secret_sub.add_parser(
        "revoke", help="end secrets at once (deleted): --all-previous or --id N (see show)"
    )
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--all-previous",
        action="store_true",
        help="every secret but the current one (end a rotation's grace period now)",
    )
    which.add_argument("--id", type=int, help="the secret with this id (show lists them)")
    for p in (create, rotate, show, revoke):
        p.add_argument("--tenant", required=True, help="the tenant")
        url = p.add_mutually_exclusive_group()
        url.add_argument(
            "--database-url-file",
            default=None,
            help="a file holding the database URL (default: GUIDELINE_DATABASE_URL)",
        )
        url.add_argument(
            "--database-url",
            default=None,
            help="a database URL without a password (one with a password is refused)",
        )


def _add_key_commands(sub: argparse._SubParsersAction) -> None:
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


def key_line_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """`guideline-api new-key|hash-key`: a `key_id:sha256hex` line."""
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
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the admin commands to `guideline-api`'s subcommands."""
    _add_key_commands(sub)
    _add_keys_parser(sub)
    _add_webhook_secret_parser(sub)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run the admin command `args.command` (one of COMMANDS); its exit status."""
    if args.command == "keys":
        return keys_command(args, parser)
    if args.command == "webhook-secret":
        return webhook_secret_command(args, parser)
    return key_line_command(args, parser)
