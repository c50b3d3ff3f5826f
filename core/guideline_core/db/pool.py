"""The connection pool, one-off connections and the migrations runner (yoyo,
`guideline-migrate`)."""

from __future__ import annotations

import argparse
import logging
import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

import psycopg2
import psycopg2.extras
import psycopg2.pool
from psycopg2.extensions import connection as PgConnection  # noqa: N812

from guideline_core import dsn, logs

log = logging.getLogger(__name__)
psycopg2.extras.register_uuid()


class DatabaseUnavailableError(RuntimeError):
    """The database could not be reached or refused the connection."""


# --- migrations ----------------------------------------------------------------------------


def protect(database_url: str) -> None:
    """Keep the password of `database_url` out of every log line of this process."""
    for secret in dsn.password_of(database_url):
        logs.register_secret(secret)


def as_unavailable(exc: Exception) -> DatabaseUnavailableError:
    # libpq's own text; scrubbed anyway, as it leaves the process in HTTP answers too.
    return DatabaseUnavailableError(logs.scrub(str(exc).strip()))


def migrate(database_url: str) -> int:
    """Apply pending migrations under yoyo's lock; returns how many were applied. The URL
    may be in keyword form (converted for yoyo, which takes URLs only)."""
    from yoyo import get_backend, read_migrations
    from yoyo.connections import BadConnectionURI

    protect(database_url)
    try:
        # postgresql:// means psycopg2 to yoyo
        backend = get_backend(dsn.to_uri(database_url))
    except BadConnectionURI:
        # Its message quotes the whole URL, password included.
        raise ValueError("database URL is not a valid PostgreSQL connection string") from None
    except psycopg2.OperationalError as exc:
        raise as_unavailable(exc) from None
    migrations_dir = resources.files("guideline_core") / "migrations"
    with resources.as_file(migrations_dir) as path:
        migrations = read_migrations(str(path))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
    log.info("database migrated", extra={"applied": len(pending)})
    return len(pending)


def migrate_main() -> None:
    """Console script `guideline-migrate`: apply migrations and exit."""
    from guideline_core.settings.base import CommonSettings

    parser = argparse.ArgumentParser(description="Apply guideline-ingest database migrations.")
    parser.add_argument("--database-url", default=None, help="default: GUIDELINE_DATABASE_URL")
    parser.add_argument(
        "--cache-role",
        default=None,
        help="then create (if missing) and grant the runner's chunk-cache role: it may only "
        "SELECT and INSERT chunk_summaries",
    )
    args = parser.parse_args()
    url = args.database_url or CommonSettings().database_url
    print(f"applied {migrate(url)} migration(s)")
    if args.cache_role:
        from guideline_core import summary_cache

        conn = psycopg2.connect(url)
        try:
            with conn:
                summary_cache.grant_cache_role(conn, args.cache_role)
        finally:
            conn.close()
        print(f"role {args.cache_role}: SELECT, INSERT on chunk_summaries")


# --- the pool ------------------------------------------------------------------------------


class _KeepingPool(psycopg2.pool.ThreadedConnectionPool):
    """psycopg2's pool, but a connection that comes back healthy is kept for reuse (up to
    `maxconn`), not closed once `minconn` are idle. With the stock behaviour every request
    beyond `minconn` at a time opened a new connection (a PostgreSQL backend start): at 80
    POST/s in `make bench`, p99 was 280-480 ms instead of 110-180 ms."""

    def _putconn(self, conn: PgConnection, key: Any = None, close: bool = False) -> None:
        # The base class keeps a returned connection while fewer than `minconn` are idle;
        # it runs under the pool's lock, so lending it `maxconn` for the call is safe.
        keep = self.minconn
        self.minconn = self.maxconn
        try:
            super()._putconn(conn, key, close)  # type: ignore[misc]  # private, not in the stubs
        finally:
            self.minconn = keep


def _dead(conn: PgConnection) -> bool:
    """True if an idle pooled connection cannot be used: closed on this side, or the server
    wrote to it or hung up while it sat idle (the notice and EOF of a server restart)."""
    if conn.closed:
        return True
    poller = select.poll()
    try:
        poller.register(conn.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg2.InterfaceError):
        return True


class Database:
    """A pool of connections to one PostgreSQL database.

    Without `acquire_timeout`, asking for a connection while all `maxconn` are in use fails
    at once (DatabaseUnavailableError). With it, the caller waits up to that many seconds
    for one to be returned: for a server whose worker threads outnumber the connections."""

    def __init__(
        self,
        url: str,
        minconn: int = 1,
        maxconn: int = 10,
        connect_timeout: int = 3,
        acquire_timeout: float | None = None,
    ):
        protect(url)
        self.url = url
        self._minconn, self._maxconn = minconn, maxconn
        self._connect_timeout = connect_timeout
        self._acquire_timeout = acquire_timeout
        self._slots = threading.BoundedSemaphore(maxconn) if acquire_timeout is not None else None
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._lock = threading.Lock()

    def _get_pool(self) -> psycopg2.pool.ThreadedConnectionPool:
        with self._lock:
            if self._pool is None:
                try:
                    self._pool = _KeepingPool(
                        self._minconn,
                        self._maxconn,
                        self.url,
                        connect_timeout=self._connect_timeout,
                        application_name="guideline-ingest",
                    )
                except psycopg2.OperationalError as exc:
                    raise as_unavailable(exc) from exc
            return self._pool

    @contextmanager
    def connection(self) -> Iterator[PgConnection]:
        """A pooled connection inside a transaction: committed on success, rolled back on
        error. A connection that broke is discarded rather than returned to the pool."""
        if self._slots is not None and not self._slots.acquire(timeout=self._acquire_timeout):
            raise DatabaseUnavailableError(
                f"no free database connection within {self._acquire_timeout:g} s (overloaded)"
            )
        try:
            with self._pooled() as conn:
                yield conn
        finally:
            if self._slots is not None:
                self._slots.release()

    @contextmanager
    def _pooled(self) -> Iterator[PgConnection]:
        pool = self._get_pool()
        for _ in range(self._maxconn + 1):
            try:
                conn = pool.getconn()
            except psycopg2.pool.PoolError as exc:
                raise DatabaseUnavailableError(f"connection pool exhausted: {exc}") from exc
            except psycopg2.OperationalError as exc:
                raise as_unavailable(exc) from exc
            if not _dead(conn):
                break
            pool.putconn(conn, close=True)  # e.g. left behind by a server restart
        else:
            raise DatabaseUnavailableError("no usable database connection")
        broken = False
        try:
            with conn:
                yield conn
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            broken = True
            raise as_unavailable(exc) from exc
        finally:
            pool.putconn(conn, close=broken or bool(conn.closed))

    def ping(self) -> None:
        """Raise DatabaseUnavailableError unless a trivial query succeeds."""
        with self.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            if self._pool is not None:
                self._pool.closeall()
                self._pool = None
